"""Landmark images per second: fewshot_th.draw_landmarks against drawing with matplotlib.

The most used public re-implementation of the paper draws each landmark image by plotting the
parts as lines on a new matplotlib figure and reading back the canvas. This benchmark times
that approach (written here from its description) and ours side by side, in one run, at
256 px on a batch of 64 real-looking landmark sets (SynthHeads), and reports medians.

    python bench/landmark_drawing.py [--size 256] [--batch 64]
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fewshot_th.data import SynthHeads  # noqa: E402
from fewshot_th.landmarks import PARTS, draw_landmarks  # noqa: E402

from common import machine, median_seconds  # noqa: E402


def draw_with_matplotlib(points: np.ndarray, size: int) -> torch.Tensor:
    """One landmark image drawn the matplotlib way: a figure, one line per part, read back.

    Ends with the same result as ``draw_landmarks``: a float tensor (3, size, size) in [0, 1].
    """
    dpi = 100
    fig = plt.figure(figsize=(size / dpi, size / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, size)
    ax.set_ylim(size, 0)
    ax.set_facecolor("black")
    ax.axis("off")
    fig.patch.set_facecolor("black")
    for part in PARTS:
        index = list(part.indices) + ([part.indices[0]] if part.closed else [])
        ax.plot(points[index, 0], points[index, 1], color=part.color, linewidth=size / 100 * 0.72)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return torch.from_numpy(image).permute(2, 0, 1).float() / 255


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    heads = SynthHeads(num_identities=args.batch, num_videos_per_identity=1, frames_per_video=2,
                       size=args.size, seed=0)
    points = torch.stack([heads.get_frames(i, [0])[1][0] for i in range(args.batch)]).numpy()

    ours = median_seconds(lambda: draw_landmarks(points, args.size), args.repeats)
    reference = median_seconds(lambda: [draw_with_matplotlib(p, args.size) for p in points],
                               max(3, args.repeats // 6))
    threads = torch.get_num_threads()
    print(f"machine: {machine()}; torch threads {threads}")
    print(f"landmark images {args.size} px, batch {args.batch} (median of repeats)")
    print(f"  fewshot_th.draw_landmarks: {args.batch / ours:10.0f} images/s")
    print(f"  matplotlib, figure per image: {args.batch / reference:7.0f} images/s")
    print(f"  speed-up: {reference / ours:.0f}x")


if __name__ == "__main__":
    main()

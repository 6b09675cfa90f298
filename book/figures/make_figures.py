"""Regenerate the static figures of the book and the README: python book/figures/make_figures.py"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from fewshot_th.data import SynthHeads  # noqa: E402
from fewshot_th.landmarks import draw_landmarks  # noqa: E402
from fewshot_th.plot import method_diagram, overlay, to_numpy_image  # noqa: E402

HERE = Path(__file__).parent


def synthheads_figure(path: Path) -> None:
    ds = SynthHeads("train", num_identities=6, num_videos_per_identity=1, frames_per_video=24,
                    size=128, seed=0)
    fig, axes = plt.subplots(3, 6, figsize=(11, 6))
    for column in range(6):
        frames, points = ds.get_frames(column, [0, 12])
        images = draw_landmarks(points, 128)
        row_images = [frames[0], frames[1], overlay(frames[1:], images[1:])[0]]
        for row, image in enumerate(row_images):
            axes[row, column].imshow(to_numpy_image(image))
            axes[row, column].axis("off")
    for row, label in enumerate(["identity, frame 0", "frame 12", "frame 12 + landmarks"]):
        axes[row, 0].set_title(label, fontsize=9, loc="left")
    fig.suptitle("SynthHeads: procedural talking heads with exact landmarks")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    torch.manual_seed(0)
    method_diagram().savefig(HERE / "method.png", dpi=90, bbox_inches="tight")
    synthheads_figure(HERE / "synthheads.png")
    print("wrote", HERE / "method.png", "and", HERE / "synthheads.png")

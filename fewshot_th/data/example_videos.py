"""A small folder of test videos for ``fewshot-th preprocess``: good ones and every kind of bad.

``write_example_videos(folder)`` writes, as mp4 files:

* ``synth.mp4``: a SynthHeads person talking, 128 px; its exact landmarks are returned, so
  the detector and the crop can be measured against the truth;
* ``astronaut.mp4``: a real face (``skimage.data.astronaut()``) with simulated head motion
  (the crop window slides down and to the right), 200 px;
* ``one_frame.mp4`` (a single frame), ``no_face.mp4`` (grey), ``tiny.mp4`` (the astronaut at
  25 px), ``two_people.mp4`` (the astronaut beside its mirror image) and ``corrupt.mp4``
  (random bytes): each is one reason for preprocessing to skip a video.

Used by chapter 10 and by the tests of ``fewshot_th.preprocess``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["write_example_videos", "moving_astronaut"]


def moving_astronaut(frames: int, side: int = 200, down: int = 4, right: int = 2,
                     start: int = -20) -> list[np.ndarray]:
    """The astronaut's head and shoulders seen through a 280 px window that moves ``down`` and
    ``right`` pixels a frame (from ``start`` rows above the top, clipped), resized to ``side``
    pixels: ``frames`` uint8 images ``(side, side, 3)``."""
    try:
        from skimage.data import astronaut
        from skimage.transform import resize
    except ImportError as error:
        raise ImportError("the example videos need scikit-image: pip install scikit-image") \
            from error
    face = astronaut()[:320, 60:380]  # the head and shoulders, 320 x 320
    return [resize(face[max(0, down * t + start):, right * t:][:280, :280], (side, side),
                   preserve_range=True).astype(np.uint8) for t in range(frames)]


def write_example_videos(folder, frames: int = 12, seed: int = 0) -> dict:
    """Write the example videos (see the module's docstring) into ``folder``; returns
    ``{"files": {name: path}, "synth_landmarks": (frames, 68, 2) tensor}``: the exact
    landmarks of ``synth.mp4`` in its pixels."""
    from ..reenact import write_video
    from .synthetic import SynthHeads

    if not isinstance(frames, int) or frames < 2:
        raise ValueError(f"frames must be an integer of at least 2, got {frames!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def video(name: str, images) -> Path:
        images = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).float() / 255
        return write_video(folder / f"{name}.mp4", images)

    heads = SynthHeads("test", num_identities=2, num_videos_per_identity=1,
                       frames_per_video=frames, size=128, seed=seed)
    synth, points = heads.get_frames(1, np.arange(frames))
    moving = moving_astronaut(frames)
    files = {
        "synth": video("synth", (synth.permute(0, 2, 3, 1) * 255).round().byte().numpy()),
        "astronaut": video("astronaut", moving),
        "one_frame": video("one_frame", moving[:1]),
        "no_face": video("no_face", np.full((frames, 128, 128, 3), 120, np.uint8)),
        "tiny": video("tiny", [m[::8, ::8] for m in moving]),
        "two_people": video("two_people", [np.concatenate([m, m[:, ::-1]], axis=1)
                                           for m in moving]),
    }
    files["corrupt"] = folder / "corrupt.mp4"
    files["corrupt"].write_bytes(np.random.default_rng(seed).bytes(5000))
    return {"files": files, "synth_landmarks": points}

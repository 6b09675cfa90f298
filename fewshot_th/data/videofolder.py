"""Real videos for meta-learning: a folder written by ``fewshot-th preprocess``.

``VideoFolder(path)`` reads the manifest and nothing else; a video's frames are read from
disk (memory-mapped ``frames.npy``) only when an episode asks for them. It has SynthHeads'
interface, so ``EpisodeDataset``, the ``Trainer`` and ``fewshot-th train --data PATH`` take
it as they take SynthHeads.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import torch

from ..checks import video_index

__all__ = ["VideoFolder"]


class VideoFolder(torch.utils.data.Dataset):
    """The kept videos of a preprocessed folder, in the manifest's order.

    Args:
        path: the folder ``fewshot-th preprocess`` wrote.
        split: ``"all"``, or ``"train"`` / ``"test"``: a fixed share ``test_share`` of the
            people held out for evaluation, chosen by a hash of each video's person (its
            first folder under the folder preprocessed, as VoxCeleb2's ``id00012``; else its
            name), so that all videos of a person land on the same side, whatever else the
            folder holds.
        min_frames: leave out videos with fewer frames (an episode of K sources and one
            target needs K + 1).

    ``ds[i]`` is ``{"frames": (T, 3, H, W) in [0, 1], "landmarks": (T, 68, 2)}``;
    ``get_frames(i, frame_indices)`` reads only those frames; ``num_frames(i)`` is T.
    """

    def __init__(self, path, split: str = "all", test_share: float = 0.1, min_frames: int = 2):
        self.path = Path(path)
        manifest = self.path / "manifest.json"
        if not manifest.exists():
            raise FileNotFoundError(f"{manifest} does not exist: make the folder with "
                                    "fewshot-th preprocess VIDEOS OUT")
        info = json.loads(manifest.read_text())
        if not str(info.get("format", "")).startswith("fewshot_th video folder"):
            raise ValueError(f"{manifest} is not a fewshot-th preprocess manifest")
        if split not in ("all", "train", "test"):
            raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}")
        if not 0 < test_share < 1:
            raise ValueError(f"test_share must be between 0 and 1, got {test_share!r}")
        self.split, self.test_share, self.size = split, test_share, int(info["size"])
        self.videos = [v for v in info["videos"] if v["frames"] >= min_frames and (
            split == "all" or (self._held_out(v.get("person", v["name"])) == (split == "test")))]
        if not self.videos:
            raise ValueError(f"{self.path} has no {split} videos with at least {min_frames} "
                             f"frames ({len(info['videos'])} kept in all)")

    def _held_out(self, name: str) -> bool:
        return zlib.crc32(name.encode()) % 1000 < self.test_share * 1000

    def __len__(self) -> int:
        return len(self.videos)

    def _index(self, index) -> int:
        return video_index(index, len(self))

    def num_frames(self, index: int) -> int:
        return int(self.videos[self._index(index)]["frames"])

    def identity_of(self, index: int) -> int:
        """Each video counts as its own person (a folder does not say who is who)."""
        return self._index(index)

    def get_frames(self, index: int, frame_indices=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Only the chosen frames of video ``index``: ``(frames (n, 3, H, W), landmarks
        (n, 68, 2))``."""
        folder = self.path / "videos" / self.videos[self._index(index)]["name"]
        frames = np.load(folder / "frames.npy", mmap_mode="r")
        points = np.load(folder / "landmarks.npy", mmap_mode="r")
        chosen = np.arange(len(frames)) if frame_indices is None else np.asarray(frame_indices)
        images = torch.from_numpy(np.ascontiguousarray(frames[chosen]))
        return (images.permute(0, 3, 1, 2).float() / 255,
                torch.from_numpy(np.ascontiguousarray(points[chosen], dtype=np.float32)))

    def __getitem__(self, index: int) -> dict:
        frames, landmarks = self.get_frames(index)
        return {"frames": frames, "landmarks": landmarks, "identity": self.identity_of(index)}

    def description(self) -> dict:
        """What a training checkpoint records about these videos."""
        return {"dataset": "VideoFolder", "path": str(self.path.resolve()), "split": self.split,
                "videos": len(self), "size": self.size}

    def __repr__(self) -> str:
        return f"VideoFolder({str(self.path)!r}, split={self.split!r}, videos={len(self)})"

"""Meta-learning episodes (Sec. 3.2 of the paper).

An episode of video i: K frames x_i(s_1..s_K) with their landmark images y_i(s_k), which the
embedder E sees, and one *different* frame x_i(t) with landmarks y_i(t), which the generator
must reproduce. Drawing the target from among the K sources would let the generator copy
instead of learning to generalise to a new pose: a known pitfall of re-implementations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..checks import is_int, is_integer
from ..config import as_device
from ..landmarks import draw_landmarks


class EpisodeDataset(torch.utils.data.Dataset):
    """One episode per video: K sources and one target frame, all from the same video.

    Args:
        videos: any sequence of videos with the SynthHeads interface (``len``, and ``videos[i]``
            a dict with ``frames (T, 3, H, W)`` and ``landmarks (T, 68, 2)``). If it has
            ``get_frames(i, frame_indices)`` only the K + 1 frames needed are loaded, and
            ``num_frames(i)`` gives T of videos of different lengths.
        k: number of source frames, ``1 <= k < T``.
        seed: episodes are a pure function of ``(seed, epoch, video index)``; call
            ``set_epoch`` to draw new frames each epoch (also inside DataLoader workers).
        thickness: line width of the landmark images (default: ``draw_landmarks``'s).

    Items are dicts with ``source_frames (K, 3, H, W)``, ``source_landmarks (K, 3, H, W)``
    (landmark images), ``target_frame (3, H, W)``, ``target_landmarks (3, H, W)``,
    ``source_points (K, 68, 2)``, ``target_points (68, 2)``, ``frame_indices (K + 1,)``
    (sources then target) and ``video_index``.
    """

    def __init__(self, videos: Sequence, k: int, seed: int = 0, thickness: float | None = None):
        if not is_integer(k):
            raise ValueError(f"k must be an integer, got {k!r}")
        if len(videos) == 0:
            raise ValueError("videos is empty: an episode needs at least one video")
        self.videos, self.k, self.seed, self.thickness = videos, int(k), int(seed), thickness
        self.epoch = 0
        frames = getattr(videos, "frames_per_video", None)
        self._check_k(frames)

    def _check_k(self, num_frames: int | None) -> None:
        if self.k < 1 or (num_frames is not None and self.k >= num_frames):
            limit = "the number of frames in a video" if num_frames is None else num_frames
            raise ValueError(
                f"k must be between 1 and {limit} - 1 (the target must be a frame that is "
                f"not among the k sources), got k={self.k}"
                + ("" if num_frames is None else f" for videos of {num_frames} frames")
            )

    def set_epoch(self, epoch: int) -> None:
        """Draw different source and target frames for every epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.videos)

    def _load(self, index: int, chosen: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if hasattr(self.videos, "get_frames"):
            return self.videos.get_frames(index, chosen)
        video = self.videos[index]
        return video["frames"][chosen], torch.as_tensor(video["landmarks"])[chosen]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"episode index {index} out of range for {len(self)} videos")
        num_frames = getattr(self.videos, "frames_per_video", None)
        if num_frames is None:  # videos of different lengths (e.g. a VideoFolder)
            num_frames = self.videos.num_frames(index) if hasattr(self.videos, "num_frames") \
                else len(self.videos[index]["frames"])
            self._check_k(num_frames)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        chosen = rng.choice(num_frames, size=self.k + 1, replace=False)
        frames, points = self._load(index, chosen)
        images = draw_landmarks(points, frames.shape[-1], self.thickness)
        return {
            "source_frames": frames[: self.k], "source_landmarks": images[: self.k],
            "target_frame": frames[self.k], "target_landmarks": images[self.k],
            "source_points": points[: self.k], "target_points": points[self.k],
            "frame_indices": torch.from_numpy(chosen), "video_index": index,
        }


def to_device(batch: dict, device) -> dict:
    """The batch with every tensor moved to ``device`` (other entries as they are)."""
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value
            for key, value in batch.items()}


def episode_batches(episodes: EpisodeDataset, batch_size: int, *, seed: int = 0,
                    num_workers: int = 0, start: int = 0, rank: int = 0, world_size: int = 1,
                    device=None):
    """Endless iterator over shuffled batches of episodes (dicts of batched tensors), on
    ``device`` when one is given (e.g. ``fewshot_th.default_device()``), else on the CPU.

    Every pass over the videos is a new epoch: new source and target frames, new order. The
    sequence is a pure function of ``seed``; ``start`` skips that many batches without
    loading them, so a resumed run sees exactly the batches it would have seen. With several
    processes, the global batch has ``batch_size * world_size`` episodes and process ``rank``
    loads its ``batch_size`` of them.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    total = batch_size * world_size if isinstance(batch_size, int) else batch_size
    if not is_int(batch_size) or \
            not 1 <= total <= len(episodes):
        raise ValueError(f"batch_size must be between 1 and the number of videos "
                         f"({len(episodes)}) divided by the number of processes "
                         f"({world_size}), got {batch_size!r}")
    if device is not None:
        device = as_device(device)
    per_epoch = len(episodes) // total
    epoch, offset = divmod(int(start), per_epoch)
    while True:
        episodes.set_epoch(epoch)
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(len(episodes), generator=generator)
        batches = order[: per_epoch * total].view(per_epoch, world_size, batch_size)
        batches = batches[offset:, rank].tolist()
        # The loader draws its workers' seed from ``generator``, not from torch's global RNG,
        # so a resumed run leaves the global RNG where an uninterrupted one does.
        loader = torch.utils.data.DataLoader(episodes, batch_sampler=batches,
                                             num_workers=num_workers, generator=generator)
        for batch in loader:
            yield batch if device is None else to_device(batch, device)
        epoch, offset = epoch + 1, 0

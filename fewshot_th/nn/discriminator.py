"""The projection discriminator D (Sec. 3.2 of the paper; Miyato & Koyama, 2018).

D(x, y, i; θ, W, w0, b) scores how real a frame x looks, how well it fits the landmark image
y, and (in meta-learning) how well it matches video i. A trunk V, like the embedder's plus one
more residual block at the bottom, maps (x, y) to a vector v; the score is Eq. (3):

    r = V(x, y; θ)ᵀ (W_i + w0) + b,

with one column W_i of W per training *video*. In fine-tuning (Sec. 3.3) the video's vector
is replaced by one person-specific w', initialised to w0 + ê_new: ``forward(..., w=w_prime)``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import is_int
from ..config import ModelConfig
from .blocks import ResBlock, zero_spectral_norm_biases
from .embedder import DownTrunk, check_pair

__all__ = ["ProjectionDiscriminator", "real_and_fake"]


class ProjectionDiscriminator(nn.Module):
    """D with parameters θ (the trunk V), W ``(num_videos, D)``, w0 ``(D,)`` and b ``(1,)``.

    ``forward(image, landmarks, video_index)`` -> ``(score (B,), features)``, where features
    are the outputs of every block of V (for the feature-matching loss).
    """

    def __init__(self, config: ModelConfig, num_videos: int):
        super().__init__()
        if not is_int(num_videos) or num_videos < 1:
            raise ValueError(f"num_videos must be a positive integer, got {num_videos!r}")
        self.config = config
        self.trunk = DownTrunk(config, in_channels=6)
        self.bottom = ResBlock(config.embedding_size, sn=config.spectral_norm)
        if config.zero_bias_init:
            zero_spectral_norm_biases(self)
        self.W = nn.Parameter(torch.randn(num_videos, config.embedding_size) * 0.02)
        self.w0 = nn.Parameter(torch.zeros(config.embedding_size))
        self.b = nn.Parameter(torch.zeros(1))
        # Which columns W_i have been initialised from their video's ê (if training does so).
        self.register_buffer("W_initialised", torch.zeros(num_videos, dtype=torch.bool))

    def stages(self) -> list[tuple[str, nn.Module]]:
        """The blocks in the order the data flows through them (for figures)."""
        return [(f"down {i + 1}", b) for i, b in enumerate(self.trunk.blocks)] + \
            [("res (bottom)", self.bottom)]

    @property
    def num_videos(self) -> int:
        return self.W.shape[0]

    def features(self, image: torch.Tensor, landmarks: torch.Tensor):
        """``(v (B, D), [block outputs])`` for images and landmark images ``(B, 3, H, W)``."""
        check_pair(self.config, image, landmarks, ("image", "landmarks"), leading=1)
        x = torch.cat([image, landmarks], dim=1)
        maps = self.trunk(x)
        maps.append(self.bottom(maps[-1]))
        v = F.relu(maps[-1]).sum(dim=(2, 3))  # BigGAN style: ReLU, then global sum pooling
        return v, maps

    def embed(self, image: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """v = V(x, y; θ): ``(B, 3, H, W)`` pairs -> ``(B, D)``."""
        return self.features(image, landmarks)[0]

    def forward(self, image: torch.Tensor, landmarks: torch.Tensor,
                video_index: torch.Tensor | None = None, *, w: torch.Tensor | None = None):
        """Realism score r = vᵀ(W_i + w0) + b (Eq. 3), or vᵀw' + b with ``w`` given.

        ``video_index``: ``(B,)`` integer tensor; ``w``: ``(D,)`` or ``(B, D)``.
        Returns ``(score (B,), features list)``.
        """
        v, maps = self.features(image, landmarks)  # v = V(x, y; θ)
        projection = self.projection(len(v), video_index, w)  # W_i + w0, or w'
        return (v * projection).sum(dim=1) + self.b, maps

    def for_one_person(self) -> ProjectionDiscriminator:
        """A copy to fine-tune for one new person (Sec. 3.3): the trunk, w0 and b exactly as
        they are, and a one-row stand-in for W, which fine-tuning never uses (w' takes its
        place), so that W's row per training video is not copied."""
        stand_ins = {id(self.W): nn.Parameter(self.W[:1].detach().clone()),
                     id(self.W_initialised): self.W_initialised[:1].clone()}
        return copy.deepcopy(self, memo=stand_ins)

    def projection(self, batch: int, video_index: torch.Tensor | None = None,
                   w: torch.Tensor | None = None) -> torch.Tensor:
        """What v is projected on: ``W[video_index] + w0`` ``(B, D)`` in meta-learning, or the
        fine-tuned ``w`` itself; exactly one of the two, checked against ``batch`` frames."""
        if (video_index is None) == (w is None):
            raise ValueError("give exactly one of video_index (meta-learning) or w (fine-tuning)")
        size = self.W.shape[1]
        if w is not None:
            if w.shape not in ((size,), (batch, size)):
                raise ValueError(f"w must have shape ({size},) or ({batch}, {size}), "
                                 f"got {tuple(w.shape)}")
            return w
        video_index = torch.as_tensor(video_index, device=self.W.device)
        if video_index.shape != (batch,) or video_index.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"video_index must be {batch} integers, "
                             f"got {tuple(video_index.shape)} {video_index.dtype}")
        if batch and (video_index.min() < 0 or video_index.max() >= self.num_videos):
            low, high = int(video_index.min()), int(video_index.max())
            raise ValueError(f"video_index must be in [0, {self.num_videos}), got "
                             f"values from {low} to {high}")
        return self.W[video_index] + self.w0



def real_and_fake(D, real: torch.Tensor, fake: torch.Tensor, landmarks: torch.Tensor,
                  video_index: torch.Tensor | None = None, *, w: torch.Tensor | None = None):
    """One pass of ``D`` over real and generated frames of the same landmarks together:
    ``(real scores, fake scores, real features, fake features)``, with the videos' columns
    ``video_index`` (meta-learning) or one vector ``w`` (fine-tuning). ``D`` is a
    ``ProjectionDiscriminator`` or the same wrapped for several processes (its ``forward`` is
    what runs, so that the wrapper sees the pass)."""
    b = real.shape[0]
    both = None if video_index is None else torch.cat([video_index, video_index])
    score, maps = D(torch.cat([real, fake]), torch.cat([landmarks, landmarks]), both, w=w)
    return score[:b], score[b:], [m[:b] for m in maps], [m[b:] for m in maps]

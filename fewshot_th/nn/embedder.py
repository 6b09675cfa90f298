"""The embedder E (Sec. 3.2 of the paper).

E maps a frame x_i(s) and its landmark image y_i(s) to a vector ê_i(s); the person's
embedding is the average over the K frames, Eq. (1):

    ê_i = (1/K) Σ_k E(x_i(s_k), y_i(s_k); φ).

E is a stack of residual down-sampling blocks (no normalisation, average pooling) with
self-attention, followed by global *sum* pooling and a ReLU. ``ModelConfig.embedder_pooling
= "weighted"`` (not the paper) weights each channel at each position of the last map before
the sum, with weights that start at one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .blocks import DownBlock, SelfAttention, in_format_of, zero_spectral_norm_biases

__all__ = ["DownTrunk", "Embedder", "check_pair", "load_embedder"]


class DownTrunk(nn.Module):
    """Residual down-sampling blocks from ``in_channels`` to ``embedding_size`` channels.

    Used by E and by D's V: ``config.embedder_down_blocks`` blocks halve the size each time
    (256 -> 4 in the paper); self-attention follows each block whose output size is in
    ``config.attention_down``. The last block outputs ``config.embedding_size`` channels.
    ``forward`` returns every block's output ``[(B, C_1, H/2, W/2), ...]``.
    """

    def __init__(self, config: ModelConfig, in_channels: int = 6):
        super().__init__()
        channels = config.channels(config.embedder_down_blocks)
        channels[-1] = config.embedding_size
        layers, cin, size = [], in_channels, config.image_size
        for i, cout in enumerate(channels):
            size //= 2
            block = DownBlock(cin, cout, sn=config.spectral_norm, preactivate=i > 0)
            if size in config.attention_down:
                block = nn.Sequential(block, SelfAttention(cout, sn=config.spectral_norm))
            layers.append(block)
            cin = cout
        self.blocks = nn.ModuleList(layers)

    @property
    def first_conv(self) -> nn.Module:
        first = self.blocks[0]
        return (first[0] if isinstance(first, nn.Sequential) else first).conv1

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = in_format_of(x, self.first_conv)
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


def load_embedder(embedder: Embedder, state: dict[str, torch.Tensor]) -> None:
    """Load E's weights from ``state``, which may come from an E with the paper's sum pooling
    when ``embedder`` weights its positions (``embedder_pooling="weighted"``): its position
    weights then keep their start, ones, so that it computes the same e. Any other
    difference raises ``RuntimeError`` as ``load_state_dict`` does."""
    missing, unexpected = embedder.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"position_weights"}:
        embedder.load_state_dict(state)  # raises, naming every difference


def check_pair(config: ModelConfig, images: torch.Tensor, landmarks: torch.Tensor,
               names: tuple[str, str], leading: int) -> None:
    """Raise a clear ``ValueError`` unless ``images`` and ``landmarks`` are matching
    ``(..., 3, S, S)`` tensors with ``leading`` leading dimensions and S the config's size."""
    size = config.image_size
    for name, t in zip(names, (images, landmarks)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch tensor, got {type(t).__name__}")
        if t.ndim != leading + 3 or t.shape[-3:] != (3, size, size):
            dims = "B, K, " if leading == 2 else "B, "
            raise ValueError(f"{name} must have shape ({dims}3, {size}, {size}) for this "
                             f"{size} px model, got {tuple(t.shape)}")
    if images.shape != landmarks.shape:
        raise ValueError(f"{names[0]} {tuple(images.shape)} and {names[1]} "
                         f"{tuple(landmarks.shape)} must have the same shape")


class Embedder(nn.Module):
    """E(x, y; φ): K frames and their landmark images -> per-frame e and the mean ê (Eq. 1).

    ``forward(frames, landmarks)``: both ``(B, K, 3, H, W)`` -> ``(e, e_hat)`` of shapes
    ``(B, K, D)`` and ``(B, D)`` with D = ``config.embedding_size`` (512). All B·K frames go
    through the network in one batch.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.trunk = DownTrunk(config, in_channels=6)
        if config.zero_bias_init:
            zero_spectral_norm_biases(self)
        if config.embedder_pooling == "weighted":  # ones: the sum pooling, until trained
            side = config.image_size // 2**config.embedder_down_blocks
            self.position_weights = nn.Parameter(torch.ones(config.embedding_size, side, side))

    def stages(self) -> list[tuple[str, nn.Module]]:
        """The blocks in the order the data flows through them (for figures)."""
        return [(f"down {i + 1}", block) for i, block in enumerate(self.trunk.blocks)]

    def forward(self, frames: torch.Tensor, landmarks: torch.Tensor):
        check_pair(self.config, frames, landmarks, ("frames", "landmarks"), leading=2)
        b, k = frames.shape[:2]
        x = torch.cat([frames, landmarks], dim=2).flatten(0, 1)
        h = self.trunk(x)[-1]
        if self.config.embedder_pooling == "weighted":
            h = h * self.position_weights
        e = F.relu(h.sum(dim=(2, 3))).view(b, k, -1)
        return e, e.mean(dim=1)

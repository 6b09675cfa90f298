"""The generator G (Sec. 3.2 of the paper).

G(y_i(t), ê_i; ψ, P) draws the frame x̂_i(t) for the landmark image y_i(t). It is an
image-to-image network in the style of Johnson et al. with residual blocks: down-sampling
blocks with instance norm, residual blocks and up-sampling blocks with AdaIN, and
self-attention. The person enters *only* through the AdaIN parameters, which all come from
one projection matrix P, Eq. (2):

    ψ̂_i = P ê_i.

In fine-tuning (Sec. 3.3), ψ' is initialised to P ê_new and trained directly: ``forward``
also accepts an explicit ``psi``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .blocks import (
    AdaINResBlock,
    AdaINUpBlock,
    DownBlock,
    SelfAttention,
    adain,
    conv,
    in_format_of,
    linear,
    zero_spectral_norm_biases,
)

__all__ = ["Generator"]


class Generator(nn.Module):
    """G: landmark image y ``(B, 3, H, W)`` and ê ``(B, D)`` (or ψ) -> frame ``(B, 3, H, W)``.

    Attributes:
        P: the projection ψ̂ = P ê, a single ``D -> num_adain_params`` matrix (no bias).
        num_adain_params: length of ψ: two numbers (scale, bias) per channel of every AdaIN.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        sn, eps = config.spectral_norm, config.adain_eps
        channels = config.generator_channels()
        down, cin, size = [], 3, config.image_size
        for i, cout in enumerate(channels):
            size //= 2
            block = DownBlock(cin, cout, sn=sn, norm=True, preactivate=i > 0)
            if size in config.attention_down:
                block = nn.Sequential(block, SelfAttention(cout, sn=sn))
            down.append(block)
            cin = cout
        self.down = nn.ModuleList(down)
        self.res = nn.ModuleList(AdaINResBlock(cin, sn=sn, eps=eps)
                                 for _ in range(config.generator_res_blocks))
        up, attention = [], []
        for cout in channels[-2::-1] + [channels[0]]:
            size *= 2
            up.append(AdaINUpBlock(cin, cout, sn=sn, eps=eps))
            attention.append(SelfAttention(cout, sn=sn) if size in config.attention_up
                             else nn.Identity())
            cin = cout
        self.up = nn.ModuleList(up)
        self.up_attention = nn.ModuleList(attention)
        self.out_channels = cin
        self.to_rgb = conv(cin, 3, sn=sn)
        sizes = [b.num_adain_params for b in (*self.res, *self.up)] + [2 * cin]
        self._adain_sizes = sizes
        self.num_adain_params = sum(sizes)
        self.P = linear(config.embedding_size, self.num_adain_params, bias=False, sn=sn)
        if config.zero_bias_init:
            zero_spectral_norm_biases(self)

    def stages(self) -> list[tuple[str, nn.Module]]:
        """The blocks in the order the data flows through them (for figures)."""
        return ([(f"down {i + 1}", b) for i, b in enumerate(self.down)]
                + [(f"AdaIN res {i + 1}", b) for i, b in enumerate(self.res)]
                + [(f"AdaIN up {i + 1}", b) for i, b in enumerate(self.up)]
                + [("to RGB", self.to_rgb)])

    def project(self, e_hat: torch.Tensor) -> torch.Tensor:
        """ψ̂ = P ê, Eq. (2): ``(B, D) -> (B, num_adain_params)``."""
        if e_hat.ndim != 2 or e_hat.shape[1] != self.config.embedding_size:
            raise ValueError(f"e_hat must have shape (B, {self.config.embedding_size}), "
                             f"got {tuple(e_hat.shape)}")
        return self.P(e_hat)

    def adain_parameters(self, batch: int, e_hat: torch.Tensor | None = None,
                         psi: torch.Tensor | None = None) -> torch.Tensor:
        """The AdaIN parameters for ``batch`` frames ``(B, num_adain_params)``: ``P ê`` from
        ``e_hat``, or the given ``psi`` (one row for all frames, or one per frame); exactly
        one of the two."""
        if (e_hat is None) == (psi is None):
            raise ValueError("give exactly one of e_hat (the embedding) or psi (AdaIN parameters)")
        if psi is None:
            psi = self.project(e_hat)
        if psi.ndim == 1:
            psi = psi.expand(batch, -1)
        if psi.shape != (batch, self.num_adain_params):
            raise ValueError(f"psi must have shape ({batch}, {self.num_adain_params}), "
                             f"got {tuple(psi.shape)}")
        return psi

    def forward(self, landmarks: torch.Tensor, e_hat: torch.Tensor | None = None, *,
                psi: torch.Tensor | None = None) -> torch.Tensor:
        """x̂ = G(y, ê): give ``e_hat`` (meta-learning, feed-forward) or ``psi`` (fine-tuning).

        ``psi`` may be ``(num_adain_params,)`` (one person) or ``(B, num_adain_params)``.
        Returns frames in [0, 1] (sigmoid output), ``(B, 3, H, W)``.
        """
        size = self.config.image_size
        if landmarks.ndim != 4 or landmarks.shape[1:] != (3, size, size):
            raise ValueError(f"landmarks must have shape (B, 3, {size}, {size}), "
                             f"got {tuple(landmarks.shape)}")
        psi = self.adain_parameters(len(landmarks), e_hat, psi)  # ψ̂ = P ê (Eq. 2), or ψ'
        chunks = iter(psi.split(self._adain_sizes, dim=1))
        first = self.down[0][0] if isinstance(self.down[0], nn.Sequential) else self.down[0]
        x = in_format_of(landmarks, first.conv1)
        for block in self.down:
            x = block(x)
        for block in self.res:
            x = block(x, next(chunks))
        for block, attention in zip(self.up, self.up_attention):
            x = attention(block(x, next(chunks)))
        x = F.relu(adain(x, next(chunks), self.config.adain_eps))
        return torch.sigmoid(self.to_rgb(x))

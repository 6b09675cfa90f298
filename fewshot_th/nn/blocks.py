"""The building blocks of E, G and D (Sec. 3.2 and the appendix of the paper).

* residual down-sampling blocks (BigGAN's discriminator block: average pooling, no
  normalisation in E and D, instance norm in G's down path);
* residual blocks and residual up-sampling blocks whose normalisation is AdaIN, the place
  where the person's embedding enters the generator;
* SAGAN self-attention;
* spectral normalisation on every convolution and linear layer (``ModelConfig.spectral_norm``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SNConv2d", "SNLinear", "is_spectrally_normalized", "zero_spectral_norm_biases",
           "in_format_of", "conv", "linear", "adain", "DownBlock", "ResBlock", "AdaINResBlock",
           "AdaINUpBlock", "SelfAttention"]


class _SpectralNorm:
    """Spectral normalisation (Miyato et al., 2018): the layer acts as if its weight were
    W / σ(W), σ the largest singular value, estimated by one power iteration per forward
    pass in training mode (u and v persist between passes).

    Dividing the weight and dividing the layer's output by σ give the same result; each
    forward pass does whichever touches fewer numbers (a 512 x 512 x 3 x 3 weight applied to
    a 4 x 4 map is far larger than the map), which makes spectral norm nearly free.
    """

    def _init_power_iteration(self, iterations: int = 15) -> None:
        # Start from a converged estimate (as torch's spectral_norm does): a random u, v
        # would underestimate σ and blow up the first forward passes.
        w = self.weight.detach().flatten(1)
        u = F.normalize(torch.randn(w.shape[0]), dim=0)
        for _ in range(iterations):
            v = F.normalize(w.t() @ u, dim=0, eps=1e-12)
            u = F.normalize(w @ v, dim=0, eps=1e-12)
        self.register_buffer("u", u)
        self.register_buffer("v", v)

    def sigma(self) -> torch.Tensor:
        """σ(W) ≈ uᵀ W v, differentiable in W (u and v are constants of the pass); always in
        float32, also under autocast, where a bfloat16 σ would be off by up to 1%."""
        w = self.weight.flatten(1)
        with torch.autocast(w.device.type, enabled=False):
            if self.training:
                with torch.no_grad():
                    self.v.copy_(F.normalize(w.t() @ self.u, dim=0, eps=1e-12))
                    self.u.copy_(F.normalize(w @ self.v, dim=0, eps=1e-12))
            # Clones: a later pass may update u, v in place while this graph still needs them.
            return torch.dot(self.u.clone(), w @ self.v.clone())

    def normalized_weight(self) -> torch.Tensor:
        """W / σ(W), the weight the layer effectively applies."""
        return self.weight / self.sigma()


def zero_spectral_norm_biases(module: nn.Module) -> None:
    """Set the biases of every spectrally normalised layer in ``module`` to zero
    (``ModelConfig.zero_bias_init``)."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, _SpectralNorm) and layer.bias is not None:
                layer.bias.zero_()


class SNConv2d(_SpectralNorm, nn.Conv2d):
    """``nn.Conv2d`` with spectral normalisation (stride 1, 'same' padding)."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__(cin, cout, kernel, padding=kernel // 2)
        self._init_power_iteration()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sigma = self.sigma()
        outputs = x.shape[0] * self.out_channels * x.shape[2] * x.shape[3]
        if self.weight.numel() <= outputs:
            return F.conv2d(x, self.weight / sigma, self.bias, padding=self.padding)
        out = F.conv2d(x, self.weight, None, padding=self.padding) / sigma
        return out + self.bias[:, None, None]


class SNLinear(_SpectralNorm, nn.Linear):
    """``nn.Linear`` with spectral normalisation."""

    def __init__(self, fin: int, fout: int, bias: bool = True):
        super().__init__(fin, fout, bias=bias)
        self._init_power_iteration()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sigma = self.sigma()
        if self.weight.numel() <= x.numel() // x.shape[-1] * self.out_features:
            return F.linear(x, self.weight / sigma, self.bias)
        out = F.linear(x, self.weight) / sigma
        return out if self.bias is None else out + self.bias


def is_spectrally_normalized(module: nn.Module) -> bool:
    return isinstance(module, _SpectralNorm)


def spectral_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, layer)`` of every spectrally normalised layer in ``module``; each has
    ``sigma()`` (its tracked σ) and ``normalized_weight()``."""
    return [(name, layer) for name, layer in module.named_modules()
            if isinstance(layer, _SpectralNorm)]


def in_format_of(x: torch.Tensor, layer: nn.Conv2d) -> torch.Tensor:
    """``x`` in the memory format of ``layer``'s weight: after
    ``net.to(memory_format=torch.channels_last)`` whole networks then run channels-last,
    with no conversions between layers."""
    if layer.weight.is_contiguous(memory_format=torch.channels_last) and \
            not layer.weight.is_contiguous():
        return x.contiguous(memory_format=torch.channels_last)
    return x.contiguous()


def conv(cin: int, cout: int, kernel: int = 3, *, sn: bool = True) -> nn.Module:
    """A ``kernel`` x ``kernel`` convolution keeping the size; spectrally normalised if ``sn``."""
    if sn:
        return SNConv2d(cin, cout, kernel)
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2)


def linear(fin: int, fout: int, *, bias: bool = True, sn: bool = True) -> nn.Module:
    """A linear layer, spectrally normalised if ``sn``."""
    return SNLinear(fin, fout, bias=bias) if sn else nn.Linear(fin, fout, bias=bias)


def adain(x: torch.Tensor, psi: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Adaptive instance normalisation (Huang & Belongie, 2017), as used by G.

    ``AdaIN(x, ψ) = γ · (x - μ(x)) / sqrt(σ²(x) + eps) + β`` per sample and channel, with
    ``ψ = (γ - 1, β)``: ``psi`` is ``(B, 2C)``, its first half the scale's deviation from 1
    (so ψ = 0 is plain instance normalisation), its second half the bias. The output has per
    channel mean β and standard deviation |γ| (up to the eps).

    Args: ``x (B, C, H, W)``, ``psi (B, 2C)``. Returns ``(B, C, H, W)``.
    """
    channels = x.shape[1]
    if psi.shape != (x.shape[0], 2 * channels):
        raise ValueError(f"AdaIN of {channels} channels needs psi of shape "
                         f"({x.shape[0]}, {2 * channels}), got {tuple(psi.shape)}")
    gamma = 1.0 + psi[:, :channels, None, None]
    beta = psi[:, channels:, None, None]
    return F.instance_norm(x, eps=eps) * gamma + beta


class DownBlock(nn.Module):
    """Residual down-sampling block: ``x -> conv(act(conv(act(x)))) / 2  +  conv1x1(x) / 2``.

    ``/ 2`` is 2 x 2 average pooling (not max pooling). ``norm=True`` puts instance norm
    before each activation (G's down path); E and D use none. The first block of a network
    sees raw pixels and skips the leading activation (``preactivate=False``).
    Shapes: ``(B, cin, H, W) -> (B, cout, H/2, W/2)``.
    """

    def __init__(self, cin: int, cout: int, *, sn: bool = True, norm: bool = False,
                 preactivate: bool = True):
        super().__init__()
        self.preactivate = preactivate
        self.norm1 = nn.InstanceNorm2d(cin, affine=True) if norm and preactivate else nn.Identity()
        self.conv1 = conv(cin, cout, sn=sn)
        self.norm2 = nn.InstanceNorm2d(cout, affine=True) if norm else nn.Identity()
        self.conv2 = conv(cout, cout, sn=sn)
        self.skip = conv(cin, cout, 1, sn=sn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(x)) if self.preactivate else x
        h = self.conv2(F.relu(self.norm2(self.conv1(h))))
        # Pooling commutes with the 1x1 skip convolution: pool first, on 4x fewer pixels.
        return F.avg_pool2d(h, 2) + self.skip(F.avg_pool2d(x, 2))


class ResBlock(nn.Module):
    """Residual block without normalisation or resampling (the extra block at the bottom of D).

    ``(B, C, H, W) -> (B, C, H, W)``: ``x + conv(relu(conv(relu(x))))``.
    """

    def __init__(self, channels: int, *, sn: bool = True):
        super().__init__()
        self.conv1 = conv(channels, channels, sn=sn)
        self.conv2 = conv(channels, channels, sn=sn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class AdaINResBlock(nn.Module):
    """Residual block of G whose two normalisations are AdaIN, driven by ψ.

    ``x + conv(relu(AdaIN(conv(relu(AdaIN(x, ψ1))), ψ2)))``; ``psi`` is
    ``(B, num_adain_params)`` with ``num_adain_params = 4C``. ``(B, C, H, W) -> same``.
    """

    def __init__(self, channels: int, *, sn: bool = True, eps: float = 1e-5):
        super().__init__()
        self.channels, self.eps = channels, eps
        self.conv1 = conv(channels, channels, sn=sn)
        self.conv2 = conv(channels, channels, sn=sn)
        self.num_adain_params = 4 * channels

    def forward(self, x: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        psi1, psi2 = psi.split(2 * self.channels, dim=1)
        h = self.conv1(F.relu(adain(x, psi1, self.eps)))
        h = self.conv2(F.relu(adain(h, psi2, self.eps)))
        return x + h


class AdaINUpBlock(nn.Module):
    """Residual up-sampling block of G with AdaIN: ``(B, cin, H, W) -> (B, cout, 2H, 2W)``.

    Main path ``conv(relu(AdaIN(conv(up(relu(AdaIN(x, ψ1)))), ψ2)))``, skip path
    ``up(conv1x1(x))`` (nearest-neighbour up-sampling commutes with the 1x1 convolution, so it
    runs on 4x fewer pixels). ``psi`` is ``(B, 2 cin + 2 cout)``.
    """

    def __init__(self, cin: int, cout: int, *, sn: bool = True, eps: float = 1e-5):
        super().__init__()
        self.cin, self.cout, self.eps = cin, cout, eps
        self.conv1 = conv(cin, cout, sn=sn)
        self.conv2 = conv(cout, cout, sn=sn)
        self.skip = conv(cin, cout, 1, sn=sn)
        self.num_adain_params = 2 * cin + 2 * cout

    def forward(self, x: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        psi1, psi2 = psi.split([2 * self.cin, 2 * self.cout], dim=1)
        h = F.interpolate(F.relu(adain(x, psi1, self.eps)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(adain(self.conv1(h), psi2, self.eps)))
        return h + F.interpolate(self.skip(x), scale_factor=2, mode="nearest")


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al., 2019): ``y = x + γ · o``, γ initialised to 0.

    Queries and keys have ``C/8`` channels, values ``C/2``; as in SAGAN's and BigGAN's code,
    keys and values are max-pooled 2 x 2, so every position attends to a quarter as many
    positions (4x less work, same receptive field). ``o = conv1x1(softmax(qᵀk) v)``.
    Because γ starts at 0 the block starts as the identity, and its projections only get a
    gradient once γ has moved. ``(B, C, H, W) -> (B, C, H, W)``.
    """

    def __init__(self, channels: int, *, sn: bool = True):
        super().__init__()
        inner = max(channels // 8, 1)
        value = max(channels // 2, 1)
        self.query = conv(channels, inner, 1, sn=sn)
        self.key = conv(channels, inner, 1, sn=sn)
        self.value = conv(channels, value, 1, sn=sn)
        self.out = conv(value, channels, 1, sn=sn)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        pool = h % 2 == 0 and w % 2 == 0

        def tokens(t, pooled):  # (B, C', H, W) -> (B, 1, positions, C')
            if pooled and pool:
                t = F.max_pool2d(t, 2)
            return t.flatten(2).transpose(1, 2).unsqueeze(1)

        # SAGAN uses the plain dot product: scale 1, not 1/sqrt(d).
        attended = F.scaled_dot_product_attention(
            tokens(self.query(x), False), tokens(self.key(x), True),
            tokens(self.value(x), True), scale=1.0)
        attended = attended.squeeze(1).transpose(1, 2).reshape(b, -1, h, w)
        return x + self.gamma * self.out(attended)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """The weights ``forward`` uses, spelled out: ``(B, H*W, P)``, where row ``p`` says how
        much position ``p`` (row-major) takes from each of the ``P`` key positions (the 2 x 2
        max-pooled grid, ``P = H*W/4``, when H and W are even); every row sums to 1."""
        if x.ndim != 4 or x.shape[1] != self.query.in_channels:
            raise ValueError(f"x must have shape (B, {self.query.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        keys = self.key(x)
        if x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0:
            keys = F.max_pool2d(keys, 2)
        queries = self.query(x).flatten(2)  # (B, C/8, H*W)
        return torch.softmax(queries.transpose(1, 2) @ keys.flatten(2), dim=-1)

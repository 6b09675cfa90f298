"""Image-quality and identity metrics (Sec. 4 of the paper; Table 1).

``ssim`` follows Wang et al. (2004) with a Gaussian window (σ = 1.5, 11 x 11), as
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)`` computes it. ``identity_retrieval`` is the
SynthHeads identity test: is a generated frame closer to the true person's exact render of
that pose than to every other person's render of the same pose?
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ssim", "psnr", "l1", "identity_retrieval"]


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected two (B, 3, H, W) batches of the same shape, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < 11:
        raise ValueError(f"images must be at least 11 x 11 pixels, got {tuple(x.shape[-2:])}")


def _gaussian_window(sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural similarity of each pair of images ``(B, 3, H, W)`` in [0, 1] -> ``(B,)``.

    Means over channels and over the positions where the 11 x 11 window fits (as skimage).
    """
    _check_pair(x, y)
    x, y = x.double(), y.double()
    window = _gaussian_window().to(x.device).expand(3, 1, 11, 11)

    def blur(t):
        return F.conv2d(t, window, groups=3)

    c1, c2 = 0.01**2, 0.03**2
    ux, uy = blur(x), blur(y)
    vx = blur(x * x) - ux * ux
    vy = blur(y * y) - uy * uy
    vxy = blur(x * y) - ux * uy
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3)).float()


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of each pair: ``(B,)``."""
    _check_pair(x, y)
    return (x - y).abs().mean(dim=(1, 2, 3))


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB for images in [0, 1]: ``(B,)``."""
    _check_pair(x, y)
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return 10 * torch.log10(1.0 / mse)


def identity_retrieval(generated: torch.Tensor, candidates: torch.Tensor,
                       true_index: torch.Tensor) -> torch.Tensor:
    """For each generated frame, is the true identity's render the closest candidate?

    Args:
        generated: ``(B, 3, H, W)``.
        candidates: ``(B, N, 3, H, W)``: every identity rendered in frame b's pose.
        true_index: ``(B,)`` position of the true identity among the N candidates.
    Returns a boolean ``(B,)`` (closest by mean absolute difference).
    """
    if candidates.ndim != 5 or candidates.shape[0] != generated.shape[0] or \
            candidates.shape[2:] != generated.shape[1:]:
        raise ValueError(f"candidates must be (B, N, 3, H, W) for generated "
                         f"{tuple(generated.shape)}, got {tuple(candidates.shape)}")
    distance = (candidates - generated[:, None]).abs().mean(dim=(2, 3, 4))
    return distance.argmin(dim=1) == true_index

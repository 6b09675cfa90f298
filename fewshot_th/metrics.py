"""Image-quality and identity metrics (Sec. 4 of the paper; Table 1): the primitives that
``fewshot_th.evaluation`` puts together into the paper's protocol.

``ssim`` follows Wang et al. (2004) with a Gaussian window (σ = 1.5, 11 x 11), as
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)`` computes it. ``identity_retrieval`` is the
SynthHeads identity test: is a generated frame closer to the true person's exact render of
that pose than to every other person's render of the same pose?
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ssim", "psnr", "l1", "identity_retrieval", "attribute_recall", "person_ssim",
           "person_l1", "paired_gain"]


def _check_same_images(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected two (B, 3, H, W) batches of the same shape, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if min(x.shape[-2:]) < 11:
        raise ValueError(f"images must be at least 11 x 11 pixels, got {tuple(x.shape[-2:])}")


def _gaussian_window(sigma: float = 1.5, radius: int = 5) -> torch.Tensor:
    """The 1-D Gaussian of SSIM's 11 x 11 window (the window is its outer product)."""
    coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural similarity of each pair of images ``(B, 3, H, W)`` in [0, 1] -> ``(B,)``.

    Means over channels and over the positions where the 11 x 11 window fits (as skimage).
    """
    _check_same_images(x, y)
    return _ssim_map(x, y).mean(dim=(1, 2, 3)).float()


def _check_mask(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or \
            mask.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"mask must be a boolean (B, H, W) tensor matching images "
                         f"{tuple(x.shape)}, got {getattr(mask, 'shape', type(mask).__name__)}")
    return mask.to(x.device)


def person_ssim(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SSIM of each pair ``(B, 3, H, W)`` averaged over the window centres inside ``mask``
    ``(B, H, W)`` (boolean, e.g. ``SynthHeads.person_mask``) -> ``(B,)``; NaN where the mask
    has no pixel in the region where the window fits."""
    _check_same_images(x, y)
    mask = _check_mask(x, mask)[:, 5:-5, 5:-5].double()
    ssim_map = _ssim_map(x, y).mean(dim=1)
    return ((ssim_map * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2))).float()


def person_l1(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of each pair over the pixels of ``mask`` ``(B, H, W)``:
    ``(B,)``, NaN where the mask is empty."""
    _check_same_images(x, y)
    mask = _check_mask(x, mask)[:, None].to(x.dtype)
    return ((x - y).abs() * mask).sum(dim=(1, 2, 3)) / (3 * mask.sum(dim=(1, 2, 3)))


def attribute_recall(generated: torch.Tensor, truth: torch.Tensor,
                     counterfactual: torch.Tensor, threshold: float = 0.03,
                     min_pixels: int = 4) -> torch.Tensor:
    """Does each generated frame show the attribute? ``(B,)``: 1 where it is closer to the
    truth than to the counterfactual (the same frame with one attribute changed,
    ``SynthHeads.counterfactual``), 0 where it is not, NaN where the attribute does not show.

    Only the pixels where truth and counterfactual differ by more than ``threshold`` (in any
    channel) count; closer means a smaller mean absolute difference over those pixels. A frame
    where fewer than ``min_pixels`` pixels differ (a closed mouth, a detail turned away) has
    nothing to show: NaN. A blurred average of the two scores about half.
    """
    _check_same_images(generated, truth)
    _check_same_images(truth, counterfactual)
    region = ((truth - counterfactual).abs().amax(dim=1, keepdim=True) > threshold).to(
        truth.dtype)
    pixels = region.sum(dim=(1, 2, 3))

    def distance(frames):
        return ((generated - frames).abs() * region).sum(dim=(1, 2, 3))

    hit = (distance(truth) < distance(counterfactual)).float()
    return torch.where(pixels >= min_pixels, hit, torch.full_like(hit, float("nan")))


def _ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM at every position where the 11 x 11 window fits: ``(B, 3, H - 10, W - 10)``."""
    x, y = x.double(), y.double()
    channels = x.shape[1]
    g = _gaussian_window().to(x.device)
    rows = g.view(1, 1, 1, -1).expand(5 * channels, 1, 1, -1)
    columns = g.view(1, 1, -1, 1).expand(5 * channels, 1, -1, 1)
    # The five maps blurred at once, and the 11 x 11 Gaussian as two 11-tap passes (the same
    # numbers, a fifth of the work).
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    blurred = F.conv2d(F.conv2d(stacked, rows, groups=5 * channels), columns,
                       groups=5 * channels)
    ux, uy, xx, yy, xy = blurred.split(channels, dim=1)
    c1, c2 = 0.01**2, 0.03**2
    vx, vy, vxy = xx - ux * ux, yy - uy * uy, xy - ux * uy
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of each pair: ``(B,)``."""
    _check_same_images(x, y)
    return (x - y).abs().mean(dim=(1, 2, 3))


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB for images in [0, 1]: ``(B,)``."""
    _check_same_images(x, y)
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


def paired_gain(after, before) -> tuple[float, float, int]:
    """A paired comparison over people: the mean of ``after - before``, its standard error,
    and for how many people it is positive."""
    after, before = np.asarray(after, dtype=np.float64), np.asarray(before, dtype=np.float64)
    if after.shape != before.shape or after.ndim != 1 or len(after) == 0:
        raise ValueError(f"after and before must be equal-length 1-D sequences, got "
                         f"{after.shape} and {before.shape}")
    gain = after - before
    error = gain.std(ddof=1) / np.sqrt(len(gain)) if len(gain) > 1 else float("nan")
    return float(gain.mean()), float(error), int((gain > 0).sum())

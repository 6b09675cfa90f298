"""Image-quality and identity metrics (Sec. 4 of the paper; Table 1).

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

__all__ = ["ssim", "psnr", "l1", "identity_retrieval", "evaluate_feed_forward"]


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


def evaluate_feed_forward(model, identities: int = 20, seed: int = 0,
                          k_values: tuple[int, ...] = (1, 8, 32)) -> dict:
    """Feed-forward scores on SynthHeads test identities, beside two copying baselines.

    ê comes from K frames of the first half of each test video (64 frames); the model draws
    8 frames of the second half from their landmarks. Returns
    ``{K: {method: {"ssim", "l1", "retrieval"}}}`` for the model, the mean of the K source
    frames, and the source frame whose landmarks are closest to the target's.
    """
    from .data import SynthHeads
    from .landmarks import draw_landmarks

    frames_per_video, num_targets = 64, 8
    half = frames_per_video // 2
    if not 1 <= identities or max(k_values) > half:
        raise ValueError(f"need at least one identity and K <= {half}, got {identities} "
                         f"identities and K = {k_values}")
    model.eval()
    size = model.config.image_size
    device = next(model.generator.parameters()).device  # scores are computed on the CPU
    test = SynthHeads("test", num_identities=identities, num_videos_per_identity=1,
                      frames_per_video=frames_per_video, size=size, seed=seed)
    rng = np.random.default_rng(seed)
    targets = np.sort(rng.choice(np.arange(half, frames_per_video), num_targets, replace=False))
    results = {}
    for k in k_values:
        scores = {name: {"ssim": [], "l1": [], "retrieval": []}
                  for name in ("model", "mean of sources", "nearest-landmark source")}
        for identity in range(identities):
            sources = np.sort(rng.choice(half, k, replace=False))
            src_frames, src_points = test.get_frames(identity, sources)
            tgt_frames, tgt_points = test.get_frames(identity, targets)
            with torch.no_grad():
                _, e_hat = model.embedder(src_frames[None].to(device),
                                          draw_landmarks(src_points, size)[None].to(device))
                generated = model.generator(draw_landmarks(tgt_points, size).to(device),
                                            e_hat.expand(num_targets, -1)).float().cpu()
            nearest = torch.cdist(tgt_points.flatten(1), src_points.flatten(1)).argmin(1)
            mean = src_frames.mean(0, keepdim=True).expand(num_targets, -1, -1, -1)
            outputs = {"model": generated, "mean of sources": mean,
                       "nearest-landmark source": src_frames[nearest]}
            pose = test.pose(identity, targets)
            candidates = torch.stack([test.render(j, pose) for j in range(identities)], dim=1)
            truth = torch.full((num_targets,), identity)
            for name, frames in outputs.items():
                scores[name]["ssim"].append(ssim(frames, tgt_frames))
                scores[name]["l1"].append(l1(frames, tgt_frames))
                scores[name]["retrieval"].append(
                    identity_retrieval(frames, candidates, truth).float())
        results[k] = {name: {m: float(torch.cat(v).mean()) for m, v in s.items()}
                      for name, s in scores.items()}
    return results

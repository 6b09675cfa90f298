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

__all__ = ["ssim", "psnr", "l1", "identity_retrieval", "evaluate_feed_forward",
           "evaluate_few_shot", "scores_table", "by_target_kind", "TARGET_KINDS",
           "PAPER_TABLE1", "frechet_distance", "feature_statistics", "embedding_detail_gap"]

# Table 1 of the paper, VoxCeleb2, K = 1 / 8 / 32 (``shared/PAPER.md``: FID confirmed by a
# public leaderboard, the rest unverified). For trends, not for values: other data, 256 px.
PAPER_TABLE1 = {
    "FF": {"fid": (46.1, 42.5, 40.4), "ssim": (0.61, 0.64, 0.65), "csim": (0.42, 0.47, 0.48)},
    "FT": {"fid": (48.5, 42.2, 30.6), "ssim": (0.64, 0.68, 0.72), "csim": (0.35, 0.42, 0.45)},
}


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


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` of ``(N, D)`` features (N >= 2), in float64."""
    features = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor)
                          else features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between two Gaussians (the FID when they fit Inception features):

        |mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

    Tr((sigma1 sigma2)^(1/2)) is computed as Tr((s1^(1/2) sigma2 s1^(1/2))^(1/2)), s1 =
    sigma1^(1/2): the same eigenvalues, but of a symmetric matrix, so no complex round-off.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2,
                                                                                   np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), \
        np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or \
            sigma2.shape != (d, d):
        raise ValueError(f"need means (D,) and covariances (D, D) of the same D, got "
                         f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    root = _psd_sqrt(sigma1)
    middle = np.linalg.eigvalsh(root @ sigma2 @ root)
    trace_sqrt = np.sqrt(np.clip(middle, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


TARGET_KINDS = ("same-video", "pose-distant")


def evaluate_feed_forward(model, identities: int = 20, seed: int = 0,
                          k_values: tuple[int, ...] = (1, 8, 32),
                          targets: tuple[str, ...] = TARGET_KINDS) -> dict:
    """Feed-forward scores on SynthHeads test identities, beside two copying baselines:
    ``evaluate_few_shot`` with FF only, the model's scores under the name ``"model"``."""
    results = evaluate_few_shot(model, identities, seed, k_values, modes=("ff",),
                                targets=targets)
    return {kind: {k: {("model" if name == "FF" else name): s for name, s in by_method.items()}
                   for k, by_method in by_k.items()}
            for kind, by_k in results.items()}


def _identity_net_for(image_size: int):
    """The shipped SynthHeads identity network if it exists and fits ``image_size``."""
    from .identity import load_identity_net

    try:
        net = load_identity_net()
    except ValueError:
        return None
    return net if net.image_size == image_size else None


def _calm_and_distant(test, identity: int, num_targets: int):
    """A test identity's calm clip (half a video's poses, where pose-distant sources come
    from) and its ``num_targets`` pose-distant target poses."""
    from .data.synthetic import distant_poses

    return distant_poses(test.seed * 10_007 + identity, test.frames_per_video // 2,
                         num_targets)


def _episodes(test, identity: int, kind: str, k: int, rng, num_targets: int):
    """Source poses (K) and target poses of one test identity for one kind of target."""
    half = test.frames_per_video // 2  # the pool the K sources are drawn from
    if kind == "same-video":
        sources = np.sort(rng.choice(half, k, replace=False))
        targets = np.sort(np.random.default_rng([test.seed, identity]).choice(
            np.arange(half, test.frames_per_video), num_targets, replace=False))
        return test.pose(identity, sources), test.pose(identity, targets)
    source_pose, target_pose = _calm_and_distant(test, identity, num_targets)
    return source_pose[np.sort(rng.choice(half, k, replace=False))], target_pose


def evaluate_few_shot(model, identities: int = 20, seed: int = 0,
                      k_values: tuple[int, ...] = (1, 8, 32), modes: tuple[str, ...] = ("ff",),
                      ft_steps: int | None = None, progress: bool = False,
                      fid_network=None, targets: tuple[str, ...] = TARGET_KINDS) -> dict:
    """Few-shot scores on SynthHeads test identities (never seen in training).

    Two kinds of targets (``targets``):

    * ``"same-video"`` (the paper's protocol): the K source frames come from the first half
      of a 64-frame video, the 8 targets from its second half;
    * ``"pose-distant"``: the K sources come from a calm clip (mouth closed, head down,
      turning through every yaw), the 8 targets speak, look up and sit elsewhere in the frame
      (``fewshot_th.data.distant_poses``), so no source frame resembles a target.

    For each identity, the person's model (``fewshot_th.finetune.few_shot``: feed-forward
    ``"ff"`` and/or fine-tuned ``"ft"``, ``ft_steps`` steps, default 40 passes over the K
    frames) draws the targets from their landmarks, scored against the exact frames. Two
    copying baselines are scored the same way: the mean of the K source frames, and the
    source frame whose landmarks are closest to the target's. Returns
    ``{kind: {K: {method: {"ssim", "l1", "retrieval", ...}}}}`` with methods
    ``"FF"``, ``"FT"`` (as asked), ``"mean of sources"`` and ``"nearest-landmark source"``;
    ``landmark_distance`` is the mean distance in pixels from a target's landmarks to the
    nearest source's (the same for every method: how far the targets are from the sources);
    ``ssim_by_identity`` lists each identity's mean SSIM (for paired comparisons);
    ``detail_l1`` is the mean absolute error over the pixels where the targets show their
    one-sided details (``SynthHeads.detail_mask``): how well the method knows what only some
    views of the person reveal.
    With ``"csim"`` too (the shipped SynthHeads identity network) when the model's frames
    have that network's size; with ``"fid"`` (over all identities' targets of one K) when
    ``fid_network`` (``fewshot_th.fid.load_fid_inception()``) is given.
    """
    from tqdm.auto import tqdm

    from .data import SynthHeads
    from .finetune import few_shot
    from .identity import csim

    frames_per_video, num_targets = 64, 8
    half = frames_per_video // 2
    if isinstance(identities, bool) or not isinstance(identities, int) or identities < 1 or \
            not k_values or min(k_values) < 1 or max(k_values) > half:
        raise ValueError(f"need at least one identity and 1 <= K <= {half}, got {identities!r} "
                         f"identities and K = {k_values}")
    if not modes or any(mode not in ("ff", "ft") for mode in modes):
        raise ValueError(f"modes must be a non-empty choice of 'ff' and 'ft', got {modes!r}")
    if isinstance(targets, str) or not targets or any(t not in TARGET_KINDS for t in targets):
        raise ValueError(f"targets must be a non-empty tuple of {TARGET_KINDS}, got {targets!r}")
    model.eval()
    test = SynthHeads("test", num_identities=identities, num_videos_per_identity=1,
                      frames_per_video=frames_per_video, size=model.config.image_size,
                      seed=seed)
    identity_net = _identity_net_for(model.config.image_size)
    methods = [mode.upper() for mode in modes] + ["mean of sources", "nearest-landmark source"]
    metrics = ("ssim", "l1", "retrieval") + (("csim",) if identity_net else ())
    results = {}
    bar = tqdm(total=len(targets) * len(k_values) * identities, desc="evaluating",
               disable=not progress)
    for kind in targets:
        rng = np.random.default_rng([seed, TARGET_KINDS.index(kind)])
        results[kind] = {}
        for k in k_values:
            scores = {name: {metric: [] for metric in metrics} for name in methods}
            drawn = {name: [] for name in methods}  # for FID: every method's frames and truth
            truths, distances = [], []
            detail_errors = {name: [0.0, 0] for name in methods}
            for identity in range(identities):
                source_pose, target_pose = _episodes(test, identity, kind, k, rng, num_targets)
                src_frames, src_points = test.render(identity, source_pose, True)
                tgt_frames, tgt_points = test.render(identity, target_pose, True)
                gaps = torch.cdist(tgt_points.flatten(1), src_points.flatten(1))
                nearest = gaps.argmin(1)
                distances.append((tgt_points - src_points[nearest]).norm(dim=-1).mean(-1))
                outputs = {"mean of sources": src_frames.mean(0, keepdim=True).expand(
                               num_targets, -1, -1, -1),
                           "nearest-landmark source": src_frames[nearest]}
                for mode in modes:
                    personal = few_shot(model, src_frames, src_points, mode=mode,
                                        steps=ft_steps if mode == "ft" else None,
                                        seed=identity, progress=False)
                    outputs[mode.upper()] = personal.render(tgt_points)
                candidates = torch.stack([test.render(j, target_pose)
                                          for j in range(identities)], dim=1)
                truth = torch.full((num_targets,), identity)
                details = test.detail_mask(identity, target_pose)[:, None].expand_as(tgt_frames)
                for name, frames in outputs.items():
                    detail_errors[name][0] += float((frames - tgt_frames).abs()[details].sum())
                    detail_errors[name][1] += int(details.sum())
                    scores[name]["ssim"].append(ssim(frames, tgt_frames))
                    scores[name]["l1"].append(l1(frames, tgt_frames))
                    scores[name]["retrieval"].append(
                        identity_retrieval(frames, candidates, truth).float())
                    if identity_net is not None:
                        scores[name]["csim"].append(csim(frames, tgt_frames, net=identity_net))
                    if fid_network is not None:
                        drawn[name].append(frames)
                truths.append(tgt_frames)
                bar.update(1)
            distance = float(torch.cat(distances).mean())
            results[kind][k] = {name: {**{m: float(torch.cat(scores[name][m]).mean())
                                          for m in scores[name]},
                                       "landmark_distance": distance,
                                       "detail_l1": (detail_errors[name][0]
                                                     / max(detail_errors[name][1], 1)),
                                       "ssim_by_identity": [float(v.mean())
                                                            for v in scores[name]["ssim"]]}
                                for name in methods}
            if fid_network is not None:
                from .fid import fid

                for name in methods:
                    results[kind][k][name]["fid"] = fid(fid_network, torch.cat(truths),
                                                        torch.cat(drawn[name]))
    bar.close()
    return results


def by_target_kind(results: dict) -> dict:
    """``evaluate_few_shot``'s results as ``{kind: {K: {method: scores}}}``; a ``{K: ...}``
    dict of one kind (as an older evaluation stored it) counts as same-video targets."""
    if not isinstance(results, dict) or not results:
        raise ValueError("expected evaluate_few_shot's results, got an empty or non-dict value")
    if all(kind in TARGET_KINDS for kind in results):
        return results
    if all(str(k).isdigit() for k in results):
        return {"same-video": results}
    raise ValueError(f"expected results keyed by target kind {TARGET_KINDS} or by K, got "
                     f"keys {list(results)}")


def scores_table(results: dict) -> str:
    """A Markdown table like the paper's Table 1 from ``evaluate_few_shot``'s results: one
    row per target kind and method, each metric as "K = 1 / 8 / 32" values, the paper's
    VoxCeleb2 rows below."""
    kinds = by_target_kind(results)
    first = next(iter(kinds.values()))
    ks = sorted(first, key=int)
    methods = list(first[ks[0]])
    metrics = [("ssim", "SSIM (higher)", 3), ("l1", "L1 (lower)", 3),
               ("retrieval", "identity retrieval (higher)", 2)]
    present = first[ks[0]][methods[0]]
    if "detail_l1" in present:
        metrics.insert(2, ("detail_l1", "L1 on one-sided details (lower)", 3))
    if "csim" in present:
        metrics.append(("csim", "CSIM (higher; SynthHeads identity network)", 3))
    if "fid" in present:
        metrics.insert(0, ("fid", "FID (lower)", 1))
    header = f"| data | method | K | {' | '.join(title for _, title, _ in metrics)} |"
    lines = [header, "|" + "---|" * (3 + len(metrics))]
    k_text = " / ".join(str(k) for k in ks)
    for kind, by_k in kinds.items():
        for method in methods:
            cells = [" / ".join(f"{by_k[k][method][m]:.{digits}f}" for k in ks)
                     for m, _, digits in metrics]
            lines.append(f"| SynthHeads, {kind} targets | {method} | {k_text} | "
                         f"{' | '.join(cells)} |")
    for method, values in PAPER_TABLE1.items():
        paper_cells = {"ssim": " / ".join(f"{v:.2f}" for v in values["ssim"]),
                       "csim": " / ".join(f"{v:.2f}" for v in values["csim"]),
                       "fid": " / ".join(f"{v:.1f}" for v in values["fid"])}
        cells = [paper_cells.get(m, "-") for m, _, _ in metrics]
        lines.append(f"| VoxCeleb2 (paper) | Ours-{method} | 1 / 8 / 32 | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def embedding_detail_gap(model, identities: int = 20, seed: int = 0, k: int = 32) -> dict:
    """Does the embedder see the one-sided details?

    For each SynthHeads test identity, ê is computed twice from the same K frames of its calm
    clip (the pose-distant sources, ``fewshot_th.data.distant_poses``): once as rendered, once
    with its details (hair streak, earring, cheek mark) removed. If E encoded the details, the
    two would differ about as much as the details differ between people; if they are nearly
    equal, no number of shots can help feed-forward G draw a detail, since ê is all G knows.

    Returns ``{"detail_gap", "people_gap", "ratio", "pixel_ratio", "drawn_change"}``: the
    median distance between the two ê of one person, the median distance between different
    people's ê, their ratio; the same ratio for the plainest embedding that sees every pixel
    (the mean of the K frames), for scale; and how much G's frames change on the details'
    pixels (mean absolute difference, pixel values in [0, 1]) when the pose-distant targets
    are drawn from either ê.
    """
    from .data import SynthHeads
    from .landmarks import draw_landmarks

    if isinstance(identities, bool) or not isinstance(identities, int) or identities < 2:
        raise ValueError(f"need at least 2 identities to compare people, got {identities!r}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 32:
        raise ValueError(f"k must be an integer from 1 to 32 (the calm clip's frames), "
                         f"got {k!r}")
    model.eval()
    size = model.config.image_size
    device = next(model.generator.parameters()).device
    test = SynthHeads("test", num_identities=identities, num_videos_per_identity=1,
                      frames_per_video=64, size=size, seed=seed)
    with_details, without, changes, pixels_with, pixels_without = [], [], [], [], []
    for identity in range(identities):
        source_pose, target_pose = _calm_and_distant(test, identity, 8)
        source_pose = source_pose[:k]
        frames, points = test.render(identity, source_pose, True)
        bare = test.render(identity, source_pose, without_details=True)
        _, target_points = test.render(identity, target_pose, True)
        images = draw_landmarks(points, size).to(device)
        targets = draw_landmarks(target_points, size).to(device)
        with torch.no_grad():
            _, e1 = model.embedder(frames[None].to(device), images[None])
            _, e0 = model.embedder(bare[None].to(device), images[None])
            change = (model.generator(targets, e1.expand(len(targets), -1))
                      - model.generator(targets, e0.expand(len(targets), -1))).abs().mean(1)
        mask = test.detail_mask(identity, target_pose).to(device)
        if mask.any():
            changes.append(float(change[mask].mean()))
        with_details.append(e1[0].float().cpu())
        without.append(e0[0].float().cpu())
        pixels_with.append(frames.mean(0).flatten())
        pixels_without.append(bare.mean(0).flatten())

    def gaps(first, second):
        first, second = torch.stack(first), torch.stack(second)
        own = float((first - second).norm(dim=1).median())
        others = ~torch.eye(identities, dtype=torch.bool)
        return own, float(torch.cdist(first, first)[others].median())

    detail_gap, people_gap = gaps(with_details, without)
    pixel_detail_gap, pixel_people_gap = gaps(pixels_with, pixels_without)
    return {"detail_gap": detail_gap, "people_gap": people_gap,
            "ratio": detail_gap / max(people_gap, 1e-12),
            "pixel_ratio": pixel_detail_gap / max(pixel_people_gap, 1e-12),
            "drawn_change": float(np.mean(changes)) if changes else float("nan")}

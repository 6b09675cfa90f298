"""The paper's protocol on real videos: few-shot scores on a folder's held-out videos.

``fewshot_th.evaluation`` scores SynthHeads people against exact renders; real videos have no
such ground truth beyond their own frames. Here, as in the paper's Table 1, each held-out
video of a ``VideoFolder`` (``split="test"``) gives K source frames spread over its first
half and up to 8 target frames spread over its second half; the person's model (FF and/or FT)
draws the targets from their landmarks, beside the two copying baselines of
``fewshot_th.evaluation``. Scores: SSIM, L1, CSIM (dlib's face-recognition network, offline:
frames where dlib finds no face are left out of the mean) and FID over all targets of one K
(given the Inception weights). ``fewshot-th evaluate --data FOLDER`` runs it.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .checks import is_int
from .evaluation import NUM_TARGETS, copying_baselines
from .fid import frechet_inception_distance
from .finetune import few_shot, fine_tuning_recipe
from .identity import csim
from .losses import content_loss_from
from .metrics import l1, ssim

__all__ = ["evaluate_video_folder"]


def _halves(frames: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    half = frames // 2
    return (np.linspace(0, half - 1, k).round().astype(int),
            np.linspace(half, frames - 1, min(NUM_TARGETS, frames - half)).round().astype(int))


def evaluate_video_folder(model, videos, k_values: tuple[int, ...] = (1, 8),
                          modes: tuple[str, ...] = ("ff",), ft_steps: int | None = None,
                          csim_backend: str | None = "dlib", fid_network=None,
                          progress: bool = False, ft_train=None) -> dict:
    """Scores of ``model`` on every video of ``videos`` (a ``VideoFolder``, usually its
    ``"test"`` part) as ``{"same-video": {K: {method: scores}}}``, the layout of
    ``evaluate_few_shot`` (``fewshot_th.tables.scores_table`` and ``k_gain_table`` take it):
    methods ``"FF"``/``"FT"`` as asked and the copying baselines; scores ``ssim``, ``l1``,
    ``ssim_by_identity`` (one value per video), ``csim`` (``csim_backend``; None leaves it
    out) and ``fid`` (with ``fid_network``). ``ft_train``: FT's recipe (a ``TrainConfig``;
    default ``fine_tuning_recipe(model)``)."""
    if not k_values or any(not is_int(k) or k < 1 for k in k_values):
        raise ValueError(f"K values must be positive integers, got {k_values!r}")
    if not modes or any(mode not in ("ff", "ft") for mode in modes):
        raise ValueError(f"modes must be a non-empty choice of 'ff' and 'ft', got {modes!r}")
    if getattr(videos, "size", None) != model.config.image_size:
        raise ValueError(f"the videos hold {getattr(videos, 'size', None)} px frames and the "
                         f"model draws {model.config.image_size} px")
    usable = [i for i in range(len(videos)) if videos.num_frames(i) >= 2 * max(k_values)]
    if not usable:
        raise ValueError(f"no video has the {2 * max(k_values)} frames that K = "
                         f"{max(k_values)} sources and the targets need")
    recipe = fine_tuning_recipe(model, ft_train)
    content = content_loss_from(recipe.content) if "ft" in modes else None
    was_training = {name: net.training for name, net in model.networks().items()}
    model.eval()
    results = {}
    bar = tqdm(total=len(k_values) * len(usable), desc="evaluating", disable=not progress)
    try:
        for k in k_values:
            drawn: dict[str, list] = {}
            truths = []
            for index in usable:
                sources_at, targets_at = _halves(videos.num_frames(index), k)
                sources, source_points = videos.get_frames(index, sources_at)
                truth, points = videos.get_frames(index, targets_at)
                outputs = {}  # the model's modes first, then the copying baselines
                for mode in modes:
                    personal = few_shot(model, sources, source_points, mode=mode,
                                        steps=ft_steps if mode == "ft" else None,
                                        train=recipe, content_loss=content, seed=index,
                                        progress=False)
                    outputs[mode.upper()] = personal.render(points).cpu()
                outputs.update(copying_baselines(sources, source_points, points)[0])
                for name, frames in outputs.items():
                    drawn.setdefault(name, []).append(frames)
                truths.append(truth)
                bar.update(1)
            results[k] = {name: _scores(frames, truths, csim_backend, fid_network)
                          for name, frames in drawn.items()}
    finally:
        bar.close()
        for name, net in model.networks().items():
            net.train(was_training[name])
    return {"same-video": results}


def _scores(frames: list[torch.Tensor], truths: list[torch.Tensor], csim_backend,
            fid_network) -> dict:
    per_video = [ssim(f, t) for f, t in zip(frames, truths)]
    every, truth = torch.cat(frames), torch.cat(truths)
    scores = {"ssim": float(torch.cat(per_video).mean()), "l1": float(l1(every, truth).mean()),
              "ssim_by_identity": [float(v.mean()) for v in per_video]}
    if csim_backend is not None:
        similarity = csim(every, truth, backend=csim_backend)
        seen = similarity[~similarity.isnan()]
        scores["csim"] = float(seen.mean()) if len(seen) else None
        scores["csim_frames"] = int(len(seen))
    if fid_network is not None:
        scores["fid"] = frechet_inception_distance(fid_network, truth, every)
    return scores

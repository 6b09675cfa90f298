"""The evaluation protocol (Sec. 4 of the paper, Table 1), on SynthHeads' exact ground truth.

``evaluate_few_shot`` makes a model of each unseen test person from K frames (feed-forward
and/or fine-tuned, ``fewshot_th.finetune.few_shot``), draws held-out target frames from their
landmarks and scores them against the exact renders, beside two copying baselines. Besides
the paper's metrics it asks what a viewer sees: is the mouth open where the person speaks,
are the glasses there, the hair, skin and clothes colours, the one-sided details
(``attribute_recall`` on counterfactual renders), how good is the face itself
(``person_ssim``, ``person_l1``), how real the frames look as a set (a Fréchet distance in a
SynthHeads network's features, beside the real-against-real floor), and whether the trained
discriminator tells real frames from generated ones.

``fewshot_th.tables`` turns the results into Markdown tables; ``fewshot_th.diagnosis`` holds
the studies built on the same protocol (the pictures beside a table, why the mouth stays shut,
whether E sees the one-sided details).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checks import is_int, is_number
from .data import COUNTERFACTUALS, SynthHeads, distant_poses
from .fid import feature_statistics, frechet_distance, frechet_inception_distance
from .finetune import few_shot, fine_tuning_recipe
from .identity import csim, load_identity_net
from .landmarks import NUM_LANDMARKS, draw_landmarks
from .losses import content_loss_from
from .metrics import (
    attribute_recall,
    identity_retrieval,
    l1,
    person_l1,
    person_ssim,
    ssim,
)
from .tables import TARGET_KINDS
from .trainer import truncate_log

__all__ = ["evaluate_feed_forward", "evaluate_few_shot", "copying_baselines", "COPYING_BASELINES",
           "discriminator_scores", "source_pose", "target_pose", "calm_and_distant",
           "train_and_score", "FRAMES_PER_VIDEO", "NUM_TARGETS"]

FRAMES_PER_VIDEO, NUM_TARGETS = 64, 8

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
    try:
        net = load_identity_net()
    except ValueError:
        return None
    return net if net.image_size == image_size else None


def calm_and_distant(test, identity: int, num_targets: int, draw: int = 0):
    """A test identity's calm clip (half a video's poses, where pose-distant sources come
    from) and its ``num_targets`` pose-distant target poses; ``draw`` 1 gives another set of
    poses of the same two kinds."""
    return distant_poses(test.seed * 10_007 + identity + 7_919 * draw,
                         test.frames_per_video // 2, num_targets)


def source_pose(test, identity: int, kind: str, k: int, rng):
    """The K source poses of one test identity for one kind of target, drawn with ``rng``
    from half a video: the first half of its video, or its calm clip."""
    chosen = np.sort(rng.choice(test.frames_per_video // 2, k, replace=False))
    if kind == "same-video":
        return test.pose(identity, chosen)
    return calm_and_distant(test, identity, NUM_TARGETS)[0][chosen]


def target_pose(test, identity: int, kind: str):
    """The target poses of one test identity for one kind of target (the same for every K)."""
    if kind == "same-video":
        return test.pose(identity, _same_video_targets(test, identity, NUM_TARGETS))
    return calm_and_distant(test, identity, NUM_TARGETS)[1]


def _same_video_targets(test, identity: int, num_targets: int) -> np.ndarray:
    """Frames of the second half of the video, a pure function of the person."""
    half = test.frames_per_video // 2
    return np.sort(np.random.default_rng([test.seed, identity]).choice(
        np.arange(half, test.frames_per_video), num_targets, replace=False))


def _reference_poses(test, identity: int, kind: str, num_targets: int):
    """Other real frames of the same person and kind as the targets (never the targets): the
    real-against-real floor of the Fréchet distance."""
    if kind == "same-video":
        targets = _same_video_targets(test, identity, num_targets)
        others = np.setdiff1d(np.arange(test.frames_per_video // 2, test.frames_per_video),
                              targets)
        return test.pose(identity, others[:num_targets])
    return calm_and_distant(test, identity, num_targets, draw=1)[1]


def _targets(test, identity: int, target_pose, identities: int) -> dict:
    """Everything the scores of one person's targets need, whatever K and the method."""
    frames, points = test.render(identity, target_pose, True)
    counterfactuals = {name: test.counterfactual(identity, target_pose, name)
                       for name in COUNTERFACTUALS}
    return {"frames": frames, "points": points,
            "candidates": torch.stack([test.render(j, target_pose)
                                       for j in range(identities)], dim=1),
            "details": test.detail_mask(identity, target_pose)[:, None].expand_as(frames),
            "person": test.person_mask(identity, target_pose),
            "counterfactuals": {k: v for k, v in counterfactuals.items() if v is not None}}


def discriminator_scores(model, frames: torch.Tensor, points: torch.Tensor,
                         e_hat: torch.Tensor) -> torch.Tensor:
    """The meta-learned D's realism scores ``(N,)`` of frames ``(N, 3, H, W)`` with their
    landmarks ``(N, 68, 2)``, for a person it never saw: r = vᵀ(w0 + ê) + b, the w' that
    fine-tuning starts from (Sec. 3.3). Positive: D takes the frame for real."""
    D = model.discriminator
    device = D.w0.device
    with torch.no_grad():
        images = draw_landmarks(points, frames.shape[-1]).to(device)
        score, _ = D(frames.to(device), images, w=D.w0 + e_hat.to(device))
    return score.float().cpu()


def evaluate_few_shot(model, identities: int = 20, seed: int = 0,
                      k_values: tuple[int, ...] = (1, 8, 32), modes: tuple[str, ...] = ("ff",),
                      ft_steps: int | None = None, progress: bool = False,
                      fid_network=None, targets: tuple[str, ...] = TARGET_KINDS,
                      ft_train=None) -> dict:
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
    ``{kind: {K: {method: scores}}}`` with methods ``"FF"``, ``"FT"`` (as asked),
    ``"mean of sources"`` and ``"nearest-landmark source"``; the scores of each:

    * ``ssim``, ``l1``, ``retrieval`` (``identity_retrieval`` among the test people),
      ``ssim_by_identity`` (each person's mean SSIM, for paired comparisons);
    * ``person_ssim``, ``person_l1``: the same on the person's pixels only
      (``SynthHeads.person_mask``: head, hair, ears, neck; no background, no clothes);
    * ``recall`` ``{attribute: share}`` and ``recall_frames`` ``{attribute: frames}``: for
      each attribute of ``COUNTERFACTUALS`` the share of frames that show it
      (``attribute_recall``) among the frames where it shows in the truth (``None`` where
      none does);
    * ``detail_l1``: the mean absolute error over the pixels where the targets show their
      one-sided details (``SynthHeads.detail_mask``);
    * ``landmark_distance``: the mean distance in pixels from a target's landmarks to the
      nearest source's (the same for every method);
    * ``fd``: the Fréchet distance between the SynthHeads identity network's features of
      the method's frames and of the true targets, all people of one K together (the book's
      FID for SynthHeads), and ``fd_floor``: the same between the targets and as many other
      real frames of the same people and kind: the value of a perfect method;
    * ``csim`` with the shipped SynthHeads identity network (when the model's frames have its
      size), ``fid`` when ``fid_network`` (``fewshot_th.fid.load_fid_inception()``) is given;
    * FF only: ``d_accuracy``, the meta-learned D's accuracy at telling the real targets
      (score > 0) from the FF frames (score < 0) scored with w0 + ê
      (``discriminator_scores``), and ``d_real_above_fake``, the share of targets whose real
      frame D scores above the FF frame.
    """
    half = FRAMES_PER_VIDEO // 2
    if not is_int(identities) or identities < 2 or \
            not k_values or min(k_values) < 1 or max(k_values) > half:
        raise ValueError(f"need at least 2 identities and 1 <= K <= {half}, got "
                         f"{identities!r} identities and K = {k_values}")
    if not modes or any(mode not in ("ff", "ft") for mode in modes):
        raise ValueError(f"modes must be a non-empty choice of 'ff' and 'ft', got {modes!r}")
    if isinstance(targets, str) or not targets or any(t not in TARGET_KINDS for t in targets):
        raise ValueError(f"targets must be a non-empty tuple of {TARGET_KINDS}, got {targets!r}")
    test = SynthHeads("test", num_identities=identities, num_videos_per_identity=1,
                      frames_per_video=FRAMES_PER_VIDEO, size=model.config.image_size,
                      seed=seed)
    identity_net = _identity_net_for(model.config.image_size)
    recipe = fine_tuning_recipe(model, ft_train)
    # L'_CNT once for every person (its feature networks are loaded once, not per person).
    content = content_loss_from(recipe.content) if "ft" in modes else None
    methods = [mode.upper() for mode in modes] + list(COPYING_BASELINES)
    was_training = {name: net.training for name, net in model.networks().items()}
    model.eval()
    results = {}
    bar = tqdm(total=len(targets) * len(k_values) * identities, desc="evaluating",
               disable=not progress)
    try:
        for kind in targets:
            rng = np.random.default_rng([seed, TARGET_KINDS.index(kind)])
            people = [_targets(test, i, target_pose(test, i, kind), identities)
                      for i in range(identities)]
            truths = torch.cat([p["frames"] for p in people])
            floor = None
            if identity_net is not None:
                reference = torch.cat([test.render(i, _reference_poses(test, i, kind,
                                                                       NUM_TARGETS))
                                       for i in range(identities)])
                floor = _feature_distance(identity_net, truths, reference)
            results[kind] = {}
            for k in k_values:
                tallies = {name: _Tally() for name in methods}
                distances, d_real, d_fake = [], [], []
                for identity, target in enumerate(people):
                    sources, source_points = test.render(
                        identity, source_pose(test, identity, kind, k, rng), True)
                    outputs, distance = copying_baselines(sources, source_points,
                                                          target["points"])
                    distances.append(distance)
                    for mode in modes:
                        personal = few_shot(model, sources, source_points, mode=mode,
                                            steps=ft_steps if mode == "ft" else None,
                                            train=recipe, content_loss=content,
                                            seed=identity, progress=False)
                        outputs[mode.upper()] = personal.render(target["points"])
                        if mode == "ff":
                            d_real.append(discriminator_scores(model, target["frames"],
                                                               target["points"], personal.e_hat))
                            d_fake.append(discriminator_scores(model, outputs["FF"],
                                                               target["points"], personal.e_hat))
                    for name, frames in outputs.items():
                        tallies[name].add(frames, target, identity, identity_net)
                    bar.update(1)
                results[kind][k] = _k_scores(tallies, float(torch.cat(distances).mean()),
                                             truths, identity_net, floor, fid_network,
                                             d_real, d_fake)
    finally:
        bar.close()
        for name, net in model.networks().items():
            net.train(was_training[name])
    return results


COPYING_BASELINES = ("mean of sources", "nearest-landmark source")


def copying_baselines(sources: torch.Tensor, source_points: torch.Tensor,
                      target_points: torch.Tensor) -> tuple[dict[str, torch.Tensor],
                                                            torch.Tensor]:
    """What copying a source frame gives instead of generating one, for targets ``(T, 68, 2)``
    from K sources ``(K, 3, H, W)`` with their landmarks ``(K, 68, 2)``: ``({"mean of
    sources": the mean source frame for every target, "nearest-landmark source": the source
    whose landmarks are closest to each target's}, (T,) the mean distance in pixels from each
    target's landmarks to that nearest source's)``."""
    if sources.ndim != 4 or source_points.shape != (len(sources), NUM_LANDMARKS, 2) or \
            target_points.ndim != 3 or target_points.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"need sources (K, 3, H, W), their landmarks (K, 68, 2) and targets' "
                         f"landmarks (T, 68, 2), got {tuple(sources.shape)}, "
                         f"{tuple(source_points.shape)} and {tuple(target_points.shape)}")
    nearest = torch.cdist(target_points.flatten(1), source_points.flatten(1)).argmin(1)
    distance = (target_points - source_points[nearest]).norm(dim=-1).mean(-1)
    frames = {"mean of sources": sources.mean(0, keepdim=True).expand(len(target_points),
                                                                        -1, -1, -1),
              "nearest-landmark source": sources[nearest]}
    return frames, distance


def _k_scores(tallies: dict, distance: float, truths: torch.Tensor, identity_net, floor,
              fid_network, d_real: list, d_fake: list) -> dict:
    """The scores of every method for one K: each tally's, the Fréchet distances over all
    people together, and D's accuracy on the feed-forward frames."""
    scores = {name: tally.scores(distance) for name, tally in tallies.items()}
    for name, tally in tallies.items():
        if identity_net is not None:
            scores[name]["fd"] = _feature_distance(identity_net, truths, torch.cat(tally.frames))
            scores[name]["fd_floor"] = floor
        if fid_network is not None:
            scores[name]["fid"] = frechet_inception_distance(fid_network, truths,
                                                             torch.cat(tally.frames))
    if d_real:
        real, fake = torch.cat(d_real), torch.cat(d_fake)
        scores["FF"]["d_accuracy"] = float(((real > 0).float().mean()
                                            + (fake < 0).float().mean()) / 2)
        scores["FF"]["d_real_above_fake"] = float((real > fake).float().mean())
    return scores


def _feature_distance(net, real: torch.Tensor, fake: torch.Tensor) -> float:
    """Fréchet distance between the identity network's features of two sets of frames."""
    with torch.no_grad():
        return frechet_distance(*feature_statistics(net.features(real.float())),
                                *feature_statistics(net.features(fake.float())))


class _Tally:
    """One method's per-frame scores over the people of one K."""

    def __init__(self):
        self.values: dict[str, list[torch.Tensor]] = {}
        self.recall = {name: [] for name in COUNTERFACTUALS}
        self.detail = [0.0, 0]
        self.frames: list[torch.Tensor] = []

    def add(self, frames: torch.Tensor, target: dict, identity: int, identity_net) -> None:
        truth = target["frames"]
        scores = {"ssim": ssim(frames, truth), "l1": l1(frames, truth),
                  "retrieval": identity_retrieval(frames, target["candidates"],
                                                  torch.full((len(truth),), identity)).float(),
                  "person_ssim": person_ssim(frames, truth, target["person"]),
                  "person_l1": person_l1(frames, truth, target["person"])}
        if identity_net is not None:
            scores["csim"] = csim(frames, truth, net=identity_net)
        for name, value in scores.items():
            self.values.setdefault(name, []).append(value)
        for name, counterfactual in target["counterfactuals"].items():
            self.recall[name].append(attribute_recall(frames, truth, counterfactual))
        self.detail[0] += float((frames - truth).abs()[target["details"]].sum())
        self.detail[1] += int(target["details"].sum())
        self.frames.append(frames)

    def scores(self, landmark_distance: float) -> dict:
        out = {name: float(torch.cat(values).mean()) for name, values in self.values.items()}
        recall, counts = {}, {}
        for name, values in self.recall.items():
            shown = torch.cat(values) if values else torch.zeros(0)
            shown = shown[~shown.isnan()]
            counts[name] = int(shown.numel())
            recall[name] = float(shown.mean()) if shown.numel() else None
        return {**out, "landmark_distance": landmark_distance,
                "detail_l1": self.detail[0] / max(self.detail[1], 1),
                "ssim_by_identity": [float(v.mean()) for v in self.values["ssim"]],
                "recall": recall, "recall_frames": counts}




def train_and_score(trainer, until_step: int, every_minutes: float, identities: int = 20,
                    max_seconds: float | None = None, progress: bool = True) -> list[dict]:
    """``trainer.run(until_step, max_seconds=...)``, with the feed-forward model scored on
    held-out SynthHeads people (``evaluate_feed_forward``, K = 1, 8, 32) before training, every
    ``every_minutes`` minutes of training (``trainer.seconds``, counted over every resumed leg)
    and at the end: time to quality, as ``fewshot-th train --eval-every`` reports it.

    Each score is a line ``{"minutes", "step", "device", "scores"}`` of
    ``trainer.out / "quality.jsonl"`` (a resumed run first drops the lines of later steps).
    The scores set the random state aside, so the training is the one without them. Returns
    the lines written by this call."""
    if not is_number(every_minutes) or not 0 < every_minutes < float("inf"):
        raise ValueError(f"every_minutes must be a positive number, got {every_minutes!r}")
    log = Path(trainer.out) / "quality.jsonl"
    truncate_log(log, trainer.step)
    earlier = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    next_score = (earlier[-1]["minutes"] + every_minutes) * 60 if earlier else 0.0
    last_step = earlier[-1]["step"] if earlier else None
    start, rows = time.perf_counter(), []
    while True:
        left = None if max_seconds is None else max_seconds - (time.perf_counter() - start)
        finished = trainer.step >= until_step or (left is not None and left <= 0)
        if (trainer.seconds >= next_score - 1e-9 or finished) and trainer.step != last_step:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                scores = evaluate_feed_forward(trainer.model, identities)
            rows.append({"minutes": round(trainer.seconds / 60, 2), "step": trainer.step,
                         "device": str(trainer.device),
                         "scores": {kind: {str(k): v for k, v in by_k.items()}
                                    for kind, by_k in scores.items()}})
            with open(log, "a") as file:
                file.write(json.dumps(rows[-1]) + "\n")
            last_step = trainer.step
            if progress:
                tqdm.write(f"step {trainer.step}, {rows[-1]['minutes']} min: feed-forward "
                           "K = 8 SSIM " + ", ".join(
                               f"{kind} {by_k[8]['model']['ssim']:.3f} (nearest copy "
                               f"{by_k[8]['nearest-landmark source']['ssim']:.3f})"
                               for kind, by_k in scores.items()))
        while next_score <= trainer.seconds + 1e-9:
            next_score += every_minutes * 60
        if finished:
            return rows
        leg = next_score - trainer.seconds
        trainer.run(until_step, progress=progress, max_seconds=leg if left is None
                    else min(leg, left))

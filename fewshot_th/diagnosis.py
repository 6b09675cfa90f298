"""Studies built on the evaluation protocol (``fewshot_th.evaluation``): the pictures to put
beside a results table, why the generated mouth stays shut (chapter 8), and whether the
embedder sees the one-sided details at all."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from .checks import is_int, is_integer
from .data import SynthHeads
from .data.synthetic import COLOUR_FIELDS
from .evaluation import (
    FRAMES_PER_VIDEO,
    NUM_TARGETS,
    calm_and_distant,
    copying_baselines,
    discriminator_scores,
    source_pose,
    target_pose,
)
from .finetune import few_shot, fine_tuning_recipe
from .identity import roc_auc
from .landmarks import draw_landmarks
from .losses import MOUTH_LANDMARKS, inner_lip_gap
from .metrics import (
    attribute_recall,
)
from .tables import TARGET_KINDS

__all__ = ["method_examples", "SPEAKING", "speaking_episode", "mouth_diagnosis",
           "evaluation_ff_frames", "MOUTH_GAP_EDGES", "mouth_recall_by_opening",
           "COLOUR_ATTRIBUTES", "colour_recall_by_distance",
           "glasses_episode", "glasses_diagnosis", "glasses_examples", "embedding_detail_gap"]


def method_examples(model, identities=(0, 1, 2, 3), k: int = 8, kind: str = "same-video",
                    modes: tuple[str, ...] = ("ff", "ft"), seed: int = 0,
                    num_identities: int = 20, ft_train=None) -> dict[str, torch.Tensor]:
    """The pictures to put beside a results table: for each test person in ``identities``,
    the target of ``kind`` where the mouth is open widest, drawn by every method of
    ``evaluate_few_shot`` (same protocol, K sources drawn for each person; FT with the recipe
    ``ft_train``, default ``fine_tuning_recipe(model)``). Returns
    ``{"truth": (N, 3, H, W), "FF": ..., "FT": ..., "nearest-landmark source": ...,
    "mean of sources": ...}``, one frame per person in the order given."""
    if kind not in TARGET_KINDS:
        raise ValueError(f"kind must be one of {TARGET_KINDS}, got {kind!r}")
    if not is_int(k) or not 1 <= k <= FRAMES_PER_VIDEO // 2:
        raise ValueError(f"k must be an integer from 1 to {FRAMES_PER_VIDEO // 2}, got {k!r}")
    if not modes or any(mode not in ("ff", "ft") for mode in modes):
        raise ValueError(f"modes must be a non-empty choice of 'ff' and 'ft', got {modes!r}")
    if not identities or any(not is_integer(i)
                             or not 0 <= i < num_identities for i in identities):
        raise ValueError(f"identities must be test people from 0 to {num_identities - 1}, "
                         f"got {identities!r}")
    recipe = fine_tuning_recipe(model, ft_train)
    test = SynthHeads("test", num_identities=num_identities, num_videos_per_identity=1,
                      frames_per_video=FRAMES_PER_VIDEO, size=model.config.image_size,
                      seed=seed)
    out = {name: [] for name in ("truth", *(m.upper() for m in modes),
                                 "nearest-landmark source", "mean of sources")}
    model.eval()
    for identity in identities:
        pose = target_pose(test, identity, kind)
        widest = int(np.argmax(pose.mouth))
        truth, points = test.render(identity, pose[widest:widest + 1], True)
        rng = np.random.default_rng([seed, TARGET_KINDS.index(kind), k, 1 + identity])
        sources, source_points = test.render(identity, source_pose(test, identity, kind, k,
                                                                    rng), True)
        out["truth"].append(truth)
        for mode in modes:
            personal = few_shot(model, sources, source_points, mode=mode, seed=identity,
                                train=recipe, progress=False)
            out[mode.upper()].append(personal.render(points))
        for name, frames in copying_baselines(sources, source_points, points)[0].items():
            out[name].append(frames)
    return {name: torch.cat(frames) for name, frames in out.items()}


SPEAKING = 0.4  # a mouth opening from which a frame counts as speaking (0 shut, 1 widest)


def speaking_episode(test: SynthHeads, identity: int, k: int = 8, per_person: int = 4,
                     speaking: bool = True) -> dict | None:
    """One test person's K sources (evenly spaced over the first half of the video) and
    targets from its second half: the ``per_person`` frames where the mouth is open widest,
    if at least ``SPEAKING`` (``speaking``; ``None`` if the person never opens it that far),
    else ``per_person`` evenly spaced frames. With the targets' landmarks and the same frames
    with the mouth shut (``SynthHeads.counterfactual``) and their landmarks, and the poses of
    sources and targets (``"source_pose"``, ``"target_pose"``) to draw them otherwise."""
    half = test.frames_per_video // 2
    for name, value, high in (("k", k, half), ("per_person", per_person, half)):
        if not is_int(value) or not 1 <= value <= high:
            raise ValueError(f"{name} must be an integer from 1 to {high} (half the video), "
                             f"got {value!r}")
    pose = test.pose(identity)
    if speaking:
        chosen = half + np.argsort(-pose.mouth[half:])[:per_person]
        chosen = np.sort(chosen[pose.mouth[chosen] >= SPEAKING])
        if len(chosen) == 0:
            return None
    else:
        chosen = np.linspace(half, test.frames_per_video - 1, per_person).astype(int)
    source_pose = test.pose(identity, np.linspace(0, half - 1, k).astype(int))
    sources, source_points = test.render(identity, source_pose, True)
    target_pose = test.pose(identity, chosen)
    truth, points = test.render(identity, target_pose, True)
    shut, shut_points = test.render(identity, replace(target_pose, mouth=0.0), True)
    return {"identity": identity, "sources": sources, "source_points": source_points,
            "truth": truth, "points": points, "shut": shut, "shut_points": shut_points,
            "source_pose": source_pose, "target_pose": target_pose}


def mouth_diagnosis(model, identities: int = 20, seed: int = 0, k: int = 8) -> dict:
    """Why a model does or does not open the mouth, on the frames where held-out people speak
    (``speaking_episode``), feed-forward from K frames. The mouth pixels are those where the
    true frame and the same frame with the mouth shut differ by more than 0.03. Returns

    * ``frames``: how many speaking frames were scored;
    * ``pixel_share``, ``error_share``: the mouth pixels' share of a frame, and of the
      model's L1 error on it;
    * ``g_response``: how much G's frame changes on the mouth pixels when the landmark image
      opens the mouth (same ê), as a share of how much the true frame changes;
    * ``d_real_above_shut``, ``d_gap``: how often the meta-learned D (with w0 + ê) scores the
      real frame above the same frame with the mouth shut under the open mouth's landmarks,
      and by how much on average;
    * ``recall``: mouth-open recall (``attribute_recall``);
    * ``shut_recall``: the other way round, the same frames drawn from the shut mouth's
      landmarks: is G's frame closer to the shut truth than to the open one? A model that
      opens every mouth whatever the landmarks say scores 1 on ``recall`` and 0 here.
    """
    if not is_int(identities) or identities < 1:
        raise ValueError(f"identities must be a positive integer, got {identities!r}")
    size = model.config.image_size
    model.eval()
    test = SynthHeads("test", num_identities=identities, num_videos_per_identity=1,
                      frames_per_video=FRAMES_PER_VIDEO, size=size, seed=seed)
    tally = {name: [] for name in ("pixel_share", "error_share", "g_response", "recall",
                                   "shut_recall")}
    real, shut = [], []
    for identity in range(identities):
        episode = speaking_episode(test, identity, k)
        if episode is None:
            continue
        person = few_shot(model, episode["sources"], episode["source_points"], progress=False)
        opened, closed = person.render(episode["points"]), person.render(episode["shut_points"])
        truth, counterfactual = episode["truth"], episode["shut"]
        mouth = (truth - counterfactual).abs().amax(dim=1) > 0.03
        error = (opened - truth).abs().mean(dim=1)
        tally["pixel_share"].append(float(mouth.float().mean()))
        tally["error_share"].append(float(error[mouth].sum() / error.sum().clamp_min(1e-12)))
        tally["g_response"].append(float((opened - closed).abs().mean(dim=1)[mouth].mean()
                                         / (truth - counterfactual).abs().mean(dim=1)[mouth]
                                         .mean()))
        tally["recall"].append(attribute_recall(opened, truth, counterfactual))
        tally["shut_recall"].append(attribute_recall(closed, counterfactual, truth))
        real.append(discriminator_scores(model, truth, episode["points"], person.e_hat))
        shut.append(discriminator_scores(model, counterfactual, episode["points"],
                                         person.e_hat))
    if not real:
        raise ValueError(f"none of the {identities} test people speaks with the mouth open "
                         f"at least {SPEAKING}: use more identities")
    recalls = {name: torch.cat(tally.pop(name)) for name in ("recall", "shut_recall")}
    real, shut = torch.cat(real), torch.cat(shut)
    return {"frames": len(real), **{name: float(np.mean(v)) for name, v in tally.items()},
            "d_real_above_shut": float((real > shut).float().mean()),
            "d_gap": float((real - shut).mean()),
            **{name: float(r[~r.isnan()].mean()) for name, r in recalls.items()}}



def _check_protocol(identities, k, kind) -> None:
    if not is_int(identities) or identities < 2:
        raise ValueError(f"identities must be an integer of at least 2, got {identities!r}")
    if not is_int(k) or not 1 <= k <= FRAMES_PER_VIDEO // 2:
        raise ValueError(f"k must be an integer from 1 to {FRAMES_PER_VIDEO // 2}, got {k!r}")
    if kind not in TARGET_KINDS:
        raise ValueError(f"kind must be one of {TARGET_KINDS}, got {kind!r}")


def _check_edges(edges, what: str) -> tuple[float, ...]:
    edges = tuple(edges)
    if not edges or any(not np.isfinite(e) or e <= 0 for e in edges) \
            or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"edges must be increasing positive {what}, got {edges!r}")
    return edges


def evaluation_ff_frames(model, identities: int, seed: int = 0, k: int = 8,
                         kind: str = "same-video"):
    """The feed-forward frames of ``evaluate_few_shot(model, identities, seed,
    k_values=(k,), modes=("ff",), targets=(kind,))``, one person at a time: yields
    ``(test, identity, pose, truth, points, drawn)`` with the person's target ``pose``, the
    true frames and their landmarks, and FF's frames (the same sources, drawn with the same
    random numbers, as the evaluation's)."""
    _check_protocol(identities, k, kind)
    test = SynthHeads("test", num_identities=identities, num_videos_per_identity=1,
                      frames_per_video=FRAMES_PER_VIDEO, size=model.config.image_size,
                      seed=seed)
    rng = np.random.default_rng([seed, TARGET_KINDS.index(kind)])  # as evaluate_few_shot's
    model.eval()
    for identity in range(identities):
        pose = target_pose(test, identity, kind)
        truth, points = test.render(identity, pose, True)
        sources, source_points = test.render(identity, source_pose(test, identity, kind, k,
                                                                    rng), True)
        drawn = few_shot(model, sources, source_points, mode="ff", seed=identity,
                         progress=False).render(points)
        yield test, identity, pose, truth, points, drawn


def _bin_of(by: torch.Tensor, edges: tuple[float, ...]) -> torch.Tensor:
    """Each value's range: 0 for ``[0, edges[0])``, ..., ``len(edges)`` for
    ``[edges[-1], inf)``."""
    return torch.bucketize(by, torch.tensor(edges, dtype=by.dtype), right=True)


def _bins(by: torch.Tensor, hits: torch.Tensor, people: torch.Tensor,
          edges: tuple[float, ...], medians: dict[str, torch.Tensor] | None = None) -> list[dict]:
    """Recall, the number of frames and of ``people`` (each frame's person), and the median
    of each of ``medians``, of the frames whose ``by`` falls in each range ``[0, edges[0])``,
    ..., ``[edges[-1], inf)`` (``high`` ``None``)."""
    which = _bin_of(by, edges)
    bins = []
    for index, (low, high) in enumerate(zip((0.0, *edges), (*edges, None))):
        inside = which == index
        count = int(inside.sum())
        bins.append({"low": low, "high": high, "frames": count,
                     "people": len(set(people[inside].tolist())),
                     "recall": float(hits[inside].mean()) if count else None,
                     **{name: float(values[inside].float().quantile(0.5)) if count else None
                        for name, values in (medians or {}).items()}})
    return bins


MOUTH_GAP_EDGES = (1.0, 1.5, 2.0, 3.0)  # inner-lip gaps (px at 64 px) between the bins
EXAMPLE_ROWS = ("truth", "mouth shut", "FF", "landmarks", "landmarks shut")


def mouth_recall_by_opening(model, identities: int = 80, seed: int = 0, k: int = 8,
                            kind: str = "same-video",
                            edges: tuple[float, ...] = MOUTH_GAP_EDGES) -> dict:
    """Which open mouths does feed-forward draw? Mouth-open recall against how far apart the
    target's inner lips are.

    The frames are exactly those of ``evaluate_few_shot(model, identities, seed,
    k_values=(k,), modes=("ff",), targets=(kind,))`` (``evaluation_ff_frames``), so the
    overall ``recall`` is its ``recall["mouth open"]``. A target counts where it differs
    from the same frame with the mouth shut (``SynthHeads.counterfactual``) on at least
    ``attribute_recall``'s 4 pixels. ``edges`` are inner-lip gaps
    (``losses.inner_lip_gap``) in pixels of a 64 px frame, scaled to the model's size.
    Returns

    * ``gap``, ``hit``, ``position``, ``landmark_change``, ``identity``: one entry per
      counted target: the gap in pixels of a 64 px frame, 1 where FF's frame is closer to the
      open mouth than to the shut one, where FF's frame lies on the mouth pixels between shut
      (0) and open (1), how much the landmark image (G's input) changes when the mouth shuts
      (the sum over its pixels of the largest change of a channel; scaled to a 64 px frame),
      and the person;
    * ``bins``: for each gap range, ``low``, ``high`` (``None`` for the last, open range),
      ``frames``, ``people`` (how many people those frames show), ``recall`` and the medians
      of ``position`` and ``landmark_change`` (``None`` where no frame falls in it);
    * ``recall``, ``frames``: over every counted target;
    * ``examples``: for each bin with frames, its frame nearest the bin's median gap, cropped
      around the mouth: ``{"truth", "mouth shut", "FF", "landmarks", "landmarks shut"}``
      each ``(B, 3, h, w)``, with ``example_gaps`` and ``example_hits``.
    """
    _check_protocol(identities, k, kind)
    edges = _check_edges(edges, "gaps in pixels")
    size = model.config.image_size
    scale = size / 64
    columns = {name: [] for name in ("gap", "hit", "position", "landmark_change", "identity")}
    crop = int(round(24 * scale))  # every counted frame kept only as a crop around the mouth
    crops = {name: [] for name in EXAMPLE_ROWS}
    for test, identity, pose, truth, points, drawn in evaluation_ff_frames(
            model, identities, seed, k, kind):
        shut = test.counterfactual(identity, pose, "mouth open")
        drawings = draw_landmarks(points, size)
        shut_drawings = draw_landmarks(test.landmarks(identity, replace(pose, mouth=0.0)), size)
        hit = attribute_recall(drawn, truth, shut)
        change = truth - shut
        region = (change.abs().amax(dim=1, keepdim=True) > 0.03).float()
        position = ((drawn - shut) * change * region).flatten(1).sum(1) \
            / (change * change * region).flatten(1).sum(1).clamp_min(1e-12)
        counted = ~hit.isnan()
        columns["gap"].append(inner_lip_gap(points)[counted] / scale)
        columns["hit"].append(hit[counted])
        columns["position"].append(position[counted])
        columns["landmark_change"].append((drawings - shut_drawings).abs().amax(dim=1)
                                          .flatten(1).sum(1)[counted] / scale ** 2)
        columns["identity"].append(torch.full((int(counted.sum()),), identity))
        centres = points[counted][:, MOUTH_LANDMARKS].mean(dim=1)
        corners = (centres - crop / 2).round().long().clamp(0, size - crop).tolist()
        for name, images in zip(EXAMPLE_ROWS, (truth, shut, drawn, drawings, shut_drawings)):
            crops[name] += [image[:, y:y + crop, x:x + crop]
                            for image, (x, y) in zip(images[counted], corners)]
    columns = {name: torch.cat(value) for name, value in columns.items()}
    if len(columns["hit"]) == 0:
        raise ValueError(f"no {kind} target of the {identities} test people opens the mouth: "
                         "use more identities")
    bins = _bins(columns["gap"], columns["hit"], columns["identity"], edges,
                 {name: columns[name] for name in ("position", "landmark_change")})
    which, chosen = _bin_of(columns["gap"], edges), []
    for index, b in enumerate(bins):  # each bin's frame nearest its median gap
        if b["frames"]:
            gaps = columns["gap"].masked_fill(which != index, float("inf"))
            chosen.append(int((gaps - columns["gap"][which == index].quantile(0.5))
                              .abs().argmin()))
    chosen = torch.tensor(chosen)
    examples = {name: torch.stack([crops[name][i] for i in chosen.tolist()])
                for name in EXAMPLE_ROWS}
    return {**{name: value.tolist() for name, value in columns.items()},
            "bins": bins, "recall": float(columns["hit"].mean()),
            "frames": len(columns["hit"]), "examples": examples,
            "example_gaps": columns["gap"][chosen].tolist(),
            "example_hits": columns["hit"][chosen].tolist()}


COLOUR_ATTRIBUTES = ("hair", "clothes", "skin", "lips", "background")
COLOUR_DISTANCE_EDGES = (0.05, 0.1, 0.2)  # colour distances between the bins


def colour_recall_by_distance(model, identities: int = 80, seed: int = 0, k: int = 8,
                              kind: str = "same-video",
                              edges: tuple[float, ...] = COLOUR_DISTANCE_EDGES) -> dict:
    """How close must two colours be before feed-forward mixes them up? The recall of each
    colour attribute against how far the counterfactual's colour lies from the person's own.

    The frames are those of ``evaluate_few_shot`` as in ``mouth_recall_by_opening``
    (``evaluation_ff_frames``); the counterfactual is ``SynthHeads.counterfactual``'s, the
    person drawn with the next test person's colour, so the overall recall of an attribute
    is the evaluation's. The distance is the largest difference of one RGB channel between
    the two colours (in [0, 1]; the largest over both of the background's two colours).
    Returns ``{attribute: {"distance", "hit", "identity" (per counted frame), "bins",
    "recall", "frames"}}`` for each of ``COLOUR_ATTRIBUTES``, the bins as in
    ``mouth_recall_by_opening`` with the median ``pixels`` on which truth and counterfactual
    differ. The distance is one number per person, so a bin's ``people`` says how many
    independent cases its frames are."""
    _check_protocol(identities, k, kind)
    edges = _check_edges(edges, "colour distances")
    columns = {name: {key: [] for key in ("distance", "hit", "pixels", "identity")}
               for name in COLOUR_ATTRIBUTES}
    for test, identity, pose, truth, _, drawn in evaluation_ff_frames(model, identities, seed,
                                                                       k, kind):
        own, theirs = test.attributes(identity), test.attributes((identity + 1) % identities)
        for name in COLOUR_ATTRIBUTES:
            counterfactual = test.counterfactual(identity, pose, name)
            hit = attribute_recall(drawn, truth, counterfactual)
            counted = ~hit.isnan()
            pixels = ((truth - counterfactual).abs().amax(dim=1) > 0.03).flatten(1).sum(1)
            distance = max(float(np.abs(own[field] - theirs[field]).max())
                           for field in COLOUR_FIELDS[name])
            column = columns[name]
            column["distance"].append(torch.full((int(counted.sum()),), distance))
            column["hit"].append(hit[counted])
            column["pixels"].append(pixels[counted].float())
            column["identity"].append(torch.full((int(counted.sum()),), identity))
    result = {}
    for name, column in columns.items():
        column = {key: torch.cat(value) for key, value in column.items()}
        result[name] = {
            "distance": column["distance"].tolist(), "hit": column["hit"].tolist(),
            "identity": column["identity"].long().tolist(),
            "bins": _bins(column["distance"], column["hit"], column["identity"], edges,
                          {"pixels": column["pixels"]}),
            "recall": float(column["hit"].mean()) if len(column["hit"]) else None,
            "frames": len(column["hit"])}
    return result


def glasses_episode(test: SynthHeads, identity: int, k: int = 8, per_person: int = 4) -> dict:
    """One test person's K sources (evenly spaced over the first half of the video) and
    ``per_person`` targets evenly spaced over its second half, each drawn a second time with
    the glasses switched (``SynthHeads.render(..., attributes={"glasses": ...})``: taken off a
    person who wears them, put on one who does not): ``"sources_flipped"``, ``"flipped"``;
    ``"wears"`` says which."""
    episode = speaking_episode(test, identity, k, per_person, speaking=False)
    del episode["shut"], episode["shut_points"]
    wears = bool(test.attributes(identity)["glasses"] > 0)
    flipped = {"glasses": 0.0 if wears else 1.0}
    episode["sources_flipped"] = test.render(identity, episode["source_pose"],
                                             attributes=flipped)
    episode["flipped"] = test.render(identity, episode["target_pose"], attributes=flipped)
    episode["wears"] = wears
    return episode


def glasses_diagnosis(model, identities: int = 80, seed: int = 0, k: int = 8) -> dict:
    """Why a model does or does not draw glasses, feed-forward from K frames of held-out
    people (``glasses_episode``; a quarter of SynthHeads people wear glasses). The glasses
    pixels are those where a target and the same frame with the glasses switched (off a
    wearer, on anyone else) differ by more than 0.03. Returns

    * ``people``, ``frames``: how many glasses-wearers and their target frames were scored;
    * ``pixel_share``, ``error_share``: the glasses pixels' share of a wearer's frame, and of
      the model's L1 error on it (the weight the pixel loss gives them);
    * ``between``: where the generated frames of wearers lie on the glasses pixels between
      the frame without glasses (0) and the true one (1), by mean absolute difference;
    * ``recall``: glasses recall on wearers (``attribute_recall``), and ``recall_without``:
      the same for the others, against their frames with glasses put on (1: drawn without).
      Glasses drawn faintly on everybody score about half on both;
    * ``embedding_ratio``: how far a wearer's ê moves when the same K sources are drawn
      without the glasses, over the median distance between two wearers' ê;
    * ``probe_auc``: can a linear read-out of ê tell who wears glasses? ROC AUC of a
      leave-one-out ridge regression over all the people (0.5: not at all), and
      ``pixel_probe_auc``: the same read-out of the mean of the K sources' pixels (pooled to
      16 x 16), for scale, and ``trunk_probe_auc``: of the output of each of E's blocks
      (``embedder.trunk``, averaged over the K sources, pooled to at most 4 x 4), before the
      global sum pooling that makes ê (where does E lose them?);
    * ``g_response``: how much G's frame of a wearer changes on the glasses pixels between
      the two ê (same landmarks), as a share of how much the true frame changes;
    * ``d_real_above_off``, ``d_gap``: how often the meta-learned D (with w0 + ê) scores a
      wearer's real frame above the same frame without the glasses, and by how much.
    """
    if not is_int(identities) or identities < 2:
        raise ValueError(f"identities must be an integer of at least 2, got {identities!r}")
    if not is_int(k) or not 1 <= k <= FRAMES_PER_VIDEO // 2:
        raise ValueError(f"k must be an integer from 1 to {FRAMES_PER_VIDEO // 2}, got {k!r}")
    size = model.config.image_size
    device = next(model.generator.parameters()).device
    model.eval()
    test = SynthHeads("test", num_identities=identities, num_videos_per_identity=1,
                      frames_per_video=FRAMES_PER_VIDEO, size=size, seed=seed)
    tally = {name: [] for name in ("pixel_share", "error_share", "between", "g_response")}
    recall, recall_without, real, off, e_all, wears, e_with, e_without, pixels, trunk = (
        [] for _ in range(10))
    for identity in range(identities):
        episode = glasses_episode(test, identity, k)
        images = draw_landmarks(episode["source_points"], size)[None].to(device)
        targets = draw_landmarks(episode["points"], size).to(device)
        with torch.no_grad():
            e1 = model.embedder(episode["sources"][None].to(device), images)[1]
            drawn = model.generator(targets, e1.expand(len(targets), -1)).float().cpu()
            maps = model.embedder.trunk(torch.cat([episode["sources"].to(device), images[0]], 1))
        trunk.append([torch.nn.functional.adaptive_avg_pool2d(m.float(), min(4, m.shape[-1]))
                      .mean(0).flatten().cpu() for m in maps])
        e_all.append(e1[0].float().cpu())
        pixels.append(torch.nn.functional.adaptive_avg_pool2d(episode["sources"], 16).mean(0)
                      .flatten())
        wears.append(episode["wears"])
        truth, flipped = episode["truth"], episode["flipped"]
        if not episode["wears"]:
            recall_without.append(attribute_recall(drawn, truth, flipped))
            continue
        with torch.no_grad():
            e0 = model.embedder(episode["sources_flipped"][None].to(device), images)[1]
            drawn_off = model.generator(targets, e0.expand(len(targets), -1)).float().cpu()
        glasses = (truth - flipped).abs().amax(dim=1) > 0.03
        error = (drawn - truth).abs().mean(dim=1)
        to_truth = error[glasses].sum()
        to_off = (drawn - flipped).abs().mean(dim=1)[glasses].sum()
        tally["pixel_share"].append(float(glasses.float().mean()))
        tally["error_share"].append(float(error[glasses].sum() / error.sum().clamp_min(1e-12)))
        tally["between"].append(float(to_off / (to_truth + to_off).clamp_min(1e-12)))
        tally["g_response"].append(float((drawn - drawn_off).abs().mean(dim=1)[glasses].mean()
                                         / (truth - flipped).abs().mean(dim=1)[glasses].mean()))
        recall.append(attribute_recall(drawn, truth, flipped))
        real.append(discriminator_scores(model, truth, episode["points"], e1[0]))
        off.append(discriminator_scores(model, flipped, episode["points"], e1[0]))
        e_with.append(e1[0].float().cpu())
        e_without.append(e0[0].float().cpu())
    if not 2 <= len(e_with) < identities:
        raise ValueError(f"{len(e_with)} of the {identities} test people wear glasses: need at "
                         f"least 2 who do and 1 who does not, use more identities")
    e_with, e_without = torch.stack(e_with), torch.stack(e_without)
    others = ~torch.eye(len(e_with), dtype=torch.bool)

    def mean(hits):
        hits = torch.cat(hits)
        return float(hits[~hits.isnan()].mean())

    real, off = torch.cat(real), torch.cat(off)
    return {"people": len(e_with), "frames": len(real),
            **{name: float(np.mean(v)) for name, v in tally.items()},
            "recall": mean(recall), "recall_without": mean(recall_without),
            "embedding_ratio": float((e_with - e_without).norm(dim=1).median()
                                     / torch.cdist(e_with, e_with)[others].median()
                                     .clamp_min(1e-12)),
            "probe_auc": _leave_one_out_auc(torch.stack(e_all), torch.tensor(wears)),
            "pixel_probe_auc": _leave_one_out_auc(torch.stack(pixels), torch.tensor(wears)),
            "trunk_probe_auc": [_leave_one_out_auc(torch.stack(block), torch.tensor(wears))
                                for block in zip(*trunk)],
            "d_real_above_off": float((real > off).float().mean()),
            "d_gap": float((real - off).mean())}


def glasses_examples(model, count: int = 4, seed: int = 0, num_identities: int = 20,
                     k: int = 8) -> dict[str, torch.Tensor]:
    """The picture beside ``glasses_diagnosis``: the first ``count`` glasses-wearers among
    ``num_identities`` test people, each at its first target (``glasses_episode``), as
    ``{"truth", "without glasses", "FF", "FF, sources without glasses"}`` ``(count, 3, H,
    W)``: FF from the K sources and from the same K frames drawn without glasses."""
    if not is_int(count) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    test = SynthHeads("test", num_identities=num_identities, num_videos_per_identity=1,
                      frames_per_video=FRAMES_PER_VIDEO, size=model.config.image_size,
                      seed=seed)
    wearers = [i for i in range(num_identities) if test.attributes(i)["glasses"]][:count]
    if len(wearers) < count:
        raise ValueError(f"only {len(wearers)} of {num_identities} test people wear glasses: "
                         f"ask for fewer or use more identities")
    model.eval()
    out = {name: [] for name in ("truth", "without glasses", "FF",
                                 "FF, sources without glasses")}
    for wearer in wearers:
        episode = glasses_episode(test, wearer, k)
        target = episode["points"][:1]
        out["truth"].append(episode["truth"][:1])
        out["without glasses"].append(episode["flipped"][:1])
        for name, sources in (("FF", "sources"), ("FF, sources without glasses",
                                                  "sources_flipped")):
            out[name].append(few_shot(model, episode[sources], episode["source_points"],
                                      progress=False).render(target).cpu())
    return {name: torch.cat(frames) for name, frames in out.items()}


def _leave_one_out_auc(features: torch.Tensor, labels: torch.Tensor, alpha: float = 1.0) -> float:
    """ROC AUC of a ridge regression from ``features`` (N, D) to binary ``labels`` (N,), each
    person scored by the fit on all the others (standardised features, ``alpha`` x N ridge)."""
    x, y = features.double(), labels.double()
    scores = []
    for i in range(len(x)):
        keep = torch.arange(len(x)) != i
        mean, scale = x[keep].mean(0), x[keep].std(0) + 1e-6
        a = (x[keep] - mean) / scale
        weights = torch.linalg.solve(a.T @ a + alpha * len(a) * torch.eye(a.shape[1],
                                                                          dtype=a.dtype),
                                     a.T @ (y[keep] - y[keep].mean()))
        scores.append(float(((x[i] - mean) / scale) @ weights))
    return roc_auc(np.array(scores), labels.numpy().astype(bool))


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
    if not is_int(identities) or identities < 2:
        raise ValueError(f"need at least 2 identities to compare people, got {identities!r}")
    if not is_int(k) or not 1 <= k <= 32:
        raise ValueError(f"k must be an integer from 1 to 32 (the calm clip's frames), "
                         f"got {k!r}")
    model.eval()
    size = model.config.image_size
    device = next(model.generator.parameters()).device
    test = SynthHeads("test", num_identities=identities, num_videos_per_identity=1,
                      frames_per_video=FRAMES_PER_VIDEO, size=size, seed=seed)
    with_details, without, changes, pixels_with, pixels_without = [], [], [], [], []
    for identity in range(identities):
        source_pose, target_pose = calm_and_distant(test, identity, NUM_TARGETS)
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

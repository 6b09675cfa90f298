"""Studies built on the evaluation protocol (``fewshot_th.evaluation``): the pictures to put
beside a results table, why the generated mouth stays shut (chapter 8), and whether the
embedder sees the one-sided details at all."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from .checks import is_int, is_integer
from .data import SynthHeads
from .evaluation import (
    FRAMES_PER_VIDEO,
    NUM_TARGETS,
    calm_and_distant,
    copying_baselines,
    discriminator_scores,
    source_pose,
    target_pose,
)
from .finetune import few_shot
from .landmarks import draw_landmarks
from .metrics import (
    attribute_recall,
)
from .tables import TARGET_KINDS

__all__ = ["method_examples", "SPEAKING", "speaking_episode", "mouth_diagnosis",
           "embedding_detail_gap"]


def method_examples(model, identities=(0, 1, 2, 3), k: int = 8, kind: str = "same-video",
                    modes: tuple[str, ...] = ("ff", "ft"), seed: int = 0,
                    num_identities: int = 20) -> dict[str, torch.Tensor]:
    """The pictures to put beside a results table: for each test person in ``identities``,
    the target of ``kind`` where the mouth is open widest, drawn by every method of
    ``evaluate_few_shot`` (same protocol, K sources drawn for each person). Returns
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
                                progress=False)
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
    with the mouth shut (``SynthHeads.counterfactual``) and their landmarks."""
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
    sources, source_points = test.render(identity, test.pose(
        identity, np.linspace(0, half - 1, k).astype(int)), True)
    target_pose = test.pose(identity, chosen)
    truth, points = test.render(identity, target_pose, True)
    shut, shut_points = test.render(identity, replace(target_pose, mouth=0.0), True)
    return {"identity": identity, "sources": sources, "source_points": source_points,
            "truth": truth, "points": points, "shut": shut, "shut_points": shut_points}


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
    * ``recall``: mouth-open recall (``attribute_recall``).
    """
    if not is_int(identities) or identities < 1:
        raise ValueError(f"identities must be a positive integer, got {identities!r}")
    size = model.config.image_size
    model.eval()
    test = SynthHeads("test", num_identities=identities, num_videos_per_identity=1,
                      frames_per_video=FRAMES_PER_VIDEO, size=size, seed=seed)
    tally = {name: [] for name in ("pixel_share", "error_share", "g_response", "recall")}
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
        real.append(discriminator_scores(model, truth, episode["points"], person.e_hat))
        shut.append(discriminator_scores(model, counterfactual, episode["points"],
                                         person.e_hat))
    if not real:
        raise ValueError(f"none of the {identities} test people speaks with the mouth open "
                         f"at least {SPEAKING}: use more identities")
    recall = torch.cat(tally.pop("recall"))
    real, shut = torch.cat(real), torch.cat(shut)
    return {"frames": len(real), **{name: float(np.mean(v)) for name, v in tally.items()},
            "d_real_above_shut": float((real > shut).float().mean()),
            "d_gap": float((real - shut).mean()), "recall": float(recall[~recall.isnan()].mean())}


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

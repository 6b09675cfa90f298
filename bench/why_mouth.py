"""Why does the generator not open the mouth? Measurements on a trained model.

    python bench/why_mouth.py                              # the shipped synthheads-cpu
    python bench/why_mouth.py --checkpoint RUN/step-00003000.json

On held-out SynthHeads people, frames where the person speaks (mouth >= 0.4), K = 8
same-video sources; the "mouth pixels" are those where the frame and the same frame with the
mouth closed (``SynthHeads.counterfactual``) differ by more than 0.03:

1. **Loss**: their share of the frame, and their share of the model's L1 error.
2. **G's response**: how much G's frame changes on them when the landmark image opens the
   mouth (same ê), as a share of how much the true frame changes.
3. **The down path**: can the mouth opening be read off G's bottleneck features (after its
   down-sampling blocks)? R² of a ridge regression, fitted on 20 people and tested on 20
   others, beside the same regression on the landmark image itself.
4. **D**: does the meta-learned D (with w0 + ê) score the real frame above the same frame
   with the mouth closed, whose landmarks say open?
5. **An intervention**: G alone (E fixed) trained on for ``--steps`` steps of meta-learning
   episodes with pixel L1, once as the recipe weighs pixels and once with the mouth pixels
   weighted ``--weight`` times more; mouth-open recall before and after each.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fewshot_th.data import SynthHeads
from fewshot_th.evaluation import discriminator_scores
from fewshot_th.landmarks import draw_landmarks
from fewshot_th.metrics import attribute_recall
from fewshot_th.pretrained import load_pretrained, load_trained

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

SPEAKING = 0.4


def speaking_frames(ds: SynthHeads, identities, k: int = 8, per_person: int = 4,
                    speaking: bool = True):
    """For each person: K sources from the first half of the video, the ``per_person`` most
    open-mouthed frames of the second half (``speaking``; else evenly spaced frames, open
    or not), their mouth-closed counterfactuals and poses."""
    out = []
    for identity in identities:
        pose = ds.pose(identity)
        half = ds.frames_per_video // 2
        if speaking:
            order = half + np.argsort(-pose.mouth[half:])[:per_person]
            order = order[pose.mouth[order] >= SPEAKING]
        else:
            order = np.linspace(half, ds.frames_per_video - 1, per_person).astype(int)
        if len(order) == 0:
            continue
        sources = np.linspace(0, half - 1, k).astype(int)
        src, src_points = ds.render(identity, ds.pose(identity, sources), True)
        target_pose = ds.pose(identity, np.sort(order))
        truth, points = ds.render(identity, target_pose, True)
        closed_pose = replace(target_pose, mouth=0.0)
        closed, closed_points = ds.render(identity, closed_pose, True)
        out.append({"identity": identity, "sources": src, "source_points": src_points,
                    "truth": truth, "points": points, "closed": closed,
                    "closed_points": closed_points, "mouth": target_pose.mouth})
    return out


def mouth_mask(truth: torch.Tensor, closed: torch.Tensor) -> torch.Tensor:
    return (truth - closed).abs().amax(dim=1) > 0.03


def e_hat_of(model, person) -> torch.Tensor:
    size = model.config.image_size
    with torch.no_grad():
        _, e_hat = model.embedder(person["sources"][None],
                                  draw_landmarks(person["source_points"], size)[None])
    return e_hat[0]


def generate(G, e_hat, points, size) -> torch.Tensor:
    with torch.no_grad():
        return G(draw_landmarks(points, size), e_hat.expand(len(points), -1)).float()


def mouth_recall(model, G, people) -> float:
    size = model.config.image_size
    hits = torch.cat([attribute_recall(generate(G, p["e_hat"], p["points"], size), p["truth"],
                                       p["closed"]) for p in people])
    return float(hits[~hits.isnan()].mean())


def bottleneck(G, landmark_images) -> torch.Tensor:
    """G's features after its down-sampling blocks (before any AdaIN), pooled to 4 x 4."""
    with torch.no_grad():
        x = landmark_images
        for block in G.down:
            x = block(x)
    return torch.nn.functional.adaptive_avg_pool2d(x.float(), 4).flatten(1)


def ridge_r2(train_x, train_y, test_x, test_y, alpha: float = 1.0) -> float:
    mean, scale = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = (train_x - mean) / scale, (test_x - mean) / scale
    weights = torch.linalg.solve(a.T @ a + alpha * len(a) * torch.eye(a.shape[1]),
                                 a.T @ (train_y - train_y.mean()))
    prediction = b @ weights + train_y.mean()
    return float(1 - ((prediction - test_y) ** 2).sum() / ((test_y - test_y.mean()) ** 2).sum())


def probe(model, seed: int) -> dict:
    """R² of the mouth opening from G's bottleneck and from the landmark image."""
    size = model.config.image_size
    data = {}
    for split, first in (("fit", 0), ("test", 20)):
        ds = SynthHeads("train", num_identities=first + 20, num_videos_per_identity=1,
                        frames_per_video=32, size=size, seed=seed + 1)
        points, mouth = [], []
        for identity in range(first, first + 20):
            pose = ds.pose(identity)
            points.append(ds.render(identity, pose, True)[1])
            mouth.append(torch.from_numpy(pose.mouth.copy()))
        images = draw_landmarks(torch.cat(points), size)
        data[split] = (bottleneck(model.generator, images),
                       torch.nn.functional.adaptive_avg_pool2d(images, 16).flatten(1),
                       torch.cat(mouth).float())
    return {name: ridge_r2(data["fit"][i], data["fit"][2], data["test"][i], data["test"][2])
            for i, name in ((0, "bottleneck"), (1, "landmark image"))}


def train_g(model, people_for_training, steps: int, weight: float, seed: int):
    """G alone, trained on with pixel L1 x 10 (E fixed), mouth pixels weighted ``weight``."""
    G = copy.deepcopy(model.generator).train()
    optimizer = torch.optim.Adam(G.parameters(), lr=4e-4, betas=(0.5, 0.999))
    size = model.config.image_size
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        batch = [people_for_training[i] for i in rng.choice(len(people_for_training), 8)]
        rows = [int(rng.integers(len(p["truth"]))) for p in batch]
        truth = torch.stack([p["truth"][r] for p, r in zip(batch, rows)])
        closed = torch.stack([p["closed"][r] for p, r in zip(batch, rows)])
        images = draw_landmarks(torch.stack([p["points"][r] for p, r in zip(batch, rows)]), size)
        e_hat = torch.stack([p["e_hat"] for p in batch])
        pixel_weight = 1 + (weight - 1) * mouth_mask(truth, closed)[:, None].float()
        loss = 10 * ((G(images, e_hat) - truth).abs() * pixel_weight).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return G.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", default="synthheads-cpu")
    parser.add_argument("--checkpoint", help="a training checkpoint (.json) instead")
    parser.add_argument("--identities", type=int, default=20, help="held-out people")
    parser.add_argument("--steps", type=int, default=300, help="steps of the intervention")
    parser.add_argument("--weight", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the numbers as JSON here")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    model = load_trained(args.checkpoint) if args.checkpoint else load_pretrained(args.pretrained)
    model.eval()
    size = model.config.image_size
    test = SynthHeads("test", num_identities=args.identities, num_videos_per_identity=1,
                      frames_per_video=64, size=size, seed=args.seed)
    people = speaking_frames(test, range(args.identities))
    for person in people:
        person["e_hat"] = e_hat_of(model, person)
    shares, errors, responses = [], [], []
    d_real, d_closed = [], []
    for p in people:
        mask = mouth_mask(p["truth"], p["closed"])
        opened = generate(model.generator, p["e_hat"], p["points"], size)
        shut = generate(model.generator, p["e_hat"], p["closed_points"], size)
        error = (opened - p["truth"]).abs().mean(1)
        shares.append(float(mask.float().mean()))
        errors.append(float(error[mask].sum() / error.sum()))
        responses.append(float((opened - shut).abs().mean(1)[mask].mean()
                               / (p["truth"] - p["closed"]).abs().mean(1)[mask].mean()))
        d_real.append(discriminator_scores(model, p["truth"], p["points"], p["e_hat"]))
        d_closed.append(discriminator_scores(model, p["closed"], p["points"], p["e_hat"]))
    real, closed = torch.cat(d_real), torch.cat(d_closed)
    results = {
        "model": args.checkpoint or args.pretrained, "speaking_frames": sum(len(p["truth"])
                                                                         for p in people),
        "mouth_pixel_share": float(np.mean(shares)),
        "mouth_error_share": float(np.mean(errors)),
        "g_response": float(np.mean(responses)),
        "probe_r2": probe(model, args.seed),
        "d_real_above_closed": float((real > closed).float().mean()),
        "d_score_gap": float((real - closed).mean()),
        "mouth_recall_before": mouth_recall(model, model.generator, people),
    }
    train_people = speaking_frames(
        SynthHeads("train", num_identities=200, num_videos_per_identity=1, frames_per_video=64,
                   size=size, seed=args.seed + 2), range(200), per_person=8, speaking=False)
    for person in train_people:
        person["e_hat"] = e_hat_of(model, person)
    for weight in (1.0, args.weight):
        G = train_g(model, train_people, args.steps, weight, args.seed)
        results[f"mouth_recall_after_{args.steps}_steps_weight_{weight:g}"] = \
            mouth_recall(model, G, people)
    results["minutes"] = round((time.perf_counter() - start) / 60, 1)
    results["machine"] = machine()
    print(json.dumps(results, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

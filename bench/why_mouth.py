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
5. **Is the landmark network fooled?** The inner-lip opening (px) that the ``synthlandmarks``
   network finds in the true frames, in the same frames with the mouth shut and in G's
   frames, beside where G's frames lie between shut (0) and open (1) on the mouth pixels.
6. **An intervention**: G alone (E fixed) trained on for ``--steps`` steps of meta-learning
   episodes with pixel L1, once as the recipe weighs pixels and once with the mouth pixels
   weighted ``--weight`` times more, with ``--landmark-term W`` once more with pixel L1
   plus W x the ``synthlandmarks`` content term, and with ``--mouth-term W`` with pixel L1
   plus W x the ``mouth`` content term (``losses.mouth_region``: found from the target's
   landmarks, no counterfactual); mouth-open recall before and after each.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fewshot_th.data import SynthHeads
from fewshot_th.diagnosis import mouth_diagnosis, speaking_episode
from fewshot_th.landmark_net import load_landmark_net
from fewshot_th.landmarks import draw_landmarks
from fewshot_th.losses import content_loss_from
from fewshot_th.metrics import attribute_recall
from fewshot_th.pretrained import load_pretrained, load_trained

sys.path.insert(0, str(Path(__file__).parent))
from common import report, weighted_pixel_step  # noqa: E402


def drawn(G, person: dict, size: int) -> torch.Tensor:
    """G's frames of one person's speaking targets, from their landmarks and ê."""
    with torch.no_grad():
        return G(draw_landmarks(person["points"], size),
                 person["e_hat"].expand(len(person["points"]), -1)).float()


def mouth_recall(model, G, people) -> float:
    size = model.config.image_size
    hits = torch.cat([attribute_recall(drawn(G, p, size), p["truth"], p["shut"])
                      for p in people])
    return float(hits[~hits.isnan()].mean())


def landmark_net_opening(model, people) -> dict:
    """The inner-lip opening (px) the landmark network of the ``synthlandmarks`` term finds
    in the true frames, the shut ones and G's, and where G's frames lie on the mouth pixels
    between the shut (0) and the true frame (1)."""
    net = load_landmark_net().eval()
    size = model.config.image_size

    def opening(frames):
        with torch.no_grad():
            points = (net(frames.float()).view(-1, 68, 2) + 1) * size / 2
        return float((points[:, 65:68, 1].mean(1) - points[:, 61:64, 1].mean(1)).mean())

    truth = torch.cat([p["truth"] for p in people])
    shut = torch.cat([p["shut"] for p in people])
    generated = torch.cat([drawn(model.generator, p, size) for p in people])
    mouth = (truth - shut).abs().amax(dim=1, keepdim=True) > 0.03
    to_truth = ((generated - truth).abs() * mouth).sum((1, 2, 3))
    to_shut = ((generated - shut).abs() * mouth).sum((1, 2, 3))
    return {"true": opening(truth), "shut": opening(shut), "generated": opening(generated),
            "generated_pixels_between_shut_and_open": float((to_shut / (to_truth + to_shut))
                                                            .mean())}


def with_e_hat(model, people: list[dict]) -> list[dict]:
    size = model.config.image_size
    for person in people:
        with torch.no_grad():
            person["e_hat"] = model.embedder(
                person["sources"][None], draw_landmarks(person["source_points"], size)[None])[1][0]
    return people


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


def train_g(model, people_for_training, steps: int, weight: float, seed: int,
            landmark_term: float = 0.0, mouth_term: float = 0.0):
    """G alone, trained on with pixel L1 x 10 (E fixed), mouth pixels weighted ``weight``,
    plus ``landmark_term`` x the ``synthlandmarks`` content term when it is not 0, plus
    ``mouth_term`` x the ``mouth`` content term when it is not 0."""
    terms = tuple((name, weight) for name, weight in (("synthlandmarks", landmark_term),
                                                      ("mouth", mouth_term)) if weight)
    extra = content_loss_from(terms) if terms else None
    G = copy.deepcopy(model.generator).train()
    optimizer = torch.optim.Adam(G.parameters(), lr=4e-4, betas=(0.5, 0.999))
    size = model.config.image_size
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        batch = [people_for_training[i] for i in rng.choice(len(people_for_training), 8)]
        rows = [int(rng.integers(len(p["truth"]))) for p in batch]
        truth = torch.stack([p["truth"][r] for p, r in zip(batch, rows)])
        closed = torch.stack([p["shut"][r] for p, r in zip(batch, rows)])
        points = torch.stack([p["points"][r] for p, r in zip(batch, rows)])
        images = draw_landmarks(points, size)
        frames = G(images, torch.stack([p["e_hat"] for p in batch]))
        weighted_pixel_step(optimizer, frames, truth, closed, weight, extra, points)
    return G.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", default="synthheads-cpu")
    parser.add_argument("--checkpoint", help="a training checkpoint (.json) instead")
    parser.add_argument("--identities", type=int, default=20, help="held-out people")
    parser.add_argument("--steps", type=int, default=300, help="steps of the intervention")
    parser.add_argument("--weight", type=float, default=10.0)
    parser.add_argument("--landmark-term", type=float, default=0.0,
                        help="also train G with pixel L1 plus this weight x the synthlandmarks "
                             "content term (the landmarks the SynthHeads landmark network "
                             "finds in the generated and the real frame)")
    parser.add_argument("--mouth-term", type=float, default=0.0,
                        help="also train G with pixel L1 plus this weight x the mouth content "
                             "term (the pixels around the target's lips and chin, weighed by "
                             "how far its landmarks open the mouth)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the numbers as JSON here")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    model = load_trained(args.checkpoint) if args.checkpoint else load_pretrained(args.pretrained)
    model.eval()
    size = model.config.image_size
    results = {"model": args.checkpoint or args.pretrained,
               **mouth_diagnosis(model, args.identities, seed=args.seed),
               "probe_r2": probe(model, args.seed)}
    test = SynthHeads("test", num_identities=args.identities, num_videos_per_identity=1,
                      frames_per_video=64, size=size, seed=args.seed)
    people = with_e_hat(model, [e for i in range(args.identities)
                                if (e := speaking_episode(test, i)) is not None])
    results["landmark_net_opening_px"] = landmark_net_opening(model, people)
    train = SynthHeads("train", num_identities=200, num_videos_per_identity=1,
                       frames_per_video=64, size=size, seed=args.seed + 2)
    train_people = with_e_hat(model, [speaking_episode(train, i, per_person=8, speaking=False)
                                      for i in range(200)])
    for weight in (1.0, args.weight):
        G = train_g(model, train_people, args.steps, weight, args.seed)
        results[f"mouth_recall_after_{args.steps}_steps_weight_{weight:g}"] = \
            mouth_recall(model, G, people)
    if args.landmark_term:
        G = train_g(model, train_people, args.steps, 1.0, args.seed, args.landmark_term)
        results[f"mouth_recall_after_{args.steps}_steps_synthlandmarks_{args.landmark_term:g}"] \
            = mouth_recall(model, G, people)
    if args.mouth_term:
        G = train_g(model, train_people, args.steps, 1.0, args.seed, mouth_term=args.mouth_term)
        results[f"mouth_recall_after_{args.steps}_steps_mouth_{args.mouth_term:g}"] \
            = mouth_recall(model, G, people)
    report(results, start, args.out)


if __name__ == "__main__":
    main()

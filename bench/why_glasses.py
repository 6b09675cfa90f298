"""Why does the generator not draw the glasses? Measurements on a trained model.

    python bench/why_glasses.py                              # the shipped synthheads-cpu
    python bench/why_glasses.py --checkpoint RUN/step-00006000.json

On held-out SynthHeads people who wear glasses (a quarter of them), K = 8 same-video sources
from the first half of the video and 4 targets from its second half; the "glasses pixels" are
those where a frame and the same frame drawn without the glasses differ by more than 0.03.
``fewshot_th.diagnosis.glasses_diagnosis`` measures

1. **Loss**: their share of the frame, and of the model's L1 error.
2. **E**: how far ê moves when the K sources are drawn without the glasses, against the
   distance between two people's ê; whether a linear read-out of ê, of the mean source
   frame's pixels and of each of E's blocks before its global sum pooling tells who wears
   glasses (leave-one-out ROC AUC over all the people).
3. **G**: how much G's frame changes on those pixels between the two ê.
4. **D**: does the meta-learned D (with w0 + ê) score the real frame above the same frame
   without the glasses?

and then **interventions**: E and G (D left out) trained on together for ``--steps`` steps of
meta-learning episodes of 200 training people (``--people``) with pixel L1, once for each of
``--weights``: the glasses pixels (where glasses are, or would be on a person who wears none)
weighted that many times more (1: the recipe's weighting; above 1 a diagnosis, since a real
video has no frame with its glasses switched to find them); with ``--eyes-term W`` once more
with pixel L1 plus W x the ``eyes`` content term (the box around the target's eyes, found
from its landmarks alone); the diagnosis again after each (and every ``--every`` steps).
``--supervised-e STEPS`` also trains E alone, with a linear head on ê told who wears glasses:
can E learn to see them when asked directly? ``--pooling weighted`` first gives E a learned
weight per channel and position before its sum pooling (``ModelConfig.embedder_pooling``; all
ones, so the same model until the interventions train them): is the sum pooling where the
glasses are lost?
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fewshot_th.config import EMBEDDER_POOLING, training
from fewshot_th.data import SynthHeads
from fewshot_th.diagnosis import glasses_diagnosis, glasses_episode, glasses_examples
from fewshot_th.identity import roc_auc
from fewshot_th.landmarks import draw_landmarks
from fewshot_th.losses import content_loss_from
from fewshot_th.meta import TalkingHeadModel
from fewshot_th.nn.embedder import Embedder, load_embedder
from fewshot_th.pretrained import load_pretrained, load_trained

sys.path.insert(0, str(Path(__file__).parent))
from common import report, weighted_pixel_step  # noqa: E402

RECIPE = training("cpu")  # the interventions' Adam: its lr_eg (4e-4) and betas


def training_episodes(size: int, people: int, seed: int) -> list[dict]:
    """Every training person's K = 8 sources and 4 targets, the targets also drawn with the
    glasses switched (``glasses_episode``; the sources drawn switched are not kept)."""
    train = SynthHeads("train", num_identities=people, num_videos_per_identity=1,
                       frames_per_video=64, size=size, seed=seed)
    episodes = [glasses_episode(train, identity) for identity in range(people)]
    for episode in episodes:
        del episode["sources_flipped"]
    return episodes


def adam(embedder, other: torch.nn.Module, pooling_lr: float | None = None):
    """Adam over E's and ``other``'s parameters at the ``cpu`` profile's lr 4e-4 and betas;
    E's position weights (``embedder_pooling="weighted"``), if it has them, at ``pooling_lr``
    (None: 4e-4 too)."""
    pooling = [p for name, p in embedder.named_parameters() if name == "position_weights"]
    rest = [p for name, p in embedder.named_parameters() if name != "position_weights"]
    groups = [{"params": [*rest, *other.parameters()]}]
    if pooling:
        groups.append({"params": pooling, "lr": pooling_lr or RECIPE.lr_eg})
    return torch.optim.Adam(groups, lr=RECIPE.lr_eg, betas=RECIPE.betas)


def train_eg(model, episodes: list[dict], steps: int, weight: float, seed: int,
             eyes_term: float = 0.0, batch_size: int = 8, every: int = 0, report=None,
             pooling_lr: float | None = None):
    """A copy of ``model`` whose E and G trained on for ``steps`` steps (Adam, lr 4e-4, the
    ``cpu`` profile's rate; ``pooling_lr`` for E's position weights) with pixel L1 x 10, the
    glasses pixels (where the target and the same frame with the glasses switched differ:
    worn or not) weighted ``weight``, plus ``eyes_term`` x the ``eyes`` content term when it
    is not 0; ``report(step, model)`` is called every ``every`` steps (0: never)."""
    extra = content_loss_from((("eyes", eyes_term),)) if eyes_term else None
    trained = copy.deepcopy(model)
    E, G = trained.embedder.train(), trained.generator.train()
    optimizer = adam(E, G, pooling_lr)
    size = model.config.image_size
    rng = np.random.default_rng(seed)
    for step in range(1, steps + 1):
        batch = [episodes[i] for i in rng.choice(len(episodes), batch_size)]
        rows = [int(rng.integers(len(e["truth"]))) for e in batch]
        truth = torch.stack([e["truth"][r] for e, r in zip(batch, rows)])
        flipped = torch.stack([e["flipped"][r] for e, r in zip(batch, rows)])
        points = torch.stack([e["points"][r] for e, r in zip(batch, rows)])
        sources = torch.stack([e["sources"] for e in batch])
        source_images = torch.stack([draw_landmarks(e["source_points"], size) for e in batch])
        frames = G(draw_landmarks(points, size), E(sources, source_images)[1])
        weighted_pixel_step(optimizer, frames, truth, flipped, weight, extra, points)
        if every and step % every == 0 and step < steps:
            report(step, trained.eval())
            E.train(), G.train()
    return trained.eval()


def supervised_e(model, episodes: list[dict], steps: int, seed: int, batch_size: int = 16,
                 pooling_lr: float | None = None):
    """A copy of ``model`` whose E trained on alone for ``steps`` steps, with a linear head on
    ê told who wears glasses (logistic loss, Adam at lr 4e-4; ``pooling_lr`` for E's position
    weights): can E's architecture see them when it is asked to? Returns the model and the
    head."""
    trained = copy.deepcopy(model)
    E = trained.embedder.train()
    head = torch.nn.Linear(model.config.embedding_size, 1)
    optimizer = adam(E, head, pooling_lr)
    size = model.config.image_size
    rng = np.random.default_rng(seed)
    wears = torch.tensor([float(e["wears"]) for e in episodes])
    for _ in range(steps):
        chosen = rng.choice(len(episodes), batch_size)
        sources = torch.stack([episodes[i]["sources"] for i in chosen])
        images = torch.stack([draw_landmarks(episodes[i]["source_points"], size)
                              for i in chosen])
        logits = head(E(sources, images)[1]).squeeze(1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, wears[chosen])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return trained.eval(), head


def head_auc(model, head, episodes: list[dict]) -> float:
    """ROC AUC of ``supervised_e``'s head on ``episodes``' people (their K sources' ê)."""
    size = model.config.image_size
    with torch.no_grad():
        scores = [float(head(model.embedder(e["sources"][None], draw_landmarks(
            e["source_points"], size)[None])[1])) for e in episodes]
    return roc_auc(scores, [e["wears"] for e in episodes])


def figure(model, path: Path, seed: int = 0) -> None:
    """Chapter 8's picture: the four wearers among 20 test people, the truth, the same
    frame without glasses, FF from the K sources, FF from the same sources without glasses."""
    import matplotlib

    matplotlib.use("Agg")
    from fewshot_th.plot import show_methods

    show_methods(glasses_examples(model, seed=seed), size=1.8).savefig(path, dpi=100)


def source_key(frames: torch.Tensor) -> bytes:
    """A video's K source frames, as ``OracleEmbedder`` recognises them."""
    return hashlib.sha1(frames.detach().float().cpu().contiguous().numpy().tobytes()).digest()


class OracleEmbedder(torch.nn.Module):
    """E, with who wears glasses written into ê: ê + ``direction`` for K sources that show
    glasses. ``known`` maps ``source_key(sources)`` to whether they show glasses (every
    episode the oracle will be asked about, drawn as it is and with the glasses switched);
    sources it does not know raise ``KeyError``. Would G draw the glasses if ê said who wears
    them?"""

    def __init__(self, embedder, known: dict[bytes, bool], direction: torch.Tensor):
        super().__init__()
        self.inner, self.known = embedder, known
        self.config, self.trunk = embedder.config, embedder.trunk
        self.register_buffer("direction", direction)

    def train(self, mode: bool = True):
        """E stays in eval mode: frozen, its spectral norms' power iterations too."""
        super().train(mode)
        self.inner.eval()
        return self

    def forward(self, frames: torch.Tensor, landmarks: torch.Tensor):
        e, e_hat = self.inner(frames, landmarks)
        shows = torch.tensor([self.known[source_key(f)] for f in frames], dtype=e_hat.dtype,
                             device=e_hat.device)
        return e, e_hat + shows[:, None] * self.direction.to(e_hat.dtype)


def with_oracle(model: TalkingHeadModel, episodes: list[dict], identities: int,
                seed: int) -> TalkingHeadModel:
    """``model`` with an ``OracleEmbedder`` whose E is frozen, for the training ``episodes``
    and the ``identities`` held-out people of ``glasses_diagnosis(seed=seed)``: a direction of
    ê-space (random, non-negative like ê) as long as the median distance between two training
    people's ê is added for sources that show glasses."""
    size = model.config.image_size
    test = SynthHeads("test", num_identities=identities, num_videos_per_identity=1,
                      frames_per_video=64, size=size, seed=seed)
    known = {source_key(e["sources"]): e["wears"] for e in episodes}
    for identity in range(identities):
        episode = glasses_episode(test, identity)
        known[source_key(episode["sources"])] = episode["wears"]
        known[source_key(episode["sources_flipped"])] = not episode["wears"]
    with torch.no_grad():
        e_hat = torch.cat([model.embedder(e["sources"][None], draw_landmarks(
            e["source_points"], size)[None])[1] for e in episodes[:64]]).float()
    distance = torch.cdist(e_hat, e_hat)[~torch.eye(len(e_hat), dtype=torch.bool)].median()
    direction = torch.rand(model.config.embedding_size,
                           generator=torch.Generator().manual_seed(seed))
    embedder = copy.deepcopy(model.embedder).requires_grad_(False)
    oracle = OracleEmbedder(embedder, known, direction * distance / direction.norm())
    return TalkingHeadModel(model.config, oracle, model.generator, model.discriminator).eval()


def with_weighted_pooling(model: TalkingHeadModel) -> TalkingHeadModel:
    """``model`` with an E that weights each channel and position before its sum pooling,
    its trunk copied and its weights all ones: the same ê until they are trained."""
    config = model.config.with_changes(embedder_pooling="weighted")
    converted = TalkingHeadModel(config, Embedder(config), model.generator, model.discriminator)
    load_embedder(converted.embedder, model.embedder.state_dict())
    return converted.eval()


def position_weights(model: TalkingHeadModel) -> dict:
    """How far E's position weights (``embedder_pooling="weighted"``) moved from one: the mean
    of |w - 1| over all of them, and at each position of the last map (rows top to bottom,
    averaged over the channels). Nothing for the paper's sum pooling."""
    if model.config.embedder_pooling != "weighted":
        return {}
    embedder = getattr(model.embedder, "inner", model.embedder)  # under an OracleEmbedder
    moved = (embedder.position_weights.detach() - 1).abs()
    return {"position_weights_moved": float(moved.mean()),
            "position_weights_moved_by_position": moved.mean(dim=0).tolist()}


def rounded(numbers: dict) -> dict:
    def round_all(value):
        return (round(value, 4) if isinstance(value, float)
                else [round_all(x) for x in value] if isinstance(value, list) else value)

    return {k: round_all(v) for k, v in numbers.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", default="synthheads-cpu")
    parser.add_argument("--checkpoint", help="a training checkpoint (.json) instead")
    parser.add_argument("--identities", type=int, default=80,
                        help="held-out people (a quarter of them wear glasses)")
    parser.add_argument("--steps", type=int, default=300, help="steps of each intervention")
    parser.add_argument("--every", type=int, default=0,
                        help="also measure every this many steps of each intervention")
    parser.add_argument("--weights", type=float, nargs="*", default=[1.0, 10.0],
                        help="train E and G once for each weight of the glasses pixels")
    parser.add_argument("--eyes-term", type=float, default=0.0,
                        help="also train E and G with pixel L1 plus this weight x the eyes "
                             "content term (the pixels around the target's eyes)")
    parser.add_argument("--supervised-e", type=int, default=0, metavar="STEPS",
                        help="also train E alone this many steps to tell who wears glasses")
    parser.add_argument("--people", type=int, default=200,
                        help="training people the interventions draw their episodes from")
    parser.add_argument("--pooling", choices=EMBEDDER_POOLING, default="sum",
                        help="E's pooling in the interventions: weighted adds a learned weight "
                             "per channel and position (ones at the start) to the sum")
    parser.add_argument("--pooling-lr", type=float,
                        help="Adam's learning rate for E's position weights (default: 4e-4, "
                             "as for every other weight)")
    parser.add_argument("--oracle", action="store_true",
                        help="write who wears glasses into ê (E frozen), so that the "
                             "interventions train G alone: would G draw them if ê said so?")
    parser.add_argument("--figure", type=Path,
                        help="also save a picture of four wearers drawn FF here (.png)")
    parser.add_argument("--figure-after", type=Path,
                        help="... and one after the last intervention here (.png)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the numbers as JSON here")
    args = parser.parse_args()
    if args.steps < 1 or args.people < 2 or args.every < 0 or args.supervised_e < 0 or any(
            w <= 0 for w in args.weights) or (args.pooling_lr is not None and args.pooling_lr <= 0):
        parser.error("--steps must be positive, --people at least 2, --every and "
                     "--supervised-e >= 0, --weights and --pooling-lr positive")
    if args.oracle and args.supervised_e:
        parser.error("--oracle freezes E: it does not go with --supervised-e")
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    model = load_trained(args.checkpoint) if args.checkpoint else load_pretrained(args.pretrained)
    model.eval()
    if args.pooling == "weighted" and model.config.embedder_pooling == "sum":
        model = with_weighted_pooling(model)

    def diagnose(m) -> dict:
        return rounded({**glasses_diagnosis(m, args.identities, seed=args.seed),
                        **position_weights(m)})

    episodes = training_episodes(model.config.image_size, args.people, args.seed + 2)
    if args.oracle:
        model = with_oracle(model, episodes, args.identities, args.seed)
    results = {"model": args.checkpoint or args.pretrained,
               "embedder_pooling": model.config.embedder_pooling,
               "pooling_lr": args.pooling_lr or RECIPE.lr_eg, "oracle": args.oracle,
               "before": diagnose(model)}
    print("before", json.dumps(results["before"]), flush=True)
    if args.figure:
        figure(model, args.figure, args.seed)
    if args.supervised_e:
        trained, head = supervised_e(model, episodes, args.supervised_e, args.seed,
                                     pooling_lr=args.pooling_lr)
        test = SynthHeads("test", num_identities=args.identities, num_videos_per_identity=1,
                          frames_per_video=64, size=model.config.image_size, seed=args.seed)
        told = {"head_auc_on_its_training_people": head_auc(trained, head, episodes),
                "head_auc_on_test_people": head_auc(trained, head, [
                    glasses_episode(test, i) for i in range(args.identities)]),
                **diagnose(trained)}
        results[f"after_{args.supervised_e}_steps_e_told_who_wears_glasses"] = rounded(told)
        print("supervised E", json.dumps(rounded(told)), flush=True)
    runs = [(f"weight_{w:g}", w, 0.0) for w in args.weights]
    if args.eyes_term:
        runs.append((f"eyes_{args.eyes_term:g}", 1.0, args.eyes_term))
    for name, weight, eyes in runs:
        torch.manual_seed(args.seed)

        def measure(step, m, name=name):
            results[f"after_{step}_steps_{name}"] = diagnose(m)
            print(step, name, json.dumps(results[f"after_{step}_steps_{name}"]), flush=True)

        trained = train_eg(model, episodes, args.steps, weight, args.seed, eyes,
                           every=args.every, report=measure, pooling_lr=args.pooling_lr)
        measure(args.steps, trained)
    if args.figure_after and runs:
        figure(trained, args.figure_after, args.seed)
    report(results, start, args.out)


if __name__ == "__main__":
    main()

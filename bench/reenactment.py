"""Identity leakage in puppeteering, and what landmark adaptation changes (chapter 9).

Every one of ``--people`` SynthHeads test people is driven by ``--drivers`` others (person a
by a + 7, a + 14, ... modulo the number of people) and by another video of their own, with
raw landmarks, landmarks adapted by each method of ``fewshot_th.adaptation`` (Procrustes, and
the landmark model learned on SynthHeads training people) and true landmarks; scored against
the exact frames of the person in the driver's poses (``fewshot_th.reenact.reenactment_scores``).
Prints a markdown table, the paired differences adapted - raw, for each method, with their
standard errors, and the attribute recall of every kind of driving (does the frame show A's
open mouth, glasses, colours and details, rather than the counterfactual with that one thing
changed, the colours taken from B?).

    python bench/reenactment.py --people 20 --drivers 3 --modes ff
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from fewshot_th.data import SynthHeads
from fewshot_th.data.synthetic import COUNTERFACTUALS
from fewshot_th.finetune import few_shot
from fewshot_th.metrics import paired_gain, ssim
from fewshot_th.pretrained import load_pretrained
from fewshot_th.reenact import (
    ADAPTATIONS,
    adapt_landmarks,
    cross_episode,
    pooled_recall,
    reenactment_scores,
)
from fewshot_th.tables import markdown_table

METRICS = ("landmark_error", "ssim", "l1", "csim_source", "csim_driver")


def jaw_experiment(model, videos, pairs) -> str:
    """FF SSIM with B's raw track, with its jaw points replaced by A's true ones, and with A's
    true track."""
    scores = {"raw": [], "raw with A's true jaw": [], "true": []}
    for source, driver in pairs:
        episode = cross_episode(videos, source, driver)
        person = few_shot(model, episode["sources"], episode["source_points"], progress=False)
        raw, truth = episode["driver_points"].clone(), episode["truth_points"]
        jaw = raw.clone()
        jaw[:, :17] = truth[:, :17]
        for name, track in (("raw", raw), ("raw with A's true jaw", jaw), ("true", truth)):
            scores[name].append(float(ssim(person.render(track), episode["truth"]).mean()))
    return "FF SSIM: " + ", ".join(f"{name} {np.mean(v):.4f}" for name, v in scores.items())


def figure(model, videos, pairs, path: str, frame: int = 48) -> None:
    """The pictures beside the table: for each pair, frame ``frame`` of B's video drawn for A
    (FF) from B's raw, Procrustes-adapted, learned-adapted and A's true landmarks."""
    import matplotlib

    matplotlib.use("Agg")
    from fewshot_th.plot import show_methods

    rows = {"exact A in B's pose": [], "B's raw landmarks": [], "procrustes": [],
            "learned": [], "A's true landmarks": []}
    for source, driver in pairs:
        episode = cross_episode(videos, source, driver, frames=[frame])
        person = few_shot(model, episode["sources"], episode["source_points"], progress=False)
        rows["exact A in B's pose"].append(episode["truth"])
        rows["B's raw landmarks"].append(person.render(episode["driver_points"]))
        for method in ADAPTATIONS:
            track = adapt_landmarks(episode["driver_points"], episode["driver_reference"],
                                    episode["source_points"], method=method)
            rows[method].append(person.render(track))
        rows["A's true landmarks"].append(person.render(episode["truth_points"]))
    fig = show_methods({name: torch.cat(frames) for name, frames in rows.items()}, size=1.6,
                       suptitle=f"FF, K = 8, frame {frame} of the driver: pairs (A, B) = "
                                + ", ".join(f"({a}, {b})" for a, b in pairs))
    fig.savefig(path, dpi=80, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", default="synthheads-cpu")
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--drivers", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=["ff", "ft"], default=["ff"])
    parser.add_argument("--json", help="also write the per-pair scores to this file")
    parser.add_argument("--figure", help="also draw the first six pairs' frames to this PNG")
    parser.add_argument("--jaw", action="store_true",
                        help="also score B's raw track with only its 17 jaw points replaced by "
                             "A's true ones (FF): how much of the gap the jaw line is")
    args = parser.parse_args()
    if not 2 <= args.people <= 100 or not 1 <= args.drivers < args.people:
        parser.error("--people must be 2-100 and --drivers between 1 and --people - 1")
    model = load_pretrained(args.pretrained)
    videos = SynthHeads("test", num_identities=args.people, num_videos_per_identity=2,
                        frames_per_video=64, size=model.config.image_size, seed=0)
    shifts = [1 + (7 * (d + 1) - 1) % (args.people - 1) for d in range(args.drivers)]
    cross = [(a, (a + shift) % args.people) for shift in shifts for a in range(args.people)]
    start = time.perf_counter()
    scores = reenactment_scores(model, videos, cross, modes=tuple(args.modes))
    own = reenactment_scores(model, videos, [(a, a) for a in range(args.people)],
                             modes=tuple(args.modes))
    rows = []
    for mode in args.modes:
        for label, by_kind, kinds in ((f"A driven by B ({len(cross)} pairs)", scores[mode],
                                       ("raw", *ADAPTATIONS, "true")),
                                      (f"A by another video of A ({args.people})", own[mode],
                                       ("raw",))):
            for kind in kinds:
                s = by_kind[kind]
                rows.append((mode.upper(), label, kind, *(f"{s[m].mean():.4f}" for m in METRICS)))
    print(markdown_table(("mode", "driving", "landmarks", *METRICS), rows))
    print()
    for mode in args.modes:
        for method in ADAPTATIONS:
            for metric in METRICS:
                mean, error, positive = paired_gain(scores[mode][method][metric],
                                                    scores[mode]["raw"][metric])
                print(f"{mode.upper()} {method} - raw, {metric}: {mean:+.4f} ± {error:.4f} "
                      f"(positive for {positive} of {len(cross)} pairs)")
    print()
    recall_rows = []
    for mode in args.modes:
        for label, by_kind, kinds in (("A driven by B", scores[mode],
                                       ("raw", *ADAPTATIONS, "true")),
                                      ("A by another video of A", own[mode], ("raw",))):
            for kind in kinds:
                values = [pooled_recall(by_kind[kind], name) for name in COUNTERFACTUALS]
                recall_rows.append((mode.upper(), label, kind,
                                    *("-" if v is None else f"{v:.2f}" for v in values)))
    frames_shown = [int(scores[args.modes[0]]["raw"]["recall_frames"][name].sum())
                    for name in COUNTERFACTUALS]
    recall_rows.append(("", "frames that show it (A driven by B)", "", *map(str, frames_shown)))
    print(markdown_table(("mode", "driving", "landmarks", *COUNTERFACTUALS), recall_rows))
    if args.jaw:
        print("\n" + jaw_experiment(model, videos, cross))
    if args.figure:
        figure(model, videos, cross[:6], args.figure)
    print(f"\n{time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"pairs": cross, "scores": {mode: {kind: {m: as_json(v) for m, v in
                                                               row.items()}
                                                        for kind, row in by.items()}
                                                 for mode, by in scores.items()}}, out)


def as_json(value):
    """An array, or a dict of arrays (the recalls), as lists; NaN (no frame shows the
    attribute) as None."""
    if isinstance(value, dict):
        return {name: as_json(v) for name, v in value.items()}
    return [None if np.isnan(v) else float(v) for v in np.asarray(value, float)]


if __name__ == "__main__":
    main()

"""Which open mouths does feed-forward draw? Mouth-open recall against the inner-lip gap.

    python bench/mouth_by_opening.py --out bench/data/mouth_by_opening.json \
        --figure bench/data/mouth_by_opening.png           # the shipped synthheads-cpu
    python bench/mouth_by_opening.py --first-model ...     # the first shipped model (git history)
    python bench/mouth_by_opening.py --checkpoint RUN/step-00019761.json ...

    python bench/mouth_by_opening.py --g-steps 600 --open-at 3 1 --seeds 0 1 --out ...

The evaluation's own FF frames (``fewshot-th evaluate --k 8 --modes ff`` on as many held-out
people), each speaking target put in a bin by how far apart its inner lips are
(``fewshot_th.diagnosis.mouth_recall_by_opening``), for both kinds of target. The figure shows
the same-video bins with one cropped example each.

``--g-steps N`` adds an intervention: G alone (E fixed, no D) trained on for N steps of
``why_mouth.py``'s loop (``--train-people`` 200, pixel L1 x 10 plus the recipe's ``mouth``
content term x 90), once for each ``--open-at`` gap in px at 64 px from which the ``mouth``
term weighs a parting fully (the recipe's is 3, ``losses.OPEN_AT``; a smaller one weighs a
slight parting more), and each ``--seeds`` seed; then the same-video bins again.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from fewshot_th import losses  # noqa: E402
from fewshot_th.data import SynthHeads  # noqa: E402
from fewshot_th.diagnosis import mouth_recall_by_opening, speaking_episode  # noqa: E402
from fewshot_th.plot import show_mouth_by_opening  # noqa: E402
from fewshot_th.tables import TARGET_KINDS  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import load_model, report, study_parser  # noqa: E402


def main(argv=None) -> None:
    parser = study_parser(__doc__)
    parser.add_argument("--figure", help="draw the same-video bins and examples here (PNG)")
    parser.add_argument("--g-steps", type=int, default=0,
                        help="also train G alone this many steps for each --open-at")
    parser.add_argument("--open-at", type=float, nargs="+", default=[3.0],
                        help="gaps (px at 64 px) from which the mouth term weighs fully")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--train-people", type=int, default=200,
                        help="training people G is trained on in the intervention")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model, name = load_model(args)
    results = {"model": name, "identities": args.identities, "k": args.k}
    for kind in TARGET_KINDS:
        found = mouth_recall_by_opening(model, args.identities, k=args.k, kind=kind)
        examples = found.pop("examples")
        results[kind] = {key: found[key] for key in ("recall", "frames", "bins")}
        results[kind]["per_frame"] = {
            "gap": [round(g, 4) for g in found["gap"]], "hit": found["hit"],
            "position": [round(p, 4) for p in found["position"]],
            "landmark_change": [round(c, 2) for c in found["landmark_change"]],
            "identity": found["identity"]}
        if kind == "same-video" and args.figure:
            fig = show_mouth_by_opening(
                {**found, "examples": examples},
                f"{name.split(' (')[0]}, FF, K = {args.k}, {args.identities} people")
            fig.savefig(args.figure, dpi=80)
    if args.g_steps:
        results["intervention"] = intervene(model, args)
    report(results, start, args.out)


def intervene(model, args) -> list[dict]:
    """G alone trained on with the mouth term weighing slight partings more or less: the
    same-video bins after each run."""
    import why_mouth

    size = model.config.image_size
    train = SynthHeads("train", num_identities=args.train_people, num_videos_per_identity=1,
                       frames_per_video=64, size=size, seed=2)
    people = why_mouth.with_e_hat(model, [speaking_episode(train, i, per_person=8,
                                                           speaking=False)
                                          for i in range(args.train_people)])
    runs, recipe_open_at = [], losses.OPEN_AT
    for open_at in args.open_at:
        for seed in args.seeds:
            losses.OPEN_AT = open_at / 64  # what mouth_region reads
            try:
                G = why_mouth.train_g(model, people, args.g_steps, 1.0, seed, mouth_term=90.0)
            finally:
                losses.OPEN_AT = recipe_open_at
            trained = copy.deepcopy(model)
            trained.generator.load_state_dict(G.state_dict())
            found = mouth_recall_by_opening(trained, args.identities, k=args.k)
            runs.append({"open_at_px": open_at, "seed": seed, "steps": args.g_steps,
                         "recall": found["recall"], "bins": found["bins"],
                         "per_frame": {"gap": [round(g, 4) for g in found["gap"]],
                                       "hit": found["hit"], "identity": found["identity"]}})
            print(f"open at {open_at:g} px, seed {seed}: recall {found['recall']:.3f}, by gap "
                  + ", ".join(f"{b['recall']:.2f}" for b in found["bins"] if b["frames"]),
                  flush=True)
    return runs


if __name__ == "__main__":
    main()

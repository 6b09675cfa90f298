"""Which open mouths does feed-forward draw? Mouth-open recall against the inner-lip gap.

    python bench/mouth_by_opening.py --out bench/data/mouth_by_opening.json \
        --figure bench/data/mouth_by_opening.png           # the shipped synthheads-cpu
    python bench/mouth_by_opening.py --first-model ...     # the first shipped model (git history)
    python bench/mouth_by_opening.py --checkpoint RUN/step-00019761.json ...

The evaluation's own FF frames (``fewshot-th evaluate --k 8 --modes ff`` on as many held-out
people), each speaking target put in a bin by how far apart its inner lips are
(``fewshot_th.diagnosis.mouth_recall_by_opening``), for both kinds of target. The figure shows
the same-video bins with one cropped example each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from fewshot_th.diagnosis import mouth_recall_by_opening  # noqa: E402
from fewshot_th.plot import show_mouth_by_opening  # noqa: E402
from fewshot_th.pretrained import load_pretrained, load_trained  # noqa: E402
from fewshot_th.tables import TARGET_KINDS  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--pretrained", default="synthheads-cpu")
    which.add_argument("--checkpoint", help="a training checkpoint (.json) instead")
    which.add_argument("--first-model", action="store_true",
                       help="the first shipped model, read from the repository's history")
    parser.add_argument("--identities", type=int, default=80, help="held-out people")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--out", help="write the numbers as JSON here")
    parser.add_argument("--figure", help="draw the same-video bins and examples here (PNG)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.first_model:
        sys.path.insert(0, str(Path(__file__).parents[1] / "book" / "figures"))
        from make_figures import BLIND_COMMIT, blind_model
        model, name = blind_model(), f"first shipped model (commit {BLIND_COMMIT})"
    elif args.checkpoint:
        model, name = load_trained(args.checkpoint), args.checkpoint
    else:
        model, name = load_pretrained(args.pretrained), args.pretrained
    results = {"model": name, "identities": args.identities, "k": args.k}
    for kind in TARGET_KINDS:
        found = mouth_recall_by_opening(model, args.identities, k=args.k, kind=kind)
        examples = found.pop("examples")
        results[kind] = {key: found[key] for key in ("recall", "frames", "bins")}
        results[kind]["frames_by_person"] = {
            "gap": [round(g, 4) for g in found["gap"]], "hit": found["hit"],
            "position": [round(p, 4) for p in found["position"]],
            "landmark_change": [round(c, 2) for c in found["landmark_change"]],
            "identity": found["identity"]}
        if kind == "same-video" and args.figure:
            fig = show_mouth_by_opening(
                {**found, "examples": examples},
                f"{name.split(' (')[0]}, FF, K = {args.k}, {args.identities} people")
            fig.savefig(args.figure, dpi=80)
    report(results, start, args.out)


if __name__ == "__main__":
    main()

"""How close must two colours be before feed-forward mixes them up? Colour recall against
the distance between the person's colour and the counterfactual's.

    python bench/colour_by_distance.py --out bench/data/colour_by_distance.json \
        --figure bench/data/colour_by_distance.png
    python bench/colour_by_distance.py --first-model ...   # the first shipped model
    python bench/colour_by_distance.py --checkpoint RUN/step-00019761.json ...

The evaluation's own FF frames (``fewshot-th evaluate --k 8 --modes ff`` on as many held-out
people, same-video targets), each colour attribute's frames put in a bin by how far the
other person's colour (the counterfactual of ``attribute_recall``) lies from the person's own
(``fewshot_th.diagnosis.colour_recall_by_distance``): hair, clothes, skin, lips, background.
The figure shows, for each colour with a miss, the missed frame whose colours lie closest:
the truth, the counterfactual (the other person's colour) and FF's frame.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from fewshot_th.diagnosis import colour_recall_by_distance, evaluation_ff_frames  # noqa: E402
from fewshot_th.metrics import attribute_recall  # noqa: E402
from fewshot_th.plot import show_images  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import load_model, report, study_parser  # noqa: E402


def span(bin_: dict) -> str:
    return f">= {bin_['low']:g}" if bin_["high"] is None else f"{bin_['low']:g}-{bin_['high']:g}"


def closest_misses(model, found: dict, args):
    """Truth, counterfactual and FF of each colour's missed frame with the closest colours."""
    wanted = {}  # identity -> [(attribute, row among that person's counted frames)]
    for attribute, result in found.items():
        misses = [i for i, hit in enumerate(result["hit"]) if hit == 0]
        if misses:
            worst = min(misses, key=lambda i: result["distance"][i])
            person = result["identity"][worst]
            row = worst - result["identity"].index(person)
            wanted.setdefault(person, []).append((attribute, row, result["distance"][worst]))
    images, titles = [], []
    for test, identity, pose, truth, _, drawn in evaluation_ff_frames(
            model, args.identities, k=args.k):
        for attribute, row, distance in wanted.get(identity, []):
            counterfactual = test.counterfactual(identity, pose, attribute)
            counted = (~attribute_recall(drawn, truth, counterfactual).isnan()).nonzero()
            j = int(counted[row])
            images += [truth[j], counterfactual[j], drawn[j]]
            titles += [f"{attribute}: truth", f"other colour ({distance:.2f} away)", "FF"]
    return show_images(images, titles, ncols=3, size=2.0)


def main(argv=None) -> None:
    parser = study_parser(__doc__)
    parser.add_argument("--figure", help="draw the closest missed frame of each colour (PNG)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    model, name = load_model(args)
    found = colour_recall_by_distance(model, args.identities, k=args.k)
    for attribute, result in found.items():
        result["distance"] = [round(d, 4) for d in result["distance"]]
        print(f"{attribute:>10}: recall {result['recall']:.3f} on {result['frames']} frames; "
              + ", ".join(f"{span(b)}: {b['recall']:.2f} of {b['frames']}"
                          for b in result["bins"] if b["frames"]), flush=True)
    if args.figure:
        closest_misses(model, found, args).savefig(args.figure, dpi=80)
    report({"model": name, "identities": args.identities, "k": args.k, "same-video": found},
           start, args.out)


if __name__ == "__main__":
    main()

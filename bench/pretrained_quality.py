"""Feed-forward quality of a trained model on SynthHeads test identities (never trained on).

For each test identity, ê comes from K frames of the first half of its video; the model then
draws 8 frames of the second half from their landmarks (same-video targets), and 8
pose-distant targets from K frames of a calm clip, scored against the exact frames:
SSIM and L1, and identity retrieval (is the generated frame closer to the true identity's
render of that pose than to the other test identities' renders of the same pose?). Two
copying baselines are scored the same way: the mean of the K source frames, and the source
frame whose landmarks are closest to the target's. Then what a viewer sees: attribute recall
and D's accuracy (``fewshot_th.tables.attribute_table``), for each kind of target.

    python bench/pretrained_quality.py --pretrained synthheads-cpu
    python bench/pretrained_quality.py --checkpoint /path/to/step-00004000.json
"""

from __future__ import annotations

import argparse
import json

import torch

from fewshot_th.evaluation import evaluate_feed_forward
from fewshot_th.metrics import paired_gain
from fewshot_th.pretrained import load_pretrained, load_trained
from fewshot_th.tables import attribute_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pretrained")
    source.add_argument("--checkpoint")
    parser.add_argument("--identities", type=int, default=20)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = evaluate_feed_forward(
        load_pretrained(args.pretrained) if args.pretrained else load_trained(args.checkpoint),
        args.identities)
    print(f"SynthHeads test identities: {args.identities}, 8 target frames each "
          f"(same-video: second half of the video, K sources from the first half; "
          f"pose-distant: see fewshot_th.data.distant_poses); chance retrieval "
          f"{1 / args.identities:.2f}")
    print(f"{'targets':13s} {'K':>3} {'method':26s} {'SSIM':>6} {'L1':>6} {'details':>7} "
          f"{'retrieval':>9}")
    for kind, by_k in results.items():
        for k, by_method in by_k.items():
            for name, m in by_method.items():
                print(f"{kind:13s} {k:>3} {name:26s} {m['ssim']:6.3f} {m['l1']:6.3f} "
                      f"{m['detail_l1']:7.3f} {m['retrieval']:9.2f}")
    print("details: L1 on the pixels of the one-sided details (hair streak, earring, mark)")
    for kind, by_k in results.items():  # paired over identities: do more shots help?
        low, high = min(by_k), max(by_k)
        mean, error, better = paired_gain(by_k[high]["model"]["ssim_by_identity"],
                                          by_k[low]["model"]["ssim_by_identity"])
        people = len(by_k[high]["model"]["ssim_by_identity"])
        print(f"{kind}: model SSIM K = {low} -> {high}: {mean:+.4f} "
              f"± {error:.4f} (standard error), better for "
              f"{better} of {people} identities; detail L1 "
              f"{by_k[low]['model']['detail_l1']:.3f} -> {by_k[high]['model']['detail_l1']:.3f}")
    for kind in results:
        print(f"\nattribute recall, {kind} targets:\n{attribute_table(results, kind)}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()

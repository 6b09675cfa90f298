"""Time to quality: a run's feed-forward scores on held-out people against training minutes.

``fewshot-th train --eval-every MINUTES`` scores the feed-forward model on SynthHeads test
identities (``fewshot_th.evaluation.train_and_score``: SSIM, L1, identity retrieval,
attribute recall and D's accuracy at K = 1, 8, 32, beside the two copying baselines, on
same-video and pose-distant targets) before training, every MINUTES of training and at the
end, into ``RUN/quality.jsonl``. This script draws ``RUN/quality.png`` from it and prints one
line per score. ``--resume`` continues a run and its scores, across sessions:

    fewshot-th train --profile cpu --out RUN --steps 1000000 --minutes 30 --eval-every 5 \\
        --checkpoint-every 250
    fewshot-th train --profile cpu --out RUN --steps 1000000 --minutes 30 --eval-every 5 \\
        --checkpoint-every 250 --resume
    python bench/time_to_quality.py RUN

Recipes differ by ``--set NAME=VALUE`` (a ``TrainConfig`` field) and ``--model NAME=VALUE``
(a ``ModelConfig`` field) of ``fewshot-th train``, for ablations. (Before 2026-12-02 this
script trained the runs itself, with the same options; bench/RESULTS.md quotes those
commands.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RECALL_SHOWN = ("mouth open", "glasses", "hair", "skin", "streak")


def plot(rows: list[dict], path: Path) -> None:
    """SSIM and retrieval against training minutes, K = 1, 8, 32, with the copying baselines,
    and attribute recall at K = 8 with D's accuracy, one row of panels per kind of target
    (same-video, pose-distant)."""
    kinds = list(rows[-1]["scores"])
    recall = "recall" in rows[-1]["scores"][kinds[0]]["8"]["model"]
    fig, axes = plt.subplots(len(kinds), 2 + recall, figsize=(5 * (2 + recall),
                                                            3.4 * len(kinds)), squeeze=False)
    minutes = [r["minutes"] for r in rows]
    for row_axes, kind in zip(axes, kinds):
        for ax, metric in zip(row_axes, ("ssim", "retrieval")):
            for k, style in (("1", ":"), ("8", "-"), ("32", "--")):
                ax.plot(minutes, [r["scores"][kind][k]["model"][metric] for r in rows],
                        "C0" + style, marker="o", label=f"model, K = {k}")
            for name, colour in (("mean of sources", "C1"), ("nearest-landmark source", "C2")):
                ax.axhline(rows[-1]["scores"][kind]["8"][name][metric], color=colour, lw=1,
                           label=f"{name}, K = 8")
            ax.set_xlabel("training minutes (2 CPU cores)" if rows[-1]["device"] == "cpu"
                          else f"training minutes ({rows[-1]['device']})")
            ax.set_title(f"{metric}, held-out identities, feed-forward, {kind} targets",
                         fontsize=9)
            ax.set_ylim(0, 1)
        row_axes[1].legend(fontsize=7, loc="lower right")
        if recall:
            ax = row_axes[2]
            shown = [r for r in rows if "recall" in r["scores"][kind]["8"]["model"]]
            for i, name in enumerate(RECALL_SHOWN):
                ax.plot([r["minutes"] for r in shown],
                        [r["scores"][kind]["8"]["model"]["recall"][name] for r in shown],
                        f"C{i}", marker="o", label=name)
            ax.plot([r["minutes"] for r in shown],
                    [r["scores"][kind]["8"]["model"]["d_accuracy"] for r in shown], "k--",
                    label="D's accuracy, real vs FF")
            ax.set_xlabel(row_axes[0].get_xlabel())
            ax.set_title(f"attribute recall, K = 8, {kind} targets", fontsize=9)
            ax.set_ylim(0, 1)
            ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def summary(row: dict) -> str:
    """One line per kind of target: K = 8 scores beside copying, K = 1 and 32, recall, D."""
    lines = []
    for kind, by_k in row["scores"].items():
        s8, copy8 = by_k["8"]["model"], by_k["8"]["nearest-landmark source"]
        recall = ", ".join(f"{name} " + ("-" if s8["recall"][name] is None
                                          else f"{s8['recall'][name]:.2f}")
                           for name in RECALL_SHOWN)
        lines.append(f"{row['minutes']:6.1f} min, step {row['step']}, {kind}: K=8 SSIM "
                     f"{s8['ssim']:.3f} L1 {s8['l1']:.3f} retrieval {s8['retrieval']:.2f} "
                     f"(nearest copy {copy8['ssim']:.3f}); SSIM K=1 "
                     f"{by_k['1']['model']['ssim']:.3f} K=32 {by_k['32']['model']['ssim']:.3f}; "
                     f"recall {recall}; D accuracy {s8['d_accuracy']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run directory of fewshot-th train --eval-every")
    args = parser.parse_args(argv)
    log = Path(args.run) / "quality.jsonl"
    if not log.exists():
        raise SystemExit(f"time_to_quality.py: {log} does not exist: train with "
                         "fewshot-th train --eval-every MINUTES --out RUN first")
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"time_to_quality.py: {log} holds no scores yet")
    for row in rows:
        print(summary(row))
    plot(rows, Path(args.run) / "quality.png")
    print(f"written: {Path(args.run) / 'quality.png'}")


if __name__ == "__main__":
    main()

"""Export a training run's checkpoint as the model shipped in fewshot_th/assets.

Scores its feed-forward model as `fewshot-th evaluate --modes ff` does (SynthHeads test
identities), draws its training curve, and records how it was made:

    python bench/export_shipped_model.py --run /work/runs/cpu-2 --name synthheads-cpu \\
        --command "fewshot-th train --profile cpu --out runs/cpu --steps 5000 --identities 1000"

``--checkpoint`` picks a checkpoint other than the run's newest: also a model that
bench/gpu_sweep.sh exported on a GPU machine (its .safetensors and .json side by side).
Training minutes come from the run's quality.jsonl (fewshot-th train --eval-every) when it has one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fewshot_th import pretrained  # noqa: E402
from fewshot_th.checkpoint import latest_checkpoint  # noqa: E402
from fewshot_th.config import TrainConfig, with_assignments  # noqa: E402
from fewshot_th.evaluation import evaluate_feed_forward  # noqa: E402

from common import machine  # noqa: E402


def curve(rows: list[dict], path: Path) -> dict:
    """Plot the four losses (moving averages over 50 steps); return them, every 50 steps."""
    steps = np.array([r["step"] for r in rows])
    fig, axes = plt.subplots(1, 4, figsize=(13, 2.8))
    summary = {"step": steps[49::50].tolist()}
    for ax, key in zip(axes, ("cnt", "adv", "mch", "dsc")):
        values = np.array([r[key] for r in rows])
        smooth = np.convolve(values, np.ones(50) / 50, mode="valid")
        ax.plot(steps[49:], smooth)
        ax.set_title(key)
        ax.set_xlabel("step")
        summary[key] = [round(float(v), 4) for v in smooth[::50]]
    axes[0].set_ylabel("loss (50-step average)")
    fig.suptitle("Training curve of the shipped model")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--name", default="synthheads-cpu")
    parser.add_argument("--command", required=True, help="the command that trained the run")
    parser.add_argument("--identities", type=int, default=20)
    parser.add_argument("--checkpoint", help="default: the run's newest checkpoint")
    parser.add_argument("--machine", help="where it was trained (default: this machine)")
    parser.add_argument("--minutes-before", type=float, default=0.0,
                        help="training minutes of the model the run started from "
                             "(--start-from), which its quality.jsonl does not count")
    parser.add_argument("--ft-set", action="append", default=[], metavar="NAME=VALUE",
                        help="a change to the training recipe that fine-tuning makes by "
                             "default (stored as the model's fine_tuning, repeatable), e.g. "
                             "the paper's rates: --ft-set lr_eg=5e-5 --ft-set lr_d=2e-4")
    args = parser.parse_args()
    run = Path(args.run)
    names = [pair.partition("=")[0] for pair in args.ft_set]
    try:  # parsed and checked as fewshot-th evaluate --ft-set does
        changed = with_assignments(TrainConfig(), args.ft_set)
    except ValueError as error:
        parser.error(f"--ft-set: {error}")
    fine_tuning = {name: getattr(changed, name) for name in names}
    pretrained.ASSETS.mkdir(parents=True, exist_ok=True)
    checkpoint = Path(args.checkpoint) if args.checkpoint else latest_checkpoint(run)
    step = json.loads(checkpoint.with_suffix(".json").read_text())["step"]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["step"] <= step]
    minutes = rows[-1]["seconds"] / 60
    if (run / "quality.jsonl").exists():  # metrics.jsonl restarts "seconds" every resumed leg
        scored = [json.loads(line) for line in (run / "quality.jsonl").read_text().splitlines()]
        before = max((r for r in scored if r["step"] <= step), key=lambda r: r["step"])
        after = min((r for r in scored if r["step"] >= step), key=lambda r: r["step"],
                    default=None)
        minutes = before["minutes"]
        if after is not None and after["step"] > before["step"]:
            minutes += (after["minutes"] - before["minutes"]) * \
                (step - before["step"]) / (after["step"] - before["step"])
        else:  # the checkpoint came after the last score: count its steps at the last pace
            pace = before["minutes"] / max(before["step"], 1)
            minutes += pace * (step - before["step"])
    info = {"command": args.command, "machine": args.machine or machine(),
            "training_minutes": round(minutes + args.minutes_before, 1),
            "curve": curve(rows, pretrained.ASSETS / f"{args.name}-curve.png")}
    if fine_tuning:
        info["fine_tuning"] = fine_tuning
    pretrained.export_pretrained(checkpoint, args.name, info)
    torch.manual_seed(0)
    scores = evaluate_feed_forward(pretrained.load_pretrained(args.name), args.identities)
    info["scores"] = scores
    info["scores_protocol"] = ("fewshot_th.evaluation.evaluate_feed_forward (fewshot-th "
                               "evaluate --modes ff): SynthHeads test split, "
                               f"{args.identities} identities, seed 0; same-video: 8 targets "
                               "from frames 32-63, K sources from frames 0-31; pose-distant: "
                               "8 targets and K sources from fewshot_th.data.distant_poses")
    pretrained.export_pretrained(checkpoint, args.name, info)
    print(json.dumps(scores, indent=1))


if __name__ == "__main__":
    main()

"""Time to quality: train a recipe from scratch and score it on held-out identities as it goes.

Trains E, G and D on SynthHeads with ``fewshot_th.trainer.Trainer`` for ``--minutes`` of
wall-clock training (evaluation time not counted) and, every ``--eval-every`` minutes, scores
the feed-forward model on SynthHeads test identities with ``evaluate_feed_forward`` (SSIM, L1,
identity retrieval, attribute recall, D's accuracy at K = 1, 8, 32, beside the two copying
baselines), on same-video and on pose-distant targets. Writes
``<out>/quality.jsonl`` (one line per evaluation) and ``<out>/quality.png``.

``--resume`` continues a run from its newest checkpoint (give ``--checkpoint-every``) up to
``--minutes`` in all: a long run in several legs, across sessions.

Recipes differ by ``--set NAME=VALUE`` (a ``TrainConfig`` field) and ``--model NAME=VALUE``
(a ``ModelConfig`` field), for ablations:

    python bench/time_to_quality.py --out bench/out/ttq-base --minutes 30
    python bench/time_to_quality.py --out bench/out/ttq-lr --minutes 30 --set lr_eg=5e-4
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from fewshot_th.config import profile, seed_everything, training, with_assignments  # noqa: E402
from fewshot_th.data import SynthHeads  # noqa: E402
from fewshot_th.evaluation import evaluate_feed_forward  # noqa: E402
from fewshot_th.losses import content_loss_from  # noqa: E402
from fewshot_th.meta import TalkingHeadModel, Trainer  # noqa: E402
from fewshot_th.pretrained import load_pretrained, load_trained  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--eval-every", type=float, default=5, help="minutes between scores")
    parser.add_argument("--identities", type=int, default=1000, help="training identities")
    parser.add_argument("--test-identities", type=int, default=20)
    parser.add_argument("--set", action="append", default=[], help="TrainConfig NAME=VALUE")
    parser.add_argument("--model", action="append", default=[], help="ModelConfig NAME=VALUE")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-every", type=int, default=250, help="steps between samples")
    parser.add_argument("--fp32", action="store_true",
                        help="float32 throughout: no bfloat16 autocast")
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in --out")
    parser.add_argument("--start-from", metavar="MODEL",
                        help="a warm start: E and G from this shipped model (or checkpoint "
                             ".json), D afresh")
    args = parser.parse_args(argv)

    try:
        config = with_assignments(profile(args.profile), args.model)
        train = with_assignments(training(args.profile), args.set)
    except ValueError as error:
        raise SystemExit(f"time_to_quality.py: {error}") from None
    seed_everything(args.seed)
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    videos = SynthHeads("train", num_identities=args.identities, num_videos_per_identity=2,
                        frames_per_video=32, size=config.image_size, seed=args.seed)
    model = TalkingHeadModel.build(config, num_videos=len(videos))
    trainer = Trainer(model, videos, train, content_loss_from(train.content), args.out,
                      seed=args.seed, checkpoint_every=args.checkpoint_every,
                      sample_every=args.sample_every, device=args.device, num_workers=args.workers,
                      mixed_precision=not args.fp32)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "quality.jsonl"
    rows: list[dict] = []
    next_eval = 0.0
    if args.resume:
        trainer.load()  # refuses another model configuration; warns on another recipe
        rows = [row for row in map(json.loads, log.read_text().splitlines())
                if row["step"] <= trainer.step] if log.exists() else []
        log.write_text("".join(json.dumps(row) + "\n" for row in rows))
        if rows:
            next_eval = (rows[-1]["minutes"] + args.eval_every) * 60
        print(f"resumed at step {trainer.step}, {trainer.seconds / 60:.1f} minutes", flush=True)
    elif log.exists() and log.stat().st_size:
        raise SystemExit(f"time_to_quality.py: {log} exists: --resume it or choose another --out")
    elif args.start_from:
        trainer.start_from(load_trained(args.start_from) if args.start_from.endswith(".json")
                           else load_pretrained(args.start_from), args.start_from)
    print(f"{machine()}; recipe: {train}; model: {config}", flush=True)
    while True:
        trained = trainer.seconds
        done = trained >= args.minutes * 60 - 1e-9
        if trained >= next_eval - 1e-9 or done:
            torch.manual_seed(0)
            scores = evaluate_feed_forward(model, args.test_identities)  # on model's device
            model.train()
            row = {"minutes": round(trained / 60, 2), "step": trainer.step,
                   "device": args.device,
                   "scores": {kind: {str(k): v for k, v in by_k.items()}
                              for kind, by_k in scores.items()}}
            rows.append(row)
            with open(log, "a") as f:
                f.write(json.dumps(row) + "\n")
            plot(rows, out / "quality.png")
            for kind, by_k in scores.items():
                s8, copy8 = by_k[8]["model"], by_k[8]["nearest-landmark source"]
                print(f"{row['minutes']:6.1f} min, step {trainer.step}, {kind}: K=8 SSIM "
                      f"{s8['ssim']:.3f} L1 {s8['l1']:.3f} retrieval {s8['retrieval']:.2f} "
                      f"(nearest copy {copy8['ssim']:.3f}); SSIM K=1 "
                      f"{by_k[1]['model']['ssim']:.3f} K=32 {by_k[32]['model']['ssim']:.3f}; "
                      "recall " + ", ".join(
                          f"{name} " + ("-" if s8["recall"][name] is None
                                        else f"{s8['recall'][name]:.2f}")
                          for name in RECALL_SHOWN)
                      + f"; D accuracy {s8['d_accuracy']:.2f}", flush=True)
            while next_eval <= trained + 1e-9:
                next_eval += args.eval_every * 60
            if args.checkpoint_every:
                trainer.save()
            if done:
                break
        trainer.run(trainer.step + 10 ** 9, progress=False,
                    max_seconds=min(next_eval, args.minutes * 60) - trained)


if __name__ == "__main__":
    main()

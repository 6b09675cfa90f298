"""D's hinge loss over training, several runs in one plot (from their `metrics.jsonl`).

    python bench/hinge_curves.py NAME=RUN [NAME=RUN ...] --out bench/data/hinge.json

Each run's per-step L_DSC is averaged over windows of `--window` steps (a resumed run's
repeated steps count once, the last logged value); `--out X.json` writes the window means
and X.png the plot. A D that cannot tell real from generated frames sits at 2 (the two
scores alike); one that separates them falls towards 0.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def window_means(metrics: Path, window: int) -> list[tuple[int, float]]:
    """``[(last step of the window, mean L_DSC), ...]`` over full or partial windows."""
    by_step = {}
    for number, line in enumerate(metrics.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            by_step[int(row["step"])] = float(row["dsc"])
        except (ValueError, KeyError, TypeError) as error:
            raise SystemExit(f"{metrics}:{number}: not a metrics line with step and dsc "
                             f"({error})") from None
    if not by_step:
        raise SystemExit(f"{metrics}: no steps logged")
    means = []
    for start in range(0, max(by_step), window):
        values = [by_step[s] for s in range(start + 1, start + window + 1) if s in by_step]
        if values:
            means.append((min(start + window, max(by_step)), sum(values) / len(values)))
    return means


def plot(curves: dict[str, list], path: Path, window: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, curve in curves.items():
        ax.plot([c[0] for c in curve], [c[1] for c in curve], marker="o", ms=2.5, label=name)
    ax.axhline(2, color="k", lw=0.6, ls="--")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"D's hinge loss (mean of {window} steps)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN",
                        help="a label and a run directory holding metrics.jsonl")
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.window < 1:
        parser.error("--window must be positive")
    curves = {}
    for item in args.runs:
        name, sep, run = item.partition("=")
        if not sep or not name or not run:
            parser.error(f"{item!r}: give NAME=RUN")
        metrics = Path(run) / "metrics.jsonl"
        if not metrics.is_file():
            parser.error(f"{metrics} does not exist")
        curves[name] = window_means(metrics, args.window)
        print(f"{name}: " + ", ".join(f"{s}: {m:.2f}" for s, m in curves[name]))
    if args.out:
        args.out.write_text(json.dumps({"window": args.window, "curves": curves}, indent=1))
        plot(curves, args.out.with_suffix(".png"), args.window)
        print(f"written: {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()

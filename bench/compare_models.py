"""The pictures beside a comparison of two models: the same held-out frames drawn by each.

    python bench/compare_models.py --checkpoint RUN/step-00012700.json \\
        --out bench/data/compare_shipped_step_12700.png

For each chosen SynthHeads test person (default: the first four who speak in the second half
of their video, then the first two who wear glasses), the same-video target where the mouth
is open widest, drawn by feed-forward (and with ``--ft`` fine-tuned) K = 8 few-shot learning
of the shipped model and of the checkpoint, with the nearest-landmark source beside them:
the protocol of ``fewshot_th.diagnosis.method_examples``, so the frames are the ones the
evaluation scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402

from fewshot_th.data import SynthHeads  # noqa: E402
from fewshot_th.diagnosis import method_examples, speaking_episode  # noqa: E402
from fewshot_th.evaluation import FRAMES_PER_VIDEO  # noqa: E402
from fewshot_th.plot import show_methods  # noqa: E402
from fewshot_th.pretrained import load_pretrained, load_trained  # noqa: E402


def chosen_people(num_identities: int, speakers: int, wearers: int) -> list[int]:
    """The first ``speakers`` test people whose targets speak, then the first ``wearers``
    others who wear glasses."""
    test = SynthHeads("test", num_identities=num_identities, num_videos_per_identity=1,
                      frames_per_video=FRAMES_PER_VIDEO, size=64, seed=0)
    talking = [i for i in range(num_identities) if speaking_episode(test, i) is not None]
    people = talking[:speakers]
    glasses = [i for i in range(num_identities)
               if test.attributes(i)["glasses"] > 0 and i not in people]
    return people + glasses[:wearers]


def comparison_rows(models: dict, people: tuple[int, ...], modes: tuple[str, ...] = ("ff",),
                    k: int = 8) -> dict[str, torch.Tensor]:
    """``{row name: (len(people), 3, H, W)}``: the truth, each of ``models``' ({name: model})
    frames for each of ``modes``, and the nearest-landmark source, every model on the same
    targets and sources (``method_examples``, seeded alike)."""
    sizes = {model.config.image_size for model in models.values()}
    if len(sizes) != 1:
        raise ValueError(f"the models must draw frames of one size, got sizes {sorted(sizes)}")
    rows = {}
    for name, model in models.items():
        torch.manual_seed(0)
        examples = method_examples(model, people, k=k, modes=modes)
        rows.setdefault("truth", examples["truth"])
        rows.update({f"{name} {mode.upper()}": examples[mode.upper()] for mode in modes})
        rows.setdefault("nearest-landmark source", examples["nearest-landmark source"])
    rows["nearest-landmark source"] = rows.pop("nearest-landmark source")  # the last row
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", default="synthheads-cpu", help="the model compared to")
    parser.add_argument("--checkpoint", required=True, help="a training checkpoint (.json)")
    parser.add_argument("--name", help="the checkpoint's name in the figure (default: its step)")
    parser.add_argument("--people", type=int, nargs="*",
                        help="test people (default: four who speak, two who wear glasses)")
    parser.add_argument("--ft", action="store_true", help="also fine-tuned (slower)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()
    if not args.out.suffix == ".png":
        parser.error(f"--out must name a .png file, got {args.out}")
    people = tuple(args.people or chosen_people(20, 4, 2))
    modes = ("ff", "ft") if args.ft else ("ff",)
    try:
        checkpoint = load_trained(args.checkpoint)
        name = args.name or f"step {load_trained_step(args.checkpoint):,}"
        rows = comparison_rows({args.pretrained: load_pretrained(args.pretrained),
                                name: checkpoint}, people, modes)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    fig = show_methods(rows, suptitle=f"test people {', '.join(map(str, people))}: "
                                      "K = 8, same-video, the widest-open target")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=70)
    print(f"written: {args.out}")


def load_trained_step(path: str) -> int:
    """The training step a checkpoint was saved at."""
    return int(json.loads(Path(path).with_suffix(".json").read_text())["step"])


if __name__ == "__main__":
    main()

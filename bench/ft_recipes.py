"""Fine-tuning one meta-learned model with several recipes: which part of FT draws the
glasses and which loses the open mouth.

    python bench/ft_recipes.py --checkpoint RUN/step-00016483.json --out OUT.json \\
        --recipe "" --recipe "lr_eg=5e-5 lr_d=2e-4" --recipe "lr_eg=5e-5 lr_d=2e-4 psi=4e-4"

A recipe is a list of NAME=VALUE changes of the model's own recipe, the one it was
meta-learned with (``train_config_of``; the changes a shipped model stores for fine-tuning,
``fine_tuning_recipe``, are not applied: give them as a recipe) (``TrainConfig`` fields, as
``fewshot-th evaluate --ft-set`` takes them; "" keeps it), and optionally ``psi=LR``: the
learning rate of ψ' alone, G's weights keeping ``lr_eg`` (not the paper's method, where ψ'
and G share one rate; it asks whether the person's AdaIN parameters or G's weights carry
what fine-tuning adds). Each recipe fine-tunes the first ``--identities`` SynthHeads test
people at K = ``--k`` and is scored like ``fewshot-th evaluate`` (same-video targets).
``--figure PNG`` draws the frames to put beside the table: for four test people who speak and
two who wear glasses, the widest-open target, its truth, FF, FT with each recipe, and the
nearest-landmark source (``fewshot_th.diagnosis.method_examples``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402

from fewshot_th import finetune  # noqa: E402
from fewshot_th.config import with_assignments  # noqa: E402
from fewshot_th.diagnosis import method_examples  # noqa: E402
from fewshot_th.evaluation import evaluate_few_shot  # noqa: E402
from fewshot_th.finetune import train_config_of  # noqa: E402
from fewshot_th.plot import show_methods  # noqa: E402
from fewshot_th.pretrained import load_pretrained, load_trained  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402

COLUMNS = ("mouth open", "glasses", "hair", "skin", "lips", "streak", "earring", "mark")


@contextlib.contextmanager
def psi_learning_rate(lr: float | None):
    """Within it, fine-tuning's optimiser of G gives ψ' (the last of its parameters) the
    learning rate ``lr``; ``None`` changes nothing. It stands in for ``torch.optim.Adam`` in the
    whole process while it lasts and relies on FT building G's optimiser first, then D's, so
    run nothing else that makes an Adam optimiser inside it."""
    if lr is None:
        yield
        return
    adam, made = finetune.torch.optim.Adam, []

    def make(params, **settings):
        params = list(params)
        made.append(None)
        if len(made) % 2 == 1:  # G's: its weights, then ψ'
            return adam([{"params": params[:-1]}, {"params": params[-1:], "lr": lr}],
                        **settings)
        return adam(params, **settings)

    finetune.torch.optim.Adam = make
    try:
        yield
    finally:
        finetune.torch.optim.Adam = adam


def parse_recipe(model, text: str):
    """``(TrainConfig, ψ' learning rate or None)`` from ``"NAME=VALUE ... [psi=LR]"``."""
    pairs, psi = [], None
    for pair in text.split():
        if pair.startswith("psi="):
            psi = float(pair[4:])
            if not 0 < psi <= 1:
                raise ValueError(f"psi takes a learning rate in (0, 1], got {pair!r}")
        else:
            pairs.append(pair)
    return with_assignments(train_config_of(model), pairs), psi


def run(model, recipes: list[str], identities: int, k: int, progress: bool = True) -> dict:
    """``{recipe: FT scores, same-video, K}`` for each recipe text."""
    parsed = {text: parse_recipe(model, text) for text in recipes}  # every error first
    results = {}
    for text, (train, psi) in parsed.items():
        with psi_learning_rate(psi):
            scores = evaluate_few_shot(model, identities, k_values=(k,), modes=("ft",),
                                       targets=("same-video",), ft_train=train,
                                       progress=progress)
        results[text] = scores["same-video"][k]["FT"]
    return results


def figure_rows(model, recipes: list[str], people: tuple[int, ...], k: int = 8) -> dict:
    """``{row name: (len(people), 3, H, W)}``: the truth, FF, FT with each recipe, and the
    nearest-landmark source, on the same targets and sources."""
    rows = None
    for text in recipes:
        train, psi = parse_recipe(model, text)
        torch.manual_seed(0)
        with psi_learning_rate(psi):
            examples = method_examples(model, people, k=k, modes=("ff", "ft") if rows is None
                                       else ("ft",), ft_train=train)
        if rows is None:
            rows = {"truth": examples["truth"], "FF": examples["FF"]}
            nearest = examples["nearest-landmark source"]
        rows[f"FT {text or 'own recipe'}"] = examples["FT"]
    rows["nearest-landmark source"] = nearest
    return rows


def table(results: dict) -> str:
    lines = ["| recipe | " + " | ".join(COLUMNS) + " | SSIM | SSIM on the person |",
             "|---" * (len(COLUMNS) + 3) + "|"]
    for text, scores in results.items():
        recall = [scores["recall"][name] for name in COLUMNS]
        name = text or "the model's own"
        lines.append(f"| {name} | "
                     + " | ".join("-" if r is None else f"{r:.2f}" for r in recall)
                     + f" | {scores['ssim']:.3f} | {scores['person_ssim']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_of = parser.add_mutually_exclusive_group(required=True)
    model_of.add_argument("--checkpoint", help="a training checkpoint (.json)")
    model_of.add_argument("--pretrained", help="a shipped model, e.g. synthheads-cpu")
    parser.add_argument("--recipe", action="append", required=True,
                        help='NAME=VALUE changes, and psi=LR, in one string ("" for none)')
    parser.add_argument("--identities", type=int, default=20)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="a .json file for the scores")
    parser.add_argument("--figure", type=Path, help="a .png of the frames beside the table")
    args = parser.parse_args()
    if args.identities < 2 or not 1 <= args.k <= 32 or args.threads < 1:
        parser.error("--identities must be at least 2, --k between 1 and 32, --threads >= 1")
    if args.figure is not None and args.figure.suffix != ".png":
        parser.error(f"--figure must name a .png file, got {args.figure}")
    torch.set_num_threads(args.threads)
    try:
        model = load_trained(args.checkpoint) if args.checkpoint else \
            load_pretrained(args.pretrained)
        for text in args.recipe:
            parse_recipe(model, text)
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    start = time.perf_counter()
    results = run(model, args.recipe, args.identities, args.k)
    print(table(results))
    if args.figure is not None:
        from compare_models import chosen_people

        people = tuple(chosen_people(args.identities, 4, 2))
        fig = show_methods(figure_rows(model, args.recipe, people, args.k),
                           suptitle=f"test people {', '.join(map(str, people))}: K = {args.k}, "
                                    "same-video, the widest-open target")
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.figure, dpi=70)
        print(f"written: {args.figure}")
    report({"model": args.checkpoint or args.pretrained, "identities": args.identities,
            "k": args.k, "recipes": results}, start, args.out)


if __name__ == "__main__":
    main()

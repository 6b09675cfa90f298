"""Shared helpers for the benchmarks: timing by median, a description of the machine, the
model a study asks about, and writing a study's numbers."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path


def median_seconds(function, repeats: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``function()`` over ``repeats`` runs, after ``warmup`` runs."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def report(results: dict, start: float, out: str | None) -> None:
    """Add the minutes since ``start`` (``time.perf_counter()``) and the machine to
    ``results``, print them as JSON and write them to ``out`` when given."""
    results["minutes"] = round((time.perf_counter() - start) / 60, 1)
    results["machine"] = machine()
    print(json.dumps(results, indent=1))
    if out:
        Path(out).write_text(json.dumps(results, indent=1))


def weighted_pixel_step(optimizer, frames, truth, counterfactual, weight: float, extra=None,
                        points=None) -> None:
    """One optimiser step on pixel L1 x 10, the pixels where ``truth`` and ``counterfactual``
    differ by more than 0.03 (the attribute's, ``SynthHeads.counterfactual``) weighted
    ``weight`` times, plus ``extra(frames, truth, points)`` when given: the interventions of
    ``why_mouth.py`` and ``why_glasses.py``."""
    region = (truth - counterfactual).abs().amax(dim=1, keepdim=True) > 0.03
    loss = 10 * ((frames - truth).abs() * (1 + (weight - 1) * region.float())).mean()
    if extra is not None:
        loss = loss + extra(frames, truth, points)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def study_parser(doc: str):
    """The options of a study of one model on the evaluation's held-out people: which model
    (``--pretrained NAME``, default synthheads-cpu; ``--checkpoint RUN/step-N.json``; or
    ``--first-model``, the first shipped model from the repository's history),
    ``--identities`` (80), ``--k`` (8) and ``--out``. Returns the argparse parser."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--pretrained", default="synthheads-cpu")
    which.add_argument("--checkpoint", help="a training checkpoint (.json) instead")
    which.add_argument("--first-model", action="store_true",
                       help="the first shipped model, read from the repository's history")
    parser.add_argument("--identities", type=int, default=80, help="held-out people")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--out", help="write the numbers as JSON here")
    return parser


def load_model(args):
    """The model ``study_parser``'s options name, and a name for it."""
    from fewshot_th.pretrained import load_pretrained, load_trained

    if args.first_model:
        import sys

        sys.path.insert(0, str(Path(__file__).parents[1] / "book" / "figures"))
        from make_figures import BLIND_COMMIT, blind_model
        return blind_model(), f"first shipped model (commit {BLIND_COMMIT})"
    if args.checkpoint:
        return load_trained(args.checkpoint), args.checkpoint
    return load_pretrained(args.pretrained), args.pretrained

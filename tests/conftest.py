"""Fixtures the test files share."""

import importlib.util
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest


@pytest.fixture
def bench_module():
    """``bench_module(name)`` imports ``bench/NAME.py`` (the benchmarks are scripts, not a
    package) and returns the module."""
    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "bench" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture
def cli(capsys):
    """``cli(args)`` runs ``fewshot-th ARGS`` in this process (``fewshot_th.cli.main``), like
    the command would: ``returncode`` (2 for what argparse refuses), ``stdout`` and ``stderr``
    (warnings included, as the command prints them). One test still starts the real command
    as a process (``test_training.py::test_the_installed_command_runs_as_a_process_and_...``)."""
    from fewshot_th.cli import main

    def run(args):
        capsys.readouterr()  # start from empty output
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                code = main([str(a) for a in args])
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else 1
        out = capsys.readouterr()
        stderr = out.err + "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=stderr)

    return run

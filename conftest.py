"""Plain ``pytest`` runs what ``make test`` runs: the chapters' shortened live experiments
(``FEWSHOT_TH_QUICK=1`` unless set), with caches (chapter 2's warm-up, which chapter 3 reuses;
chapter 7's K-shot grid, which chapter 8 reuses) in a folder of their own, removed at the end,
not in the user's ~/.cache."""

import os
import shutil
import tempfile

_SET = {}


def pytest_configure(config):
    if "FEWSHOT_TH_QUICK" not in os.environ:
        os.environ["FEWSHOT_TH_QUICK"] = _SET["FEWSHOT_TH_QUICK"] = "1"
    if "FEWSHOT_TH_CACHE" not in os.environ:
        folder = tempfile.mkdtemp(prefix="fewshot_th-test-cache-")
        os.environ["FEWSHOT_TH_CACHE"] = _SET["FEWSHOT_TH_CACHE"] = folder


def pytest_unconfigure(config):
    if "FEWSHOT_TH_CACHE" in _SET:
        shutil.rmtree(_SET["FEWSHOT_TH_CACHE"], ignore_errors=True)
    for name in _SET:
        os.environ.pop(name, None)

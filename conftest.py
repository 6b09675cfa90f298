"""Tests and the notebooks they run keep their caches (chapter 2's warm-up, which chapter 3
reuses) in a folder of their own, removed at the end, not in the user's ~/.cache."""

import os
import shutil
import tempfile

_MADE = []


def pytest_configure(config):
    if "FEWSHOT_TH_CACHE" not in os.environ:
        os.environ["FEWSHOT_TH_CACHE"] = tempfile.mkdtemp(prefix="fewshot_th-test-cache-")
        _MADE.append(os.environ["FEWSHOT_TH_CACHE"])


def pytest_unconfigure(config):
    for folder in _MADE:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop("FEWSHOT_TH_CACHE", None)

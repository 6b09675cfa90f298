"""Faults injected into training, and what was lost: python bench/fault_injection.py

Runs tests/test_faults.py (every fault and bad input there is a test case) and prints the
table of bench/RESULTS.md: per kind of fault, how many cases were tried and how many lost
work or ended in a traceback instead of one clear error (both must be 0).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# test function name prefix -> the kind of fault it injects
KINDS = [
    ("test_kill_9_during_a_save", "kill -9 of a training process during a save"),
    ("test_resume_falls_back", "damaged newest checkpoint (truncated, zeroed, missing, garbage)"),
    ("test_no_intact_checkpoint", "every checkpoint damaged"),
    ("test_evaluate_names_a_damaged", "damaged checkpoint given to evaluate"),
    ("test_evaluate_refuses_a_file", "another file given to evaluate as a checkpoint"),
    ("test_nan_gradients", "NaN gradients with finite losses"),
    ("test_resume_skips_a_non_finite", "non-finite checkpoint on disk"),
    ("test_a_full_disk", "disk full while writing the tensors or the JSON"),
    ("test_leftovers", "temporary and orphan files of an interrupted save"),
    ("test_a_fresh_run_refuses", "fresh run into another run's directory"),
    ("test_overwrite_replaces", "fresh run with --overwrite, then --resume"),
    ("test_resume_refuses_other_data", "resume with other --frames, --identities or --seed"),
    ("test_the_same_seed", "two fresh runs with one --seed"),
    ("test_an_interrupted_run_ends", "interrupted and resumed run against an uninterrupted one"),
    ("test_bad_train_flags", "bad `train` flags"),
    ("test_out_naming_a_file", "--out a file or an unwritable place"),
    ("test_bad_evaluate_flags", "bad `evaluate` flags"),
    ("test_api_arguments", "bad arguments to the Python API"),
]


def main() -> int:
    command = [sys.executable, "-m", "pytest", "tests/test_faults.py", "-q", "-rA",
               "-p", "no:cacheprovider", "-o", "addopts="]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    outcomes = re.findall(r"^(PASSED|FAILED|ERROR) tests/test_faults\.py::(\w+)", result.stdout,
                          re.MULTILINE)
    if not outcomes:
        print(result.stdout[-3000:], result.stderr[-3000:])
        return 2
    tried, lost = Counter(), Counter()
    for outcome, name in outcomes:
        kind = next((label for prefix, label in KINDS if name.startswith(prefix)), name)
        tried[kind] += 1
        lost[kind] += outcome != "PASSED"
    print("| fault or input | cases | cases that lost work or gave a traceback |")
    print("|---|---|---|")
    for _, label in KINDS:
        if tried[label]:
            print(f"| {label} | {tried[label]} | {lost[label]} |")
    print(f"| **all** | **{sum(tried.values())}** | **{sum(lost.values())}** |")
    return 0 if not sum(lost.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

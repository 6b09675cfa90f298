"""Shared helpers for the benchmarks: timing by median, a description of the machine."""

from __future__ import annotations

import os
import platform
import statistics
import time


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

"""Configuration shared by every chapter: profiles and seeding.

A *profile* sizes everything for one kind of machine: ``tiny`` (the tests), ``cpu`` (the book
on a laptop CPU, the default) and ``paper`` (256 px, the paper's values, for a GPU).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

PROFILES = ("tiny", "cpu", "paper")


def default_profile() -> str:
    """``"paper"`` when a CUDA GPU is present, else ``"cpu"``; ``FEWSHOT_TH_PROFILE`` overrides."""
    chosen = os.environ.get("FEWSHOT_TH_PROFILE")
    if chosen:
        if chosen not in PROFILES:
            raise ValueError(f"FEWSHOT_TH_PROFILE must be one of {PROFILES}, got {chosen!r}")
        return chosen
    return "paper" if torch.cuda.is_available() else "cpu"


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so that a chapter runs the same every time."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

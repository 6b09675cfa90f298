"""Pretrained weights that live outside the package: found in the torch hub cache, or
downloaded there when online (``FEWSHOT_TH_OFFLINE=1`` forbids downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["offline", "cached_or_downloaded"]


def offline() -> bool:
    """True when ``FEWSHOT_TH_OFFLINE`` is set to anything but 0: never try to download."""
    return os.environ.get("FEWSHOT_TH_OFFLINE", "0") not in ("", "0")


def cached_or_downloaded(file: str, url: str, what: str, instead: str,
                         error: type[Exception]) -> Path:
    """The path of ``file`` in the torch hub cache (``$TORCH_HOME/hub/checkpoints``),
    downloaded from ``url`` first when it is missing and downloads are allowed.

    Raises ``error`` naming the file, the directory, why it could not be downloaded and what
    to do ``instead`` when neither works.
    """
    directory = Path(torch.hub.get_dir()) / "checkpoints"
    path = directory / file
    if path.exists():
        return path
    reason = "downloads are disabled (FEWSHOT_TH_OFFLINE)"
    if not offline():
        try:
            directory.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(path), progress=True)
        except Exception as exc:  # any network or disk failure: not available
            reason = str(exc)
    if not path.exists():
        raise error(f"{what} {file} are not in {directory} and could not be downloaded "
                    f"({reason}). Copy the file there from an online machine, pass its path, "
                    f"or {instead}.")
    return path

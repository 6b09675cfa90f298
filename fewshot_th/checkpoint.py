"""Safe, atomic checkpoints: tensors in safetensors, everything else in JSON.

A checkpoint ``step-00001000`` is two files, ``.safetensors`` (tensors only: loading it cannot
execute code, unlike a pickle) and ``.json`` (configuration, counters, RNG states, and the
SHA-256 of the tensor file). Each file is written under a temporary name, flushed to disk
(fsync) and renamed into place, and the JSON is written last: a checkpoint exists only once
both files are complete, so a kill or a power cut during saving never corrupts the last good
one. Loading checks the checksum, so a file damaged later is named, not trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import cache_directory

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "list_checkpoints",
           "load_latest_intact", "clean_directory", "CheckpointError", "flatten_optimizer",
           "unflatten_optimizer", "atomic_write", "cache_entry",
           "load_cached", "save_cached"]

CHECKSUM = "tensors_sha256"


class CheckpointError(ValueError):
    """A checkpoint is incomplete, unreadable or corrupt (the message names its file)."""


def _fsync(path: Path, directory: bool = False) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        if not directory:  # some file systems cannot sync a directory; a file must sync
            raise
    finally:
        os.close(descriptor)


def atomic_write(path: Path, write) -> None:
    """``write(temporary)``, flush it to disk, then rename it to ``path``: ``path`` is either
    the old file or the complete new one. A failed write (e.g. a full disk) leaves nothing."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        write(temporary)
        _fsync(temporary)
        os.replace(temporary, path)  # atomic on POSIX and Windows
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync(path.parent, directory=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``directory`` (their JSON files), oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.glob("step-*.json") if p.with_suffix(".safetensors").exists()]
    return sorted(found)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint in ``directory``, or ``None`` (not checked for damage:
    ``load_latest_intact`` is)."""
    found = list_checkpoints(directory)
    return found[-1] if found else None


def clean_directory(directory: str | os.PathLike) -> list[Path]:
    """Remove what an interrupted save leaves behind in a run directory: temporary files, and
    tensor files whose JSON was never written (a kill between the two writes, or during the
    pruning of old checkpoints). Returns the removed paths."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    removed = [p for p in directory.glob(".step-*.tmp")]
    removed += [p for p in directory.glob("step-*.safetensors")
                if not p.with_suffix(".json").exists()]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def save_checkpoint(directory: str | os.PathLike, step: int, tensors: dict[str, torch.Tensor],
                    meta: dict, keep: int = 3) -> Path:
    """Write checkpoint ``step`` atomically and keep only the newest ``keep`` checkpoints.

    Returns the path of its JSON file.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"step-{step:08d}"
    cpu_tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    checksum = {}

    def write_tensors(path: Path) -> None:
        save_file(cpu_tensors, str(path))
        checksum[CHECKSUM] = _sha256(path)

    atomic_write(stem.with_suffix(".safetensors"), write_tensors)
    text = json.dumps({**meta, **checksum, "step": step}, indent=1, sort_keys=True)
    atomic_write(stem.with_suffix(".json"), lambda p: p.write_text(text))
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink()
        old.with_suffix(".safetensors").unlink(missing_ok=True)
    return stem.with_suffix(".json")


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, meta)`` of a checkpoint, given its ``.json`` or ``.safetensors`` path.

    Only safetensors and JSON are read: nothing in the files can run as code. A file that is
    missing raises ``FileNotFoundError``; one that is truncated, unreadable or does not match
    the checksum saved with it raises ``CheckpointError`` naming it.
    """
    path = Path(path)
    if path.suffix not in (".json", ".safetensors"):
        raise ValueError(f"a checkpoint is a .json and a .safetensors file, got {path.name}")
    meta_path, tensor_path = path.with_suffix(".json"), path.with_suffix(".safetensors")
    for p in (meta_path, tensor_path):
        if not p.exists():
            raise FileNotFoundError(f"checkpoint file {p} is missing")
    try:
        meta = json.loads(meta_path.read_text())
        if not isinstance(meta, dict) or "step" not in meta:
            raise ValueError("no step in it")
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"checkpoint file {meta_path} is damaged ({error})") from None
    expected = meta.pop(CHECKSUM, None)  # checkpoints written before checksums: unchecked
    if expected is not None and _sha256(tensor_path) != expected:
        raise CheckpointError(f"checkpoint file {tensor_path} is corrupt: it does not match "
                              "the SHA-256 saved with it")
    try:
        tensors = load_file(str(tensor_path))
    except Exception as error:  # safetensors raises its own error type for damaged files
        raise CheckpointError(f"checkpoint file {tensor_path} is damaged ({error})") from None
    return tensors, meta


def load_latest_intact(directory: str | os.PathLike, check=None):
    """``(path, tensors, meta)`` of the newest checkpoint in ``directory`` that loads (and,
    given ``check(tensors, meta)``, passes it: it raises ``CheckpointError`` to reject one).
    Damaged newer ones are skipped with a warning that names them; ``CheckpointError`` if
    none is intact, ``FileNotFoundError`` if there is none."""
    found = list_checkpoints(directory)
    if not found:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    problems = []
    for path in reversed(found):
        try:
            tensors, meta = load_checkpoint(path)
            if check is not None:
                check(tensors, meta)
        except CheckpointError as error:
            warnings.warn(f"skipping checkpoint {path.name}: {error}", stacklevel=2)
            problems.append(str(error))
            continue
        return path, tensors, meta
    raise CheckpointError(f"no intact checkpoint in {directory}: " + "; ".join(problems))


def flatten_optimizer(optimizer: torch.optim.Optimizer, prefix: str):
    """An optimizer's state as ``(tensors, json_meta)`` for ``save_checkpoint``."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            name = f"{prefix}.state.{index}.{key}"
            if isinstance(value, torch.Tensor):
                tensors[name] = value
            else:
                scalars[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def unflatten_optimizer(optimizer: torch.optim.Optimizer, prefix: str,
                        tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Load what ``flatten_optimizer`` produced back into ``optimizer``."""
    state: dict[int, dict] = {}
    for name, value in list(tensors.items()) + list(meta["scalars"].items()):
        if not name.startswith(prefix + ".state."):
            continue
        index, key = name[len(prefix) + 7:].split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = meta["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ------------------------------------------------------------ results cached between chapters

def cache_entry(kind: str, key: dict) -> Path:
    """The folder of a cached result in ``config.cache_directory()``: ``kind`` and a hash of
    ``key``, which must hold everything that decides the result (JSON-serialisable)."""
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_directory() / f"{kind}-{name}"


def load_cached(entry: Path, step: int = 0) -> tuple[dict[str, torch.Tensor], dict] | None:
    """``(tensors, meta)`` of a cached result, or None when it is missing or damaged (then it
    is computed again)."""
    try:
        return load_checkpoint(entry / f"step-{step:08d}.json")
    except (FileNotFoundError, CheckpointError):
        return None


def save_cached(entry: Path, tensors: dict[str, torch.Tensor], meta: dict, what: str,
                step: int = 0) -> None:
    """Keep a result (``what``, for the warning) in the cache, atomically; a cache that cannot
    be written only warns, and the result is computed again next time."""
    try:
        save_checkpoint(entry, step, tensors, meta, keep=1)
    except OSError as error:
        warnings.warn(f"could not cache {what} in {entry} ({error}); it will be computed "
                      "again (set FEWSHOT_TH_CACHE to a writable folder)", stacklevel=3)

"""Carry a training checkpoint to and from a lent GPU machine, in parts it accepts.

A `cpu`-profile checkpoint is 64 MB (E, G, D and both Adam states, float32); the device tool
takes at most 64 MiB of working tree there and returns files of at most 16 MiB each.
``pack_checkpoint`` splits it into parts (41 MB in all: Adam's moments
in bfloat16, everything else exact); ``unpack_checkpoint`` joins them into a checkpoint that
``fewshot-th train --resume`` continues.

    python bench/checkpoint_parts.py pack runs/cpu/step-00003500.json .carry/parts
    python bench/checkpoint_parts.py unpack OUT/final runs/cpu-continued
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from fewshot_th.checkpoint import atomic_write, load_checkpoint, save_checkpoint

_MOMENTS = (".exp_avg", ".exp_avg_sq")  # Adam's moments: the only tensors packed lossily


def pack_checkpoint(path: str | os.PathLike, out: str | os.PathLike,
                    max_mib: float = 15.0) -> list[Path]:
    """Split checkpoint ``path`` into ``out/part-N.safetensors`` files of at most ``max_mib``
    MiB each, plus ``out/checkpoint.json``: to carry a run to another machine whose transfers
    limit a file's size (``bench/gpu_continue.sh``). Adam's moments are stored in bfloat16
    (float32's range, so no second moment underflows; 0.4% relative error, which Adam's next
    steps do not notice), which halves the optimiser state; everything else stays exact.
    ``unpack_checkpoint`` puts it back together. Returns the parts' paths.
    """
    if not max_mib > 0:
        raise ValueError(f"max_mib must be positive, got {max_mib!r}")
    tensors, meta = load_checkpoint(path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*.safetensors"):
        old.unlink()
    limit = max_mib * 2**20 * 0.98  # room for each file's header
    parts, current, size = [], {}, 0
    for name in sorted(tensors):
        tensor = tensors[name]
        if name.endswith(_MOMENTS):
            tensor = tensor.to(torch.bfloat16)
        nbytes = tensor.numel() * tensor.element_size()
        if nbytes > limit:
            raise ValueError(f"tensor {name} alone is {nbytes / 2**20:.1f} MiB: give a "
                             f"max_mib above that")
        if current and size + nbytes > limit:
            parts.append(current)
            current, size = {}, 0
        current[name] = tensor.contiguous()
        size += nbytes
    parts.append(current)
    paths = []
    for index, part in enumerate(parts):
        paths.append(out / f"part-{index}.safetensors")
        atomic_write(paths[-1], lambda p, part=part: save_file(part, str(p)))
    text = json.dumps(meta, indent=1, sort_keys=True)
    atomic_write(out / "checkpoint.json", lambda p: p.write_text(text))
    return paths


def unpack_checkpoint(parts: str | os.PathLike, directory: str | os.PathLike) -> Path:
    """Join what ``pack_checkpoint`` wrote in ``parts`` into an ordinary checkpoint in
    ``directory`` (Adam's moments back in float32), which ``Trainer.load`` and ``fewshot-th
    train --resume`` continue. Returns its JSON path."""
    parts = Path(parts)
    files = sorted(parts.glob("part-*.safetensors"))
    if not files or not (parts / "checkpoint.json").exists():
        raise FileNotFoundError(f"{parts} holds no packed checkpoint (part-*.safetensors and "
                                f"checkpoint.json, as pack_checkpoint writes them)")
    tensors = {}
    for file in files:
        for name, tensor in load_file(str(file)).items():
            tensors[name] = tensor.float() if name.endswith(_MOMENTS) else tensor
    meta = json.loads((parts / "checkpoint.json").read_text())
    step = meta.pop("step")
    # keep every checkpoint already in ``directory``: unpacking must not delete any
    return save_checkpoint(directory, step, tensors, meta, keep=1_000_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pack = sub.add_parser("pack", help="checkpoint (.json or .safetensors) -> folder of parts")
    pack.add_argument("checkpoint", type=Path)
    pack.add_argument("out", type=Path)
    pack.add_argument("--max-mib", type=float, default=15.0)
    unpack = sub.add_parser("unpack", help="folder of parts -> checkpoint in a run folder")
    unpack.add_argument("parts", type=Path)
    unpack.add_argument("run", type=Path)
    args = parser.parse_args()
    if args.command == "pack":
        for path in pack_checkpoint(args.checkpoint, args.out, args.max_mib):
            print(path, f"{path.stat().st_size / 2**20:.1f} MiB")
    else:
        print(unpack_checkpoint(args.parts, args.run))


if __name__ == "__main__":
    main()

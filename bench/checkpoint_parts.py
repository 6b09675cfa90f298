"""Carry a training checkpoint to and from a lent GPU machine, in parts it accepts.

A `cpu`-profile checkpoint is 64 MB (E, G, D and both Adam states, float32); the device tool
takes at most 64 MiB of working tree there and returns files of at most 16 MiB each.
``fewshot_th.checkpoint.pack_checkpoint`` splits it into parts (41 MB in all: Adam's moments
in bfloat16, everything else exact); ``unpack_checkpoint`` joins them into a checkpoint that
``fewshot-th train --resume`` continues.

    python bench/checkpoint_parts.py pack runs/cpu/step-00003500.json .carry/parts
    python bench/checkpoint_parts.py unpack OUT/final runs/cpu-continued
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fewshot_th.checkpoint import pack_checkpoint, unpack_checkpoint


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

"""Train the SynthHeads landmark network of the ``synthlandmarks`` content term and ship it.

    python bench/train_landmark_net.py --steps 1500

Trains on SynthHeads training people of seed 2 (``fewshot_th.landmark_net``), measures its
landmark error on 20 test people and writes ``synthheads-landmarks.safetensors`` and
``.json`` (with that error, the command and the time) into ``fewshot_th/assets``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fewshot_th.landmark_net import (
    LANDMARK_ASSET,
    landmark_net_error,
    save_landmark_net,
    train_landmark_net,
)
from fewshot_th.pretrained import ASSETS

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--identities", type=int, default=500)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--name", default=LANDMARK_ASSET)
    parser.add_argument("--out", default=str(ASSETS))
    args = parser.parse_args()
    start = time.perf_counter()
    net = train_landmark_net(args.steps, identities=args.identities, seed=args.seed)
    minutes = (time.perf_counter() - start) / 60
    error = landmark_net_error(net)
    command = f"python bench/train_landmark_net.py --steps {args.steps}"
    if args.identities != 500 or args.seed != 2 or args.name != LANDMARK_ASSET:
        command += f" --identities {args.identities} --seed {args.seed} --name {args.name}"
    info = {"command": command, "machine": machine(), "training_minutes": round(minutes, 1),
            "train_identities": args.identities, "train_seed": args.seed, "steps": args.steps,
            "landmark_error_test_px": round(error, 3),
            "landmark_error_protocol": "SynthHeads test split, seed 0, 20 people x 16 frames, "
                                       "mean distance over the 68 points, 64 px frames"}
    save_landmark_net(net, args.out, name=args.name, info=info)
    print(f"{minutes:.1f} min; landmark error on test people: {error:.3f} px")


if __name__ == "__main__":
    main()

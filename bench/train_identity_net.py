"""Train a SynthHeads identity network and ship it in fewshot_th/assets.

    python bench/train_identity_net.py --steps 1500                     # CSIM's network
    python bench/train_identity_net.py --steps 1500 --seed 1 --name synthheads-face-loss

Trains on SynthHeads training identities (``fewshot_th.identity.train_identity_net``),
measures how well it separates the *test* identities (ROC AUC of same-person against
different-person cosine similarities, 20 identities x 6 poses) and writes
``<name>.safetensors`` and ``.json`` (with that AUC, the command and the time).

Two networks are shipped: ``synthheads-identity`` (seed 0), which scores CSIM, and
``synthheads-face-loss`` (seed 1: other people, another initialisation), the face-recognition
term of the ``cpu`` profile's content loss. Separate networks, so that the model is never
trained on the network that scores it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fewshot_th.identity import (
    IDENTITY_ASSET,
    identity_separation,
    save_identity_net,
    train_identity_net,
)
from fewshot_th.pretrained import ASSETS

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--identities", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0,
                        help="SynthHeads seed of the training people and torch's seed")
    parser.add_argument("--name", default=IDENTITY_ASSET)
    parser.add_argument("--out", default=str(ASSETS))
    args = parser.parse_args()
    start = time.perf_counter()
    net = train_identity_net(args.steps, identities=args.identities, seed=args.seed)
    minutes = (time.perf_counter() - start) / 60
    auc = identity_separation(net, identities=20, frames=6)
    command = (f"python bench/train_identity_net.py --steps {args.steps} "
               f"--identities {args.identities}")
    if args.seed or args.name != IDENTITY_ASSET:
        command += f" --seed {args.seed} --name {args.name}"
    info = {"command": command, "machine": machine(), "training_minutes": round(minutes, 1),
            "train_identities": args.identities, "train_seed": args.seed, "steps": args.steps,
            "roc_auc_test": round(auc, 4),
            "roc_auc_protocol": "SynthHeads test split, 20 identities x 6 poses, every pair"}
    save_identity_net(net, args.out, name=args.name, info=info)
    print(f"{minutes:.1f} min; ROC AUC on test identities: {auc:.4f}")


if __name__ == "__main__":
    main()

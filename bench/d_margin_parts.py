"""Where a trained D's margin lives: its features, the per-video W_i and the shared w0.

    python bench/d_margin_parts.py RUN/step-00000500.json [more checkpoints or shipped names]
    python bench/d_margin_parts.py synthheads-cpu --episodes 64

D scores a frame x with landmarks y of training video i as r = v(x, y) · (W_i + w0) + b. On a
fixed batch of training episodes (the videos the checkpoint was trained on), the generated
frame x̂ is drawn from the K = 8 sources, and D's margin r(x) - r(x̂) is split into the part
that goes through W_i and the part that goes through w0:

    r(x) - r(x̂) = (v(x) - v(x̂)) · W_i + (v(x) - v(x̂)) · w0,

next to the sizes of the pieces: ‖v(x)‖, ‖v(x) - v(x̂)‖ (how differently D's trunk sees the
real and the generated frame), ‖W_i‖, ‖w0‖ and ‖ê‖. A D that tells real from generated has a
margin of about 2 (scores near +1 and -1); one whose margin is a hundredth of that scores
the two frames alike whatever its hinge loss says.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from fewshot_th.data import SynthHeads
from fewshot_th.data.episodes import EpisodeDataset, episode_batches
from fewshot_th.pretrained import available, load_pretrained, load_trained

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

# The `cpu` profile's training videos (SynthHeads.description()), on which the shipped
# models, whose records do not name their data, were trained.
CPU_TRAINING_DATA = {"dataset": "SynthHeads", "split": "train", "num_identities": 1000,
                     "num_videos_per_identity": 2, "frames_per_video": 32, "size": 64,
                     "seed": 0}


def load(source: str):
    """A model and its training videos."""
    if source in available():
        model, data = load_pretrained(source), CPU_TRAINING_DATA
    else:
        path = Path(source)
        if not path.exists():
            raise SystemExit(f"{source}: neither a checkpoint file nor a shipped model "
                             f"({', '.join(available())})")
        model = load_trained(path)  # reads and checks the checkpoint; its record is beside it
        data = json.loads(path.with_suffix(".json").read_text()).get("data", CPU_TRAINING_DATA)
    if data.get("dataset") != "SynthHeads":
        raise SystemExit(f"{source}: trained on {data.get('dataset')}, not SynthHeads")
    videos = SynthHeads(**{k: v for k, v in data.items() if k != "dataset"})
    if len(videos) != model.discriminator.num_videos:
        raise SystemExit(f"{source}: D has {model.discriminator.num_videos} rows of W but its "
                         f"training data has {len(videos)} videos")
    return model, videos


def parts(model, videos, episodes: int, seed: int, k: int = 8) -> dict[str, float]:
    """The margin's parts and sizes on ``episodes`` training episodes with ``k`` sources."""
    batch = next(episode_batches(EpisodeDataset(videos, k=k, seed=seed), episodes,
                                 seed=seed + 7))
    D = model.discriminator
    with torch.no_grad():
        _, e_hat = model.embedder(batch["source_frames"], batch["source_landmarks"])
        x_hat = model.generator(batch["target_landmarks"], e_hat)
        v_real = D.embed(batch["target_frame"], batch["target_landmarks"])
        v_fake = D.embed(x_hat, batch["target_landmarks"])
        w_i = D.W[batch["video_index"]]
        dv = v_real - v_fake
        via_w = (dv * w_i).sum(1)
        via_w0 = dv @ D.w0
        return {"‖v(x)‖": float(v_real.norm(dim=1).mean()),
                "‖v(x) - v(x̂)‖": float(dv.norm(dim=1).mean()),
                "‖W_i‖": float(w_i.norm(dim=1).mean()), "‖w0‖": float(D.w0.norm()),
                "‖ê‖": float(e_hat.norm(dim=1).mean()),
                "margin via W_i": float(via_w.mean()), "margin via w0": float(via_w0.mean()),
                "real above generated": float((via_w + via_w0 > 0).float().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="checkpoint .json files or shipped names")
    parser.add_argument("--episodes", type=int, default=32, help="training episodes scored")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.episodes < 1:
        parser.error("--episodes must be positive")
    rows = []
    for source in args.models:
        model, videos = load(source)
        rows.append((source, parts(model, videos, args.episodes, args.seed)))
    keys = list(rows[0][1])
    print("| model | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for source, row in rows:
        cells = [f"{row[k]:+.3f}" if k.startswith("margin") else f"{row[k]:.2f}"
                 if k == "real above generated" else f"{row[k]:.3g}" for k in keys]
        print(f"| {source} | " + " | ".join(cells) + " |")
    print(f"\n{args.episodes} training episodes; {machine()}, torch {torch.__version__}")


if __name__ == "__main__":
    main()

"""Feed-forward quality of a trained model on SynthHeads test identities (never trained on).

For each test identity, ê comes from K frames of the first half of its video; the model then
draws 8 frames of the second half from their landmarks, scored against the exact frames:
SSIM and L1, and identity retrieval (is the generated frame closer to the true identity's
render of that pose than to the other test identities' renders of the same pose?). Two
copying baselines are scored the same way: the mean of the K source frames, and the source
frame whose landmarks are closest to the target's.

    python bench/pretrained_quality.py --pretrained synthheads-cpu
    python bench/pretrained_quality.py --checkpoint /path/to/step-00004000.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from fewshot_th.checkpoint import load_checkpoint
from fewshot_th.config import ModelConfig
from fewshot_th.data import SynthHeads
from fewshot_th.landmarks import draw_landmarks
from fewshot_th.meta import TalkingHeadModel
from fewshot_th.metrics import identity_retrieval, l1, ssim

FRAMES, TARGETS = 64, 8


def load(args) -> TalkingHeadModel:
    if args.pretrained:
        import fewshot_th

        return fewshot_th.load_pretrained(args.pretrained)
    tensors, meta = load_checkpoint(args.checkpoint)
    config = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in meta["model_config"].items()})
    model = TalkingHeadModel.build(config, tensors["discriminator.W"].shape[0])
    model.load_state_tensors(tensors)
    return model.eval()


def evaluate(model: TalkingHeadModel, identities: int, seed: int = 0) -> dict:
    size = model.config.image_size
    test = SynthHeads("test", num_identities=identities, num_videos_per_identity=1,
                      frames_per_video=FRAMES, size=size, seed=seed)
    rng = np.random.default_rng(seed)
    targets = np.sort(rng.choice(np.arange(FRAMES // 2, FRAMES), TARGETS, replace=False))
    results = {}
    for k in (1, 8, 32):
        scores = {name: {"ssim": [], "l1": [], "retrieval": []}
                  for name in ("model", "mean of sources", "nearest-landmark source")}
        for identity in range(identities):
            sources = np.sort(rng.choice(FRAMES // 2, k, replace=False))
            src_frames, src_points = test.get_frames(identity, sources)
            tgt_frames, tgt_points = test.get_frames(identity, targets)
            with torch.no_grad():
                _, e_hat = model.embedder(src_frames[None],
                                          draw_landmarks(src_points, size)[None])
                generated = model.generator(draw_landmarks(tgt_points, size),
                                            e_hat.expand(TARGETS, -1))
            nearest = torch.cdist(tgt_points.flatten(1), src_points.flatten(1)).argmin(1)
            outputs = {"model": generated,
                       "mean of sources": src_frames.mean(0, keepdim=True).expand(TARGETS, -1,
                                                                                  -1, -1),
                       "nearest-landmark source": src_frames[nearest]}
            pose = test.pose(identity, targets)
            candidates = torch.stack([test.render(j, pose) for j in range(identities)], dim=1)
            truth = torch.full((TARGETS,), identity)
            for name, frames in outputs.items():
                scores[name]["ssim"].append(ssim(frames, tgt_frames))
                scores[name]["l1"].append(l1(frames, tgt_frames))
                scores[name]["retrieval"].append(
                    identity_retrieval(frames, candidates, truth).float())
        results[k] = {name: {m: float(torch.cat(v).mean()) for m, v in s.items()}
                      for name, s in scores.items()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pretrained")
    source.add_argument("--checkpoint")
    parser.add_argument("--identities", type=int, default=20)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.manual_seed(0)
    results = evaluate(load(args), args.identities)
    print(f"SynthHeads test identities: {args.identities}, {TARGETS} target frames each "
          f"(second half of the video), K sources from the first half; chance retrieval "
          f"{1 / args.identities:.2f}")
    print(f"{'K':>3} {'method':26s} {'SSIM':>6} {'L1':>6} {'retrieval':>9}")
    for k, by_method in results.items():
        for name, m in by_method.items():
            print(f"{k:>3} {name:26s} {m['ssim']:6.3f} {m['l1']:6.3f} {m['retrieval']:9.2f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()

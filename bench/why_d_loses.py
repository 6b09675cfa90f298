"""Why does D lose what it learns as soon as G trains? Which of G's terms undoes it.

    python bench/why_d_loses.py                      # D alone 200 steps, then 30 G steps
    python bench/why_d_loses.py --d-steps 300 --g-steps 40 --identities 200
    python bench/why_d_loses.py --out bench/data/why_d_loses.json   # the numbers and a plot

A warm start as `fewshot-th train --start-from synthheads-cpu` makes it: the shipped E and G,
a fresh D (zero initial biases) and fresh W. First D and W learn alone (E and G frozen,
`d_warmup_steps`), two D updates a step, until D tells the shipped model's frames from real
ones. Then, from that same state, E and G train alone (D frozen) on one part of their loss at
a time, and D's margin (mean D(real) - D(generated)) on a fixed probe batch of training
episodes is measured every few steps:

* `content`: L_CNT only (the `cpu` profile's pixel and `synthface` terms);
* `score`: -D(x̂) only, the adversarial score;
* `fm`: λ_FM · L_FM only, the feature matching on D's maps;
* `adv`: -D(x̂) + λ_FM · L_FM (L_ADV as the paper has it);
* `all`: L_CNT + L_ADV + L_MCH, the whole generator step of the recipe.

A term that erases D's margin fastest is the one that undoes D in training; `content` says
how much of the margin G's ordinary progress on the pixels removes anyway. The gradient
norms of the terms on E's and G's parameters at the start are printed too.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from fewshot_th.config import profile, training
from fewshot_th.data import SynthHeads
from fewshot_th.data.episodes import episode_batches
from fewshot_th.losses import adversarial_loss, content_loss_from, feature_matching_loss, match_loss
from fewshot_th.meta import TalkingHeadModel
from fewshot_th.nn.discriminator import real_and_fake
from fewshot_th.pretrained import load_pretrained
from fewshot_th.trainer import Trainer

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

VARIANTS = ("content", "score", "fm", "adv", "all")


def plot(results: dict, path: Path) -> None:
    """D's margin against G steps, one line per variant (symmetric log scale: the score
    term's overshoot is a hundred times the margin D had)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for variant, curve in results["variants"].items():
        steps, margins = [c[0] for c in curve], [c[1] for c in curve]
        ax.plot(steps, margins, marker="o", ms=3, label=variant)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("steps of E and G alone (D frozen)")
    ax.set_ylabel("D: mean real - generated score")
    ax.set_title(f"D after {results['d_alone']['steps']} steps alone: which term undoes it")
    ax.legend(title="G trained on", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def margin(model, probe) -> tuple[float, float]:
    """D's mean real-minus-generated score on the probe episodes, and the share of them
    whose real frame it scores above the generated one."""
    model.eval()  # spectral norm's power iterations stay where training left them
    with torch.no_grad():
        _, e_hat = model.embedder(probe["source_frames"], probe["source_landmarks"])
        x_hat = model.generator(probe["target_landmarks"], e_hat)
        real, fake, _, _ = real_and_fake(model.discriminator, probe["target_frame"], x_hat,
                                         probe["target_landmarks"], probe["video_index"])
    model.train()
    return float((real - fake).mean()), float((real > fake).float().mean())


def generator_loss(model, batch, content, train) -> dict[str, torch.Tensor]:
    _, e_hat = model.embedder(batch["source_frames"], batch["source_landmarks"])
    x_hat = model.generator(batch["target_landmarks"], e_hat)
    _, fake, real_maps, fake_maps = real_and_fake(model.discriminator, batch["target_frame"],
                                                  x_hat, batch["target_landmarks"],
                                                  batch["video_index"])
    W = model.discriminator.W[batch["video_index"]].detach()
    parts = {"content": content(x_hat.float(), batch["target_frame"]),
             "score": -fake.mean(),
             "fm": train.lambda_fm * feature_matching_loss(real_maps, fake_maps),
             "mch": match_loss(W, e_hat, train.lambda_mch)}
    parts["adv"] = adversarial_loss(fake, real_maps, fake_maps, train.lambda_fm)
    parts["all"] = parts["content"] + parts["adv"] + parts["mch"]
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-steps", type=int, default=200, help="D-alone steps first")
    parser.add_argument("--g-steps", type=int, default=30, help="G-alone steps per variant")
    parser.add_argument("--every", type=int, default=5, help="measure the margin every N")
    parser.add_argument("--identities", type=int, default=200)
    parser.add_argument("--lr-eg", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the numbers as JSON")
    args = parser.parse_args()
    if min(args.d_steps, args.g_steps, args.every, args.identities) < 1:
        parser.error("--d-steps, --g-steps, --every and --identities must be positive")
    began = time.perf_counter()
    torch.manual_seed(args.seed)
    config = profile("cpu")
    train = training("cpu").with_changes(d_steps=2, d_warmup_steps=args.d_steps,
                                         lr_eg=args.lr_eg)
    videos = SynthHeads("train", num_identities=args.identities, num_videos_per_identity=2,
                        frames_per_video=32, size=config.image_size, seed=args.seed)
    content = content_loss_from(train.content)
    model = TalkingHeadModel.build(config, num_videos=len(videos))
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, videos, train, content, out, seed=args.seed,
                          checkpoint_every=0, sample_every=0)
        trainer.start_from(load_pretrained("synthheads-cpu"), "synthheads-cpu")
        probe = next(episode_batches(trainer.episodes, 16, seed=args.seed + 7))
        before = margin(model, probe)
        history = trainer.run(args.d_steps)
    hinge = sum(r["dsc"] for r in history[-50:]) / len(history[-50:])
    after = margin(model, probe)
    print(f"D alone, {args.d_steps} steps: margin on the probe {before[0]:+.3f} -> "
          f"{after[0]:+.3f}, real above generated {before[1]:.2f} -> {after[1]:.2f}; "
          f"hinge over the last 50 steps {hinge:.2f}")
    # gradient norms of each part on E and G, one batch
    batch = next(episode_batches(trainer.episodes, train.batch_size, seed=args.seed + 11))
    parts = generator_loss(model, batch, content, train)
    eg = [*model.embedder.parameters(), *model.generator.parameters()]
    norms = {}
    for name in ("content", "score", "fm", "mch"):
        grads = torch.autograd.grad(parts[name], eg, retain_graph=True, allow_unused=True)
        norms[name] = float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads
                                           if g is not None)))
    print("gradient norm on E and G: " + ", ".join(f"{k} {v:.3g}" for k, v in norms.items()))
    results = {"d_alone": {"steps": args.d_steps, "before": before, "after": after,
                           "hinge": hinge}, "grad_norms": norms, "variants": {}}
    for p in model.discriminator.parameters():
        p.requires_grad_(False)
    print(f"\nD's margin while E and G train alone on one term (lr {args.lr_eg}):")
    print("| G steps | " + " | ".join(VARIANTS) + " |")
    print("|---" * (len(VARIANTS) + 1) + "|")
    curves = {}
    for variant in VARIANTS:
        copied = copy.deepcopy(model)
        params = [*copied.embedder.parameters(), *copied.generator.parameters()]
        optimizer = torch.optim.Adam(params, lr=args.lr_eg, betas=train.betas)
        batches = episode_batches(trainer.episodes, train.batch_size, seed=args.seed + 1)
        curve = [(0, *margin(copied, probe))]
        for step in range(1, args.g_steps + 1):
            loss = generator_loss(copied, next(batches), content, train)[variant]
            optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=params)
            optimizer.step()
            if step % args.every == 0:
                curve.append((step, *margin(copied, probe)))
        curves[variant] = curve
        results["variants"][variant] = curve
    for row in range(len(curves[VARIANTS[0]])):
        step = curves[VARIANTS[0]][row][0]
        print(f"| {step} | " + " | ".join(f"{curves[v][row][1]:+.3f} ({curves[v][row][2]:.2f})"
                                          for v in VARIANTS) + " |")
    minutes = (time.perf_counter() - began) / 60
    print(f"\n{machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{minutes:.1f} minutes")
    if args.out:
        args.out.write_text(json.dumps({**results, "minutes": minutes,
                                        "machine": machine()}, indent=1))
        plot(results, args.out.with_suffix(".png"))
        print(f"written: {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()

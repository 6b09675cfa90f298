"""Speed of one meta-learning step of E, G and D (content loss excluded).

One step: E embeds K = 8 frames per video, G draws the target, D scores real and fake; the
E+G side (adversarial + feature matching + match loss) and the D side (hinge loss) are each
back-propagated and both Adam optimisers step. Reports seconds per step (median), FLOPs per
step (torch.utils.flop_counter: convolutions, matrix products, attention) and the achieved
FLOP/s as a fraction of this machine's float32 matrix-multiply throughput, measured in the
same run.

    python bench/network_step.py                      # paper profile batch 1, 2; cpu batch 8
    python bench/network_step.py --profiles cpu:8 --steps 10

Each optimisation is measured by an ablation timed in alternation with the full version in
the same run: without channels-last memory format, and with torch's own spectral_norm
(which divides every weight by σ) instead of fewshot_th's (which divides whichever is
smaller, the weight or the layer's output).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm
from torch.utils.flop_counter import FlopCounterMode

from fewshot_th.config import profile
from fewshot_th.nn import Embedder, Generator, ProjectionDiscriminator
from fewshot_th.nn.blocks import SNConv2d, SNLinear

from common import machine

K = 8


def matmul_flops_per_second(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def with_torch_spectral_norm(net: torch.nn.Module) -> torch.nn.Module:
    """The ablation: the same network with torch's parametrization-based spectral norm."""
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (SNConv2d, SNLinear)):
                if isinstance(child, SNConv2d):
                    plain = torch.nn.Conv2d(child.in_channels, child.out_channels,
                                            child.kernel_size, padding=child.padding)
                else:
                    plain = torch.nn.Linear(child.in_features, child.out_features,
                                            bias=child.bias is not None)
                plain.load_state_dict({k: v for k, v in child.state_dict().items()
                                       if k in ("weight", "bias")})
                setattr(parent, name, spectral_norm(plain))
    return net


def make_step(config, batch: int, channels_last: bool = True, torch_sn: bool = False):
    torch.manual_seed(0)
    embedder, generator = Embedder(config), Generator(config)
    discriminator = ProjectionDiscriminator(config, num_videos=64)
    nets = (embedder, generator, discriminator)
    for net in nets:
        if torch_sn:
            with_torch_spectral_norm(net)
        if channels_last:
            net.to(memory_format=torch.channels_last)
    s = config.image_size
    frames, landmarks = torch.rand(batch, K, 3, s, s), torch.rand(batch, K, 3, s, s)
    target, target_landmarks = torch.rand(batch, 3, s, s), torch.rand(batch, 3, s, s)
    index = torch.arange(batch)
    opt_eg = torch.optim.Adam([*embedder.parameters(), *generator.parameters()], lr=5e-5,
                              betas=(0.0, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.0, 0.999))
    d_params = list(discriminator.parameters())
    eg_params = [*embedder.parameters(), *generator.parameters()]

    def forward():
        _, e_hat = embedder(frames, landmarks)
        fake = generator(target_landmarks, e_hat)
        real_score, real_maps = discriminator(target, target_landmarks, index)
        fake_score, fake_maps = discriminator(fake, target_landmarks, index)
        matching = sum(F.l1_loss(f, r.detach()) for f, r in zip(fake_maps, real_maps))
        loss_eg = -fake_score.mean() + 10 * matching + \
            80 * F.l1_loss(discriminator.W[index], e_hat)
        loss_d = F.relu(1 - real_score).mean() + F.relu(1 + fake_score).mean()
        return loss_eg, loss_d

    def step():
        opt_eg.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)
        loss_eg, loss_d = forward()
        # D's fake pass serves both losses: D's gradients come from loss_d only, E's and G's
        # from loss_eg only (backward(inputs=...) limits where gradients accumulate).
        loss_d.backward(inputs=d_params, retain_graph=True)
        loss_eg.backward(inputs=eg_params)
        opt_eg.step()
        opt_d.step()

    return step


VARIANTS = {
    "fewshot_th": {},
    "no channels-last": {"channels_last": False},
    "torch spectral_norm": {"torch_sn": True},
}


def measure(name: str, batch: int, steps: int, variants: list[str]) -> dict:
    """Median seconds per step of each variant, timed in alternation (A B C A B C ...)."""
    config = profile(name)
    runs = {v: make_step(config, batch, **VARIANTS[v]) for v in variants}
    for step in runs.values():
        step()  # warm-up: allocations, oneDNN kernel selection
    with FlopCounterMode(display=False) as counter:
        runs[variants[0]]()
    times = {v: [] for v in variants}
    for _ in range(steps):
        for v, step in runs.items():
            start = time.perf_counter()
            step()
            times[v].append(time.perf_counter() - start)
    return {"flops": counter.get_total_flops(),
            "seconds": {v: statistics.median(t) for v, t in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["paper:1", "paper:2", "cpu:8"],
                        help="profile:batch pairs")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    peak = matmul_flops_per_second()
    print(f"machine: {machine()}; torch threads {torch.get_num_threads()}; K = {K}")
    print(f"float32 matmul (2048^3): {peak / 1e9:.0f} GFLOP/s")
    for spec in args.profiles:
        name, batch = spec.split(":")
        r = measure(name, int(batch), args.steps, args.variants)
        gflop = r["flops"] / 1e9
        for variant, seconds in r["seconds"].items():
            print(f"{name:6s} batch {batch}  {variant:20s} {seconds:7.3f} s/step  "
                  f"{gflop:7.1f} GFLOP/step  {gflop / seconds:5.0f} GFLOP/s = "
                  f"{100 * r['flops'] / seconds / peak:3.0f}% of matmul")
    peak_after = matmul_flops_per_second()
    print(f"float32 matmul again after the runs: {peak_after / 1e9:.0f} GFLOP/s")


if __name__ == "__main__":
    main()

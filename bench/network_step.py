"""Speed of one meta-learning step of E, G and D (VGG content networks excluded).

One step is one call of ``fewshot_th.meta.meta_step``, the function the trainer runs: E
embeds K = 8 frames per video, G draws the target, D scores real and fake in one pass; the
E+G side (pixel L1 + adversarial + feature matching + match loss) and the D side (hinge loss)
are each back-propagated and both Adam optimisers step. Reports seconds per step (median), FLOPs per
step (torch.utils.flop_counter: convolutions, matrix products, attention) and the achieved
FLOP/s as a fraction of this machine's float32 matrix-multiply throughput, measured in the
same run.

    python bench/network_step.py                      # paper profile batch 1, 2; cpu batch 8
    python bench/network_step.py --profiles cpu:8 --steps 10

Each optimisation is measured by an ablation timed in alternation with the full version in
the same run: without channels-last memory format, and with torch's own spectral_norm
(which divides every weight by σ) instead of fewshot_th's (which divides whichever is
smaller, the weight or the layer's output). ``--variants fewshot_th "bfloat16 autocast"``
times the step in float32 against bfloat16 autocast (what ``Trainer`` uses on a CPU with
native bfloat16, ``fewshot_th.meta.fast_bfloat16``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import time

import torch
from torch.nn.utils.parametrizations import spectral_norm
from torch.utils.flop_counter import FlopCounterMode

from fewshot_th.config import profile, training
from fewshot_th.losses import ContentLoss
from fewshot_th.meta import TalkingHeadModel, make_optimizers, meta_step
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


def make_step(config, batch: int, channels_last: bool = True, torch_sn: bool = False,
              train_name: str = "paper", bfloat16: bool = False):
    """One call of ``fewshot_th.meta.meta_step`` on a fixed random batch, as a closure."""
    torch.manual_seed(0)
    model = TalkingHeadModel.build(config, num_videos=64)
    for net in model.networks().values():
        if torch_sn:
            with_torch_spectral_norm(net)
        if channels_last:
            net.to(memory_format=torch.channels_last)
    s = config.image_size
    batch_tensors = {"source_frames": torch.rand(batch, K, 3, s, s),
                     "source_landmarks": torch.rand(batch, K, 3, s, s),
                     "target_frame": torch.rand(batch, 3, s, s),
                     "target_landmarks": torch.rand(batch, 3, s, s),
                     "video_index": torch.arange(batch)}
    # The profile's recipe, with pixel L1 as the content loss (VGG networks not counted).
    train = training(train_name).with_changes(content=(("pixel", 1.0),))
    opt_eg, opt_d = make_optimizers(model, train)
    content = ContentLoss({"pixel": 1.0})

    autocast = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16) if bfloat16 \
        else contextlib.nullcontext

    def step():
        meta_step(model, batch_tensors, opt_eg, opt_d, content, train, autocast=autocast,
                  step=1000)

    return step


VARIANTS = {
    "fewshot_th": {},
    "no channels-last": {"channels_last": False},
    "torch spectral_norm": {"torch_sn": True},
    "bfloat16 autocast": {"bfloat16": True},
}
DEFAULT_VARIANTS = ["fewshot_th", "no channels-last", "torch spectral_norm"]


def measure(name: str, batch: int, steps: int, variants: list[str]) -> dict:
    """Median seconds per step of each variant, timed in alternation (A B C A B C ...)."""
    config = profile(name)
    runs = {v: make_step(config, batch, train_name=name, **VARIANTS[v]) for v in variants}
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
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS,
                        choices=list(VARIANTS))
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

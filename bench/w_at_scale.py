"""W at VoxCeleb2 scale under torchrun: sparse row exchange against a dense all-reduce.

    torchrun --standalone --nproc_per_node 2 bench/w_at_scale.py --videos 145000 --dim 512

Every process holds W (``--videos`` x ``--dim`` float32, D's per-video vectors) and a
gradient that touches only the rows of its ``--batch`` videos, as one meta-learning step
leaves it. Timed, alternately, ``--repeats`` times each (medians): averaging the gradient by
``DistributedNetworks.reduce_rows`` (each process sends its touched rows and their indices)
and by ``torch.distributed.all_reduce`` of the whole gradient (what DistributedDataParallel
would do with W left in); then one Adam step over W and the time and size of saving it. The
two averages are checked to agree. On CPUs the processes talk through gloo; on GPUs
(``--device cuda``) through NCCL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist

from fewshot_th.distributed import DistributedNetworks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=145_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8, help="videos per process per step")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        parser.error("run it under torchrun with at least 2 processes")
    dist.init_process_group("nccl" if args.device.startswith("cuda") else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ['LOCAL_RANK'])}"
                          if args.device.startswith("cuda") else "cpu")
    W = torch.nn.Parameter(torch.zeros(args.videos, args.dim, device=device))
    exchange = DistributedNetworks.__new__(DistributedNetworks)  # only its row exchange
    exchange.world_size = world
    generator = torch.Generator().manual_seed(rank)
    sparse, dense = [], []
    for _ in range(args.repeats):
        index = torch.randint(args.videos, (args.batch,), generator=generator).to(device)
        rows = torch.randn(args.batch, args.dim, generator=generator).to(device)
        for method, times in (("sparse", sparse), ("dense", dense)):
            W.grad = torch.zeros_like(W)
            W.grad.index_add_(0, index, rows)
            dist.barrier()
            start = time.perf_counter()
            if method == "sparse":
                exchange.reduce_rows(W, index)
            else:
                dist.all_reduce(W.grad)
                W.grad.div_(world)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            if method == "sparse":
                kept = W.grad.clone()
        assert torch.allclose(kept, W.grad, atol=1e-6), "the two averages differ"
    optimizer = torch.optim.Adam([W], lr=2e-4)
    start = time.perf_counter()
    optimizer.step()
    adam = time.perf_counter() - start
    saved, size = 0.0, 0
    if rank == 0:
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, "W.pt")
            start = time.perf_counter()
            torch.save({"W": W.detach(), "adam": optimizer.state_dict()}, path)
            saved, size = time.perf_counter() - start, os.path.getsize(path)
        mib = args.videos * args.dim * 4 / 2**20
        print(f"W {args.videos:,} x {args.dim} float32 = {mib:.0f} MiB, {world} processes, "
              f"{args.batch} videos each per step, {args.device}")
        print(f"average the gradient, median of {args.repeats}: touched rows "
              f"{1000 * statistics.median(sparse):.1f} ms, whole gradient (all_reduce) "
              f"{1000 * statistics.median(dense):.1f} ms: "
              f"{statistics.median(dense) / statistics.median(sparse):.0f}x")
        print(f"one Adam step over W {1000 * adam:.0f} ms; saving W with Adam's state "
              f"{size / 2**20:.0f} MiB in {saved:.1f} s")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

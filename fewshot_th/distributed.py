"""Meta-learning on several GPUs or machines (``torchrun``): E, G and D replicated in every
process, each process training on its share of every global batch.

DistributedDataParallel averages the gradients of E, G and D's trunk, w0 and b after each
backward pass. W, D's matrix of per-video vectors, is left out of it: at VoxCeleb2 scale it
has about 145,000 rows, and a step touches only the rows of the videos in its batch, so
averaging the dense gradient would move hundreds of megabytes a step for nothing.
``DistributedNetworks.reduce_rows`` sends only the touched rows instead; every process keeps
a full copy of W, identical everywhere because every process applies the same update.
"""

from __future__ import annotations

import torch

__all__ = ["DistributedNetworks", "join_process_group"]


def join_process_group(device: str) -> str | None:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1): join the process group (NCCL on GPUs, gloo on
    CPUs) and return the device of this process (``cuda:LOCAL_RANK`` when ``device`` asks for
    a GPU); ``None`` in a single process."""
    import os

    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    if torch.cuda.is_available() and device != "cpu":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        return f"cuda:{local_rank}"
    dist.init_process_group("gloo")
    return device


class DistributedNetworks:
    """``embedder``, ``generator`` and ``discriminator`` of a ``TalkingHeadModel``, each
    wrapped in DistributedDataParallel with W excluded; call inside an initialised process
    group (``torchrun``)."""

    def __init__(self, model):
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel as DDP

        self.world_size = dist.get_world_size()
        # DDP matches top-level names both as "W" and as ".W" (module name "" + "." + name).
        DDP._set_params_and_buffers_to_ignore_for_model(model.discriminator, ["W", ".W"])
        self.embedder = DDP(model.embedder)
        self.generator = DDP(model.generator)
        self.discriminator = DDP(model.discriminator)

    def gather_rows(self, index: torch.Tensor, rows: torch.Tensor):
        """Every process's ``(index, rows)`` pairs, duplicates within a process removed."""
        import torch.distributed as dist

        local, first = _unique_first(index)
        size = index.numel()
        ids = torch.full((size,), -1, dtype=torch.long, device=rows.device)
        ids[: local.numel()] = local
        padded = torch.zeros(size, rows.shape[1], dtype=rows.dtype, device=rows.device)
        padded[: local.numel()] = rows[first]
        all_ids = [torch.empty_like(ids) for _ in range(self.world_size)]
        all_rows = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(all_ids, ids)
        dist.all_gather(all_rows, padded)
        ids, rows = torch.cat(all_ids), torch.cat(all_rows)
        keep = ids >= 0
        return ids[keep], rows[keep]

    def reduce_rows(self, W: torch.Tensor, index: torch.Tensor) -> None:
        """Average W's gradient across processes, sending only the rows ``index`` this step
        touched: each process gathers every process's (row index, gradient row) pairs and
        adds them up."""
        ids, rows = self.gather_rows(index, W.grad[index])
        W.grad.zero_()
        W.grad.index_add_(0, ids, rows)
        W.grad.div_(self.world_size)


def _unique_first(index: torch.Tensor):
    """Unique values of ``index`` and the position of each one's first occurrence."""
    unique, inverse = index.unique(return_inverse=True)
    first = torch.full_like(unique, index.numel())
    first.scatter_reduce_(0, inverse, torch.arange(index.numel(), device=index.device), "amin")
    return unique, first

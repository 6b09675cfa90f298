"""Training E and G: a reconstruction-only warm-up used by the chapters on the networks.

The paper's meta-learning stage (chapter 6) trains E, G and D together with content,
adversarial and match losses. Chapters 2-4 need something smaller: a loop that fits E and G
to reproduce target frames with a pixel L1 loss for a fixed wall-clock budget, so that a
reader sees within two minutes what each network is for.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .nn import Embedder, Generator

__all__ = ["fit_reconstruction"]


def fit_reconstruction(embedder: Embedder, generator: Generator, batches: Iterator[dict], *,
                       seconds: float, lr: float = 1e-3, progress: bool = True) -> list[float]:
    """Train E and G for ``seconds`` of wall-clock time to minimise ``|G(y_t, ê) - x_t|_1``.

    ``batches`` yields episode batches (``fewshot_th.data.episode_batches``). Returns the loss
    of every step. The networks are left in training mode.
    """
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    params = [*embedder.parameters(), *generator.parameters()]
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
    embedder.train()
    generator.train()
    losses: list[float] = []
    start = time.perf_counter()
    with tqdm(total=round(seconds), unit="s", disable=not progress,
              desc="fitting E and G (L1)") as bar:
        while (elapsed := time.perf_counter() - start) < seconds:
            batch = next(batches)
            _, e_hat = embedder(batch["source_frames"], batch["source_landmarks"])
            fake = generator(batch["target_landmarks"], e_hat)
            loss = F.l1_loss(fake, batch["target_frame"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.n = min(round(elapsed), bar.total)
            bar.set_postfix(step=len(losses), l1=f"{losses[-1]:.3f}")
    return losses

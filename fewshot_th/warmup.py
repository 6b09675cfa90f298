"""The reconstruction warm-up of chapters 2 and 3: E and G trained on the pixel loss alone
(no D, no content networks), and cached so that chapter 3 starts from chapter 2's networks.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from .checks import is_int
from .config import ModelConfig, as_device, seed_everything
from .data.episodes import EpisodeDataset, episode_batches, to_device
from .data.synthetic import SynthHeads
from .nn import Embedder, Generator
from .trainer import data_description

__all__ = ["fit_reconstruction", "reconstruction_warmup"]


def fit_reconstruction(embedder: Embedder, generator: Generator, batches: Iterator[dict], *,
                       steps: int | None = None, seconds: float | None = None,
                       lr: float = 1e-3, progress: bool = True) -> list[float]:
    """Train E and G for ``steps`` steps (or ``seconds`` of wall-clock time, whichever comes
    first when both are given) to minimise ``|G(y_t, ê) - x_t|_1``. A fixed number of steps
    gives the same result on every machine; a time budget does not.

    The reconstruction-only warm-up of chapters 2-3: no D, no content networks. ``batches``
    yields episode batches (``fewshot_th.data.episode_batches``), which are moved to the
    device of the networks (put them on a GPU first to train there). Returns the loss of every
    step; the networks are left in training mode.
    """
    if steps is None and seconds is None:
        raise ValueError("give steps (or seconds) for fit_reconstruction")
    if steps is not None and (not is_int(steps)
                              or steps < 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if seconds is not None and not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    seconds = float("inf") if seconds is None else seconds
    params = [*embedder.parameters(), *generator.parameters()]
    device = params[0].device
    if any(p.device != device for p in params):
        raise ValueError("the embedder and the generator are on different devices: move both "
                         "to one (net.to(device))")
    optimizer = torch.optim.Adam(params, lr=lr, betas=(0.5, 0.999))
    embedder.train()
    generator.train()
    losses: list[float] = []
    start = time.perf_counter()
    by_steps = steps is not None
    with tqdm(total=steps if by_steps else round(seconds), unit="step" if by_steps else "s",
              disable=not progress, desc="fitting E and G (L1)") as bar:
        while (elapsed := time.perf_counter() - start) < seconds and \
                (steps is None or len(losses) < steps):
            batch = to_device(next(batches), device)
            _, e_hat = embedder(batch["source_frames"], batch["source_landmarks"])
            fake = generator(batch["target_landmarks"], e_hat)
            loss = F.l1_loss(fake, batch["target_frame"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.n = len(losses) if by_steps else min(round(elapsed), bar.total)
            bar.set_postfix(step=len(losses), l1=f"{losses[-1]:.3f}")
    return losses


def _code_fingerprint() -> str:
    """A hash of the package's code that decides a warm-up (networks, data, training), so that
    a cached result made by other code is never reused."""
    package = Path(__file__).parent
    files = sorted([*package.glob("nn/*.py"), *package.glob("data/*.py"), package / "warmup.py",
                    package / "config.py", package / "landmarks.py"])
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def reconstruction_warmup(config: ModelConfig, steps: int, *, seed: int = 0, device="cpu",
                          cache: bool = True, progress: bool = True):
    """The warm-up of chapters 2 and 3: ``(embedder, generator, losses)`` after
    ``fit_reconstruction`` for ``steps`` steps.

    The data are 200 SynthHeads training identities with 2 videos of 32 frames each, episodes
    of K = 8 frames in batches of 8; ``seed`` seeds the weights and the order of the episodes.
    With ``cache`` the result is kept in ``cache_directory()`` under a name made from
    everything that decides it (configuration, steps, seed, data, device type, torch version,
    the package's code),
    so that chapter 3 starts from chapter 2's networks instead of training them again; a cached
    file that is damaged is trained again. The networks come back in training mode on
    ``device``.
    """
    if not is_int(steps) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig (fewshot_th.config.profile('cpu')), "
                        f"got {config!r}")
    device = as_device(device)
    videos = SynthHeads("train", num_identities=200, num_videos_per_identity=2,
                        frames_per_video=32, size=config.image_size, seed=0)
    key = {"model_config": config.as_dict(), "steps": steps, "seed": seed,
           "data": data_description(videos), "k": 8, "batch_size": 8,
           "device": device.type, "torch": torch.__version__, "code": _code_fingerprint()}
    entry = ckpt.cache_entry("warmup", key)

    def fresh() -> dict[str, torch.nn.Module]:
        seed_everything(seed)
        nets = {"embedder": Embedder(config), "generator": Generator(config)}
        for net in nets.values():
            net.to(device, memory_format=torch.channels_last)
        return nets

    nets = fresh()
    cached = ckpt.load_cached(entry, steps) if cache else None
    if cached is not None:
        tensors, meta = cached
        try:
            for name, net in nets.items():
                net.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items()
                                     if k.startswith(name + ".")})
            if progress:
                print(f"the warm-up of {steps} steps, from the cache ({entry})")
            return nets["embedder"].train(), nets["generator"].train(), meta["losses"]
        except (KeyError, RuntimeError):
            nets = fresh()  # made by other networks: train from the seed's weights
    embedder, generator = nets["embedder"], nets["generator"]
    batches = episode_batches(EpisodeDataset(videos, k=8), batch_size=8, seed=seed,
                              device=device)
    losses = fit_reconstruction(embedder, generator, batches, steps=steps, progress=progress)
    if cache:
        tensors = {f"{name}.{k}": v for name, net in nets.items()
                   for k, v in net.state_dict().items()}
        ckpt.save_cached(entry, tensors, {"losses": losses, "key": key}, "the warm-up", steps)
    return embedder, generator, losses

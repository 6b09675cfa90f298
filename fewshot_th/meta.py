"""The meta-learning stage (Sec. 3.2 of the paper): one step, the loop, checkpoints, resume.

``meta_step`` is one step, readable top to bottom. ``Trainer`` wraps it: Adam with the
profile's learning rates, a tqdm bar, a JSONL metrics log, a grid of samples every N steps,
atomic checkpoints (``fewshot_th.checkpoint``), exact resume, and a guard that stops on a NaN
or infinite loss. ``fit_reconstruction`` is the pixel-loss-only warm-up of chapters 2-3.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from .config import ModelConfig, TrainConfig, as_device, seed_everything
from .data.episodes import EpisodeDataset, episode_batches, to_device
from .data.synthetic import SynthHeads
from .losses import ContentLoss, adversarial_loss, discriminator_hinge_loss, match_loss
from .nn import Embedder, Generator, ProjectionDiscriminator

__all__ = ["TalkingHeadModel", "meta_step", "Trainer", "TrainingDiverged", "RunDirectoryInUse",
           "DataParallel", "fit_reconstruction", "reconstruction_warmup",
           "non_finite", "data_description"]


@dataclass
class TalkingHeadModel:
    """E, G and D of one run, with their ``ModelConfig``."""

    config: ModelConfig
    embedder: Embedder
    generator: Generator
    discriminator: ProjectionDiscriminator

    @classmethod
    def build(cls, config: ModelConfig, num_videos: int) -> TalkingHeadModel:
        return cls(config, Embedder(config), Generator(config),
                   ProjectionDiscriminator(config, num_videos))

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"embedder": self.embedder, "generator": self.generator,
                "discriminator": self.discriminator}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{key}": value for name, net in self.networks().items()
                for key, value in net.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, net in self.networks().items():
            prefix = name + "."
            net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                 if k.startswith(prefix)})

    def to(self, *args, **kwargs) -> TalkingHeadModel:
        for net in self.networks().values():
            net.to(*args, **kwargs)
        return self

    def train(self, mode: bool = True) -> TalkingHeadModel:
        for net in self.networks().values():
            net.train(mode)
        return self

    def eval(self) -> TalkingHeadModel:
        return self.train(False)


class TrainingDiverged(RuntimeError):
    """A loss, a weight or an optimiser state became NaN or infinite."""


class RunDirectoryInUse(ValueError):
    """A fresh run was pointed at a directory that holds another run."""


def non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors that hold a NaN or an infinity."""
    names = [k for k, v in tensors.items() if v.is_floating_point()]
    if not names:
        return []
    finite = torch.stack([torch.isfinite(tensors[k]).all() for k in names]).tolist()
    return [k for k, ok in zip(names, finite) if not ok]


def data_description(videos) -> dict:
    """What a checkpoint records about its training videos, to refuse resuming on others."""
    describe = getattr(videos, "description", None)
    return describe() if callable(describe) else {"dataset": type(videos).__name__,
                                                  "videos": len(videos)}


def _gather_rows(index: torch.Tensor, rows: torch.Tensor, world_size: int):
    """All processes' ``(index, rows)`` pairs, duplicates within a process removed."""
    import torch.distributed as dist

    local, first = _unique_first(index)
    size = index.numel()
    ids = torch.full((size,), -1, dtype=torch.long, device=rows.device)
    ids[: local.numel()] = local
    padded = torch.zeros(size, rows.shape[1], dtype=rows.dtype, device=rows.device)
    padded[: local.numel()] = rows[first]
    all_ids = [torch.empty_like(ids) for _ in range(world_size)]
    all_rows = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(all_ids, ids)
    dist.all_gather(all_rows, padded)
    ids, rows = torch.cat(all_ids), torch.cat(all_rows)
    keep = ids >= 0
    return ids[keep], rows[keep]


def _unique_first(index: torch.Tensor):
    """Unique values of ``index`` and the position of each one's first occurrence."""
    unique, inverse = index.unique(return_inverse=True)
    first = torch.full_like(unique, index.numel())
    first.scatter_reduce_(0, inverse, torch.arange(index.numel(), device=index.device), "amin")
    return unique, first


def _init_w_from_e_hat(D: ProjectionDiscriminator, index: torch.Tensor, e_hat: torch.Tensor,
                       parallel: DataParallel | None) -> None:
    """W_i := ê_i for videos seen for the first time (``TrainConfig.init_w_from_e_hat``)."""
    with torch.no_grad():
        ids, rows = index, e_hat.detach().float()
        if parallel is not None:  # every process initialises every process's new rows
            ids, rows = _gather_rows(index, rows, parallel.world_size)
        fresh = ~D.W_initialised[ids]
        if fresh.any():
            D.W[ids[fresh]] = rows[fresh].to(D.W.dtype)
            D.W_initialised[ids[fresh]] = True


def _reduce_rows(W: torch.Tensor, index: torch.Tensor, world_size: int) -> None:
    """Average W's gradient across processes, sending only the rows this step touched.

    At VoxCeleb2 scale W has ~145k rows and a step touches a handful: an all-reduce of the
    dense gradient (DDP's default) would move 300 MB per step for nothing. Each process
    gathers the (row index, gradient row) pairs of every process instead, and adds them up.
    """
    ids, rows = _gather_rows(index, W.grad[index], world_size)
    W.grad.zero_()
    W.grad.index_add_(0, ids, rows)
    W.grad.div_(world_size)


class DataParallel:
    """E, G and D wrapped in DistributedDataParallel, with W reduced sparsely.

    Every process runs the same step on its share of the global batch; DDP averages the
    gradients of E, G and D's trunk, w0 and b. W is excluded from DDP (it would be all-reduced
    densely) and averaged by ``_reduce_rows`` instead.
    """

    def __init__(self, model: TalkingHeadModel):
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel as DDP

        self.world_size = dist.get_world_size()
        # DDP matches top-level names both as "W" and as ".W" (module name "" + "." + name).
        DDP._set_params_and_buffers_to_ignore_for_model(model.discriminator, ["W", ".W"])
        self.embedder = DDP(model.embedder)
        self.generator = DDP(model.generator)
        self.discriminator = DDP(model.discriminator)


def _d_real_and_fake(D, x_t, x_hat, y_t, index=None, *, w=None):
    """One pass of D over real and generated frames together: scores and maps of each.

    D scores with the videos' columns ``index`` (meta-learning) or one vector ``w``
    (fine-tuning, ``fewshot_th.finetune``)."""
    b = x_t.shape[0]
    both = None if index is None else torch.cat([index, index])
    score, maps = D(torch.cat([x_t, x_hat]), torch.cat([y_t, y_t]), both, w=w)
    return score[:b], score[b:], [m[:b] for m in maps], [m[b:] for m in maps]


def fast_bfloat16(device: str | torch.device) -> bool:
    """Whether ``device`` runs bfloat16 convolutions and matrix products natively: a CUDA GPU
    of compute capability 8.0 or later (Ampere on; not Colab's T4, 7.5), or a CPU whose
    oneDNN has bfloat16 kernels (AVX512-BF16 or AMX). Elsewhere bfloat16 would be emulated,
    slower than float32."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        major, _ = torch.cuda.get_device_capability(device)
        return major >= 8
    if device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    # oneDNN also runs bfloat16 on plain AVX512, emulated and slower than float32: ask for the
    # instructions themselves (private helpers of torch.cpu; absent means no).
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported",
                                                          "_is_amx_tile_supported")]
    return any(bool(check()) for check in checks if check is not None)


def meta_step(model: TalkingHeadModel, batch: dict, opt_eg: torch.optim.Optimizer,
              opt_d: torch.optim.Optimizer, content_loss: ContentLoss, train: TrainConfig,
              autocast=contextlib.nullcontext, parallel: DataParallel | None = None,
              step: int = 0) -> dict[str, float]:
    """One meta-learning step on a batch of episodes (Sec. 3.2); returns the losses.

    1. E embeds the K source frames of each video: ê (Eq. 1).
    2. G draws the target frame from its landmarks and ê: x̂ = G(y_t, ê) (Eq. 2).
    3. D scores the real and the generated frame with the video's column W_i (Eq. 3).
    4. E and G step on L_CNT + L_ADV + L_MCH; W learns from L_MCH too (and from L_ADV,
       unless ``train.w_losses`` is ``"dsc+mch"``).
    5. D steps on the hinge loss L_DSC, ``train.d_steps`` times.

    ``step`` (the number of steps done before this one) drives the ramp of λ_MCH, and the
    warm-up of D: while ``step < train.d_warmup_steps`` E and G run without gradients and do
    not step (4 is skipped; W still learns from L_MCH).
    """
    nets = parallel or model
    E, G, D = nets.embedder, nets.generator, nets.discriminator
    W = model.discriminator.W
    x_t, y_t, index = batch["target_frame"], batch["target_landmarks"], batch["video_index"]
    d_params = list(model.discriminator.parameters())
    eg_params = [*model.embedder.parameters(), *model.generator.parameters()]
    opt_eg.zero_grad(set_to_none=True)
    opt_d.zero_grad(set_to_none=True)
    d_only = step < train.d_warmup_steps
    with autocast():
        with torch.no_grad() if d_only else contextlib.nullcontext():
            _, e_hat = E(batch["source_frames"], batch["source_landmarks"])  # 1
            if train.init_w_from_e_hat:
                _init_w_from_e_hat(model.discriminator, index, e_hat, parallel)
            x_hat = G(y_t, e_hat)  # 2
        real_score, fake_score, real_maps, fake_maps = _d_real_and_fake(D, x_t, x_hat, y_t,
                                                                        index)  # 3
        l_cnt = content_loss(x_hat.float(), x_t)  # 4
        l_adv = adversarial_loss(fake_score, real_maps, fake_maps, train.lambda_fm)
        ramp = min(1.0, (step + 1) / train.mch_warmup_steps) if train.mch_warmup_steps else 1.0
        weight = train.lambda_mch * ramp
        if train.w_losses == "dsc+mch" or d_only:
            # L_MCH in two halves of one value: one pulls ê towards W_i (for E), the other
            # W_i towards ê (for W), so that W stays out of E's and G's backward pass.
            l_mch = match_loss(W[index].detach(), e_hat, weight)
            l_mch_w = match_loss(W[index], e_hat.detach(), weight)
        else:
            l_mch = match_loss(W[index], e_hat, weight)
        loss_eg = l_cnt + l_adv + l_mch
        loss_d = discriminator_hinge_loss(real_score, fake_score)  # 5 (first D step)
    losses = {"cnt": l_cnt.item(), "adv": l_adv.item(), "mch": l_mch.item(),
              "dsc": loss_d.item()}
    bad = [name for name, value in losses.items() if not math.isfinite(value)]
    if bad:
        raise TrainingDiverged(f"loss {', '.join(bad)} is not finite: {losses}")
    # D's pass on x̂ serves both sides: gradients of loss_d go to D only, those of loss_eg
    # to E and G (and W, with train.w_losses "dsc+mch+adv") only, so nothing runs twice.
    loss_d.backward(inputs=d_params, retain_graph=not d_only)
    if d_only:
        l_mch_w.backward(inputs=[W])
    elif train.w_losses == "dsc+mch":
        loss_eg.backward(inputs=eg_params)
        l_mch_w.backward(inputs=[W])
    else:
        loss_eg.backward(inputs=[*eg_params, W])
    if parallel is not None:
        _reduce_rows(W, index, parallel.world_size)
    if not d_only:
        opt_eg.step()
    opt_d.step()
    _check_weights(model, losses)
    for _ in range(train.d_steps - 1):
        opt_d.zero_grad(set_to_none=True)
        with autocast():
            real_score, fake_score, _, _ = _d_real_and_fake(D, x_t, x_hat.detach(), y_t, index)
            loss_d = discriminator_hinge_loss(real_score, fake_score)
        loss_d.backward(inputs=d_params)
        if parallel is not None:
            _reduce_rows(W, index, parallel.world_size)
        opt_d.step()
    return losses


def _check_weights(model: TalkingHeadModel, losses: dict) -> None:
    """Finite losses can still come with an update that broke the weights (a huge learning
    rate, a NaN gradient): stop there, before anything is saved."""
    weights = {f"{net}.{name}": p.detach() for net, module in model.networks().items()
               for name, p in module.named_parameters()}
    bad = non_finite(weights)
    if bad:
        raise TrainingDiverged(f"{len(bad)} weight tensors are not finite after the update "
                               f"(first: {bad[0]}; losses {losses})")


def _image_grid(rows: list[torch.Tensor]) -> np.ndarray:
    """Rows of ``(N, 3, H, W)`` images -> one ``(rows*H, N*W, 3)`` array."""
    return torch.cat([torch.cat(list(r.detach().float().cpu().clamp(0, 1)), dim=2)
                      for r in rows], dim=1).permute(1, 2, 0).numpy()


class Trainer:
    """The meta-learning loop around ``meta_step``, with checkpoints and exact resume.

    Args:
        model: E, G, D (``TalkingHeadModel.build``); ``num_videos`` = ``len(videos)``.
        videos: the training videos (SynthHeads or any dataset with its interface).
        train: the ``TrainConfig``; ``content_loss``: L_CNT (``losses.content_loss_from``).
        out: run directory: checkpoints, ``metrics.jsonl``, ``samples/``.
        seed: the data order and episodes are a pure function of it.
        overwrite: a fresh run may delete the checkpoints, log and samples of another run in
            ``out``; without it, such a directory is refused (``RunDirectoryInUse``).
        mixed_precision: run the step under bfloat16 autocast where the device computes in
            bfloat16 natively (``fast_bfloat16``: CUDA, or a CPU with AVX512-BF16/AMX, where a
            ``cpu`` step is 1.7x faster; ``bench/RESULTS.md``); float32 elsewhere.
    """

    def __init__(self, model: TalkingHeadModel, videos, train: TrainConfig,
                 content_loss: ContentLoss, out: str | Path, *, seed: int = 0,
                 checkpoint_every: int = 500, sample_every: int = 250, keep: int = 3,
                 device: str | torch.device = "cpu", channels_last: bool = True,
                 num_workers: int = 0, mixed_precision: bool = True, overwrite: bool = False):
        if len(videos) != model.discriminator.num_videos:
            raise ValueError(f"D has {model.discriminator.num_videos} columns W_i but there "
                             f"are {len(videos)} training videos")
        self.model, self.videos, self.train_config = model, videos, train
        self.content_loss = content_loss.to(device)
        self.out, self.seed = Path(out), seed
        self.checkpoint_every, self.sample_every, self.keep = checkpoint_every, sample_every, keep
        self.device = as_device(device)
        self.num_workers = num_workers
        self.bfloat16 = mixed_precision and fast_bfloat16(self.device)  # decided once
        model.to(self.device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.episodes = EpisodeDataset(videos, train.k, seed=seed)
        self.opt_eg = torch.optim.Adam(
            [*model.embedder.parameters(), *model.generator.parameters()],
            lr=train.lr_eg, betas=train.betas)
        W = model.discriminator.W  # its own learning rate: each row learns once per epoch
        self.opt_d = torch.optim.Adam(
            [{"params": [p for p in model.discriminator.parameters() if p is not W]},
             {"params": [W], "lr": train.lr_w or train.lr_d}],
            lr=train.lr_d, betas=train.betas)
        self.step = 0
        self.seconds = 0.0  # wall-clock seconds of training so far, over every resumed leg
        self.started_from: str | None = None  # whose E and G a warm start copied
        self.last_checkpoint: Path | None = None
        self.overwrite = overwrite
        self._claimed = False  # whether this trainer has checked that ``out`` is its own
        import torch.distributed as dist

        distributed = dist.is_available() and dist.is_initialized() and \
            dist.get_world_size() > 1
        self.parallel = DataParallel(model) if distributed else None
        self.rank = dist.get_rank() if distributed else 0
        self.world_size = dist.get_world_size() if distributed else 1

    def _autocast(self):
        if self.bfloat16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _claim(self) -> None:
        """Before a fresh run's first step: ``out`` must not hold another run's work."""
        if self._claimed or self.rank != 0:
            return
        self._claimed = True
        ckpt.clean_directory(self.out)
        if self.step or self.last_checkpoint is not None:  # resumed: the directory is ours
            return
        log = self.out / "metrics.jsonl"
        found = ckpt.list_checkpoints(self.out) + \
            [p for p in self.out.glob("step-*.safetensors")] + \
            ([log] if log.exists() and log.stat().st_size else [])
        if not found:
            return
        if not self.overwrite:
            raise RunDirectoryInUse(
                f"{self.out} holds another run ({len(found)} files, e.g. {found[0].name}): "
                "continue it with --resume (Trainer.load), choose another --out, or pass "
                "--overwrite (Trainer(overwrite=True)) to delete it")
        for path in found:
            path.unlink(missing_ok=True)
        for sample in (self.out / "samples").glob("step-*.png"):
            sample.unlink()

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (only process 0 writes; others return None).

        Refuses (``TrainingDiverged``) to save weights or optimiser state that are not finite,
        so every checkpoint on disk is one training can continue from."""
        if self.rank != 0:
            return None
        tensors = self.model.state_tensors()
        meta = {"model_config": self.model.config.as_dict(),
                "train_config": self.train_config.as_dict(), "seed": self.seed,
                "num_videos": len(self.videos), "data": data_description(self.videos),
                "train_seconds": self.seconds,
                "started_from": self.started_from,
                "python_random": _jsonable(random.getstate()),
                "numpy_random": _jsonable(np.random.get_state())}
        for prefix, optimizer in (("opt_eg", self.opt_eg), ("opt_d", self.opt_d)):
            opt_tensors, opt_meta = ckpt.flatten_optimizer(optimizer, prefix)
            tensors.update(opt_tensors)
            meta[prefix] = opt_meta
        tensors["rng.torch"] = torch.get_rng_state()
        bad = non_finite(tensors)
        if bad:
            raise TrainingDiverged(f"not saving step {self.step}: {len(bad)} tensors are not "
                                   f"finite (first: {bad[0]}). The last good checkpoint is "
                                   f"{self.last_checkpoint or 'none yet'}.")
        self._claim()
        self.last_checkpoint = ckpt.save_checkpoint(self.out, self.step, tensors, meta,
                                                    keep=self.keep)
        return self.last_checkpoint

    def start_from(self, trained: TalkingHeadModel, name: str) -> None:
        """A warm start: copy E's and G's weights from ``trained`` (same sizes; e.g. a shipped
        model) before the first step; D starts afresh. ``name`` is stored in every checkpoint,
        so that the run says where it began."""
        if self.step:
            raise ValueError(f"a warm start comes before the first step; this run is at step "
                             f"{self.step}")
        for mine, theirs in ((self.model.embedder, trained.embedder),
                             (self.model.generator, trained.generator)):
            try:
                mine.load_state_dict(theirs.state_dict())
            except RuntimeError as error:  # sizes differ: name the first mismatch, briefly
                raise ValueError(f"cannot start from {name}: its networks have other sizes "
                                 f"({str(error).splitlines()[1].strip()})") from None
        self.started_from = name

    def load(self, path: str | Path | None = None) -> int:
        """Resume from checkpoint ``path`` (default: the newest intact one in ``out``: damaged
        or non-finite newer ones are skipped with a warning); returns its step.

        Refuses (``ValueError``) a checkpoint of another model configuration, other training
        videos or another seed, naming the fields that differ."""

        def finite(tensors, meta):
            bad = non_finite(tensors)
            if bad:
                raise ckpt.CheckpointError(f"{len(bad)} of its tensors are not finite (first: "
                                           f"{bad[0]}): it was saved after training diverged")

        if path is None:
            if self.rank == 0:
                ckpt.clean_directory(self.out)
            try:
                path, tensors, meta = ckpt.load_latest_intact(self.out, check=finite)
            except FileNotFoundError:
                raise FileNotFoundError(f"no checkpoint to resume from in {self.out}") from None
        else:
            tensors, meta = ckpt.load_checkpoint(path)
            finite(tensors, meta)
        self._check_same_data(path, meta)
        saved = ModelConfig.from_dict(meta["model_config"])  # fields added since: defaults
        if saved != self.model.config:
            raise ValueError(f"checkpoint {path} was made with another model configuration: "
                             f"{_differences(saved, self.model.config)}")
        recipe = TrainConfig.from_dict(meta["train_config"]) if "train_config" in meta else None
        if recipe is not None and recipe != self.train_config:
            warnings.warn(f"resuming {path} with another recipe than it was trained with: "
                          f"{_differences(recipe, self.train_config)}", stacklevel=2)
        self.model.load_state_tensors(tensors)
        ckpt.unflatten_optimizer(self.opt_eg, "opt_eg", tensors, meta["opt_eg"])
        ckpt.unflatten_optimizer(self.opt_d, "opt_d", tensors, meta["opt_d"])
        torch.set_rng_state(tensors["rng.torch"])
        random.setstate(_tuples(meta["python_random"]))
        state = meta["numpy_random"]
        np.random.set_state((state[0], np.array(state[1], dtype=np.uint32), *state[2:]))
        self.step = int(meta["step"])
        self.seconds = float(meta.get("train_seconds", 0.0))  # older checkpoints: unknown
        self.started_from = meta.get("started_from")
        self.last_checkpoint = Path(path)
        if self.rank == 0:
            _truncate_log(self.out / "metrics.jsonl", self.step)
        return self.step

    def _check_same_data(self, path, meta: dict) -> None:
        saved = meta.get("data")
        now = data_description(self.videos)
        if saved is not None and saved != now:
            changed = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}"
                                for k in sorted(set(saved) | set(now))
                                if saved.get(k) != now.get(k))
            raise ValueError(f"checkpoint {path} was trained on other videos ({changed}); "
                             "resume with the data flags it was made with")
        if meta.get("num_videos", len(self.videos)) != len(self.videos):
            raise ValueError(f"checkpoint {path} was trained on {meta['num_videos']} videos, "
                             f"this run has {len(self.videos)}; resume with the data flags it "
                             "was made with")
        if meta.get("seed", self.seed) != self.seed:
            raise ValueError(f"checkpoint {path} was trained with seed {meta['seed']}, this "
                             f"run has seed {self.seed}")

    def _save_samples(self, batch: dict) -> None:
        self.model.eval()
        with torch.no_grad(), self._autocast():
            _, e_hat = self.model.embedder(batch["source_frames"][:4],
                                           batch["source_landmarks"][:4])
            fake = self.model.generator(batch["target_landmarks"][:4], e_hat)
        self.model.train()
        folder = self.out / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        grid = _image_grid([batch["source_frames"][:4, 0], batch["target_landmarks"][:4],
                            batch["target_frame"][:4], fake])
        plt.imsave(folder / f"step-{self.step:08d}.png", grid)

    def run(self, until_step: int, progress: bool = True,
            max_seconds: float | None = None) -> list[dict]:
        """Train until ``self.step == until_step`` (or, given ``max_seconds``, until that much
        wall-clock time has passed, whichever comes first); returns the metrics of these steps.
        """
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be positive, got {max_seconds!r}")
        batches = episode_batches(self.episodes, self.train_config.batch_size, seed=self.seed,
                                  num_workers=self.num_workers, start=self.step,
                                  rank=self.rank, world_size=self.world_size)
        writer = self.rank == 0  # one process writes logs, samples and checkpoints
        history = []
        self.out.mkdir(parents=True, exist_ok=True)
        self.model.train()
        if writer:
            self._claim()
        start = time.perf_counter()
        log_path = self.out / "metrics.jsonl" if writer else Path(os.devnull)
        with open(log_path, "a", buffering=1) as log, \
                tqdm(total=until_step, initial=self.step, disable=not progress or not writer,
                     desc="meta-learning") as bar:
            while self.step < until_step and (
                    max_seconds is None or time.perf_counter() - start < max_seconds):
                began = time.perf_counter()
                batch = to_device(next(batches), self.device)
                try:
                    losses = meta_step(self.model, batch, self.opt_eg, self.opt_d,
                                       self.content_loss, self.train_config, self._autocast,
                                       self.parallel, self.step)
                except TrainingDiverged as error:
                    advice = (f"The last good checkpoint is {self.last_checkpoint}: resume "
                              "from it with lower learning rates." if self.last_checkpoint
                              else "No checkpoint was saved before: start again with lower "
                              "learning rates.")
                    raise TrainingDiverged(f"training diverged at step {self.step + 1}: "
                                           f"{error}. {advice}") from None
                self.step += 1
                self.seconds += time.perf_counter() - began
                record = {"step": self.step, "seconds": round(time.perf_counter() - start, 3),
                          **{k: round(v, 5) for k, v in losses.items()}}
                history.append(record)
                log.write(json.dumps(record) + "\n")
                bar.update(1)
                bar.set_postfix(cnt=f"{losses['cnt']:.3f}", dsc=f"{losses['dsc']:.2f}")
                if writer and self.sample_every and self.step % self.sample_every == 0:
                    self._save_samples(batch)
                if writer and self.checkpoint_every and self.step % self.checkpoint_every == 0:
                    log.flush()
                    self.save()
        return history


def _truncate_log(path: Path, step: int) -> None:
    """Keep the records of steps up to ``step`` in a metrics log (a resumed run redoes the
    later ones) and drop a last line cut short by a kill."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept.append(line)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text("".join(f"{line}\n" for line in kept))
    os.replace(temporary, path)


def _differences(before, now) -> str:
    """The fields in which two configurations differ, as ``name: before -> now``."""
    a, b = before.as_dict(), now.as_dict()
    return ", ".join(f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if a[k] != b[k])


def _jsonable(value):
    """``value`` as JSON would give it back: tuples and arrays become lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


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
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
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
    files = sorted([*package.glob("nn/*.py"), *package.glob("data/*.py"), package / "meta.py",
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
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
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

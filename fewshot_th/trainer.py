"""The meta-learning loop (Sec. 3.2 and 4 of the paper) around ``fewshot_th.meta.meta_step``.

``Trainer``: Adam with the profile's learning rates, a tqdm bar, a JSONL metrics log, a grid
of samples every N steps, atomic checkpoints (``fewshot_th.checkpoint``), exact resume, and a
guard that stops on a NaN or infinite loss.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from .checks import is_int
from .config import ModelConfig, TrainConfig, as_device
from .data.episodes import EpisodeDataset, episode_batches, to_device
from .distributed import DistributedNetworks
from .losses import ContentLoss
from .meta import (
    TalkingHeadModel,
    TrainingDiverged,
    fast_bfloat16,
    make_optimizers,
    meta_step,
    non_finite,
)
from .nn.embedder import load_embedder

__all__ = ["Trainer", "RunDirectoryInUse", "data_description"]


class RunDirectoryInUse(ValueError):
    """A fresh run was pointed at a directory that holds another run."""


def data_description(videos) -> dict:
    """What a checkpoint records about its training videos, to refuse resuming on others."""
    describe = getattr(videos, "description", None)
    return describe() if callable(describe) else {"dataset": type(videos).__name__,
                                                  "videos": len(videos)}


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
        self.opt_eg, self.opt_d = make_optimizers(model, train)
        self.step = 0
        self.seconds = 0.0  # wall-clock seconds of training so far, over every resumed leg
        self.started_from: str | None = None  # whose E and G a warm start copied
        self.last_checkpoint: Path | None = None
        self.overwrite = overwrite
        self._claimed = False  # whether this trainer has checked that ``out`` is its own
        import torch.distributed as dist

        distributed = dist.is_available() and dist.is_initialized() and \
            dist.get_world_size() > 1
        self.parallel = DistributedNetworks(model) if distributed else None
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
        # E may weight the positions (ModelConfig.embedder_pooling) where trained's E sums
        loads = ((load_embedder, self.model.embedder, trained.embedder),
                 (torch.nn.Module.load_state_dict, self.model.generator, trained.generator))
        for load, mine, theirs in loads:
            try:
                load(mine, theirs.state_dict())
            except RuntimeError as error:  # sizes differ: name the first mismatch, briefly
                raise ValueError(f"cannot start from {name}: its networks have other sizes or "
                                 f"layers ({str(error).splitlines()[1].strip()})") from None
        self.started_from = name

    def load(self, path: str | Path | None = None) -> int:
        """Resume from checkpoint ``path`` (default: the newest intact one in ``out``: damaged
        or non-finite newer ones are skipped with a warning); returns its step.

        Refuses (``ValueError``) a checkpoint of another model configuration, other training
        videos or another seed, naming the fields that differ."""

        if path is None:
            if self.rank == 0:
                ckpt.clean_directory(self.out)
            try:
                path, tensors, meta = ckpt.load_latest_intact(self.out, check=_finite)
            except FileNotFoundError:
                raise FileNotFoundError(f"no checkpoint to resume from in {self.out}") from None
        else:
            tensors, meta = ckpt.load_checkpoint(path)
            _finite(tensors, meta)
        self._check_same_data(path, meta)
        saved = ModelConfig.from_dict(meta["model_config"])  # fields added since: defaults
        if saved != self.model.config:
            raise ValueError(f"checkpoint {path} was made with another model configuration: "
                             f"{_differences(saved, self.model.config)}")
        self._recipe_of(path, meta, "resuming")
        self.model.load_state_tensors(tensors)
        ckpt.unflatten_optimizer(self.opt_eg, "opt_eg", tensors, meta["opt_eg"])
        ckpt.unflatten_optimizer(self.opt_d, "opt_d", tensors, meta["opt_d"])
        self._continue(tensors, meta)
        self.started_from = meta.get("started_from")
        self.last_checkpoint = Path(path)
        if self.rank == 0:
            truncate_log(self.out / "metrics.jsonl", self.step)
        return self.step

    def _continue(self, tensors: dict, meta: dict) -> None:
        """Take a checkpoint's step, training time and random states."""
        torch.set_rng_state(tensors["rng.torch"])
        random.setstate(_tuples(meta["python_random"]))
        state = meta["numpy_random"]
        np.random.set_state((state[0], np.array(state[1], dtype=np.uint32), *state[2:]))
        self.step = int(meta["step"])
        self.seconds = float(meta.get("train_seconds", 0.0))  # older checkpoints: unknown

    def branch(self, path: str | Path) -> int:
        """Continue another run's checkpoint ``path`` in this trainer's ``out``, with E
        weighting its positions (``ModelConfig.embedder_pooling="weighted"``) where that run's
        E summed them; returns the step it continues from.

        Unlike ``start_from``, everything else carries over: E's other weights, G, D with its
        W, both optimisers' Adam state, the step, the training time and the random states. The
        position weights start at ones with no Adam state, so E computes the same e as before
        and D stays trained. Refuses (``ValueError``) any other difference in the model
        configuration, other videos, another seed, and a directory that holds another run."""
        if self.step:
            raise ValueError(f"a branch comes before the first step; this run is at step "
                             f"{self.step}")
        tensors, meta = ckpt.load_checkpoint(path)
        _finite(tensors, meta)
        self._check_same_data(path, meta)
        saved = ModelConfig.from_dict(meta["model_config"])
        mine = self.model.config
        if (saved.embedder_pooling, mine.embedder_pooling) != ("sum", "weighted") or \
                saved.with_changes(embedder_pooling="weighted") != mine:
            raise ValueError(f"a branch changes only embedder_pooling, from 'sum' to "
                             f"'weighted'; checkpoint {path} differs from this run in "
                             f"{_differences(saved, mine)} (to continue the same model use "
                             "--resume, Trainer.load)")
        recipe = self._recipe_of(path, meta, "branching")
        self._claim()  # before anything changes: out must not hold another run
        source = TalkingHeadModel.build(saved, num_videos=len(self.videos))
        source.load_state_tensors(tensors)
        load_embedder(self.model.embedder, source.embedder.state_dict())
        self.model.generator.load_state_dict(source.generator.state_dict())
        self.model.discriminator.load_state_dict(source.discriminator.state_dict())
        for prefix, theirs, ours in zip(("opt_eg", "opt_d"), make_optimizers(source, recipe or
                                                                            self.train_config),
                                        (self.opt_eg, self.opt_d)):
            ckpt.unflatten_optimizer(theirs, prefix, tensors, meta[prefix])
            _carry_optimizer(theirs, source, ours, self.model)
        self._continue(tensors, meta)
        self.started_from = f"a branch of {path}"
        return self.step

    def _recipe_of(self, path, meta: dict, doing: str) -> TrainConfig | None:
        """The recipe checkpoint ``path`` was trained with (None in older checkpoints); warns
        when it is not this trainer's."""
        recipe = TrainConfig.from_dict(meta["train_config"]) if "train_config" in meta else None
        if recipe is not None and recipe != self.train_config:
            warnings.warn(f"{doing} {path} with another recipe than it was trained with: "
                          f"{_differences(recipe, self.train_config)}", stacklevel=3)
        return recipe

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

    def generate(self, batch: dict, count: int = 4) -> torch.Tensor:
        """The frames G draws now for the targets of the first ``count`` episodes of
        ``batch`` (feed-forward, in eval mode, as training computes them; the mode is
        restored): ``(count, 3, H, W)`` in float32."""
        if not is_int(count) or not 1 <= count <= len(batch["target_landmarks"]):
            raise ValueError(f"count must be an integer from 1 to the batch's "
                             f"{len(batch['target_landmarks'])} episodes, got {count!r}")
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                _, e_hat = self.model.embedder(batch["source_frames"][:count],
                                               batch["source_landmarks"][:count])
                return self.model.generator(batch["target_landmarks"][:count], e_hat).float()
        finally:
            self.model.train(was_training)

    def _save_samples(self, batch: dict) -> None:
        count = min(4, len(batch["target_landmarks"]))  # a small run's batch may hold fewer
        fake = self.generate(batch, count)
        folder = self.out / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        grid = _image_grid([batch["source_frames"][:count, 0], batch["target_landmarks"][:count],
                            batch["target_frame"][:count], fake])
        iio.imwrite(folder / f"step-{self.step:08d}.png", (grid * 255).round().astype(np.uint8))

    def run(self, until_step: int, progress: bool = True,
            max_seconds: float | None = None) -> list[dict]:
        """Train until ``self.step == until_step`` (or, given ``max_seconds``, until that much
        wall-clock time has passed, whichever comes first, after at least one step); returns
        the metrics of these steps.
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
            while self.step < until_step and (max_seconds is None or not history
                                              or time.perf_counter() - start < max_seconds):
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


def _carry_optimizer(theirs: torch.optim.Optimizer, source: torch.nn.Module,
                     ours: torch.optim.Optimizer, model: torch.nn.Module) -> None:
    """Give ``ours`` (over ``model``'s parameters) the state ``theirs`` holds for the
    parameters of ``source`` that have the same names, and ``theirs``' hyper-parameters;
    parameters ``source`` lacks start with no state (Adam fills it in on their first step)."""
    their_names = {id(p): name for name, p in source.named_parameters()}
    found = {their_names[id(p)]: theirs.state[p] for group in theirs.param_groups
             for p in group["params"] if theirs.state.get(p)}
    our_names = {id(p): name for name, p in model.named_parameters()}
    state, index = {}, 0
    for group in ours.param_groups:
        for p in group["params"]:
            if our_names[id(p)] in found:
                state[index] = found[our_names[id(p)]]
            index += 1
    groups = [dict(saved, params=now["params"]) for saved, now in
              zip(theirs.state_dict()["param_groups"], ours.state_dict()["param_groups"])]
    ours.load_state_dict({"state": state, "param_groups": groups})


def _finite(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Refuse (``CheckpointError``) a checkpoint whose tensors are not all finite."""
    bad = non_finite(tensors)
    if bad:
        raise ckpt.CheckpointError(f"{len(bad)} of its tensors are not finite (first: "
                                   f"{bad[0]}): it was saved after training diverged")


def truncate_log(path: Path, step: int) -> None:
    """Keep the records of steps up to ``step`` in a JSON-lines log of a run (a resumed run
    redoes the later ones) and drop a last line cut short by a kill."""
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



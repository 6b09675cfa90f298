"""The few-shot stage (Sec. 3.3): a model of a new person from K frames.

Two ways, both starting from the meta-learned E, G and D:

* **feed-forward (FF)**: ê_new = mean of E over the K frames; G draws any frame from its
  landmarks with the AdaIN parameters ψ̂ = P ê_new. Nothing is trained.
* **fine-tuning (FT)**: ψ' starts at P ê_new and becomes a parameter of its own; the
  discriminator scores with one vector w' started at w0 + ê_new instead of a column of W.
  G (its weights and ψ') and D are then trained adversarially on the K frames with
  L'_CNT + L'_ADV (no match loss) for a few steps. The meta-learned networks are copied
  first, so the model that was passed in stays as it was.

    personal = few_shot(model, frames, landmarks, mode="ft")
    video = personal.render(other_landmarks)          # (T, 3, H, W) in [0, 1]
"""

from __future__ import annotations

import copy
import hashlib
import math

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from .checks import is_int
from .config import PROFILES, TrainConfig, profile, training
from .landmarks import NUM_LANDMARKS, draw_landmarks
from .losses import adversarial_loss, content_loss_from, discriminator_hinge_loss
from .meta import TalkingHeadModel, TrainingDiverged
from .nn.discriminator import real_and_fake

__all__ = ["PersonalModel", "few_shot", "train_config_of", "fine_tuning_recipe", "default_steps",
           "spread_sources", "few_shot_grid"]

FT_EPOCHS = 40  # passes over the K frames (re-implementations' choice, unverified for the paper)
FT_BATCH = 8  # frames per fine-tuning step (all K when K < 8)


def default_steps(k: int) -> int:
    """Fine-tuning steps for K frames: ``FT_EPOCHS`` passes in batches of ``min(K, 8)``."""
    return math.ceil(FT_EPOCHS * k / min(k, FT_BATCH))


class PersonalModel:
    """A talking-head model of one person, made by ``few_shot``.

    Attributes:
        mode: ``"ff"`` or ``"ft"``.
        generator: G (the meta-learned one for FF, a fine-tuned copy for FT).
        psi: ``(num_adain_params,)`` the person's AdaIN parameters (ψ̂ = P ê for FF, ψ' for FT).
        e_hat: ``(D,)`` the person's embedding ê_new.
        psi_init, w_init: ψ' and w' before fine-tuning (FT only; ``w_init`` = w0 + ê_new).
        discriminator, w: the fine-tuned D and its w' (FT only).
        history: the losses of every fine-tuning step (FT only).
    """

    def __init__(self, mode: str, generator: nn.Module, psi: torch.Tensor, e_hat: torch.Tensor,
                 *, psi_init: torch.Tensor | None = None, w_init: torch.Tensor | None = None,
                 discriminator: nn.Module | None = None, w: torch.Tensor | None = None,
                 history: list[dict] | None = None):
        self.mode, self.generator = mode, generator
        self.psi, self.e_hat = psi.detach(), e_hat.detach()
        self.psi_init, self.w_init = psi_init, w_init
        self.discriminator, self.w = discriminator, w
        self.history: list[dict] = history or []

    @property
    def image_size(self) -> int:
        return self.generator.config.image_size

    def render(self, landmarks, batch_size: int = 32) -> torch.Tensor:
        """Frames of this person for ``(T, 68, 2)`` landmarks (pixel coordinates):
        ``(T, 3, H, W)`` in [0, 1], on the CPU."""
        points = _check_landmarks(landmarks, "landmarks")
        if not is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        device = self.psi.device
        out, was_training = [], self.generator.training
        self.generator.eval()  # no power iterations, no statistics updated while rendering
        try:
            with torch.no_grad():
                for start in range(0, len(points), batch_size):
                    images = draw_landmarks(points[start:start + batch_size], self.image_size)
                    out.append(self.generator(images.to(device), psi=self.psi).float().cpu())
        finally:
            self.generator.train(was_training)
        return torch.cat(out)


def _check_landmarks(landmarks, name: str, count: int | None = None) -> np.ndarray:
    if isinstance(landmarks, torch.Tensor):
        landmarks = landmarks.detach().cpu().numpy()
    points = np.asarray(landmarks, dtype=np.float32)
    if points.ndim != 3 or points.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"{name} must have shape (T, {NUM_LANDMARKS}, 2) (pixel x, y of the 68 "
                         f"points of each frame), got {points.shape}")
    if count is not None and len(points) != count:
        raise ValueError(f"{name} has {len(points)} sets of points for {count} frames: give "
                         "one set per frame")
    if len(points) == 0:
        raise ValueError(f"{name} is empty: give at least one frame's landmarks")
    if not np.isfinite(points).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    return points


def _check_frames(frames, size: int) -> torch.Tensor:
    if not isinstance(frames, torch.Tensor):
        frames = torch.as_tensor(np.asarray(frames))
    if frames.ndim != 4 or frames.shape[1:] != (3, size, size):
        raise ValueError(f"frames must have shape (K, 3, {size}, {size}) for this model "
                         f"(K >= 1 RGB frames of {size} x {size} pixels), "
                         f"got {tuple(frames.shape)}")
    if frames.shape[0] < 1:
        raise ValueError("few-shot learning needs K >= 1 frames, got none")
    if not frames.is_floating_point():
        raise ValueError(f"frames must be floats in [0, 1], got {frames.dtype} (divide 8-bit "
                         "images by 255)")
    frames = frames.detach().float().cpu()
    if not torch.isfinite(frames).all() or frames.min() < 0 or frames.max() > 1:
        raise ValueError("frames must be finite values in [0, 1], got values from "
                         f"{float(frames.min()):.3g} to {float(frames.max()):.3g}")
    return frames


def train_config_of(model) -> TrainConfig:
    """The recipe the model was meta-learned with (shipped models store it), else the recipe
    of the profile it is built like (``cpu``'s for a model like no profile)."""
    stored = getattr(model, "info", {}).get("train_config")
    if stored:
        return TrainConfig.from_dict(stored)
    like = [name for name in PROFILES if profile(name) == model.config]
    return training(like[0] if like else "cpu")


def fine_tuning_recipe(model, train=None) -> TrainConfig:
    """The recipe fine-tuning uses: ``train`` (a ``TrainConfig``) when given, else the one
    ``model`` was meta-learned with (``train_config_of``), with the changes a shipped model
    stores for fine-tuning (its ``info["fine_tuning"]``, e.g. the paper's learning rates)."""
    if train is None:
        changes = getattr(model, "info", {}).get("fine_tuning") or {}
        return train_config_of(model).with_changes(**changes)
    if not isinstance(train, TrainConfig):
        raise TypeError(f"the fine-tuning recipe must be a TrainConfig (e.g. "
                        f"train_config_of(model).with_changes(lr_eg=5e-5)), got {train!r}")
    return train


def few_shot(model, frames, landmarks, mode: str = "ff", steps: int | None = None, *,
             train: TrainConfig | None = None, content_loss=None, seed: int = 0,
             progress: bool = True) -> PersonalModel:
    """A model of a new person from K frames and their landmarks.

    Args:
        model: meta-learned E, G, D, e.g. ``fewshot_th.load_pretrained("synthheads-cpu")``.
        frames: ``(K, 3, H, W)`` in [0, 1], H = W = the model's image size.
        landmarks: ``(K, 68, 2)`` pixel coordinates of each frame's landmarks.
        mode: ``"ff"`` (feed-forward) or ``"ft"`` (fine-tuning).
        steps: fine-tuning steps (FT only; default ``default_steps(K)``: 40 passes over the
            K frames).
        train: learning rates, betas, λ_FM and content terms for FT (default:
            ``fine_tuning_recipe(model)``, the recipe the model was meta-learned with and the
            changes it stores for fine-tuning). ``content_loss``: L'_CNT (default: from ``train``).
        seed: the order in which FT draws the K frames.
    """
    if not isinstance(model, TalkingHeadModel):
        raise TypeError(f"model must be a meta-learned TalkingHeadModel (e.g. "
                        f"fewshot_th.load_pretrained('synthheads-cpu')), got {model!r}")
    if mode not in ("ff", "ft"):
        raise ValueError(f"mode must be 'ff' (feed-forward) or 'ft' (fine-tuning), got {mode!r}")
    if steps is not None and mode == "ff":
        raise ValueError("steps applies to fine-tuning only: use mode='ft', or leave steps out")
    if steps is not None and (not is_int(steps) or steps < 0):
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    size = model.config.image_size
    frames = _check_frames(frames, size)
    points = _check_landmarks(landmarks, "landmarks", count=len(frames))
    device = next(model.generator.parameters()).device
    frames = frames.to(device)
    images = draw_landmarks(points, size).to(device)
    modes = [net.training for net in (model.embedder, model.generator)]
    model.embedder.eval()
    model.generator.eval()
    try:
        with torch.no_grad():
            _, e_hat = model.embedder(frames[None], images[None])  # ê_new: mean over K frames
            psi = model.generator.project(e_hat)[0]
    finally:
        model.embedder.train(modes[0])
        model.generator.train(modes[1])
    if mode == "ff":
        return PersonalModel("ff", model.generator, psi, e_hat[0])
    return _fine_tune(model, frames, images, torch.as_tensor(points, dtype=torch.float32,
                                                             device=device), e_hat[0], psi,
                      default_steps(len(frames)) if steps is None else steps,
                      fine_tuning_recipe(model, train), content_loss, seed, progress)


def _fine_tune(model, frames, images, points, e_hat, psi, steps, train, content_loss, seed,
               progress) -> PersonalModel:
    G = copy.deepcopy(model.generator).train()
    D = model.discriminator.for_one_person().train()  # W itself is not copied
    psi_prime = nn.Parameter(psi.clone())  # ψ' = P ê_new, then the person's own
    w_prime = nn.Parameter((D.w0 + e_hat).detach().clone())  # w' = w0 + ê_new
    psi_init, w_init = psi_prime.detach().clone(), w_prime.detach().clone()
    g_params = [p for name, p in G.named_parameters() if not name.startswith("P.")] + [psi_prime]
    d_params = [p for name, p in D.named_parameters() if name not in ("W", "w0")] + [w_prime]
    opt_g = torch.optim.Adam(g_params, lr=train.lr_eg, betas=train.betas)
    opt_d = torch.optim.Adam(d_params, lr=train.lr_d, betas=train.betas)
    content = (content_loss or content_loss_from(train.content)).to(frames.device)
    rng = torch.Generator().manual_seed(seed)
    k, batch = len(frames), min(len(frames), FT_BATCH)
    history = []
    for step in tqdm(range(steps), desc="fine-tuning", disable=not progress):
        chosen = torch.randperm(k, generator=rng)[:batch].to(frames.device)
        x, y = frames[chosen], images[chosen]
        fake = G(y, psi=psi_prime)
        real_score, fake_score, real_maps, fake_maps = real_and_fake(D, x, fake, y,
                                                                       w=w_prime)
        loss_g = content(fake, x, points[chosen]) + adversarial_loss(
            fake_score, real_maps, fake_maps, train.lambda_fm, train.lambda_score)
        loss_d = discriminator_hinge_loss(real_score, fake_score)
        record = {"step": step + 1, "g": loss_g.item(), "d": loss_d.item()}
        if not (math.isfinite(record["g"]) and math.isfinite(record["d"])):
            raise TrainingDiverged(f"fine-tuning diverged at step {step + 1}: {record}; try "
                                   "fewer steps or lower learning rates (train=...)")
        opt_g.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward(inputs=d_params, retain_graph=True)  # D's side: hinge loss only
        loss_g.backward(inputs=g_params)  # G's side: content + adversarial
        opt_g.step()
        opt_d.step()
        history.append(record)
    return PersonalModel("ft", G, psi_prime, e_hat, psi_init=psi_init, w_init=w_init,
                         discriminator=D.eval(), w=w_prime.detach(), history=history)


def spread_sources(videos, person: int, k: int):
    """K source frames of a SynthHeads ``person`` and their landmarks, spread evenly over the
    first 32 frames (fewer when the videos are shorter) of the person's first video: the
    sources of the K-shot grid (chapters 7, 8) and of puppeteering (chapter 9)."""
    last = min(32, videos.frames_per_video) - 1
    chosen = np.linspace(0, last, k).round().astype(int)
    return videos.get_frames(person * videos.num_videos_per_identity, chosen)


def _model_fingerprint(model: TalkingHeadModel) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_tensors().items()):
        digest.update(name.encode() + tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def few_shot_grid(model, videos, people, targets, k_values=(1, 8, 32), modes=("ff", "ft"), *,
                  ft_steps: int | None = None, cache: bool = True, progress: bool = True):
    """Every person's target frames drawn by every (K, mode), for the K-shot explorers of
    chapters 7 and 8: ``(truth, results)`` with ``truth[person]`` the true ``(T, 3, H, W)``
    frames and ``results[person][(k, mode)]`` the generated ones, all on the CPU.

    Each person's first video (``videos``, a ``SynthHeads``) gives K source frames spread
    evenly over its first 32 frames, and the frames ``targets`` (indices into that video, not
    among the sources when they are 32 or later). FT runs ``ft_steps`` steps (default
    ``default_steps(K)``). With ``cache`` the grid is kept in ``cache_directory()`` under a
    name made from the model's weights and every argument, so that a second chapter asking
    for the same grid does not fine-tune again.
    """
    if not isinstance(model, TalkingHeadModel):
        raise TypeError(f"model must be a TalkingHeadModel, got {model!r}")
    people = [int(p) for p in people]
    targets = np.asarray(targets)
    if any(k < 1 or k > 32 for k in k_values) or not k_values:
        raise ValueError(f"k_values must be between 1 and 32, got {k_values!r}")
    if not set(modes) <= {"ff", "ft"} or not modes:
        raise ValueError(f"modes must be 'ff' and/or 'ft', got {modes!r}")
    if videos.frames_per_video < 32:
        raise ValueError("few_shot_grid takes its sources from the first 32 frames: the "
                         f"videos have only {videos.frames_per_video}")
    first_video = {p: p * videos.num_videos_per_identity for p in people}
    for p in people:
        videos.attributes(p)  # a clear error for a person the videos do not have
    key = {"model": _model_fingerprint(model), "videos": videos.description(),
           "people": people, "targets": targets.tolist(), "k_values": list(k_values),
           "modes": list(modes), "ft_steps": ft_steps,
           "ft_recipe": fine_tuning_recipe(model).as_dict() if "ft" in modes else None,
           "device": str(next(model.generator.parameters()).device.type)}
    entry = ckpt.cache_entry("few-shot-grid", key)
    truth = {p: videos.get_frames(first_video[p], targets)[0] for p in people}
    cached = ckpt.load_cached(entry) if cache else None
    if cached is not None:
        tensors, _ = cached
        try:
            return truth, {p: {(k, mode): tensors[f"{p}/{k}/{mode}"] for k in k_values
                               for mode in modes} for p in people}
        except KeyError:
            pass
    results = {}
    with tqdm(total=len(people) * len(k_values) * len(modes), desc="few-shot grid",
              disable=not progress) as bar:
        for p in people:
            _, points = videos.get_frames(first_video[p], targets)
            results[p] = {}
            for k in k_values:
                frames, source_points = spread_sources(videos, p, k)
                for mode in modes:
                    steps = ft_steps if mode == "ft" else None
                    personal = few_shot(model, frames, source_points, mode=mode, steps=steps,
                                        progress=False)
                    results[p][(k, mode)] = personal.render(points)
                    bar.update(1)
    if cache:
        ckpt.save_cached(entry, {f"{p}/{k}/{mode}": frames for p, grid in results.items()
                                 for (k, mode), frames in grid.items()}, {"key": key},
                         "the few-shot grid")
    return truth, results

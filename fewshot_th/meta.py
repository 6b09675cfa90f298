"""The meta-learning stage (Sec. 3.2 of the paper): the model and one step.

``TalkingHeadModel`` holds E, G and D; ``meta_step`` is one step of meta-learning, readable
top to bottom; ``make_optimizers`` gives its two Adam optimisers. The loop around it, with
checkpoints and exact resume, is ``fewshot_th.trainer.Trainer``; several processes,
``fewshot_th.distributed``; the pixel-loss warm-up of chapters 2-3, ``fewshot_th.warmup``.
"""

from __future__ import annotations

import contextlib
import math

import torch

from .config import ModelConfig, TrainConfig
from .distributed import DistributedNetworks
from .losses import ContentLoss, adversarial_loss, discriminator_hinge_loss, match_loss
from .nn import Embedder, Generator, ProjectionDiscriminator
from .nn.discriminator import real_and_fake

__all__ = ["TalkingHeadModel", "make_optimizers", "meta_step", "fast_bfloat16",
           "TrainingDiverged", "non_finite"]


class TalkingHeadModel(torch.nn.Module):
    """E, G and D of one run, with their ``ModelConfig``: one module, so that ``to``,
    ``train``, ``eval``, ``parameters`` and ``state_dict`` (keys ``embedder.…``,
    ``generator.…``, ``discriminator.…``) cover all three."""

    def __init__(self, config: ModelConfig, embedder: Embedder, generator: Generator,
                 discriminator: ProjectionDiscriminator):
        super().__init__()
        self.config = config
        self.embedder, self.generator, self.discriminator = embedder, generator, discriminator

    @classmethod
    def build(cls, config: ModelConfig, num_videos: int) -> TalkingHeadModel:
        return cls(config, Embedder(config), Generator(config),
                   ProjectionDiscriminator(config, num_videos))

    def networks(self) -> dict[str, torch.nn.Module]:
        return {"embedder": self.embedder, "generator": self.generator,
                "discriminator": self.discriminator}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """``state_dict()`` as a plain dict (what checkpoints store)."""
        return dict(self.state_dict())

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load E, G and D from a checkpoint's tensors (other entries, such as optimiser
        state, are ignored; every weight of the three must be there)."""
        for name, net in self.networks().items():
            prefix = name + "."
            net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items()
                                 if k.startswith(prefix)})


def make_optimizers(model: TalkingHeadModel, train: TrainConfig):
    """The two Adam optimisers of meta-learning: ``(opt_eg, opt_d)``. E and G share
    ``train.lr_eg``; D's trunk, w0 and b use ``train.lr_d``, and W its own ``train.lr_w``
    (default ``lr_d``), because each of W's rows learns only when its video is drawn."""
    opt_eg = torch.optim.Adam([*model.embedder.parameters(), *model.generator.parameters()],
                              lr=train.lr_eg, betas=train.betas)
    W = model.discriminator.W
    opt_d = torch.optim.Adam(
        [{"params": [p for p in model.discriminator.parameters() if p is not W]},
         {"params": [W], "lr": train.lr_w or train.lr_d}],
        lr=train.lr_d, betas=train.betas)
    return opt_eg, opt_d


class TrainingDiverged(RuntimeError):
    """A loss, a weight or an optimiser state became NaN or infinite."""


def non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors that hold a NaN or an infinity."""
    names = [k for k, v in tensors.items() if v.is_floating_point()]
    if not names:
        return []
    finite = torch.stack([torch.isfinite(tensors[k]).all() for k in names]).tolist()
    return [k for k, ok in zip(names, finite) if not ok]


def _init_w_from_e_hat(D: ProjectionDiscriminator, index: torch.Tensor, e_hat: torch.Tensor,
                       parallel: DistributedNetworks | None) -> None:
    """W_i := ê_i for videos seen for the first time (``TrainConfig.init_w_from_e_hat``)."""
    with torch.no_grad():
        ids, rows = index, e_hat.detach().float()
        if parallel is not None:  # every process initialises every process's new rows
            ids, rows = parallel.gather_rows(index, rows)
        fresh = ~D.W_initialised[ids]
        if fresh.any():
            D.W[ids[fresh]] = rows[fresh].to(D.W.dtype)
            D.W_initialised[ids[fresh]] = True


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
              autocast=contextlib.nullcontext, parallel: DistributedNetworks | None = None,
              step: int = 0) -> dict[str, float]:
    """One meta-learning step on a batch of episodes (Sec. 3.2); returns the losses.

    1. E embeds the K source frames of each video: ê (Eq. 1).
    2. G draws the target frame from its landmarks and ê: x̂ = G(y_t, ê) (Eq. 2).
    3. D scores the real and the generated frame with the video's column W_i (Eq. 3).
    4. E and G step on L_CNT + L_ADV + L_MCH; W learns from L_MCH too (and from L_ADV,
       if ``train.adv_trains_w``: not the paper).
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
        real_score, fake_score, real_maps, fake_maps = real_and_fake(D, x_t, x_hat, y_t,
                                                                       index)  # 3
        l_cnt = content_loss(x_hat.float(), x_t, batch.get("target_points"))  # 4
        l_adv = adversarial_loss(fake_score, real_maps, fake_maps, train.lambda_fm,
                                 train.lambda_score)
        ramp = min(1.0, (step + 1) / train.mch_warmup_steps) if train.mch_warmup_steps else 1.0
        weight = train.lambda_mch * ramp
        if not train.adv_trains_w or d_only:
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
    # to E and G (and W, with train.adv_trains_w) only, so nothing runs twice.
    loss_d.backward(inputs=d_params, retain_graph=not d_only)
    if d_only:
        l_mch_w.backward(inputs=[W])
    elif not train.adv_trains_w:
        loss_eg.backward(inputs=eg_params)
        l_mch_w.backward(inputs=[W])
    else:
        loss_eg.backward(inputs=[*eg_params, W])
    if parallel is not None:
        parallel.reduce_rows(W, index)
    if not d_only:
        opt_eg.step()
    opt_d.step()
    _check_weights(model, losses)
    for _ in range(train.d_steps - 1):
        opt_d.zero_grad(set_to_none=True)
        with autocast():
            real_score, fake_score, _, _ = real_and_fake(D, x_t, x_hat.detach(), y_t, index)
            loss_d = discriminator_hinge_loss(real_score, fake_score)
        loss_d.backward(inputs=d_params)
        if parallel is not None:
            parallel.reduce_rows(W, index)
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

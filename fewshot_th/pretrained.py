"""Pretrained models shipped inside the package (``fewshot_th/assets``).

A shipped model is two files: ``<name>.safetensors`` (the weights of E, G and D, tensors
only) and ``<name>.json`` (its ``ModelConfig``, how it was trained, its training curve and
its scores). ``load_pretrained`` reads both without executing anything from them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .checkpoint import CheckpointError, load_checkpoint
from .config import ASSETS, ModelConfig, as_device
from .meta import TalkingHeadModel

__all__ = ["ASSETS", "available", "load_pretrained", "export_pretrained", "load_trained"]



def available() -> list[str]:
    """Names of the shipped talking-head models (the other assets, such as the identity
    networks, have their own loaders)."""
    names = []
    for path in ASSETS.glob("*.json"):
        if not path.with_suffix(".safetensors").exists():
            continue
        try:
            if "model_config" in json.loads(path.read_text()):
                names.append(path.stem)
        except ValueError:
            continue
    return sorted(names)


def _model_from(tensors: dict[str, torch.Tensor], config: ModelConfig) -> TalkingHeadModel:
    num_videos = tensors["discriminator.W"].shape[0]
    model = TalkingHeadModel.build(config, num_videos=num_videos)
    model.load_state_tensors({k: v.float() if v.is_floating_point() else v
                              for k, v in tensors.items()})
    return model.eval()


def load_pretrained(name: str = "synthheads-cpu", device="cpu") -> TalkingHeadModel:
    """A shipped model, in eval mode, on ``device``: ``.config``, ``.embedder``,
    ``.generator``, ``.discriminator``; ``.info`` holds how it was trained and its scores."""
    if not isinstance(name, str) or name not in available():
        raise ValueError(f"no shipped model {name!r}; available: {available() or 'none'} "
                         "(a training checkpoint loads with load_trained)")
    device = as_device(device)
    weights, meta = ASSETS / f"{name}.safetensors", ASSETS / f"{name}.json"
    info = json.loads(meta.read_text())
    config = ModelConfig.from_dict(info["model_config"])
    model = _model_from(load_file(str(weights)), config).to(device)
    model.info = info
    return model


def export_pretrained(checkpoint: str | Path, name: str, info: dict,
                      directory: Path = ASSETS, dtype: torch.dtype = torch.float16) -> Path:
    """Write the model of a training checkpoint (no optimiser state) as a shipped model.

    Floating-point tensors are stored as ``dtype`` (half precision by default: half the size
    in the repository, and ``load_pretrained`` computes in float32 again).
    """
    tensors, meta = load_checkpoint(checkpoint)
    model_tensors = {k: v.to(dtype) if v.is_floating_point() else v
                     for k, v in tensors.items()
                     if k.split(".", 1)[0] in ("embedder", "generator", "discriminator")}
    directory.mkdir(parents=True, exist_ok=True)
    save_file(model_tensors, str(directory / f"{name}.safetensors"))
    record = {"model_config": meta["model_config"], "train_config": meta["train_config"],
              "step": meta["step"], **info}
    (directory / f"{name}.json").write_text(json.dumps(record, indent=1, sort_keys=True))
    return directory / f"{name}.safetensors"


def load_trained(checkpoint: str | Path) -> TalkingHeadModel:
    """The model of a training checkpoint (``.json`` or ``.safetensors`` path), in eval mode,
    with ``.info`` holding its recipe, like a shipped model's."""
    tensors, meta = load_checkpoint(checkpoint)
    missing = [key for key in ("model_config", "train_config") if key not in meta]
    if missing or "discriminator.W" not in tensors:
        raise CheckpointError(f"{checkpoint} is not a training checkpoint of fewshot_th (it "
                              f"lacks {', '.join(missing) or 'the discriminator'}); a shipped "
                              "model loads with load_pretrained")
    config = ModelConfig.from_dict(meta["model_config"])
    model = _model_from({k: v for k, v in tensors.items()
                         if k.split(".", 1)[0] in ("embedder", "generator", "discriminator")},
                        config)
    model.info = {"train_config": meta["train_config"], "step": meta["step"],
                  "checkpoint": str(checkpoint)}
    return model

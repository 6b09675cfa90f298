"""Configuration shared by every chapter: model sizes by profile, and seeding.

A *profile* sizes everything for one kind of machine: ``tiny()`` (the tests), ``cpu()`` (the
book on a laptop CPU, the default) and ``paper()`` (256 px, the paper's values, for a GPU).
The paper's values live only in ``paper()``; every other profile says next to each value
where and why it departs from them.
"""

from __future__ import annotations

import ast
import os
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from .checks import is_int, is_integer, is_number

#: The package's own files: shipped models, the identity network, reference outputs.
ASSETS = Path(__file__).resolve().parent / "assets"

PROFILES = ("tiny", "cpu", "paper")
# The spelling of ``adv_trains_w`` in checkpoints written before it existed.
_OLD_W_LOSSES = {"dsc+mch+adv": True, "dsc+mch": False}
# as fewshot_th.losses names them
CONTENT_TERMS = ("vgg19", "vggface", "synthface", "synthlandmarks", "pixel", "mouth", "eyes")


def with_assignments(config, pairs: list[str]):
    """``config`` (a ``ModelConfig`` or ``TrainConfig``) with ``NAME=VALUE`` changes, as the
    command line gives them: ``lr_eg=5e-4``, ``zero_bias_init=True``, ``adv_trains_w=False``
    (a Python literal, or else the text itself). Unknown names and bad values raise one
    ``ValueError`` that says which."""
    kind = type(config).__name__
    changes = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"{kind} changes take NAME=VALUE, got {pair!r}")
        if name == "w_losses" and isinstance(config, TrainConfig):
            raise ValueError("w_losses is now adv_trains_w: w_losses=dsc+mch+adv is "
                             "adv_trains_w=True, w_losses=dsc+mch adv_trains_w=False")
        if name not in config.__dataclass_fields__:
            raise ValueError(f"{kind} has no field {name!r}; its fields: "
                             f"{', '.join(config.__dataclass_fields__)}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        current = getattr(config, name)
        if isinstance(current, bool) and not isinstance(value, bool):
            raise ValueError(f"{kind}.{name} takes True or False, got {text!r}")
        if is_number(current) and not is_number(value):
            raise ValueError(f"{kind}.{name} takes a number, got {text!r}")
        changes[name] = value
    try:
        return config.with_changes(**changes)
    except TypeError as error:  # e.g. a comparison of a text with a number
        raise ValueError(f"{kind} changes {pairs}: {error}") from None


def _from_json(cls, values: dict) -> dict:
    """``values`` of dataclass ``cls`` as JSON gave them back: nested lists become tuples;
    names that are not fields of ``cls`` are refused."""
    unknown = set(values) - set(cls.__dataclass_fields__)
    if unknown:
        raise ValueError(f"{cls.__name__} has no fields {sorted(unknown)}")

    def tuples(value):
        return tuple(tuples(v) for v in value) if isinstance(value, list) else value

    return {name: tuples(value) for name, value in values.items()}


EMBEDDER_POOLING = ("sum", "weighted")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the embedder E, the generator G and the discriminator D.

    Channels double from ``min_channels`` with every down-sampling block, up to
    ``max_channels``; the last block of E and of D's trunk outputs ``embedding_size``
    channels, which sum pooling turns into the ``embedding_size``-d vectors e and v. The
    generator may have its own range (``generator_min_channels``, ``generator_max_channels``;
    ``None``: the same as E and D, as in the paper).
    """

    image_size: int = 256
    min_channels: int = 64
    max_channels: int = 512
    embedding_size: int = 512
    embedder_down_blocks: int = 6  # E and D: 256 px -> 4 x 4
    generator_down_blocks: int = 4  # G: 256 px -> 16 x 16
    generator_res_blocks: int = 5  # G: AdaIN residual blocks at the lowest resolution
    generator_up_blocks: int = 4  # G: back to 256 px
    attention_down: tuple[int, ...] = (32,)  # self-attention after down blocks at these sizes
    attention_up: tuple[int, ...] = (64,)  # ... and after G's up blocks at these sizes
    generator_min_channels: int | None = None
    generator_max_channels: int | None = None
    spectral_norm: bool = True  # on every conv and linear layer of E, G and D
    adain_eps: float = 1e-5  # AdaIN divides by sqrt(var + eps): never by a bare sqrt(var)
    # Spectrally normalised layers start with zero biases, as SNGAN's and BigGAN's code do.
    # False (models made before this field existed): torch's random biases, which spectral
    # normalisation leaves alone while it scales the weights down, so they dominate D's
    # features and D hardly tells a face from a grey image (bench/RESULTS.md, "Why
    # feed-forward gains nothing").
    zero_bias_init: bool = True
    # How E turns its last block's map into e. "sum": the paper's global sum pooling.
    # "weighted": a learned weight per channel and position, all ones at the start (the same
    # e as "sum" until training moves them), so that e can keep where a feature sits; not
    # the paper (bench/RESULTS.md, "Why the glasses are missing").
    embedder_pooling: str = "sum"

    def __post_init__(self):
        for name in ("image_size", "min_channels", "max_channels", "embedding_size",
                     "embedder_down_blocks", "generator_down_blocks", "generator_up_blocks"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.generator_res_blocks < 0:
            raise ValueError("ModelConfig.generator_res_blocks must be >= 0")
        for low, high in ((self.min_channels, self.max_channels),
                          (self.generator_min_channels, self.generator_max_channels)):
            if low is not None and high is not None and low > high:
                raise ValueError(f"min_channels ({low}) must not exceed max_channels ({high})")
        for name in ("generator_min_channels", "generator_max_channels"):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or value < 1):
                raise ValueError(f"ModelConfig.{name} must be None or a positive integer, "
                                 f"got {value!r}")
        if self.generator_up_blocks != self.generator_down_blocks:
            raise ValueError("the generator must up-sample as often as it down-samples: "
                             f"{self.generator_up_blocks} up vs {self.generator_down_blocks} down")
        deepest = max(self.embedder_down_blocks, self.generator_down_blocks)
        if self.image_size % 2**deepest:
            raise ValueError(f"image_size {self.image_size} must be divisible by 2**{deepest} "
                             f"for {deepest} down-sampling blocks")
        if self.embedder_pooling not in EMBEDDER_POOLING:
            raise ValueError(f"ModelConfig.embedder_pooling must be one of {EMBEDDER_POOLING}, "
                             f"got {self.embedder_pooling!r}")
        if self.adain_eps <= 0:
            raise ValueError(f"adain_eps must be positive, got {self.adain_eps}")
        sizes = {"attention_down": [self.image_size // 2**i  # after a block of E, D or G
                                    for i in range(1, deepest + 1)],
                 "attention_up": [self.image_size // 2**i
                                  for i in range(self.generator_up_blocks - 1, -1, -1)]}
        for name, reachable in sizes.items():
            value = getattr(self, name)
            if not isinstance(value, tuple) or any(v not in reachable for v in value):
                raise ValueError(f"ModelConfig.{name} lists the sizes (in pixels) after which "
                                 f"the networks attend; {value!r} is not a tuple of sizes "
                                 f"they reach: {reachable}")

    def channels(self, num_blocks: int) -> list[int]:
        """Output channels of ``num_blocks`` successive down-sampling blocks of E and D."""
        return [min(self.min_channels * 2**i, self.max_channels) for i in range(num_blocks)]

    def generator_channels(self) -> list[int]:
        """Output channels of G's down-sampling blocks (its up path mirrors them)."""
        low = self.generator_min_channels or self.min_channels
        high = self.generator_max_channels or self.max_channels
        return [min(low * 2**i, high) for i in range(self.generator_down_blocks)]

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """The inverse of ``as_dict`` after a JSON round trip (lists back to tuples); a field
        that a newer version added takes the value that reproduces the older models."""
        return cls(**{"zero_bias_init": False, **_from_json(cls, values)})

    def with_changes(self, **changes) -> ModelConfig:
        """A copy with some values changed (and checked again)."""
        return replace(self, **changes)


def paper() -> ModelConfig:
    """The paper's networks: 256 px, channels 64 to 512, E and D down to 4 x 4, G with four
    down-sampling blocks (instance norm), five AdaIN residual blocks and four AdaIN
    up-sampling blocks, self-attention at 32 x 32 on the way down and 64 x 64 on the way up,
    spectral norm everywhere, 512-d embeddings."""
    return ModelConfig()


def cpu() -> ModelConfig:
    """The book's CPU profile: 64 px SynthHeads, one meta-learning step (batch 8, K = 8) in
    about a third of a second on 2 cores.

    Departures from ``paper()``, each for speed on a CPU:
    * 64 px images (paper: 256): 16x fewer pixels; SynthHeads faces read well at 64 px.
    * E and D: channels 16 to 256 (paper: 64 to 512) and 256-d embeddings e, v, W (paper:
      512). E sees K = 8 frames per video, so it costs 8x what G costs: most of the step.
    * G: channels 32 to 256, since G runs once per video and its capacity decides how sharp
      the faces get.
    * E and D go 64 -> 4 in 4 blocks (the paper's 4 x 4 bottom); G goes 64 -> 8 in 3 blocks
      with 3 AdaIN residual blocks (paper: 256 -> 16 in 4, then 5 blocks): 8 x 8 is the
      paper's bottom scaled to 64 px, rounded up to keep room for a face's layout.
    * attention at 16 x 16 on the way down and up (the paper's 32 and 64, scaled to 64 px,
      would be 8 and 16: 16 on both paths keeps attention where a face has structure).
    """
    return ModelConfig(image_size=64, min_channels=16, max_channels=256, embedding_size=256,
                       embedder_down_blocks=4, generator_down_blocks=3, generator_res_blocks=3,
                       generator_up_blocks=3, attention_down=(16,), attention_up=(16,),
                       generator_min_channels=32, generator_max_channels=256)


def tiny() -> ModelConfig:
    """The tests' profile: 32 px, 8 to 32 channels; every kind of block appears once or more."""
    return ModelConfig(image_size=32, min_channels=8, max_channels=32, embedding_size=512,
                       embedder_down_blocks=3, generator_down_blocks=2, generator_res_blocks=1,
                       generator_up_blocks=2, attention_down=(8,), attention_up=(16,))


@dataclass(frozen=True)
class TrainConfig:
    """How E, G and D are meta-learned (Sec. 3.2 and 4 of the paper).

    ``content`` lists the content-loss terms and their weights: ``"vgg19"``, ``"vggface"``
    (feature networks) and ``"pixel"`` (plain L1).
    """

    k: int = 8  # source frames per episode during meta-learning
    batch_size: int = 8  # videos per step
    lr_eg: float = 5e-5  # Adam learning rate of E and G
    lr_d: float = 2e-4  # Adam learning rate of D (and of W)
    lr_w: float | None = None  # Adam learning rate of W alone (None: lr_d)
    betas: tuple[float, float] = (0.0, 0.999)  # (unverified) the authors' later code
    d_steps: int = 1  # D updates per E+G update
    content: tuple[tuple[str, float], ...] = (("vgg19", 1.5e-1), ("vggface", 2.5e-2))
    lambda_fm: float = 10.0  # feature matching weight (unverified)
    # Not in the paper (whose weight is 1): the weight of -D(x̂) in L_ADV. Once D separates
    # real from generated frames, this term's gradient on E and G is 8x the content loss's
    # and G undoes D's margin within 5 steps (bench/RESULTS.md, "Why D loses").
    lambda_score: float = 1.0
    lambda_mch: float = 80.0  # match loss weight (unverified)
    # Not in the paper; both against the embedding collapse that chapter 5 shows on
    # a CPU budget (a random W_i pulled ê to zero through L_MCH within 100 steps):
    init_w_from_e_hat: bool = False  # set W_i := ê_i the first time video i is seen
    mch_warmup_steps: int = 0  # ramp λ_MCH linearly from 0 over these steps
    # Whether L_ADV also trains W, D's matrix of per-video vectors. False is the paper: W
    # learns from L_DSC (as D's parameters do) and from L_MCH, which ties it to ê. True is how
    # the models made before this field existed were trained: W was among the inputs of E's
    # and G's backward pass, so L_ADV's -D(x̂) reached W and cancelled what L_DSC teaches it
    # about generated frames (bench/RESULTS.md, "Why feed-forward gains nothing").
    adv_trains_w: bool = False
    # Not in the paper: for the first d_warmup_steps steps E and G stay as they are and only
    # D (and W) learn, so that a fresh D catches up with a warm-started G (Trainer.start_from)
    # before G starts to move.
    d_warmup_steps: int = 0

    def __post_init__(self):
        for name in ("mch_warmup_steps", "d_warmup_steps"):
            value = getattr(self, name)
            if not is_int(value) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 0, got {value!r}")
        if not isinstance(self.adv_trains_w, bool):
            raise ValueError(f"TrainConfig.adv_trains_w must be True or False, got "
                             f"{self.adv_trains_w!r}")
        for name in ("k", "batch_size", "d_steps"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        for name in ("lr_eg", "lr_d", "lr_w"):
            value = getattr(self, name)
            if value is None and name == "lr_w":
                continue
            if not is_number(value) or not 0 < value <= 1:
                raise ValueError(f"TrainConfig.{name} must be a learning rate in (0, 1], got "
                                 f"{value!r}")
        if not (isinstance(self.betas, tuple) and len(self.betas) == 2
                and all(isinstance(b, (int, float)) and 0 <= b < 1 for b in self.betas)):
            raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), got "
                             f"{self.betas!r}")
        for name in ("lambda_fm", "lambda_score", "lambda_mch"):
            value = getattr(self, name)
            if not is_number(value) or not 0 <= value < float("inf"):
                raise ValueError(f"TrainConfig.{name} must be a finite weight >= 0, got "
                                 f"{value!r}")
        if not self.content:
            raise ValueError("TrainConfig.content needs at least one term")
        for term, weight in self.content:
            if term not in CONTENT_TERMS or not 0 <= weight < float("inf"):
                raise ValueError(f"content term {term!r} with weight {weight} is not one of "
                                 f"{CONTENT_TERMS} with a weight >= 0")

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The inverse of ``as_dict`` after a JSON round trip (lists back to tuples); a field
        that a newer version added takes the value that reproduces the older recipes
        (``adv_trains_w``: True), or else its default. Older checkpoints spell
        ``adv_trains_w`` as ``w_losses``: ``"dsc+mch+adv"`` (True) or ``"dsc+mch"``."""
        values = dict(values)
        if "w_losses" in values:
            old = values.pop("w_losses")
            if old not in _OLD_W_LOSSES:
                raise ValueError(f"TrainConfig: w_losses (now adv_trains_w) must be one of "
                                 f"{tuple(_OLD_W_LOSSES)}, got {old!r}")
            values.setdefault("adv_trains_w", _OLD_W_LOSSES[old])
        return cls(**{"adv_trains_w": True, **_from_json(cls, values)})

    def with_changes(self, **changes) -> TrainConfig:
        return replace(self, **changes)


def training(name: str) -> TrainConfig:
    """The ``TrainConfig`` of a profile.

    * ``paper``: the paper's losses (VGG19 and VGGFace content with the v2 weights, λ_FM = 10,
      λ_MCH = 80), Adam with lr 5e-5 (E, G) and 2e-4 (D).
    * ``cpu``: pixel L1 content (x 10) instead of VGG19, and a SynthHeads face-recognition
      network instead of VGGFace (``"synthface"``, x 0.2: a third of the pixel term on the
      shipped model's frames; the weight is a guess), since neither VGG19's nor VGGFace's
      weights can be downloaded on an offline machine and their forward passes would double
      the cost of a CPU step (chapter 5 discusses what this changes); batches of 32 videos,
      learning rates 4e-4 for all and betas (0.5, 0.999); W_i initialised from the video's
      first ê and λ_MCH ramped in over 500 steps, against the embedding collapse that chapter
      5 shows; and
      λ_MCH = 8 (paper: 80): beside a pixel L1 ten times smaller than the paper's VGG
      content loss, λ_MCH = 80 anchors ê to the slowly moving W_i and stalls E (measured in
      bench/RESULTS.md, "Time to quality").
    * ``tiny``: the ``cpu`` recipe with small batches, for tests.
    """
    if name == "paper":
        return TrainConfig()
    if name == "cpu":
        return TrainConfig(batch_size=32, lr_eg=4e-4, lr_d=4e-4, betas=(0.5, 0.999),
                           content=(("pixel", 10.0), ("synthface", 0.2)), lambda_mch=8.0,
                           init_w_from_e_hat=True, mch_warmup_steps=500)
    if name == "tiny":
        return TrainConfig(k=2, batch_size=2, lr_eg=2e-4, lr_d=2e-4, betas=(0.5, 0.999),
                           content=(("pixel", 10.0),), init_w_from_e_hat=True,
                           mch_warmup_steps=2)
    raise ValueError(f"unknown profile {name!r}; choose one of {PROFILES}")


def profile(name: str) -> ModelConfig:
    """The ``ModelConfig`` of a profile by name: ``"tiny"``, ``"cpu"`` or ``"paper"``."""
    builders = {"tiny": tiny, "cpu": cpu, "paper": paper}
    if name not in builders:
        raise ValueError(f"unknown profile {name!r}; choose one of {PROFILES}")
    return builders[name]()


def default_profile() -> str:
    """The profile of the book's chapters: ``"cpu"``, on a GPU as on a laptop, unless
    ``FEWSHOT_TH_PROFILE`` names another.

    The chapters' live experiments are sized for the ``cpu`` profile: about two minutes on two
    CPU cores, seconds on a GPU (``default_device``). The ``paper`` profile's networks (15-38 M
    parameters at 256 px) learn nothing visible in a chapter's few hundred steps, even on a GPU;
    ``FEWSHOT_TH_PROFILE=paper`` builds them anyway, and ``fewshot-th train --profile paper``
    trains them for real.
    """
    chosen = os.environ.get("FEWSHOT_TH_PROFILE")
    if chosen:
        if chosen not in PROFILES:
            raise ValueError(f"FEWSHOT_TH_PROFILE must be one of {PROFILES}, got {chosen!r}")
        return chosen
    return "cpu"


def as_device(value, name: str = "device") -> torch.device:
    """``value`` ("cpu", "cuda", "cuda:1" or a ``torch.device``) as a device this machine has;
    a clear ``ValueError`` otherwise (``name`` says which argument was wrong)."""
    if not isinstance(value, (str, torch.device)):
        raise ValueError(f"{name} must be 'cpu', 'cuda' or a torch.device, got {value!r}")
    try:
        device = torch.device(value)
    except (RuntimeError, ValueError):
        raise ValueError(f"{name} {value!r} is not a device: use 'cpu', 'cuda' or "
                         "'cuda:N'") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} must be 'cpu' or a CUDA device, got {value!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name} {device}: torch sees no CUDA GPU here; use 'cpu'")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"{name} {device}: torch sees only {torch.cuda.device_count()} "
                         "GPU(s), numbered from 0")
    return device


def default_device() -> torch.device:
    """The device every chapter computes on: the first CUDA GPU when there is one (Colab),
    else the CPU; ``FEWSHOT_TH_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``...) overrides."""
    chosen = os.environ.get("FEWSHOT_TH_DEVICE")
    if not chosen:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return as_device(chosen, "FEWSHOT_TH_DEVICE")


def cache_directory() -> Path:
    """Where results worth keeping between chapters go (the warm-up of chapters 2 and 3, the
    few-shot grid of chapters 7 and 8): ``FEWSHOT_TH_CACHE``, else ``~/.cache/fewshot_th``."""
    return Path(os.environ.get("FEWSHOT_TH_CACHE") or Path.home() / ".cache" / "fewshot_th")


def quick_mode() -> bool:
    """True when ``FEWSHOT_TH_QUICK=1``: chapters shorten their live experiments (the tests
    set it so that every chapter is executed quickly; readers get the full experiments)."""
    return os.environ.get("FEWSHOT_TH_QUICK", "0") not in ("", "0")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so that a chapter runs the same every time."""
    if not is_integer(seed) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

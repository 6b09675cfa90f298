"""The meta-learning objective (Sec. 3.2 of the paper).

E and G minimise ``L_CNT + L_ADV + L_MCH``; D minimises the hinge loss ``L_DSC``.

* ``L_CNT`` (content): L1 distances between activations of fixed feature networks on the real
  and the generated frame: VGG19 trained on ImageNet (relu1_1 ... relu5_1, torchvision's
  ``features`` indices 1, 6, 11, 20, 29) and VGGFace (the same five depths of VGG16), plus
  optionally the plain pixel L1. Offline, where VGG-Face cannot be had, ``"synthface"`` is
  the same kind of term from a SynthHeads face-recognition network (``SynthFaceFeatures``),
  and ``"synthlandmarks"`` compares the landmarks a SynthHeads landmark network
  (``fewshot_th.landmark_net``) finds in the generated and in the real frame
  (``SynthLandmarkFeatures``): a term on where the face's parts are, which a pixel L1 weighs
  only by their pixel count. ``"mouth"`` is the pixel L1 once more on the box around the
  target's mouth and chin, weighed by how far its landmarks open the mouth
  (``mouth_region``): what a talking mouth changes in a frame, found from the landmarks alone.
  ``"eyes"`` is the same on the box around the eyes (``eyes_region``), where glasses sit.
* ``L_ADV`` (adversarial): ``-D(x̂, y, i)`` plus feature matching, the L1 distance between D's
  intermediate maps on the real and the generated frame, weighted by λ_FM.
* ``L_MCH`` (match): ``λ_MCH · |W_i - ê_i|_1 / D``: the embedder's vector and the
  discriminator's vector of the same video are pulled together. The paper writes the L1 norm;
  this code takes the mean over the D entries (and the batch), and every profile's
  ``λ_MCH`` (80 in ``paper``, as the paper's, 8 in ``cpu``) is meant for that mean: a sum
  would make the term D = 512 times stronger. The paper does not say which it used.
* ``L_DSC`` (discriminator): ``max(0, 1 + D(x̂)) + max(0, 1 - D(x))``.

The feature networks are built here (no torchvision) and load their weights from a file in
the layout of the usual releases; ``weights_only`` loading never executes code from a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import CONTENT_TERMS
from .identity import IdentityNet
from .weights import cached_or_downloaded

__all__ = ["VGG19Features", "VGGFaceFeatures", "SynthFaceFeatures", "SynthLandmarkFeatures",
           "ContentLoss", "mouth_region", "inner_lip_gap", "eyes_region",
           "FeatureWeightsMissing", "load_vgg19", "load_vggface", "load_synthface",
           "load_synthlandmarks",
           "CONTENT_TERMS", "SYNTHFACE_ASSET", "adversarial_loss", "feature_matching_loss",
           "match_loss", "discriminator_hinge_loss", "content_loss_from", "VGG19_FILE",
           "VGG19_URL"]

VGG19_FILE = "vgg19-dcbb9e9d.pth"
VGG19_URL = "https://download.pytorch.org/models/" + VGG19_FILE
# The face-recognition network of the "synthface" term: trained on other SynthHeads people
# (seed 1) than the network that scores CSIM (``synthheads-identity``, seed 0), so that a
# model is never scored by the network it was trained against.
SYNTHFACE_ASSET = "synthheads-face-loss"


class FeatureWeightsMissing(RuntimeError):
    """The weights of a content-loss network are not on disk and could not be downloaded."""


def _vgg_layers(config: list, names: list[str] | None) -> nn.Module:
    """VGG convolution/ReLU/max-pool stack; ``names`` gives each conv a name (else indices)."""
    layers, cin, conv_index = [], 3, 0
    for item in config:
        if item == "M":
            layers.append(("pool", nn.MaxPool2d(2)))
            continue
        name = names[conv_index] if names else None
        layers.append((name, nn.Conv2d(cin, item, 3, padding=1)))
        layers.append((None, nn.ReLU()))
        cin, conv_index = item, conv_index + 1
    return layers


class _FrozenFeatures(nn.Module):
    """A frozen feature network: eval mode, no parameter ever requires a gradient."""

    taps: tuple[int, ...] = ()

    def freeze(self) -> _FrozenFeatures:
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> _FrozenFeatures:
        return super().train(False)  # always eval: the loss network never changes

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Activations at ``taps`` for images ``(B, 3, H, W)`` in [0, 1] (RGB)."""
        h, out = self.preprocess(x), []
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i in self.taps:
                out.append(h)
            if i >= self.taps[-1]:
                break  # never run layers past the last tap (nor any classifier)
        return out


class VGG19Features(_FrozenFeatures):
    """VGG19's convolutional part, up to relu5_1, in one of two kinds of weights.

    * torchvision's ImageNet file (``caffe=False``; keys ``features.0.weight`` ...): input RGB
      in [0, 1], normalised with ImageNet's mean and standard deviation inside.
    * the original Caffe model the paper used (``caffe=True``; a PyTorch conversion with keys
      ``conv1_1.weight`` ... ``conv5_1.weight``): input converted Caffe-style inside, RGB
      [0, 1] -> BGR on the 0-255 scale minus ImageNet's mean colour.

    The paper's layer weights (``TrainConfig.content``) were set for the Caffe features. With
    torchvision's weights the same weights give another loss: its inputs are about
    255 x 0.226 = 58 times smaller, and so, to first order, are the first layers' feature
    differences. The loss is not rescaled to hide that; give a Caffe conversion
    (``load_vgg19(path)`` tells the two apart by their keys) for the paper's scale.
    """

    taps = (1, 6, 11, 20, 29)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
    conv_names = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
                  "conv3_4", "conv4_1", "conv4_2", "conv4_3", "conv4_4", "conv5_1"]

    def __init__(self, caffe: bool = False):
        super().__init__()
        config = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                  512]
        named = _vgg_layers(config, self.conv_names)
        self.layers = nn.Sequential(*[layer for _, layer in named])
        self._index = {name: i for i, (name, _) in enumerate(named) if name and name != "pool"}
        self.caffe = bool(caffe)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        # the Caffe model's mean colour, B, G, R on the 0-255 scale
        self.register_buffer("mean_bgr", torch.tensor([103.939, 116.779, 123.68])
                             .view(1, 3, 1, 1), persistent=False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if self.caffe:
            return x.flip(1) * 255.0 - self.mean_bgr
        return (x - self.mean) / self.std

    def load_torchvision_state_dict(self, state: dict) -> None:
        wanted = {k.replace("features.", "layers.", 1): v for k, v in state.items()
                  if k.startswith("features.") and int(k.split(".")[1]) < len(self.layers)}
        self.load_state_dict({**wanted, "mean": self.mean, "std": self.std})

    def load_caffe_state_dict(self, state: dict) -> None:
        wanted = {}
        for name, index in self._index.items():
            for part in ("weight", "bias"):
                if f"{name}.{part}" not in state:
                    raise ValueError(f"the Caffe VGG19 state dict has no {name}.{part!r}: "
                                     "expected keys conv1_1.weight ... conv5_1.bias")
                wanted[f"layers.{index}.{part}"] = state[f"{name}.{part}"]
        self.load_state_dict({**wanted, "mean": self.mean, "std": self.std})


class VGGFaceFeatures(_FrozenFeatures):
    """VGG-Face (VGG16 trained on faces, Parkhi et al. 2015), up to relu5_1.

    ``state_dict`` keys follow the common PyTorch conversion (``conv1_1.weight`` ...; its fc
    layers are ignored). Input is converted Caffe-style inside: RGB [0, 1] -> BGR, 0-255,
    minus the training set's mean colour.
    """

    taps = (1, 6, 11, 18, 25)  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
    conv_names = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
                  "conv4_1", "conv4_2", "conv4_3", "conv5_1"]

    def __init__(self):
        super().__init__()
        config = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512]
        named = _vgg_layers(config, self.conv_names)
        self.layers = nn.Sequential(*[layer for _, layer in named])
        self._index = {name: i for i, (name, _) in enumerate(named) if name and name != "pool"}
        # Mean colour of the VGG-Face training images, in B, G, R order, on the 0-255 scale.
        self.register_buffer("mean_bgr", torch.tensor([93.5940, 104.7624, 129.1863])
                             .view(1, 3, 1, 1))

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(1) * 255.0 - self.mean_bgr

    def load_converted_state_dict(self, state: dict) -> None:
        wanted = {}
        for name, index in self._index.items():
            for part in ("weight", "bias"):
                key = f"{name}.{part}"
                if key not in state:
                    raise ValueError(f"the VGG-Face state dict has no {key!r}: expected the "
                                     "common PyTorch conversion with keys conv1_1.weight ...")
                wanted[f"layers.{index}.{part}"] = state[key]
        self.load_state_dict({**wanted, "mean_bgr": self.mean_bgr})


class SynthFaceFeatures(_FrozenFeatures):
    """A SynthHeads face-recognition network (``fewshot_th.identity.IdentityNet``) as a
    content-loss network: the activations after each of its four stages.

    It plays VGG-Face's part in L_CNT for SynthHeads: a network trained to tell people apart,
    whose features respond to what makes a face that person's (colours, glasses, face shape)
    and little to pose or expression.
    """

    def __init__(self, net: IdentityNet):
        super().__init__()
        self.layers = net.trunk
        self.taps = tuple(i for i, layer in enumerate(self.layers)
                          if isinstance(layer, nn.ReLU) and i % 5 == 4)  # end of each stage
        self.image_size = net.image_size

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"the synthface content loss takes {self.image_size} px frames "
                             f"(its network's size), got {tuple(x.shape[-2:])}")
        return x * 2 - 1


def load_synthface(path: str | os.PathLike | None = None) -> SynthFaceFeatures:
    """The ``"synthface"`` content network: ``path`` is a ``.safetensors`` file saved by
    ``fewshot_th.identity.save_identity_net`` (with its ``.json`` beside it); default: the
    shipped ``synthheads-face-loss``."""
    from .identity import load_identity_net

    if path is None:
        net = load_identity_net(name=SYNTHFACE_ASSET)
    else:
        path = Path(path)
        if path.suffix != ".safetensors" or not path.exists():
            raise FeatureWeightsMissing(f"no identity network at {path}: expected the "
                                        ".safetensors file of save_identity_net")
        net = load_identity_net(path.parent, name=path.stem)
    return SynthFaceFeatures(net).freeze()


class SynthLandmarkFeatures(_FrozenFeatures):
    """A SynthHeads landmark network (``fewshot_th.landmark_net.LandmarkNet``) as a
    content-loss network: its one "feature" is the 68 landmarks it finds in a frame (scaled
    to [-1, 1]), so the term asks that the generated frame show its face's parts where the
    real frame shows them. Its stage activations, tapped like ``"synthface"``'s, did not
    teach the generator to open the mouth; the landmarks did (``bench/RESULTS.md``)."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.image_size = net.image_size

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"the synthlandmarks content loss takes {self.image_size} px "
                             f"frames (its network's size), got {tuple(x.shape[-2:])}")
        return [self.net(x)]


def load_synthlandmarks(path: str | os.PathLike | None = None) -> SynthLandmarkFeatures:
    """The ``"synthlandmarks"`` content network: a SynthHeads landmark network
    (``fewshot_th.landmark_net``) whose output, the landmarks it finds, is compared between
    the generated and the real frame; ``path`` is a ``.safetensors`` file saved by
    ``save_landmark_net``; default: the shipped ``synthheads-landmarks``."""
    from .landmark_net import load_landmark_net

    if path is None:
        return SynthLandmarkFeatures(load_landmark_net()).freeze()
    path = Path(path)
    if path.suffix != ".safetensors" or not path.exists():
        raise FeatureWeightsMissing(f"no landmark network at {path}: expected the "
                                    ".safetensors file of save_landmark_net")
    return SynthLandmarkFeatures(load_landmark_net(path.parent, name=path.stem)).freeze()


def load_vgg19(path: str | os.PathLike | None = None) -> VGG19Features:
    """VGG19 with ImageNet weights: from ``path``, else torchvision's file in the torch hub
    cache, else downloaded. A file with Caffe-conversion keys (``conv1_1.weight`` ...) loads
    as the Caffe model the paper used, with its input convention (``VGG19Features``).

    Raises ``FeatureWeightsMissing`` (naming the file and directory) when none works.
    """
    if path is None:
        path = cached_or_downloaded(VGG19_FILE, VGG19_URL, "VGG19's ImageNet weights",
                                    "train with the pixel content loss only "
                                    "(content={'pixel': 1.0})", FeatureWeightsMissing)
    path = Path(path)
    if not path.exists():
        raise FeatureWeightsMissing(f"no VGG19 weights file at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    network = VGG19Features(caffe="conv1_1.weight" in state)
    if network.caffe:
        network.load_caffe_state_dict(state)
    else:
        network.load_torchvision_state_dict(state)
    return network.freeze()


def load_vggface(path: str | os.PathLike | None) -> VGGFaceFeatures:
    """VGG-Face from a converted PyTorch state dict (``conv1_1.weight`` ... keys).

    VGG-Face has no official PyTorch release and no stable download address, so a path is
    required; without one this raises ``FeatureWeightsMissing`` with what to do.
    """
    if path is None or not Path(path).exists():
        raise FeatureWeightsMissing(
            "VGG-Face weights are needed for the paper's content loss: pass the path of a "
            "converted PyTorch state dict (keys conv1_1.weight ... conv5_3.weight), or train "
            f"without it (content={{'vgg19': ..., 'pixel': ...}}); got {path!r}")
    network = VGGFaceFeatures()
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    network.load_converted_state_dict(state)
    return network.freeze()


MOUTH_LANDMARKS = list(range(48, 68))  # outer and inner lips
CHIN_LANDMARKS = list(range(5, 12))  # the jaw drops when the mouth opens
OPEN_AT = 3 / 64  # inner lips this far apart (a share of the frame) count as fully open


def _boxes(low: torch.Tensor, high: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 2)`` corners (x, y) in pixels -> ``(B, size, size)``: 1 on the pixels whose
    centres lie in the box."""
    centres = torch.arange(size, dtype=torch.float32, device=low.device) + 0.5
    inside_x = (centres >= low[:, :1]) & (centres <= high[:, :1])
    inside_y = (centres >= low[:, 1:]) & (centres <= high[:, 1:])
    return (inside_y[:, :, None] & inside_x[:, None, :]).float()


def _check_points(points: torch.Tensor) -> torch.Tensor:
    if points.ndim != 3 or points.shape[1:] != (68, 2):
        raise ValueError(f"points must be (B, 68, 2) landmarks, got {tuple(points.shape)}")
    return points.float()


def inner_lip_gap(points: torch.Tensor) -> torch.Tensor:
    """``(B, 68, 2)`` landmarks in pixels -> ``(B,)``: how far apart the inner lips are, in
    pixels (the mean height of the lower inner lip's three middle points, 65-67, below the
    upper one's, 61-63); about 0 for a shut mouth."""
    points = _check_points(points)
    return points[:, 65:68, 1].mean(dim=1) - points[:, 61:64, 1].mean(dim=1)


def mouth_region(points: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 68, 2)`` landmarks in pixels -> ``(B, 1, size, size)`` weights in [0, 1]: the box
    around the lips' and the chin's landmarks, one pixel wider, times how far the inner lips
    are apart (0 shut, 1 from 3 px at 64 px on). Where the frame of a talking mouth differs
    from the same frame with the mouth shut (the mouth and a crescent along the chin,
    ``bench/RESULTS.md``), from the target's own landmarks, so it works on real videos as on
    SynthHeads."""
    points = _check_points(points)
    box = points[:, MOUTH_LANDMARKS + CHIN_LANDMARKS]
    low, high = (box.amin(dim=1) - 1).floor(), (box.amax(dim=1) + 1).ceil()
    opening = (inner_lip_gap(points) / (OPEN_AT * size)).clamp(0, 1)
    return (_boxes(low, high, size) * opening[:, None, None]).unsqueeze(1)


EYE_LANDMARKS = list(range(36, 48))  # both eyes' outlines
EYE_MARGIN = 0.25  # how far the box reaches past them: a share of the distance between the eyes


def eyes_region(points: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 68, 2)`` landmarks in pixels -> ``(B, 1, size, size)`` weights in {0, 1}: the box
    around both eyes' landmarks, reaching past them by a quarter of the distance between the
    eye centres. Where glasses sit (on SynthHeads it holds 99% of the pixels that change when
    a person's glasses are taken off or put on, in 6% of the frame; ``bench/RESULTS.md``),
    from the target's landmarks alone."""
    points = _check_points(points)
    eyes = points[:, EYE_LANDMARKS]
    apart = (points[:, 36:42].mean(dim=1) - points[:, 42:48].mean(dim=1)).norm(dim=1)
    margin = (EYE_MARGIN * apart)[:, None]
    return _boxes(eyes.amin(dim=1) - margin, eyes.amax(dim=1) + margin, size).unsqueeze(1)


REGIONS = {"mouth": mouth_region, "eyes": eyes_region}  # content terms on a landmark box


class ContentLoss(nn.Module):
    """L_CNT: weighted sum of L1 distances between feature maps of fixed networks.

    Args:
        networks: ``{"vgg19": VGG19Features, "vggface": VGGFaceFeatures, "synthface":
            SynthFaceFeatures, "synthlandmarks": SynthLandmarkFeatures}`` (any subset).
        weights: one weight per term of ``CONTENT_TERMS``. A network term sums the mean L1
            distances of its tapped layers; ``"pixel"`` is the mean L1 of the pixels,
            ``"mouth"`` and ``"eyes"`` the same mean with each pixel weighed by
            ``mouth_region`` or ``eyes_region`` (they need the target frames' landmarks).
    """

    def __init__(self, weights: dict[str, float], networks: dict[str, nn.Module] | None = None):
        super().__init__()
        networks = networks or {}
        unknown = set(weights) - set(CONTENT_TERMS)
        if unknown:
            raise ValueError(f"unknown content terms {sorted(unknown)}; use {CONTENT_TERMS}")
        missing = [name for name in weights
                   if name != "pixel" and name not in REGIONS and name not in networks]
        if missing:
            raise ValueError(f"content terms {missing} need their networks (load_vgg19, "
                             "load_vggface, load_synthface, load_synthlandmarks)")
        self.weights = dict(weights)
        self.networks = nn.ModuleDict({k: v for k, v in networks.items() if k in weights})

    def forward(self, fake: torch.Tensor, real: torch.Tensor,
                points: torch.Tensor | None = None) -> torch.Tensor:
        """``fake``, ``real``: ``(B, 3, H, W)`` in [0, 1]; ``points``: the real frames'
        ``(B, 68, 2)`` landmarks, needed by the ``"mouth"`` and ``"eyes"`` terms only.
        Returns a scalar."""
        total = fake.new_zeros(())
        for name, weight in self.weights.items():
            if name == "pixel":
                total = total + weight * F.l1_loss(fake, real)
                continue
            if name in REGIONS:
                if points is None:
                    raise ValueError(f"the {name!r} content term weighs the pixels around the "
                                     f"target's {name}: pass the target frames' landmarks "
                                     "(points=...)")
                if len(points) != len(real):
                    raise ValueError(f"points: {len(points)} landmark sets for {len(real)} "
                                     "frames")
                region = REGIONS[name](points, real.shape[-1]).to(fake.dtype)
                total = total + weight * ((fake - real).abs() * region).mean()
                continue
            network = self.networks[name]
            with torch.no_grad():
                targets = network(real)
            for f, t in zip(network(fake), targets):
                total = total + weight * F.l1_loss(f, t)
        return total


def feature_matching_loss(real_maps: list[torch.Tensor],
                          fake_maps: list[torch.Tensor]) -> torch.Tensor:
    """L_FM: mean L1 distance between D's maps on real and fake frames, summed over blocks.

    The real maps are targets: no gradient flows into them.
    """
    if len(real_maps) != len(fake_maps):
        raise ValueError(f"got {len(real_maps)} real and {len(fake_maps)} fake feature maps")
    return sum(F.l1_loss(f, r.detach()) for f, r in zip(fake_maps, real_maps))


def adversarial_loss(fake_score: torch.Tensor, real_maps: list[torch.Tensor],
                     fake_maps: list[torch.Tensor], lambda_fm: float,
                     lambda_score: float = 1.0) -> torch.Tensor:
    """L_ADV = -mean D(x̂, y, i) + λ_FM · L_FM (generator side); ``lambda_score`` weighs
    the first term (1 in the paper)."""
    return -lambda_score * fake_score.mean() + lambda_fm * feature_matching_loss(real_maps,
                                                                                  fake_maps)


def match_loss(w_i: torch.Tensor, e_hat: torch.Tensor, lambda_mch: float) -> torch.Tensor:
    """L_MCH = λ_MCH · mean |W_i - ê_i| over the batch and the embedding's D entries: the
    paper's ``λ_MCH · ||W_i - ê_i||_1`` divided by D (see the module's docstring)."""
    if w_i.shape != e_hat.shape:
        raise ValueError(f"W_i {tuple(w_i.shape)} and ê {tuple(e_hat.shape)} must match")
    return lambda_mch * (w_i - e_hat).abs().mean()


def discriminator_hinge_loss(real_score: torch.Tensor, fake_score: torch.Tensor) -> torch.Tensor:
    """L_DSC = mean max(0, 1 - D(x)) + mean max(0, 1 + D(x̂)): the hinge, with its clamp."""
    return F.relu(1.0 - real_score).mean() + F.relu(1.0 + fake_score).mean()


def content_loss_from(terms: tuple[tuple[str, float], ...], *, vgg19_path=None,
                      vggface_path=None, synthface_path=None,
                      synthlandmarks_path=None) -> ContentLoss:
    """Build L_CNT for a ``TrainConfig.content``, loading the feature networks it names.

    Refuses with ``FeatureWeightsMissing`` when a network's weights cannot be found: training
    never silently drops a term of the paper's loss.
    """
    weights = dict(terms)
    networks = {}
    if "vgg19" in weights:
        networks["vgg19"] = load_vgg19(vgg19_path)
    if "vggface" in weights:
        networks["vggface"] = load_vggface(vggface_path)
    if "synthface" in weights:
        networks["synthface"] = load_synthface(synthface_path)
    if "synthlandmarks" in weights:
        networks["synthlandmarks"] = load_synthlandmarks(synthlandmarks_path)
    return ContentLoss(weights, networks)

"""A SynthHeads landmark network, for a content term on where the face's parts are.

The paper's content loss compares activations of VGG19 (trained on ImageNet) and VGGFace.
Offline there are no such weights, and the ``cpu`` profile's pixel L1 weighs a mouth by its
pixel count (2% of a 64 px frame), so the generator learns little reason to open it
(``bench/why_mouth.py``). This network is trained on SynthHeads *training* people (seed 2:
other people than both identity networks) to find a face's 68 landmarks. ``LandmarkNet`` has
the trunk of the identity networks (``IdentityNet``) and a linear head on its whole last
feature map (not on its spatial mean, which throws away where things are: a head on the
mean regressed the mouth to its average opening); its 136 outputs are the landmarks'
coordinates, scaled to [-1, 1]. ``losses.load_synthlandmarks`` makes it the
``"synthlandmarks"`` content term: the L1 distance between the landmarks it finds in the
generated frame and in the real one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .identity import IdentityNet, random_frames, read_network, save_network
from .landmarks import NUM_LANDMARKS

__all__ = ["LANDMARK_ASSET", "LandmarkNet", "train_landmark_net", "predict_landmarks",
           "landmark_net_error", "save_landmark_net", "load_landmark_net"]

LANDMARK_ASSET = "synthheads-landmarks"


class LandmarkNet(IdentityNet):
    """``(B, 3, S, S)`` frames in [0, 1] -> ``(B, 136)``: the 68 landmarks' (x, y), scaled
    from pixels to [-1, 1]."""

    def __init__(self, image_size: int = 64, width: int = 32):
        super().__init__(image_size, 2 * NUM_LANDMARKS, width)
        cells = (image_size // 16) ** 2  # four stride-2 stages
        self.head = nn.Linear(8 * width * cells, 2 * NUM_LANDMARKS)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(f"images must be (B, 3, {self.image_size}, {self.image_size}), "
                             f"got {tuple(images.shape)}")
        return self.head(self.trunk(images * 2 - 1).flatten(1))

    forward = features


def save_landmark_net(net: LandmarkNet, directory, name: str = LANDMARK_ASSET,
                      info: dict | None = None) -> None:
    """``<name>.safetensors`` (weights) and ``<name>.json`` (sizes, how it was made)."""
    save_network(net, directory, name, {"kind": "landmarks", "image_size": net.image_size,
                                        "width": net.width, **(info or {})})


def load_landmark_net(directory=None, name: str = LANDMARK_ASSET) -> LandmarkNet:
    """The shipped landmark network (or one saved by ``save_landmark_net``), in eval mode;
    ``.info`` holds how it was made and its landmark error on test people."""

    def build(info: dict) -> LandmarkNet:
        if info.get("kind") != "landmarks":
            raise ValueError(f"{name}.json does not describe a landmark network "
                             "(save_landmark_net)")
        return LandmarkNet(info["image_size"], info["width"])

    return read_network(directory, name, "landmark network", build)


def train_landmark_net(steps: int = 1500, identities: int = 500, videos_per_step: int = 16,
                       frames_per_video: int = 4, image_size: int = 64, seed: int = 2,
                       progress: bool = True) -> LandmarkNet:
    """Train a ``LandmarkNet`` to regress the landmarks of SynthHeads training frames (smooth
    L1 on coordinates scaled to [-1, 1]), half of the frames blurred as generated frames
    often are."""
    from .data import SynthHeads

    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    torch.manual_seed(seed)
    heads = SynthHeads("train", num_identities=identities, num_videos_per_identity=2,
                       frames_per_video=32, size=image_size, seed=seed)
    net = LandmarkNet(image_size)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(steps), desc="landmark network", disable=not progress):
        images, points, _ = random_frames(heads, generator, videos_per_step, frames_per_video)
        target = points.flatten(1) / image_size * 2 - 1
        loss = F.smooth_l1_loss(net.features(images), target, beta=0.02)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return net.eval()


def predict_landmarks(net: LandmarkNet, images: torch.Tensor) -> torch.Tensor:
    """``(N, 68, 2)`` landmarks in pixels of ``(N, 3, S, S)`` frames."""
    with torch.no_grad():
        scaled = net.features(images.float()).view(-1, NUM_LANDMARKS, 2)
    return (scaled + 1) / 2 * net.image_size


def landmark_net_error(net: LandmarkNet, identities: int = 20, frames: int = 16,
                       seed: int = 0) -> float:
    """Mean landmark error in pixels on SynthHeads *test* people."""
    from .data import SynthHeads

    test = SynthHeads("test", num_identities=identities, num_videos_per_identity=1,
                      frames_per_video=frames, size=net.image_size, seed=seed)
    errors = []
    for video in range(len(test)):
        images, points = test.get_frames(video)
        errors.append((predict_landmarks(net, images) - points).norm(dim=-1).mean())
    return float(torch.stack(errors).mean())

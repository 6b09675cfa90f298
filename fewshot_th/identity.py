"""CSIM: how much a generated frame looks like the same person as the real one.

The paper's CSIM is the cosine similarity of face-recognition embeddings of the generated
and the real frame. Two backends here, and every CSIM number says which one made it:

* ``"synthheads"``: a small identity network trained on SynthHeads *training* identities
  (``train_identity_net``; shipped as ``fewshot_th/assets/synthheads-identity``), for the
  cartoon faces that real face recognisers were never trained on. It has to separate the
  *test* identities: ``roc_auc`` of its same-person against different-person similarities.
* ``"dlib"``: dlib's face-recognition ResNet (128-d), which ships with the
  ``face-recognition-models`` package and works offline, for photographs of real faces.
* ``"arcface"``: an ArcFace network (Deng et al., 2019) in the IResNet layout of the
  insightface PyTorch releases, from a weights file you give (``load_arcface``); faces are
  first aligned to its 112 x 112 five-point template from their 68 landmarks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .config import ASSETS

__all__ = ["IdentityNet", "train_identity_net", "load_identity_net", "save_identity_net",
           "embed", "csim", "roc_auc", "dlib_embeddings", "identity_separation", "ArcFace",
           "load_arcface", "align_for_arcface", "ARCFACE_TEMPLATE"]

IDENTITY_ASSET = "synthheads-identity"


class IdentityNet(nn.Module):
    """``(B, 3, S, S)`` frames in [0, 1] -> ``(B, dim)`` unit-length identity embeddings."""

    def __init__(self, image_size: int = 64, dim: int = 128, width: int = 32):
        super().__init__()
        self.image_size, self.dim, self.width = image_size, dim, width
        layers, cin = [], 3
        for cout in (width, 2 * width, 4 * width, 8 * width):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(8, cout),
                       nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU()]
            cin = cout
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(cin, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.features(images), dim=1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, dim)`` the embeddings before they are scaled to unit length (the features of
        the realism Fréchet distance in ``fewshot_th.evaluation``)."""
        if images.ndim != 4 or images.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(f"images must be (B, 3, {self.image_size}, {self.image_size}), "
                             f"got {tuple(images.shape)}")
        return self.head(self.trunk(images * 2 - 1).mean(dim=(2, 3)))


def blur_half(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Half of the images blurred (down and up by 2): generated frames are often soft."""
    soft = F.interpolate(F.avg_pool2d(images, 2), scale_factor=2, mode="bilinear",
                         align_corners=False)
    pick = torch.rand(len(images), generator=generator) < 0.5
    return torch.where(pick[:, None, None, None], soft, images)


def random_frames(heads, generator: torch.Generator, videos: int, frames_per_video: int):
    """A training batch for the small SynthHeads networks: ``frames_per_video`` random frames
    of each of ``videos`` random videos of ``heads`` (32 frames each), half of them blurred
    (``blur_half``): ``(images, landmarks, the videos)``."""
    chosen_videos = torch.randint(len(heads), (videos,), generator=generator).tolist()
    frames, points = [], []
    for video in chosen_videos:
        chosen = torch.randperm(32, generator=generator)[:frames_per_video].numpy()
        f, p = heads.get_frames(video, np.sort(chosen))
        frames.append(f)
        points.append(p)
    return blur_half(torch.cat(frames), generator), torch.cat(points), chosen_videos


def train_identity_net(steps: int = 1500, identities: int = 500, videos_per_step: int = 16,
                       frames_per_video: int = 4, image_size: int = 64, seed: int = 0,
                       progress: bool = True) -> IdentityNet:
    """Train an ``IdentityNet`` to tell SynthHeads *training* identities apart: a cosine
    softmax over the identities (normalised embeddings and class vectors, scale 16), on
    frames in random poses, half of them blurred."""
    from .data import SynthHeads

    torch.manual_seed(seed)
    heads = SynthHeads("train", num_identities=identities, num_videos_per_identity=2,
                       frames_per_video=32, size=image_size, seed=seed)
    net = IdentityNet(image_size)
    classes = nn.Parameter(torch.randn(identities, net.dim) * 0.1)
    optimizer = torch.optim.Adam([*net.parameters(), classes], lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(steps), desc="identity network", disable=not progress):
        images, _, videos = random_frames(heads, generator, videos_per_step, frames_per_video)
        labels = [heads.identity_of(video) for video in videos for _ in range(frames_per_video)]
        logits = 16 * net(images) @ F.normalize(classes, dim=1).T
        loss = F.cross_entropy(logits, torch.tensor(labels))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return net.eval()


def save_network(net: nn.Module, directory, name: str, record: dict) -> None:
    """A small shipped network as ``<name>.safetensors`` (weights) and ``<name>.json``
    (``record``: its sizes and how it was made)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()},
              str(directory / f"{name}.safetensors"))
    (directory / f"{name}.json").write_text(json.dumps(record, indent=1, sort_keys=True))


def read_network(directory, name: str, what: str, build) -> nn.Module:
    """The network ``save_network`` wrote: ``build(record)`` makes it, its weights are loaded
    and ``.info`` holds the record; in eval mode. ``what`` names it in the error."""
    from safetensors.torch import load_file

    directory = Path(directory) if directory is not None else ASSETS
    weights, meta = directory / f"{name}.safetensors", directory / f"{name}.json"
    if not (weights.exists() and meta.exists()):
        raise ValueError(f"no {what} {name!r} in {directory}")
    info = json.loads(meta.read_text())
    net = build(info)
    net.load_state_dict(load_file(str(weights)))
    net.info = info
    return net.eval()


def save_identity_net(net: IdentityNet, directory, name: str = IDENTITY_ASSET,
                      info: dict | None = None) -> None:
    """``<name>.safetensors`` (weights) and ``<name>.json`` (sizes, how it was made)."""
    save_network(net, directory, name, {"image_size": net.image_size, "dim": net.dim,
                                        "width": net.width, **(info or {})})


def load_identity_net(directory=None, name: str = IDENTITY_ASSET) -> IdentityNet:
    """The shipped SynthHeads identity network (or one saved by ``save_identity_net``), in
    eval mode; ``.info`` holds how it was made and its ROC AUC on test identities."""
    return read_network(directory, name, "identity network",
                        lambda info: IdentityNet(info["image_size"], info["dim"], info["width"]))


def embed(net: IdentityNet, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """``(N, dim)`` embeddings of ``(N, 3, S, S)`` frames, computed in batches."""
    with torch.no_grad():
        return torch.cat([net(images[i:i + batch_size].float())
                          for i in range(0, len(images), batch_size)])


def csim(a: torch.Tensor, b: torch.Tensor, backend: str = "synthheads",
         net: nn.Module | None = None, landmarks=None) -> torch.Tensor:
    """Cosine similarity of the identity embeddings of frames ``a[i]`` and ``b[i]``: ``(N,)``.

    ``backend``: ``"synthheads"`` (``net``, default the shipped one), ``"dlib"`` (real
    faces; frames where dlib finds no face give NaN) or ``"arcface"`` (``net`` from
    ``load_arcface``; ``landmarks (N, 68, 2)`` of the frames, used to align both).
    """
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"a and b must be (N, 3, H, W) of one shape, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if backend == "synthheads":
        net = net or load_identity_net()
        return (embed(net, a) * embed(net, b)).sum(dim=1)
    if backend == "dlib":
        ea, eb = dlib_embeddings(a), dlib_embeddings(b)
        return F.cosine_similarity(ea, eb, dim=1)
    if backend == "arcface":
        if not isinstance(net, ArcFace) or landmarks is None:
            raise ValueError("the arcface backend needs net=load_arcface(path) and the frames' "
                             "landmarks (N, 68, 2) to align the faces")
        with torch.no_grad():
            ea = net(align_for_arcface(a, landmarks))
            eb = net(align_for_arcface(b, landmarks))
        return F.cosine_similarity(ea, eb, dim=1)
    raise ValueError(f"backend must be 'synthheads', 'dlib' or 'arcface', got {backend!r}")


def dlib_embeddings(images: torch.Tensor) -> torch.Tensor:
    """dlib's 128-d face descriptors of ``(N, 3, H, W)`` photographs in [0, 1] (largest face
    of each; a row of NaN where none is found)."""
    import dlib

    from .landmarks import dlib_model_dir, dlib_models

    detector, predictor = dlib_models()
    path = dlib_model_dir() / "dlib_face_recognition_resnet_model_v1.dat"
    if not path.exists():
        raise FileNotFoundError(f"dlib's face-recognition network is missing: {path}")
    recogniser = dlib.face_recognition_model_v1(str(path))
    out = torch.full((len(images), 128), float("nan"))
    for i, image in enumerate(images):
        array = np.ascontiguousarray(
            (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8))
        faces = detector(array, 1)
        if faces:
            face = max(faces, key=lambda r: r.width() * r.height())
            descriptor = recogniser.compute_face_descriptor(array, predictor(array, face))
            out[i] = torch.tensor(list(descriptor))
    return out


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random
    negative (ties count half). ``labels`` are 1 (same person) and 0 (different)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    positives, negatives = scores[labels], scores[~labels]
    if not len(positives) or not len(negatives) or not np.isfinite(scores).all():
        raise ValueError("roc_auc needs finite scores with both labels present")
    order = np.argsort(np.concatenate([negatives, positives]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    merged = np.concatenate([negatives, positives])
    for value in np.unique(merged):  # average ranks over ties
        tied = merged == value
        ranks[tied] = ranks[tied].mean()
    positive_ranks = ranks[len(negatives):].sum()
    return float((positive_ranks - len(positives) * (len(positives) + 1) / 2) /
                 (len(positives) * len(negatives)))


def identity_separation(net: IdentityNet, identities: int = 20, frames: int = 6,
                        seed: int = 0) -> float:
    """ROC AUC of same-person against different-person CSIM on SynthHeads *test* identities,
    ``frames`` frames each in different poses (every pair of frames is one sample)."""
    from .data import SynthHeads

    test = SynthHeads("test", num_identities=identities, num_videos_per_identity=1,
                      frames_per_video=64, size=net.image_size, seed=seed)
    chosen = np.linspace(0, 63, frames).round().astype(int)
    images = torch.cat([test.get_frames(i, chosen)[0] for i in range(identities)])
    owners = np.repeat(np.arange(identities), frames)
    vectors = embed(net, images)
    similarity = (vectors @ vectors.T).numpy()
    upper = np.triu_indices(len(images), k=1)
    return roc_auc(similarity[upper], owners[upper[0]] == owners[upper[1]])


# Where the eye centres, the nose tip and the mouth corners go in a 112 x 112 ArcFace crop
# (the five-point template of the insightface alignment).
ARCFACE_TEMPLATE = torch.tensor([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                 [41.5493, 92.3655], [70.7299, 92.2041]])


def _five_points(landmarks: torch.Tensor) -> torch.Tensor:
    """(N, 68, 2) -> (N, 5, 2): eye centres, nose tip, mouth corners (image left first)."""
    return torch.stack([landmarks[:, 36:42].mean(1), landmarks[:, 42:48].mean(1),
                        landmarks[:, 30], landmarks[:, 48], landmarks[:, 54]], dim=1)


def align_for_arcface(images: torch.Tensor, landmarks) -> torch.Tensor:
    """Crop ``(N, 3, H, W)`` faces to ArcFace's aligned 112 x 112 input: the similarity
    transform (rotation, scale, shift) taking the five points onto ``ARCFACE_TEMPLATE``."""
    points = _five_points(torch.as_tensor(np.asarray(landmarks), dtype=torch.float64))
    if images.ndim != 4 or points.shape[0] != images.shape[0]:
        raise ValueError(f"need (N, 3, H, W) images and (N, 68, 2) landmarks, got "
                         f"{tuple(images.shape)} and {tuple(np.shape(landmarks))}")
    n, _, height, width = images.shape
    template = ARCFACE_TEMPLATE.double()
    grids = []
    for p in points:  # least squares for x' = a x - b y + tx, y' = b x + a y + ty
        rows = torch.cat([torch.stack([p[:, 0], -p[:, 1], torch.ones(5), torch.zeros(5)], 1),
                          torch.stack([p[:, 1], p[:, 0], torch.zeros(5), torch.ones(5)], 1)])
        target = torch.cat([template[:, 0], template[:, 1]])
        a, b, tx, ty = torch.linalg.lstsq(rows, target[:, None]).solution[:, 0]
        ys, xs = torch.meshgrid(torch.arange(112.0, dtype=torch.float64),
                                torch.arange(112.0, dtype=torch.float64), indexing="ij")
        u, v = xs - tx, ys - ty  # output pixel -> source pixel: the inverse transform
        scale = a * a + b * b
        src_x, src_y = (a * u + b * v) / scale, (-b * u + a * v) / scale
        grids.append(torch.stack([(2 * src_x + 1) / width - 1, (2 * src_y + 1) / height - 1],
                                 dim=-1))
    grid = torch.stack(grids).to(images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


class _IBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(cout, eps=1e-5))

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class ArcFace(nn.Module):
    """ArcFace's IResNet: ``(N, 3, 112, 112)`` aligned faces in [0, 1] -> ``(N, 512)``.

    ``blocks``: residual blocks per stage, (3, 4, 14, 3) for IResNet-50, (3, 13, 30, 3) for
    IResNet-100; ``load_arcface`` reads them off the weights file.
    """

    def __init__(self, blocks: tuple[int, ...] = (3, 4, 14, 3)):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        cin = 64
        for stage, (count, cout) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
            layer = [_IBlock(cin, cout, 2)] + [_IBlock(cout, cout, 1) for _ in range(count - 1)]
            setattr(self, f"layer{stage}", nn.Sequential(*layer))
            cin = cout
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(512 * 7 * 7, 512)
        self.features = nn.BatchNorm1d(512, eps=1e-5)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        if faces.ndim != 4 or faces.shape[1:] != (3, 112, 112):
            raise ValueError(f"ArcFace takes aligned (N, 3, 112, 112) faces "
                             f"(align_for_arcface), got {tuple(faces.shape)}")
        x = self.prelu(self.bn1(self.conv1((faces - 0.5) / 0.5)))
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        x = self.dropout(self.bn2(x).flatten(1))
        return self.features(self.fc(x))


def load_arcface(path) -> ArcFace:
    """An ArcFace IResNet from an insightface-style PyTorch state dict (``conv1.weight``,
    ``layer1.0.bn1.weight`` ... ``features.weight``), in eval mode."""
    path = Path(path) if path is not None else None
    if path is None or not path.exists():
        raise FileNotFoundError(
            f"ArcFace weights are needed for the arcface backend: pass the path of an "
            f"insightface IResNet state dict (e.g. backbone.pth of ms1mv3_arcface_r50), or use "
            f"backend='dlib' (works offline) or 'synthheads'; got {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    blocks = tuple(1 + max([int(k.split(".")[1]) for k in state if k.startswith(f"layer{s}.")],
                           default=-1) for s in range(1, 5))
    if min(blocks) < 1:
        raise ValueError(f"{path} is not an ArcFace IResNet state dict (no layer1..layer4)")
    net = ArcFace(blocks)
    net.load_state_dict(state)
    return net.eval()

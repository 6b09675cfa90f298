"""The 68 facial landmarks: their layout, their images, and detectors that find them.

Section 3.1 of the paper: the generator is driven by a *landmark image* y, "the facial
landmarks rasterised into a three-channel image using a predefined set of colours to
connect certain landmarks with line segments". This module holds

* ``PARTS``: the 68-point layout (the iBUG/Multi-PIE convention used by face-alignment and
  dlib) as named parts, each with its own colour;
* ``draw_landmarks``: points -> landmark images, batched and anti-aliased;
* ``detect_landmarks``: photos -> 68 points, with face-alignment (the paper's choice) or
  dlib (works offline) behind one function.

Coordinates are pixels ``(x, y)``: x grows to the right, y grows downwards, and the centre
of pixel ``(row, col)`` is the point ``(x=col, y=row)``.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ._numba import numba
from .checks import is_integer, is_number
from .weights import cached_or_downloaded

__all__ = [
    "Part",
    "PARTS",
    "SEGMENTS",
    "SEGMENT_COLORS",
    "draw_landmarks",
    "detect_landmarks",
    "LandmarkWeightsMissing",
    "FACE_ALIGNMENT_FILES",
    "install_face_alignment_weights",
]

NUM_LANDMARKS = 68


class Part(NamedTuple):
    """One part of the face: which landmarks it joins, whether it is a loop, its colour."""

    name: str
    indices: tuple[int, ...]
    closed: bool
    color: tuple[float, float, float]


# Right and left are the subject's: the "right eye" (36-41) appears on the image's left.
PARTS: tuple[Part, ...] = (
    Part("jaw", tuple(range(0, 17)), False, (0.95, 0.95, 0.95)),
    Part("right_brow", tuple(range(17, 22)), False, (1.00, 0.55, 0.10)),
    Part("left_brow", tuple(range(22, 27)), False, (1.00, 0.85, 0.10)),
    Part("nose_bridge", tuple(range(27, 31)), False, (0.20, 0.45, 1.00)),
    Part("nostrils", tuple(range(31, 36)), False, (0.25, 0.85, 1.00)),
    Part("right_eye", tuple(range(36, 42)), True, (0.10, 0.90, 0.25)),
    Part("left_eye", tuple(range(42, 48)), True, (0.60, 1.00, 0.20)),
    Part("outer_lip", tuple(range(48, 60)), True, (1.00, 0.15, 0.25)),
    Part("inner_lip", tuple(range(60, 68)), True, (0.85, 0.25, 1.00)),
)


def _segments() -> tuple[np.ndarray, np.ndarray]:
    pairs, colors = [], []
    for part in PARTS:
        idx = list(part.indices)
        ends = idx[1:] + idx[:1] if part.closed else idx[1:]
        for a, b in zip(idx, ends):
            pairs.append((a, b))
            colors.append(part.color)
    return np.asarray(pairs, dtype=np.int64), np.asarray(colors, dtype=np.float32)


#: ``(63, 2)`` landmark index pairs joined by a line, and ``(63, 3)`` their RGB colours.
SEGMENTS, SEGMENT_COLORS = _segments()


# --------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------


@numba.njit(parallel=True, cache=True, fastmath=True)
def _rasterize(points, segments, colors, size, radius, out):  # pragma: no cover - compiled
    """Draw every segment of every image into ``out`` (B, 3, size, size), zero on entry.

    A pixel at distance d from a segment is covered by ``clamp(radius + 0.5 - d, 0, 1)``:
    a line ``2 * radius`` wide whose edge fades over one pixel (anti-aliasing). Each segment
    only visits, row by row, the few pixels that can be that close, which is what makes
    this fast. Overlapping parts keep the brighter value per channel.
    """
    reach = radius + 0.5
    for b in numba.prange(points.shape[0]):
        for s in range(segments.shape[0]):
            ax, ay = points[b, segments[s, 0], 0], points[b, segments[s, 0], 1]
            bx, by = points[b, segments[s, 1], 0], points[b, segments[s, 1], 1]
            dx, dy = bx - ax, by - ay
            length2 = dx * dx + dy * dy
            left, right = min(ax, bx) - reach, max(ax, bx) + reach
            top = max(np.ceil(min(ay, by) - reach), 0.0)
            bottom = min(np.floor(max(ay, by) + reach), size - 1.0)
            # Along a row, the line is within reach over a stretch centred on the line.
            steep = abs(dy) > 1e-3
            half = reach * np.sqrt(length2) / abs(dy) if steep else 0.0
            for row in range(int(top), int(bottom) + 1):
                x0, x1 = left, right
                if steep:
                    centre = ax + (row - ay) * dx / dy
                    x0, x1 = max(x0, centre - half), min(x1, centre + half)
                first = int(max(np.ceil(x0), 0.0))
                last = int(min(np.floor(x1), size - 1.0))
                for col in range(first, last + 1):
                    px, py = col - ax, row - ay
                    t = 0.0
                    if length2 > 0.0:
                        t = min(max((px * dx + py * dy) / length2, 0.0), 1.0)
                    ex, ey = px - t * dx, py - t * dy
                    distance2 = ex * ex + ey * ey
                    if distance2 >= reach * reach:
                        continue
                    coverage = min(reach - np.sqrt(distance2), 1.0)
                    for c in range(3):
                        value = colors[s, c] * coverage
                        if value > out[b, c, row, col]:
                            out[b, c, row, col] = value


def _as_numpy_points(points) -> tuple[np.ndarray, torch.device | None]:
    device = None
    if isinstance(points, torch.Tensor):
        device = points.device
        points = points.detach().to("cpu", torch.float32).numpy()
    points = np.asarray(points, dtype=np.float32)
    return points, device


def draw_landmarks(points, size: int, thickness: float | None = None) -> torch.Tensor:
    """Rasterise 68 landmarks into the paper's landmark image y (Sec. 3.1).

    Args:
        points: ``(68, 2)`` or ``(B, 68, 2)`` pixel coordinates ``(x, y)``, numpy or torch.
            Points outside the image are allowed; the parts of lines inside are drawn.
        size: side of the square image in pixels.
        thickness: line width in pixels; default ``max(1, size / 100)``.

    Returns:
        float32 tensor ``(3, size, size)`` or ``(B, 3, size, size)`` in [0, 1]: black
        background, each part of ``PARTS`` drawn in its colour with anti-aliased lines. On the
        device of ``points`` when that is a tensor.
    """
    if not is_integer(size) or size < 1:
        raise ValueError(f"size must be a positive integer number of pixels, got {size!r}")
    if thickness is None:
        thickness = max(1.0, size / 100.0)
    if not is_number(thickness, numpy=True) \
            or not np.isfinite(thickness) or thickness <= 0:
        raise ValueError(f"thickness must be a positive number of pixels, got {thickness!r}")
    array, device = _as_numpy_points(points)
    single = array.ndim == 2
    if single:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(
            "points must have shape (68, 2) or (B, 68, 2) with (x, y) pixel coordinates, "
            f"got {tuple(np.shape(points))}"
        )
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=-1).sum())
        raise ValueError(
            f"points contain {bad} NaN or infinite landmark(s); drop frames where no face "
            "was found (detect_landmarks returns a 'found' mask) before drawing"
        )
    out = np.zeros((array.shape[0], 3, size, size), dtype=np.float32)
    _rasterize(np.ascontiguousarray(array), SEGMENTS, SEGMENT_COLORS, size,
               np.float32(thickness / 2.0), out)
    images = torch.from_numpy(out)
    if single:
        images = images[0]
    return images if device is None else images.to(device)


# --------------------------------------------------------------------------------------
# Detection
# --------------------------------------------------------------------------------------

#: The files face-alignment loads (2D FAN landmark network, S3FD face detector), and where
#: they are published; torch keeps them in ``<torch hub dir>/checkpoints``.
FACE_ALIGNMENT_FILES = {
    "2DFAN4-11f355bf06.pth.tar":
        "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
    "s3fd-619a316812.pth":
        "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth",
}


class LandmarkWeightsMissing(RuntimeError):
    """A detector's weights are neither on disk nor downloadable."""


def ensure_face_alignment_weights() -> Path:
    """Make sure face-alignment's weights are in the torch hub cache, downloading if allowed
    (``fewshot_th.weights.cached_or_downloaded``; ``FEWSHOT_TH_OFFLINE=1`` never tries the
    network). Returns the checkpoint directory; raises ``LandmarkWeightsMissing`` naming
    every file that is missing."""
    found, problems = [], []
    for name, url in FACE_ALIGNMENT_FILES.items():
        try:
            found.append(cached_or_downloaded(
                name, url, "face-alignment's pretrained weights",
                "use detect_landmarks(images, backend='dlib'), which works offline",
                LandmarkWeightsMissing))
        except LandmarkWeightsMissing as error:
            problems.append(str(error))
    if problems:
        raise LandmarkWeightsMissing(" ".join(problems))
    return found[0].parent


def install_face_alignment_weights(directory) -> Path:
    """Put face-alignment's weight files, downloaded elsewhere into ``directory``, where
    face-alignment looks for them (the torch hub cache), as links; returns that folder.
    Raises ``FileNotFoundError`` naming every file ``directory`` lacks."""
    directory = Path(directory)
    missing = [name for name in FACE_ALIGNMENT_FILES if not (directory / name).is_file()]
    if missing:
        sources = ", ".join(FACE_ALIGNMENT_FILES[name] for name in missing)
        raise FileNotFoundError(f"{directory} lacks face-alignment's {', '.join(missing)} "
                                f"(download them from {sources})")
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    cache.mkdir(parents=True, exist_ok=True)
    for name in FACE_ALIGNMENT_FILES:
        target = cache / name
        if not target.exists():
            target.unlink(missing_ok=True)  # a dangling link
            target.symlink_to((directory / name).resolve())
    return cache


@functools.lru_cache(maxsize=4)
def _face_alignment_model(device: str):
    # Built once per device and reused: building it per frame is a classic slowdown.
    ensure_face_alignment_weights()
    import face_alignment

    return face_alignment.FaceAlignment(
        face_alignment.LandmarksType.TWO_D, device=device, compile=False
    )


def dlib_model_dir() -> Path:
    """Directory of the dlib models shipped by the ``face-recognition-models`` package.

    Found without importing the package (its import needs the deprecated pkg_resources).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise LandmarkWeightsMissing(
            "the dlib backend needs the 'face-recognition-models' package: "
            "pip install face-recognition-models"
        )
    return Path(spec.origin).parent / "models"


@functools.lru_cache(maxsize=1)
def dlib_models():
    """dlib's face detector and 68-point shape predictor (from ``dlib_model_dir()``)."""
    try:
        import dlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise LandmarkWeightsMissing("the dlib backend needs dlib: pip install dlib-bin") from exc
    predictor = dlib_model_dir() / "shape_predictor_68_face_landmarks.dat"
    if not predictor.exists():
        raise LandmarkWeightsMissing(f"dlib's 68-point predictor is missing: {predictor}")
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(predictor))


def _check_images(images) -> list[np.ndarray]:
    if isinstance(images, np.ndarray) and images.ndim == 4:
        items = list(images)
    elif isinstance(images, (list, tuple)):
        items = list(images)
    else:
        raise ValueError(
            "images must be a uint8 array (N, H, W, 3) or a list of (H, W, 3) uint8 arrays, "
            f"got {type(images).__name__} with shape {getattr(images, 'shape', None)}"
        )
    for i, image in enumerate(items):
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"image {i} must be uint8 with shape (H, W, 3) (RGB), got dtype {image.dtype} "
                f"and shape {image.shape}; convert float images with (img * 255).astype('uint8')"
            )
        items[i] = np.ascontiguousarray(image)
    return items


def _largest(boxes: Sequence) -> int:
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    return int(np.argmax(areas))


def detect_landmarks(images, backend: str = "face_alignment", device: str = "cpu"):
    """Find the 68 landmarks of the largest face in each image.

    Args:
        images: uint8 RGB array ``(N, H, W, 3)`` or a list of ``(H, W, 3)`` arrays.
        backend: ``"face_alignment"`` (FAN, as in the paper; needs its weights in the torch
            hub cache or the network) or ``"dlib"`` (HOG detector and the 68-point shape
            predictor from ``face-recognition-models``; offline).
        device: torch device for face-alignment.

    Returns:
        ``(landmarks, found)``: float32 ``(N, 68, 2)`` pixel coordinates ``(x, y)`` (NaN where
        no face was found) and a boolean ``(N,)`` array.
    """
    counts, landmarks = count_faces_and_landmarks(images, backend, device)
    return landmarks, counts > 0


def count_faces_and_landmarks(images, backend: str = "face_alignment", device: str = "cpu"):
    """``detect_landmarks``, with how many faces each image shows: ``(counts (N,) int,
    landmarks (N, 68, 2))``, the landmarks those of the largest face."""
    if backend not in ("face_alignment", "dlib"):
        raise ValueError(f"backend must be 'face_alignment' or 'dlib', got {backend!r}")
    items = _check_images(images)
    landmarks = np.full((len(items), NUM_LANDMARKS, 2), np.nan, dtype=np.float32)
    counts = np.zeros(len(items), dtype=np.int64)
    if backend == "dlib":
        detector, predictor = dlib_models()
        for i, image in enumerate(items):
            faces = detector(image, 1)
            counts[i] = len(faces)
            if len(faces) == 0:
                continue
            boxes = [(f.left(), f.top(), f.right(), f.bottom()) for f in faces]
            shape = predictor(image, faces[_largest(boxes)])
            landmarks[i] = [(p.x, p.y) for p in shape.parts()]
    else:
        model = _face_alignment_model(str(device))
        for i, image in enumerate(items):
            points, _, boxes = model.get_landmarks_from_image(image, return_bboxes=True)
            if not points:
                continue
            counts[i] = len(points)
            landmarks[i] = np.asarray(points[_largest(boxes)])[:, :2]
    return counts, landmarks

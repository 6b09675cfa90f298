"""Puppeteering (Sec. 4 of the paper, its Fig. 1): one person driven by another's motion.

A person's model (``few_shot``: FF or FT, from K frames of person A) is given the landmark
track of a video of person B. The landmarks carry B's *face shape* as well as B's pose and
expression, so the frames drift towards B (the limitation the paper names, leaving "landmark
adaptation" to future work). SynthHeads can measure that exactly: it renders A in the pose
and expression of any of B's frames with A's own face (``cross_episode``).

``adapt_landmarks`` (``fewshot_th.adaptation``, re-exported here) is the remedy: B's track
moved onto A's face shape, with a landmark model learned on SynthHeads training people, or with
nothing but the two sets of landmarks (Procrustes).

    episode = cross_episode(test, source=3, driver=7)
    personal = few_shot(model, episode["sources"], episode["source_points"])
    driving = adapt_landmarks(episode["driver_points"], episode["driver_points"],
                              episode["source_points"])
    frames = personal.render(driving)
"""

from __future__ import annotations

import functools
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .adaptation import (
    ADAPTATIONS,
    adapt_landmarks,
    as_landmarks,
    head_turn,
    mouth_opening,
    neutral_shape,
    similarity_transform,
)
from .checks import is_int, is_integer
from .data.synthetic import COUNTERFACTUALS, Pose, SynthHeads
from .finetune import few_shot, spread_sources
from .identity import embed, load_identity_net
from .landmarks import NUM_LANDMARKS, detect_landmarks, draw_landmarks
from .metrics import attribute_recall, l1, ssim

__all__ = ["similarity_transform", "mouth_opening", "head_turn", "neutral_shape",
           "adapt_landmarks", "ADAPTATIONS", "cross_episode", "landmark_error", "face_box",
           "crop_faces", "faces_of", "read_frames", "write_video", "reenactment_scores",
           "reenactment_grid", "pooled_recall", "counterfactuals_in_drivers_pose"]


def landmark_error(points, truth) -> np.ndarray:
    """Mean distance in pixels between corresponding landmarks, per frame: ``(T,)``."""
    points, truth = as_landmarks(points, "points"), as_landmarks(truth, "truth")
    if points.shape != truth.shape:
        raise ValueError(f"points {points.shape} and truth {truth.shape} must match")
    return np.linalg.norm(points - truth, axis=-1).mean(-1)


def cross_episode(videos: SynthHeads, source: int, driver: int, k: int = 8,
                  frames=None, driver_video: int = 0) -> dict:
    """Person ``source`` (A) driven by person ``driver`` (B), with exact ground truth.

    A's K source frames come from A's first video (spread over its first 32 frames); B's
    driving frames are ``frames`` of B's video ``driver_video`` (default: the second half of
    it). With ``driver == source`` and ``driver_video = 1`` this is self-reenactment from
    another video. Returns ``sources (K, 3, H, W)``, ``source_points (K, 68, 2)``,
    ``driver_frames``, ``driver_points`` (B as filmed), ``driver_reference`` (B's landmarks
    in the second half of that video, what adaptation learns B's face from), ``truth`` and
    ``truth_points`` (A rendered in B's pose and expression, with A's own face), all as
    tensors on the CPU.
    """
    if not isinstance(videos, SynthHeads):
        raise TypeError(f"videos must be a SynthHeads data set, got {type(videos).__name__}")
    for name, person in (("source", source), ("driver", driver)):
        if not is_integer(person) or \
                not 0 <= person < videos.num_identities:
            raise ValueError(f"{name} must be a person in [0, {videos.num_identities}), "
                             f"got {person!r}")
    if not 0 <= driver_video < videos.num_videos_per_identity:
        raise ValueError(f"driver_video must be in [0, {videos.num_videos_per_identity}), "
                         f"got {driver_video}")
    if not is_int(k) or not 1 <= k <= min(
            32, videos.frames_per_video):
        raise ValueError(f"k must be between 1 and {min(32, videos.frames_per_video)}, got {k!r}")
    per = videos.num_videos_per_identity
    if frames is None:
        frames = np.arange(videos.frames_per_video // 2, videos.frames_per_video)
    frames = np.asarray(frames)
    sources, source_points = spread_sources(videos, source, k)
    driver_index = driver * per + driver_video
    driver_frames, driver_points = videos.get_frames(driver_index, frames)
    pose = videos.pose(driver_index, frames)
    truth, truth_points = videos.render(source, pose, return_landmarks=True)
    half = np.arange(videos.frames_per_video // 2, videos.frames_per_video)
    reference = videos.landmarks(driver, videos.pose(driver_index, half))
    return {"sources": sources, "source_points": source_points,
            "driver_frames": driver_frames, "driver_points": driver_points,
            "driver_reference": reference,
            "truth": truth, "truth_points": truth_points, "pose": pose,
            "source": int(source), "driver": int(driver)}


# ---------------------------------------------------------------- real images and videos

@functools.cache
def _synthheads_framing() -> tuple[float, float, float]:
    """Where SynthHeads puts a face: the distance between the eye centres as a share of the
    frame width, and the centre of the 68 landmarks (x, y) as shares of the frame, averaged
    over frontal, neutral renders of 16 people."""
    heads = SynthHeads("test", num_identities=16, num_videos_per_identity=1,
                       frames_per_video=2, size=256, seed=0)
    eyes, centre = [], []
    for person in range(16):
        _, points = heads.render(person, Pose(), return_landmarks=True)
        points = points.reshape(-1, NUM_LANDMARKS, 2)[0].numpy().astype(np.float64)
        eyes.append(np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))
        centre.append(points.mean(0))
    eyes_share = float(np.mean(eyes)) / 256
    cx, cy = np.mean(centre, axis=0) / 256
    return eyes_share, float(cx), float(cy)


def face_box(points) -> tuple[float, float, float]:
    """The square ``(left, top, side)`` in pixels that frames the face of ``(68, 2)`` landmarks
    (or the mean face of ``(T, 68, 2)``) as SynthHeads frames its faces."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 3:
        points = np.nanmean(points, axis=0)
    points = as_landmarks(points, "points", single=True)
    eyes_share, cx, cy = _synthheads_framing()
    side = np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)) / eyes_share
    centre = points.mean(0)
    return float(centre[0] - cx * side), float(centre[1] - cy * side), float(side)


def crop_faces(images, points, size: int, box=None):
    """Crop each ``(H, W, 3)`` uint8 image to the square around its face (``face_box`` of its
    ``(68, 2)`` landmarks, or one fixed ``box`` for all) and resize it to ``size``: returns
    frames ``(N, 3, size, size)`` in [0, 1] and the landmarks in the crops' pixels. Parts of
    the square outside the image repeat its border."""
    images = list(images)
    faces = as_landmarks(points, "points")
    if len(images) != len(faces):
        raise ValueError(f"got {len(images)} images and landmarks of {len(faces)}: give one set "
                         "of 68 points per image")
    if not is_int(size) or size < 8:
        raise ValueError(f"size must be an integer of at least 8 pixels, got {size!r}")
    frames, moved = [], []
    for image, face in zip(images, faces):
        left, top, side = box if box is not None else face_box(face)
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255
        h, w = tensor.shape[1:]
        # One affine resampling: output pixel centres mapped into the image, edges repeated.
        xs = left + (torch.arange(size) + 0.5) * side / size
        ys = top + (torch.arange(size) + 0.5) * side / size
        grid = torch.stack(torch.meshgrid(xs / w * 2 - 1, ys / h * 2 - 1, indexing="xy"), -1)
        scale = side / size
        if scale > 1:  # shrinking: blur first so that the crop does not alias
            tensor = F.avg_pool2d(tensor[None], kernel_size=int(round(scale)) | 1, stride=1,
                                  padding=int(round(scale)) // 2)[0]
        crop = F.grid_sample(tensor[None], grid[None].float(), mode="bilinear",
                             padding_mode="border", align_corners=False)[0]
        frames.append(crop.clamp(0, 1))
        moved.append((face - [left, top]) * size / side)
    return torch.stack(frames), torch.from_numpy(np.asarray(moved, dtype=np.float32))


def read_frames(path, max_frames: int | None = None) -> list[np.ndarray]:
    """RGB uint8 frames of a video file, or of the images of a folder (sorted by name)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    files = None
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"))
        if not files:
            raise ValueError(f"{path} holds no images (.png, .jpg, .jpeg, .bmp, .webp)")
    frames = []
    try:
        if files is not None:
            frames = [iio.imread(p) for p in files[:max_frames]]
        else:
            for i, frame in enumerate(iio.imiter(path)):
                if max_frames is not None and i >= max_frames:
                    break
                frames.append(frame)
    except Exception as error:  # imageio raises several types for unreadable files
        raise ValueError(f"cannot read {path}: {error}") from None
    if not frames:
        raise ValueError(f"{path} holds no frames")
    return [as_rgb(frame, path) for frame in frames]


def as_rgb(frame, source="the image") -> np.ndarray:
    """A decoded frame as RGB uint8 ``(H, W, 3)``: grey repeated, alpha dropped; other than
    8 bits refused, naming ``source``."""
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., None], 3, axis=2)
    if frame.dtype != np.uint8 or frame.ndim != 3:
        raise ValueError(f"{source}: frames must be 8-bit images, got {frame.dtype} "
                         f"{frame.shape}")
    return np.ascontiguousarray(frame[..., :3])


def write_video(path, frames: torch.Tensor, fps: int = 12) -> Path:
    """Write ``(T, 3, H, W)`` frames in [0, 1] as an H.264 mp4 (through imageio's ffmpeg)."""
    if frames.ndim != 4 or frames.shape[1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be (T, 3, H, W) with T >= 1, got {tuple(frames.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    video = (frames.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    # H.264 wants even sides: repeat the last row or column where needed.
    h, w = video.shape[1:3]
    video = np.pad(video, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    iio.imwrite(path, video, fps=fps, codec="libx264", macro_block_size=1)
    return path


def faces_of(images, size: int, backend: str = "dlib", fixed_box: bool = False):
    """Landmarks of the largest face in each image, and the images cropped to it.

    Returns ``(frames (N', 3, size, size), points (N', 68, 2), kept)``: with ``fixed_box``
    (a video: the crop stays put and the head moves in it) every frame is kept, a frame without
    a face taking the landmarks of the one before; otherwise (separate photos) each image is
    cropped around its own face and images without one are left out (``kept`` lists the
    indices used). Raises ``ValueError`` when no face is found at all."""
    points, found = detect_landmarks(images, backend=backend)
    if not found.any():
        raise ValueError(f"no face found in any of the {len(found)} images: the driver and the "
                         "sources need a visible face (frontal, not too small)")
    if fixed_box:
        first = int(np.argmax(found))
        for i in range(len(points)):  # hold the last face through frames without one
            if not found[i]:
                points[i] = points[i - 1] if i > first else points[first]
        frames, moved = crop_faces(images, points, size, box=face_box(points[found]))
        return frames, moved, np.arange(len(points))
    kept = np.flatnonzero(found)
    frames, moved = crop_faces([images[i] for i in kept], points[kept], size)
    return frames, moved, kept


def sources_from(size: int, k: int, person: int | None = None, images=None, video=None,
                 detector: str = "dlib"):
    """K source frames ``(K, 3, size, size)`` and their landmarks ``(K, 68, 2)`` from one of:
    a SynthHeads test ``person`` (K frames spread over the first half of their first video),
    ``images`` (a folder or a list of image files: the first K with a face) or a ``video``
    (K frames spread over its first 32 seconds at 30 fps), with landmarks from ``detector``."""
    if (person is None) + (images is None) + (video is None) != 2:
        raise ValueError("give exactly one of person, images and video")
    if person is not None:
        heads = SynthHeads("test", num_identities=person + 1, num_videos_per_identity=2,
                           frames_per_video=64, size=size, seed=0)
        return spread_sources(heads, person, k)
    frames = read_frames(images if video is None else video,
                         max_frames=None if video is None else 32 * 30)
    if video is not None:
        frames = [frames[i] for i in np.linspace(0, len(frames) - 1, min(k, len(frames)))
                  .round().astype(int)]
    crops, points, _ = faces_of(frames, size, backend=detector)
    return crops[:k], points[:k]


def driver_from(size: int, frames: int, person: int | None = None, video=None,
                source_person: int | None = None, detector: str = "dlib"):
    """The first ``frames`` driving frames ``(T, 3, size, size)`` and their landmarks
    ``(T, 68, 2)``: a SynthHeads test ``person``'s first video (their second when
    ``person == source_person``: self-reenactment from another video), or a ``video`` file,
    cropped with one box for the whole clip so that the head moves in the frame."""
    if (person is None) == (video is None):
        raise ValueError("give exactly one of person and video")
    if person is not None:
        heads = SynthHeads("test", num_identities=person + 1, num_videos_per_identity=2,
                           frames_per_video=frames, size=size, seed=0)
        return heads.get_frames(2 * person + int(person == source_person), np.arange(frames))
    crops, points, _ = faces_of(read_frames(video, max_frames=frames), size, backend=detector,
                                fixed_box=True)
    return crops, points


# ---------------------------------------------------------------- measuring identity leakage

def _personal_models(model, k: int, ft_steps: int | None):
    """``made(source, mode, episode)``: the person's model from the episode's K sources, made
    once per person and mode (a person's sources are the same whoever drives them)."""
    cache = {}

    def made(source: int, mode: str, episode: dict):
        if (source, mode) not in cache:
            cache[(source, mode)] = few_shot(model, episode["sources"],
                                             episode["source_points"], mode=mode,
                                             steps=ft_steps if mode == "ft" else None,
                                             progress=False)
        return cache[(source, mode)]

    return made


def _driving(episode: dict, method: str) -> np.ndarray:
    return adapt_landmarks(episode["driver_points"], episode["driver_reference"],
                           episode["source_points"], method=method)


def counterfactuals_in_drivers_pose(videos: SynthHeads, episode: dict) -> dict:
    """The exact frames of the source person in the driver's poses with one attribute
    changed (``SynthHeads.counterfactual``), for ``attribute_recall``: ``{attribute: frames}``
    for every attribute the person has. The colours are replaced by the *driver's*
    (the next person's when the driver is the person), so that a colour's recall asks: is
    the frame closer to A's colour than to B's?"""
    source, driver = episode["source"], episode["driver"]
    other = driver if driver != source else None
    made = {}
    for name in COUNTERFACTUALS:
        frames = videos.counterfactual(source, episode["pose"], name, other=other)
        if frames is not None:
            made[name] = frames
    return made


def pooled_recall(row: dict, attribute: str) -> float | None:
    """An attribute's recall over all frames of all pairs that show it (``row``: one kind of
    ``reenactment_scores``), or ``None`` when no frame shows it."""
    shown = row["recall_frames"][attribute]
    if shown.sum() == 0:
        return None
    return float(np.nansum(row["recall"][attribute] * shown) / shown.sum())


def reenactment_scores(model, videos: SynthHeads, pairs, k: int = 8, modes=("ff",),
                       ft_steps: int | None = None, progress: bool = True,
                       adaptations=ADAPTATIONS) -> dict:
    """Each person of ``pairs`` (``(source, driver)``; equal for self-reenactment, then from
    the person's second video) driven by raw and by adapted landmarks (each method of
    ``adaptations``), scored against the exact frames of the source person in the driver's
    poses.

    Returns ``{mode: {"raw" | method | "true": {metric: (pairs,) array}}}`` with metrics
    ``ssim``, ``l1`` (against the exact frames), ``csim_source`` and ``csim_driver`` (cosine
    similarity of the SynthHeads identity network's embedding of the generated frames to the
    mean embedding of the source's exact frames, and of the driver's real frames) and
    ``landmark_error`` (pixels, of the driving landmarks against the source's true ones).
    ``"true"`` drives with the source's true landmarks: the best any adaptation can do.
    ``"recall"`` and ``"recall_frames"`` hold, per attribute of ``COUNTERFACTUALS``, each
    pair's attribute recall against ``counterfactuals_in_drivers_pose`` (NaN where no frame
    shows it) and how many frames show it (``pooled_recall`` pools them over pairs).
    """

    adaptations = tuple(adaptations)
    if not set(adaptations) <= set(ADAPTATIONS):
        raise ValueError(f"adaptations must be among {ADAPTATIONS}, got {adaptations!r}")
    net = load_identity_net()
    pairs = [(int(a), int(b)) for a, b in pairs]
    if not pairs:
        raise ValueError("pairs must name at least one (source, driver) pair")
    kinds = ("raw", *adaptations, "true")
    scores = {mode: {kind: {**{m: [] for m in ("ssim", "l1", "csim_source", "csim_driver",
                                               "landmark_error")},
                            "recall": {name: [] for name in COUNTERFACTUALS},
                            "recall_frames": {name: [] for name in COUNTERFACTUALS}}
                     for kind in kinds} for mode in modes}
    made = _personal_models(model, k, ft_steps)
    for source, driver in tqdm(pairs, desc="reenactment", disable=not progress):
        episode = cross_episode(videos, source, driver, k=k, driver_video=int(source == driver))
        points = episode["driver_points"]
        driving = {"raw": points.numpy(),
                   **{method: _driving(episode, method) for method in adaptations},
                   "true": episode["truth_points"].numpy()}
        person = F.normalize(embed(net, episode["truth"]).mean(0), dim=0)
        other = F.normalize(embed(net, episode["driver_frames"]).mean(0), dim=0)
        changed = counterfactuals_in_drivers_pose(videos, episode)
        for mode in modes:
            personal = made(source, mode, episode)
            for kind, track in driving.items():
                frames = personal.render(track)
                e = embed(net, frames)
                row = scores[mode][kind]
                row["ssim"].append(float(ssim(frames, episode["truth"]).mean()))
                row["l1"].append(float(l1(frames, episode["truth"]).mean()))
                row["csim_source"].append(float((e @ person).mean()))
                row["csim_driver"].append(float((e @ other).mean()))
                row["landmark_error"].append(float(
                    landmark_error(track, episode["truth_points"]).mean()))
                for name in COUNTERFACTUALS:
                    hits = (attribute_recall(frames, episode["truth"], changed[name])
                            if name in changed else torch.zeros(0))
                    shown = hits[~hits.isnan()]
                    row["recall"][name].append(float(shown.mean()) if len(shown) else np.nan)
                    row["recall_frames"][name].append(len(shown))

    def arrays(row):
        return {m: ({name: np.asarray(v) for name, v in values.items()}
                    if isinstance(values, dict) else np.asarray(values))
                for m, values in row.items()}

    return {mode: {kind: arrays(row) for kind, row in by.items()} for mode, by in scores.items()}


def reenactment_grid(model, videos: SynthHeads, pairs, k: int = 8, modes=("ff", "ft"),
                     frames=None, ft_steps: int | None = None, progress: bool = True,
                     method: str = "learned") -> dict:
    """Reenactments to browse (``fewshot_th.widgets.reenactment_explorer``):
    ``{(source, driver): entry}``, each entry holding the driver's frames (``"driver"``), the
    exact frames of the source in the driver's poses (``"truth"``), the raw and adapted
    (``method``) landmark images (``"raw_images"``, ``"adapted_images"``) and the generated
    frames under ``(mode, adapted)`` for every mode and both kinds of landmarks."""
    if method not in ADAPTATIONS:
        raise ValueError(f"method must be one of {ADAPTATIONS}, got {method!r}")

    grid = {}
    size = model.config.image_size
    made = _personal_models(model, k, ft_steps)
    for source, driver in tqdm(list(pairs), desc="reenactment grid", disable=not progress):
        episode = cross_episode(videos, source, driver, k=k, frames=frames,
                                driver_video=int(source == driver))
        points = episode["driver_points"]
        adapted = _driving(episode, method)
        entry = {"driver": episode["driver_frames"], "truth": episode["truth"],
                 "raw_images": draw_landmarks(points, size),
                 "adapted_images": draw_landmarks(adapted, size)}
        for mode in modes:
            personal = made(source, mode, episode)
            entry[(mode, False)] = personal.render(points)
            entry[(mode, True)] = personal.render(adapted)
        grid[(int(source), int(driver))] = entry
    return grid

"""Landmark adaptation: one person's landmark track moved onto another person's face shape.

A driver's landmarks carry three things: the pose (where the head is, how large, which way it
turns), the expression (mouth, eyes, brows) and the driver's own face shape. Puppeteering
(``fewshot_th.reenact``) wants the first two on the target person's shape. Two ways:

* ``adapt_landmarks(..., method="procrustes")`` uses nothing but the two sets of landmarks:
  each person's neutral shape is the Procrustes mean of their calmest frames, a driving frame
  is a similarity transform of the driver's neutral shape plus a residual, and the residual is
  put on the target's shape. Works on any faces; cannot tell a head turned out of the image
  plane from a differently shaped face.
* ``adapt_landmarks(..., method="learned")`` uses a ``LandmarkModel``: a linear model of how
  the 68 landmarks move with pose and expression and how they differ between people, fitted
  on SynthHeads training videos, where every frame's pose is known (a 2D counterpart of a
  morphable face model). It finds each person's face shape as the part of their frames that
  no pose or expression explains, in head units (size included), and moves the driver's track
  by the difference of the two shapes.

    driving = adapt_landmarks(driver_points, driver_points, source_points)  # learned
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from .checks import is_int
from .landmarks import NUM_LANDMARKS

__all__ = ["as_landmarks", "similarity_transform", "mouth_opening", "head_turn",
           "neutral_shape", "procrustes_adaptation", "LandmarkModel", "pose_features",
           "learned_landmark_model", "adapt_landmarks", "ADAPTATIONS"]

ADAPTATIONS = ("procrustes", "learned")


def as_landmarks(points, name: str, single: bool = False) -> np.ndarray:
    """``points`` (array or tensor) as float64 ``(T, 68, 2)`` (``(68, 2)`` when ``single``),
    or one clear error naming ``name``."""
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    array = np.asarray(points, dtype=np.float64)
    shape = (NUM_LANDMARKS, 2) if single else (None, NUM_LANDMARKS, 2)
    if array.ndim != len(shape) or array.shape[-2:] != (NUM_LANDMARKS, 2) or \
            (not single and len(array) == 0):
        wanted = "(68, 2)" if single else "(T, 68, 2) with T >= 1"
        raise ValueError(f"{name} must have shape {wanted} (pixel x, y of the 68 landmarks), "
                         f"got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    return array


def similarity_transform(source, target) -> tuple[float, np.ndarray, np.ndarray]:
    """The scale ``s``, rotation ``R`` (2 x 2) and shift ``t`` that map the ``(68, 2)`` points
    ``source`` closest to ``target`` in the least-squares sense (Umeyama's method):
    ``target ≈ s * source @ R.T + t``."""
    source = as_landmarks(source, "source", True)
    target = as_landmarks(target, "target", True)
    mu_s, mu_t = source.mean(0), target.mean(0)
    a, b = source - mu_s, target - mu_t
    variance = (a ** 2).sum()
    if variance < 1e-12:
        raise ValueError("source landmarks are all at one point: no shape to align")
    u, sigma, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0  # a rotation, never a mirror image
    flip = np.diag([1.0, d])
    rotation = u @ flip @ vt
    scale = float((sigma * np.diag(flip)).sum() / variance)
    return scale, rotation, mu_t - scale * mu_s @ rotation.T


def _apply(points: np.ndarray, scale: float, rotation: np.ndarray, shift: np.ndarray):
    return scale * points @ rotation.T + shift


def mouth_opening(points) -> np.ndarray:
    """How far the inner lips are apart in each frame of ``(T, 68, 2)`` landmarks, in units of
    the distance between the eye centres (0: closed)."""
    frames = as_landmarks(points, "points")
    upper, lower = frames[:, [61, 62, 63]], frames[:, [67, 66, 65]]  # inner lips, facing
    gap = np.linalg.norm(upper - lower, axis=-1).mean(-1)
    eyes = np.linalg.norm(frames[:, 36:42].mean(1) - frames[:, 42:48].mean(1), axis=-1)
    return gap / np.maximum(eyes, 1e-6)


def head_turn(points) -> np.ndarray:
    """How far the head in each frame of ``(T, 68, 2)`` landmarks is turned sideways: the log
    of the ratio of the nose tip's distances to the two ends of the jaw line (0: frontal)."""
    frames = as_landmarks(points, "points")
    left = np.linalg.norm(frames[:, 30] - frames[:, 0], axis=-1)
    right = np.linalg.norm(frames[:, 30] - frames[:, 16], axis=-1)
    return np.abs(np.log(np.maximum(left, 1e-6) / np.maximum(right, 1e-6)))


def neutral_shape(points, rest: float = 0.25, iterations: int = 3) -> np.ndarray:
    """A person's face shape from ``(K, 68, 2)`` landmarks of their frames: the Procrustes
    mean (every frame aligned to the mean by a similarity transform, the mean taken again) of
    the ``rest`` share of the frames (at least one) that are most at rest, the mouth closed
    and the head frontal (``mouth_opening + head_turn``), centred at 0 in the scale of the
    first of them. Two people's neutral shapes are then comparable even when one speaks or
    looks aside in all of their frames and the other in none."""
    frames = as_landmarks(points, "points")
    if not 0 < rest <= 1:
        raise ValueError(f"rest must be in (0, 1], got {rest!r}")
    at_rest = mouth_opening(frames) + head_turn(frames)
    calm = np.argsort(at_rest, kind="stable")[:max(1, round(rest * len(frames)))]
    return _procrustes_mean(frames[np.sort(calm)], iterations, unit_size=False)


def procrustes_adaptation(track, driver_reference, target_reference) -> np.ndarray:
    """``adapt_landmarks(..., method="procrustes")`` on float64 arrays (``(T, 68, 2)`` each):
    each driving frame is the similarity transform ``T_t`` of the driver's neutral shape plus
    a residual, and the target's neutral shape takes the residual, ``T_t(n'_target + r_t)``."""
    neutral_driver = neutral_shape(driver_reference)
    neutral_target = neutral_shape(target_reference)
    # The target's shape in the driver's neutral frame: moved, turned and scaled onto it (the
    # size of a face in a frame says more about the camera and the pose than about the face).
    target_in_driver_frame = _apply(neutral_target,
                                    *similarity_transform(neutral_target, neutral_driver))
    adapted = np.empty_like(track)
    for i, frame in enumerate(track):
        scale, rotation, shift = similarity_transform(neutral_driver, frame)
        back = (frame - shift) @ rotation / scale  # the frame in the neutral frame
        residual = back - neutral_driver
        adapted[i] = _apply(target_in_driver_frame + residual, scale, rotation, shift)
    return adapted


# ------------------------------------------------------------------ the learned landmark model

def pose_features(pose) -> np.ndarray:
    """What the ``LandmarkModel`` regresses landmarks on, per frame of a SynthHeads ``Pose``:
    ``(N, 9)``: yaw / 30°, pitch / 15°, their squares and product (a turned head is not a
    linear function of the angle), mouth, blink, brow, and mouth x yaw."""
    p = pose.as_arrays()
    yaw, pitch = p["yaw"] / 30.0, p["pitch"] / 15.0
    return np.stack([yaw, pitch, yaw ** 2, pitch ** 2, yaw * pitch, p["mouth"], p["blink"],
                     p["brow"], p["mouth"] * yaw], -1).astype(np.float64)


@dataclass(frozen=True)
class LandmarkModel:
    """A linear model of 68 landmarks: ``frame ≈ S(mean + identity @ d + motion @ f)``.

    ``S`` is a similarity transform (where the face is in the frame), ``d`` a person's
    identity coefficients, ``f`` the frame's pose and expression. ``reference`` ``(68, 2)`` is
    the shape every frame is aligned to; ``mean`` ``(136,)``, ``identity`` ``(136, n)`` and
    ``motion`` ``(136, 9)`` live in that aligned frame (``motion`` holds how each landmark moves
    per unit of each ``pose_features`` column, so ``f = 0`` is a frontal face at rest);
    ``absolute`` ``(n + 1, 136)`` maps ``[d, 1]`` to the person's neutral landmarks in head
    units (eyes about 0.12 above the origin, the chin about 0.9 below it), keeping the size
    of the face, which an aligned shape has lost.
    """

    reference: np.ndarray
    mean: np.ndarray
    identity: np.ndarray
    motion: np.ndarray
    absolute: np.ndarray

    @classmethod
    def fit(cls, videos, identity_modes: int = 12) -> LandmarkModel:
        """Fit on a ``SynthHeads`` data set (its landmarks and their known poses; no frames
        are drawn). Each person's aligned frames give the motion directions (their changes
        against the changes of the pose features, least squares over everyone) and the
        person's shape at rest (their mean minus the motion of their mean pose); the
        ``identity_modes`` largest principal directions of those shapes make ``identity``."""
        from .data.synthetic import SynthHeads

        if not isinstance(videos, SynthHeads):
            raise TypeError(f"videos must be a SynthHeads data set (its poses are known), got "
                            f"{type(videos).__name__}")
        people = videos.num_identities
        if not is_int(identity_modes) or \
                not 1 <= identity_modes < people:
            raise ValueError(f"identity_modes must be an integer in [1, {people}) for "
                             f"{people} people, got {identity_modes!r}")
        per = videos.num_videos_per_identity
        tracks, features = [], []
        for person in range(people):
            poses = [videos.pose(person * per + v) for v in range(per)]
            tracks.append(np.concatenate([videos.landmarks(person, p).numpy() for p in poses]))
            features.append(np.concatenate([pose_features(p) for p in poses]))
        reference = _procrustes_mean(np.concatenate(tracks)[::7])
        aligned = [_align(t, reference).reshape(len(t), -1) for t in tracks]
        changes = np.concatenate([a - a.mean(0) for a in aligned])
        moves = np.concatenate([f - f.mean(0) for f in features])
        motion = np.linalg.lstsq(moves, changes, rcond=None)[0].T
        shapes = np.stack([a.mean(0) - motion @ f.mean(0) for a, f in zip(aligned, features)])
        mean = shapes.mean(0)
        identity = np.linalg.svd(shapes - mean, full_matrices=False)[2][:identity_modes].T
        coefficients = (shapes - mean) @ identity
        # The same people drawn frontal and at rest, in head units: the size comes back.
        front = np.stack([_head_units(videos, person) for person in range(people)])
        design = np.concatenate([coefficients, np.ones((people, 1))], 1)
        absolute = np.linalg.lstsq(design, front.reshape(people, -1), rcond=None)[0]
        return cls(reference, mean, identity, motion, absolute)

    def coefficients(self, points) -> np.ndarray:
        """A person's identity coefficients ``d`` from ``(K, 68, 2)`` landmarks of any of their
        frames (K = 1 will do): the mean of the aligned frames, with every direction that
        pose and expression can move removed, fitted by the identity directions."""
        frames = as_landmarks(points, "points")
        offsets = (_align(frames, self.reference).reshape(len(frames), -1) - self.mean).mean(0)
        # Least squares of offset_k ≈ identity @ d + motion @ f_k with one d for all frames and
        # an f_k per frame: project the motion directions out of both sides.
        q = np.linalg.qr(self.motion)[0]
        identity, offsets = self.identity - q @ (q.T @ self.identity), offsets - q @ (q.T @ offsets)
        return np.linalg.lstsq(identity, offsets, rcond=None)[0]

    def neutral(self, points) -> np.ndarray:
        """A person's frontal face at rest, ``(68, 2)`` in head units, from their frames."""
        d = self.coefficients(points)
        return (np.append(d, 1.0) @ self.absolute).reshape(NUM_LANDMARKS, 2)

    def adapt(self, driver, driver_reference, target_reference) -> np.ndarray:
        """The driver's track ``(T, 68, 2)`` with the driver's face shape replaced by the
        target's: each frame plus the difference of the two neutral shapes, put into the frame
        by the similarity transform of the driver's neutral shape onto it."""
        track = as_landmarks(driver, "driver")
        driver_shape = self.neutral(driver_reference)
        difference = self.neutral(target_reference) - driver_shape
        adapted = np.empty_like(track)
        for i, frame in enumerate(track):
            scale, rotation, _ = similarity_transform(driver_shape, frame)
            adapted[i] = frame + scale * difference @ rotation.T
        return adapted


def _procrustes_mean(frames: np.ndarray, iterations: int = 3,
                     unit_size: bool = True) -> np.ndarray:
    """The Procrustes mean of ``(T, 68, 2)`` frames, centred at 0: in the scale of the first
    frame, or of size 1 with ``unit_size``."""
    mean = frames[0] - frames[0].mean(0)
    for _ in range(iterations):
        mean = _align(frames, mean).mean(0)
        mean -= mean.mean(0)
    return mean / np.sqrt((mean ** 2).sum()) if unit_size else mean


def _align(frames: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Every frame of ``(T, 68, 2)`` moved onto ``reference`` by its own similarity transform
    (``similarity_transform`` for all frames at once)."""
    centred = frames - frames.mean(1, keepdims=True)
    target = reference - reference.mean(0)
    u, sigma, vt = np.linalg.svd(target.T[None] @ centred)
    d = np.where(np.linalg.det(u @ vt) < 0, -1.0, 1.0)
    flip = np.stack([np.ones_like(d), d], -1)
    rotation = (u * flip[:, None]) @ vt
    scale = (sigma * flip).sum(-1) / (centred ** 2).sum((1, 2))
    return scale[:, None, None] * centred @ rotation.transpose(0, 2, 1) + reference.mean(0)


def _head_units(videos, person: int) -> np.ndarray:
    from .data.synthetic import Pose, frame_centre

    points = videos.landmarks(person, Pose()).numpy().astype(np.float64)
    return (points - frame_centre(videos.size)) / (0.34 * videos.size)


@functools.cache
def learned_landmark_model() -> LandmarkModel:
    """The ``LandmarkModel`` of 100 SynthHeads training people, two videos of 64 frames each
    (fitted in about a second, once per process). Test people are never among them."""
    from .data.synthetic import SynthHeads

    train = SynthHeads("train", num_identities=100, num_videos_per_identity=2,
                       frames_per_video=64, size=64, seed=0)
    return LandmarkModel.fit(train)


def adapt_landmarks(driver, driver_reference, target_reference,
                    method: str = "learned") -> np.ndarray:
    """The driver's landmark track ``(T, 68, 2)`` moved onto the target person's face shape.

    ``driver_reference``: landmarks of some of the driver's frames (the driving video itself
    will do), ``target_reference``: landmarks of the target's frames (the K source frames).
    ``method``: ``"learned"`` (``learned_landmark_model``, fitted on SynthHeads people, so
    meant for SynthHeads faces) or ``"procrustes"`` (no model: for each driving frame, the
    similarity transform from the driver's neutral shape to the frame and the residual in the
    neutral frame; the result is the target's neutral shape plus that residual, put back with
    the same transform; rotations out of the image plane are not separated from the shape).
    """
    if method not in ADAPTATIONS:
        raise ValueError(f"method must be one of {ADAPTATIONS}, got {method!r}")
    track = as_landmarks(driver, "driver")
    driver_reference = as_landmarks(driver_reference, "driver_reference")
    target_reference = as_landmarks(target_reference, "target_reference")
    if method == "procrustes":
        adapted = procrustes_adaptation(track, driver_reference, target_reference)
    else:
        adapted = learned_landmark_model().adapt(track, driver_reference, target_reference)
    return adapted.astype(np.float32)

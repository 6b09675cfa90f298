"""SynthHeads: procedural talking-head videos with exact landmarks and exact ground truth.

Every identity is a small 3D face: 68 template landmarks (the layout of
``fewshot_th.landmarks.PARTS``) deformed by the identity's shape, plus a skull, ears, hair,
neck and shoulders, each with the identity's colours. Many identities also have details on
one side of the head (a dyed streak of hair over one temple, an earring on one ear, a mark on
one cheek) drawn only as far as their side faces the camera: one frame shows some of a
person, several frames from different angles show more, as with real people. Every video
moves the head (yaw,
pitch, roll, translation, scale) and the face (speech, blinks, brow raises, gaze) smoothly.
A frame is drawn by rotating the 3D points, projecting them (weak perspective) and painting
the parts back to front with ``fewshot_th.data.raster.paint``.

Because the renderer knows everything, ``render(identity, pose)`` draws the *true* image of
any identity in any pose: a generated frame can be scored against exact ground truth even
when one person is driven by another's motion, which no real dataset allows.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from ..checks import is_integer, video_index
from . import raster
from .face3d import HAIR_STYLES, face_landmarks_3d, head_geometry_3d, identity_attributes, rotation

SPLITS = {"train": 0, "test": 1}
ONE_SIDED_DETAILS = ("streak", "earring", "mark")
# What ``SynthHeads.counterfactual`` can change, and the attributes each colour takes from
# another person.
COUNTERFACTUALS = ("mouth open", "glasses", "hair", "clothes", "skin", "lips", "background",
                   *ONE_SIDED_DETAILS)
COLOUR_FIELDS = {"hair": ("hair",), "clothes": ("clothing",), "skin": ("skin",),
                 "lips": ("lips",), "background": ("background_top", "background_bottom")}
FRAME_STEP_SECONDS = 0.12  # time between frames: every third frame of a 25 fps video


@dataclass
class Pose:
    """Head pose and expression of one or more frames (every field a float or an ``(N,)`` array).

    yaw, pitch, roll are degrees; tx, ty a shift in image widths; scale multiplies the head
    size; mouth, blink and brow go from 0 (closed, open, rest) to 1; gaze_x, gaze_y in [-1, 1].
    """

    yaw: np.ndarray | float = 0.0
    pitch: np.ndarray | float = 0.0
    roll: np.ndarray | float = 0.0
    tx: np.ndarray | float = 0.0
    ty: np.ndarray | float = 0.0
    scale: np.ndarray | float = 1.0
    mouth: np.ndarray | float = 0.0
    blink: np.ndarray | float = 0.0
    brow: np.ndarray | float = 0.0
    gaze_x: np.ndarray | float = 0.0
    gaze_y: np.ndarray | float = 0.0

    def as_arrays(self) -> dict[str, np.ndarray]:
        values = {f.name: np.atleast_1d(np.asarray(getattr(self, f.name), np.float32))
                  for f in fields(self)}
        n = max(v.shape[0] for v in values.values())
        for name, v in values.items():
            if v.ndim != 1 or v.shape[0] not in (1, n) or not np.isfinite(v).all():
                raise ValueError(f"Pose.{name} must be finite and a number or an array of "
                                 f"length {n}, got {getattr(self, name)!r}")
        return {name: np.broadcast_to(v, (n,)) for name, v in values.items()}

    def __len__(self) -> int:
        return len(self.as_arrays()["yaw"])

    def __getitem__(self, index) -> Pose:
        arrays = self.as_arrays()
        return Pose(**{name: v[index] for name, v in arrays.items()})


def _video_pose(seed: int, split: int, identity: int, video: int, t: np.ndarray) -> Pose:
    """Smooth head and face motion of one video at times ``t`` (seconds)."""
    rng = np.random.default_rng([seed, split, identity, video, 0xF00D])
    u = rng.uniform

    def wave(amplitude, f_lo, f_hi):
        f1, f2 = u(f_lo, f_hi), u(f_lo, f_hi) * 2.3
        p1, p2 = u(0, 2 * np.pi, 2)
        return amplitude * (0.75 * np.sin(2 * np.pi * f1 * t + p1)
                            + 0.25 * np.sin(2 * np.pi * f2 * t + p2))

    speech_rate, talk_rate, talk_phase = u(2.5, 4.5), u(0.1, 0.3), u(0, 2 * np.pi)
    syllables = np.clip(np.sin(2 * np.pi * speech_rate * t + u(0, 2 * np.pi)), 0, 1)
    talking = np.clip(1.5 * np.sin(2 * np.pi * talk_rate * t + talk_phase) + 0.7, 0, 1)
    blink_rate, blink_phase = u(0.2, 0.45), u(0, 1)
    blink_cycle = np.mod(t * blink_rate + blink_phase, 1.0)
    return Pose(
        yaw=np.clip(wave(u(15, 30), 0.08, 0.25) + u(-8, 8), -30, 30),
        pitch=np.clip(wave(u(5, 15), 0.08, 0.3), -15, 15),
        roll=np.clip(wave(u(3, 10), 0.05, 0.2), -10, 10),
        tx=wave(u(0.0, 0.05), 0.05, 0.2), ty=wave(u(0.0, 0.04), 0.05, 0.2),
        scale=u(0.92, 1.06) + wave(0.04, 0.03, 0.1),
        mouth=syllables * talking * u(0.6, 1.0),
        blink=np.exp(-(((blink_cycle - 0.5) * 4.0 / blink_rate) ** 2)),
        brow=np.clip(wave(1.0, 0.05, 0.25), 0, 1) ** 2 * u(0.3, 1.0),
        gaze_x=wave(0.6, 0.1, 0.4), gaze_y=wave(0.3, 0.1, 0.4),
    )


def distant_poses(seed: int, num_sources: int, num_targets: int) -> tuple[Pose, Pose]:
    """Source and target poses far apart: copying a source frame cannot give the target.

    The sources are a calm clip: mouth closed, brows at rest, eyes open, head tilted down and
    to one side, a little left of centre and small; the head turns through every yaw in
    [-28, 28] degrees, so that some of the sources show each side of the head (and its
    one-sided details). The targets speak (mouth open), raise their brows, look up with the
    head tilted the other way, sit right of centre and larger, and are turned 18-30 degrees to
    one side. Pitch, roll, position, scale, mouth and brows of every target are outside the
    sources' ranges; all stay within the ranges of the training videos. A pure function of
    ``seed``.
    """
    rng = np.random.default_rng([seed, 0xD157])
    u = rng.uniform
    n, m = _check_int("num_sources", num_sources, 1), _check_int("num_targets", num_targets, 1)
    sources = Pose(yaw=u(-28, 28, n), pitch=u(6, 12, n), roll=u(-7, -3, n),
                   tx=u(-0.04, -0.02, n), ty=u(-0.02, 0.0, n), scale=u(0.93, 0.97, n),
                   mouth=0.0, blink=0.0, brow=0.0, gaze_x=u(-0.3, 0.3, n), gaze_y=0.0)
    targets = Pose(yaw=rng.choice([-1.0, 1.0], m) * u(18, 30, m), pitch=u(-12, -8, m),
                   roll=u(4, 8, m), tx=u(0.03, 0.05, m), ty=u(0.02, 0.04, m),
                   scale=u(1.03, 1.08, m), mouth=u(0.6, 1.0, m), blink=0.0,
                   brow=u(0.4, 0.8, m), gaze_x=u(-0.5, 0.5, m), gaze_y=u(-0.3, 0.3, m))
    return sources, targets


# The display list: (name, kind, number of points, clip shape, shaded), painted in this order.
_SHAPES = (
    ("hair_back", raster.FILL, 17, None, False),
    ("body", raster.ELLIPSE, 2, None, False),
    ("neck", raster.FILL, 4, None, False),
    ("ear_r", raster.FILL, 8, None, True),
    ("ear_l", raster.FILL, 8, None, True),
    ("head", raster.FILL, 30, None, True),
    ("mark", raster.ELLIPSE, 2, None, True),
    ("nose_shade", raster.FILL, 4, None, False),
    ("eye_r", raster.FILL, 6, None, False),
    ("eye_l", raster.FILL, 6, None, False),
    ("iris_r", raster.ELLIPSE, 2, "eye_r", False),
    ("iris_l", raster.ELLIPSE, 2, "eye_l", False),
    ("pupil_r", raster.ELLIPSE, 2, "eye_r", False),
    ("pupil_l", raster.ELLIPSE, 2, "eye_l", False),
    ("lid_r", raster.OPEN_LINE, 4, None, False),
    ("lid_l", raster.OPEN_LINE, 4, None, False),
    ("brow_r", raster.OPEN_LINE, 5, None, False),
    ("brow_l", raster.OPEN_LINE, 5, None, False),
    ("nostril_r", raster.ELLIPSE, 2, None, False),
    ("nostril_l", raster.ELLIPSE, 2, None, False),
    ("lips", raster.FILL, 12, None, False),
    ("mouth", raster.FILL, 8, None, False),
    ("teeth", raster.FILL, 10, "mouth", False),
    ("lip_line", raster.OPEN_LINE, 5, None, False),
    ("hair", raster.FILL, 22, None, False),
    ("streak", raster.FILL, 6, None, False),
    ("earring", raster.ELLIPSE, 2, None, False),
    ("glasses_r", raster.CLOSED_LINE, 12, None, False),
    ("glasses_l", raster.CLOSED_LINE, 12, None, False),
    ("glasses_bridge", raster.OPEN_LINE, 2, None, False),
)
_INDEX = {name: i for i, (name, *_) in enumerate(_SHAPES)}
_COUNTS = np.array([s[2] for s in _SHAPES])
_KINDS = np.array([s[1] for s in _SHAPES])
_CLIPS = np.array([-1 if s[3] is None else _INDEX[s[3]] for s in _SHAPES])
_SHADED = np.array([s[4] for s in _SHAPES])
_MAX_POINTS = int(_COUNTS.max())


_CENTRE = (0.5, 0.45)  # where a head with no shift has its origin, in frame widths


def frame_centre(size: int) -> np.ndarray:
    """Where a head with no shift (``tx = ty = 0``) has its origin: pixel ``(x, y)``; one
    head unit is ``0.34 * size * scale`` pixels."""
    return size * np.array(_CENTRE)


def _camera(p: dict, size: int):
    """The weak-perspective camera of every frame: ``project((N, M, 3) head points)`` gives
    ``(N, M, 2)`` pixels; ``rot`` ``(N, 3, 3)`` is the head's rotation and ``scale``
    ``(N, 1, 1)`` pixels per head unit."""
    rot = rotation(p["yaw"], p["pitch"], p["roll"])
    scale = (size * 0.34 * p["scale"])[:, None, None]
    centre = (size * np.stack([_CENTRE[0] + p["tx"], _CENTRE[1] + p["ty"]], -1))[:, None]

    def project(points3d):
        return (centre + scale * (points3d @ rot.transpose(0, 2, 1))[..., :2]).astype(np.float32)

    return project, rot, scale


def _draw(a: dict, p: dict, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``(N, 3, size, size)`` and landmarks ``(N, 68, 2)`` for per-frame attributes/poses."""
    n = p["yaw"].shape[0]
    project, rot, scale = _camera(p, size)
    lm3 = face_landmarks_3d(a, p)
    geo = head_geometry_3d(a, p, lm3)
    lm = project(lm3)
    s = scale[:, 0, 0]
    points = np.zeros((n, len(_SHAPES), _MAX_POINTS, 2), np.float32)
    width = np.zeros((n, len(_SHAPES)), np.float32)
    soft = np.ones((n, len(_SHAPES)), np.float32)
    alpha = np.ones((n, len(_SHAPES)), np.float32)
    color = np.zeros((n, len(_SHAPES), 3), np.float32)

    def put(name, pts, rgb, w=0.0, a_=1.0, softness=1.0):
        i = _INDEX[name]
        points[:, i, : pts.shape[1]] = pts
        color[:, i] = rgb
        width[:, i] = np.maximum(w, 0.3)
        alpha[:, i] = a_
        soft[:, i] = np.maximum(softness, 1.0)

    def ellipse(cx_cy, rx, ry):
        return np.stack([cx_cy, np.stack([rx, ry], -1)], 1)

    skin, hair = a["skin"], a["hair"]
    long_hair = (a["hair_style"] == HAIR_STYLES.index("long")).astype(np.float32)
    bald = (a["hair_style"] == HAIR_STYLES.index("bald")).astype(np.float32)
    put("hair_back", project(geo["hair_back"]), hair * 0.85, a_=long_hair)
    body_c = np.stack([size * (0.5 + 0.6 * p["tx"]), size * (1.05 + 0.3 * p["ty"])], -1)
    put("body", ellipse(body_c, 0.40 * size * p["scale"], 0.30 * size + 0 * s), a["clothing"])
    neck_bottom = body_c[:, None] + np.stack(
        [np.float32([-0.11, 0.11])[None] * size * p["scale"][:, None],
         np.full((n, 2), -0.27 * size, np.float32)], -1)
    put("neck", np.concatenate([project(geo["neck"]), neck_bottom], 1), skin * 0.72)
    put("ear_r", project(geo["ears"][0]), skin * 0.92)
    put("ear_l", project(geo["ears"][1]), skin * 0.92)
    put("head", np.concatenate([lm[:, :17], project(geo["skull"])], 1), skin)
    face_dir = rot[:, :, 2] @ raster.LIGHT_DIRECTION
    put("nose_shade", project(geo["nose_shade"]), skin * 0.55,
        a_=0.35 + 0.3 * np.clip(np.sin(np.deg2rad(p["yaw"])) * 2, 0, 1), softness=0.07 * s)
    white = np.float32([0.93, 0.92, 0.89])
    put("eye_r", lm[:, 36:42], white)
    put("eye_l", lm[:, 42:48], white)
    iris = project(geo["irises"])
    for side, k in (("r", 0), ("l", 1)):
        put(f"iris_{side}", ellipse(iris[:, k], 0.052 * s, 0.055 * s), a["eyes"])
        put(f"pupil_{side}", ellipse(iris[:, k], 0.022 * s, 0.024 * s), np.float32([0.03] * 3))
    lash = np.float32([0.12, 0.08, 0.07])
    put("lid_r", lm[:, 36:40], lash, w=0.012 * s)
    put("lid_l", lm[:, 42:46], lash, w=0.012 * s)
    put("brow_r", lm[:, 17:22], a["brow_color"], w=a["brow_thickness"] * s)
    put("brow_l", lm[:, 22:27], a["brow_color"], w=a["brow_thickness"] * s)
    nostrils = project(geo["nostrils"])
    for side, k in (("r", 0), ("l", 1)):
        put(f"nostril_{side}", ellipse(nostrils[:, k], 0.035 * s, 0.018 * s), skin * 0.35,
            a_=0.8)
    put("lips", lm[:, 48:60], a["lips"])
    mouth_open = np.clip(p["mouth"] * 8, 0, 1)
    put("mouth", lm[:, 60:68], np.float32([0.22, 0.05, 0.07]), a_=mouth_open)
    upper = lm[:, 60:65]
    teeth_edge = upper[:, ::-1] + np.float32([0, 1]) * 0.05 * s[:, None, None]
    put("teeth", np.concatenate([upper, teeth_edge], 1), np.float32([0.95, 0.94, 0.88]),
        a_=mouth_open)
    put("lip_line", upper, a["lips"] * 0.5, w=0.008 * s, a_=0.7)
    put("hair", project(geo["cap"]), hair, a_=1 - bald)

    def facing(name):  # how much the detail's surface faces the camera, as an opacity
        normal = geo[f"{name}_normal"] / np.linalg.norm(geo[f"{name}_normal"], axis=-1,
                                                         keepdims=True)
        return a[name] * np.clip((np.einsum("nj,nj->n", rot[:, 2], normal) - 0.25) / 0.3, 0, 1)

    def small_ellipse(name):
        shape = geo[name]
        return ellipse(project(shape[:, :1])[:, 0], shape[:, 1, 0] * s, shape[:, 1, 1] * s)

    put("mark", small_ellipse("mark"), a["mark_color"], a_=facing("mark"))
    put("streak", project(geo["streak"]), a["streak_color"], a_=facing("streak") * (1 - bald))
    put("earring", small_ellipse("earring"), a["earring_color"], a_=facing("earring"))
    gl = [project(g) for g in geo["glasses"]]
    put("glasses_r", gl[0], a["glasses_color"], w=0.014 * s, a_=a["glasses"])
    put("glasses_l", gl[1], a["glasses_color"], w=0.014 * s, a_=a["glasses"])
    put("glasses_bridge", np.stack([gl[0][:, 0], gl[1][:, 6]], 1), a["glasses_color"],
        w=0.014 * s, a_=a["glasses"])

    head_c = project(np.zeros((n, 1, 3), np.float32) + np.float32([0, -0.1, 0]))[:, 0]
    light = np.stack([head_c[:, 0], head_c[:, 1], 0.73 * a["face_width"] * s,
                      a["face_length"] * s, 0.62 + 0.25 * (face_dir - raster.LIGHT_DIRECTION[2]),
                      np.full(n, 0.42, np.float32)], -1)
    background = np.stack([a["background_top"], a["background_bottom"]], 1)
    frames = raster.paint(size, background, points, _COUNTS, _KINDS, _CLIPS, _SHADED, width,
                          soft, color, alpha, light)
    return frames, lm


def _check_int(name: str, value, low: int) -> int:
    if not is_integer(value) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


class SynthHeads(torch.utils.data.Dataset):
    """Procedural talking-head videos: the book's built-in dataset.

    ``len(ds)`` is the number of videos, ``num_identities * num_videos_per_identity``; video
    ``i`` shows identity ``i // num_videos_per_identity``. ``ds[i]`` is a dict with
    ``frames`` ``(T, 3, H, W)`` in [0, 1], ``landmarks`` ``(T, 68, 2)`` pixel coordinates
    ``(x, y)`` and ``identity``. Everything is a pure function of
    ``(seed, split, identity, video, frame)``, so it is the same in every run and worker.
    Train and test identities come from different seed sequences: disjoint by construction.
    """

    def __init__(self, split: str = "train", num_identities: int = 100,
                 num_videos_per_identity: int = 4, frames_per_video: int = 32,
                 size: int = 64, seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        self.split = split
        self.num_identities = _check_int("num_identities", num_identities, 1)
        self.num_videos_per_identity = _check_int("num_videos_per_identity",
                                                  num_videos_per_identity, 1)
        self.frames_per_video = _check_int("frames_per_video", frames_per_video, 2)
        self.size = _check_int("size", size, 32)
        self.seed = _check_int("seed", seed, 0)
        attrs = [identity_attributes(self.seed, SPLITS[split], i)
                 for i in range(self.num_identities)]
        self._attributes = {k: np.stack([np.asarray(a[k], np.float32) for a in attrs])
                            for k in attrs[0]}

    def __len__(self) -> int:
        return self.num_identities * self.num_videos_per_identity

    def description(self) -> dict:
        """Everything that decides the videos (a training checkpoint records it)."""
        return {"dataset": "SynthHeads", "split": self.split,
                "num_identities": self.num_identities,
                "num_videos_per_identity": self.num_videos_per_identity,
                "frames_per_video": self.frames_per_video, "size": self.size, "seed": self.seed}

    def __repr__(self) -> str:
        return (f"SynthHeads(split={self.split!r}, identities={self.num_identities}, "
                f"videos={len(self)}, frames_per_video={self.frames_per_video}, "
                f"size={self.size}, seed={self.seed})")

    def _video(self, index: int) -> int:
        return video_index(index, len(self))

    def identity_of(self, index: int) -> int:
        """Identity shown in video ``index``."""
        return self._video(index) // self.num_videos_per_identity

    def attributes(self, identity: int) -> dict[str, np.ndarray]:
        """The appearance and shape attributes of one identity (a copy)."""
        identity = self._identity(identity)
        return {k: v[identity].copy() for k, v in self._attributes.items()}

    def _identity(self, identity) -> int:
        if not is_integer(identity) \
                or not 0 <= identity < self.num_identities:
            raise ValueError(f"identity must be an integer in [0, {self.num_identities}), "
                             f"got {identity!r}")
        return int(identity)

    def pose(self, index: int, frame_indices=None) -> Pose:
        """Pose and expression of frames of video ``index`` (all frames by default)."""
        index = self._video(index)
        frames = self._frame_indices(frame_indices)
        identity, video = divmod(index, self.num_videos_per_identity)
        return _video_pose(self.seed, SPLITS[self.split], identity, video,
                           frames.astype(np.float64) * FRAME_STEP_SECONDS)

    def _frame_indices(self, frame_indices) -> np.ndarray:
        if frame_indices is None:
            return np.arange(self.frames_per_video)
        frames = np.atleast_1d(np.asarray(frame_indices))
        if frames.dtype.kind not in "iu" or frames.ndim != 1 or (frames < 0).any() \
                or (frames >= self.frames_per_video).any():
            raise ValueError(f"frame indices must be integers in [0, {self.frames_per_video}), "
                             f"got {frame_indices!r}")
        return frames

    def render(self, identity: int, pose: Pose, return_landmarks: bool = False, *,
               without_details: bool = False, attributes: dict | None = None):
        """The true image of ``identity`` in ``pose`` (any pose, also other videos' poses).

        Returns ``(3, H, W)`` for a pose of scalars, ``(N, 3, H, W)`` for a pose of arrays;
        with ``return_landmarks`` also the ``(..., 68, 2)`` landmarks. ``without_details``
        draws the person without their one-sided details (``ONE_SIDED_DETAILS``).
        ``attributes`` replaces some of the person's own (names and shapes as
        ``attributes(identity)`` gives them), e.g. ``{"glasses": 0.0}`` or another person's
        ``{"hair": ...}``: a *counterfactual* frame, the same pose drawn with one thing changed
        (``counterfactual`` names the usual ones).
        """
        overrides = {k: 0.0 for k in ONE_SIDED_DETAILS} if without_details else {}
        for name, value in (attributes or {}).items():
            if name not in self._attributes:
                raise ValueError(f"SynthHeads has no attribute {name!r}; its attributes: "
                                 f"{', '.join(self._attributes)}")
            value = np.asarray(value, np.float32)
            if value.shape != self._attributes[name].shape[1:] or not np.isfinite(value).all():
                raise ValueError(f"attribute {name!r} must be finite with shape "
                                 f"{self._attributes[name].shape[1:]}, got {value.shape}")
            overrides[name] = value
        return self._render(identity, pose, return_landmarks, overrides)

    def counterfactual(self, identity: int, pose: Pose, attribute: str,
                       other: int | None = None) -> torch.Tensor | None:
        """``identity`` in ``pose`` with one thing changed, for ``attribute_recall``.

        ``attribute`` is one of ``COUNTERFACTUALS``: ``"mouth open"`` closes the mouth (the
        rest of the pose kept: only the lips and the jaw move); ``"glasses"`` and the one-sided
        details (``"streak"``, ``"earring"``, ``"mark"``) take them off; the colours
        (``"hair"``, ``"clothes"``, ``"skin"``, ``"lips"``, ``"background"``) are replaced by
        those of person ``other`` (default: the next identity). Returns the frames (shaped as
        ``render``'s), or ``None`` when the person has nothing to change (no glasses, no such
        detail).
        """
        if attribute not in COUNTERFACTUALS:
            raise ValueError(f"attribute must be one of {COUNTERFACTUALS}, got {attribute!r}")
        identity = self._identity(identity)
        if attribute == "mouth open":
            return self.render(identity, replace(pose, mouth=0.0))
        own = self.attributes(identity)
        if attribute in ("glasses", *ONE_SIDED_DETAILS):
            return None if own[attribute] == 0 else self.render(identity, pose,
                                                                attributes={attribute: 0.0})
        other = (identity + 1) % self.num_identities if other is None else self._identity(other)
        if other == identity:
            raise ValueError("a colour counterfactual needs another person: this SynthHeads "
                             "has only one identity")
        theirs = self.attributes(other)
        return self.render(identity, pose, attributes={name: theirs[name]
                                                       for name in COLOUR_FIELDS[attribute]})

    def landmarks(self, identity: int, pose: Pose) -> torch.Tensor:
        """Only the 68 landmarks of ``identity`` in ``pose``, without drawing the frames (many
        times faster than ``render``): ``(N, 68, 2)``, or ``(68, 2)`` for a pose of scalars."""
        single, p, a = self._frame_inputs(identity, pose, {})
        project, _, _ = _camera(p, self.size)
        points = torch.from_numpy(project(face_landmarks_3d(a, p)))
        return points[0] if single else points

    def _frame_inputs(self, identity, pose, overrides: dict):
        if not isinstance(pose, Pose):
            raise TypeError(f"pose must be a Pose, got {type(pose).__name__}")
        identity = self._identity(identity)
        single = np.ndim(pose.yaw) == 0 and len(pose) == 1
        p = pose.as_arrays()
        n = p["yaw"].shape[0]
        a = {k: np.repeat(np.asarray(overrides.get(k, v[identity]), np.float32)[None], n, 0)
             for k, v in self._attributes.items()}
        return single, p, a

    def _render(self, identity, pose, return_landmarks: bool, overrides: dict):
        single, p, a = self._frame_inputs(identity, pose, overrides)
        frames, landmarks = _draw(a, p, self.size)
        frames, landmarks = torch.from_numpy(frames), torch.from_numpy(landmarks)
        if single:
            frames, landmarks = frames[0], landmarks[0]
        return (frames, landmarks) if return_landmarks else frames

    def person_mask(self, identity: int, pose: Pose) -> torch.Tensor:
        """Where the person is: head, hair, ears and neck with everything on them, not the
        background and not the clothes. A boolean ``(N, H, W)`` (``(H, W)`` for a pose of
        scalars): the pixels that are at least half covered by the person, found by drawing
        the frame once with black and once with white background and clothes."""
        identity = self._identity(identity)
        black, white = ({name: np.full(3, value, np.float32)
                         for name in ("background_top", "background_bottom", "clothing")}
                        for value in (0.0, 1.0))
        behind = (self.render(identity, pose, attributes=white)
                  - self.render(identity, pose, attributes=black)).mean(dim=-3)
        return behind < 0.5

    def detail_mask(self, identity: int, pose: Pose, threshold: float = 0.03) -> torch.Tensor:
        """Where the identity's one-sided details (hair streak, earring, cheek mark) show in
        ``pose``: a boolean ``(N, H, W)`` (or ``(H, W)`` for a pose of scalars), true where the
        frame differs by more than ``threshold`` from the same frame drawn without them."""
        frames = self.render(identity, pose)
        plain = self.render(identity, pose, without_details=True)
        return (frames - plain).abs().amax(dim=-3) > threshold

    def get_frames(self, index: int, frame_indices=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Only the chosen frames of video ``index``: ``(frames (n,3,H,W), landmarks (n,68,2))``."""
        pose = self.pose(index, frame_indices)
        return self.render(self.identity_of(index), pose, return_landmarks=True)

    def __getitem__(self, index: int) -> dict:
        frames, landmarks = self.get_frames(index)
        return {"frames": frames, "landmarks": landmarks, "identity": self.identity_of(index)}

"""The 3D face model behind SynthHeads: identities, 68 landmarks in 3D, and the rest of a head.

An identity is a set of appearance and shape attributes drawn from a seed. Its face is the
68-point layout of ``fewshot_th.landmarks.PARTS`` placed on a 3D template and deformed by the
identity's shape (face width and length, jaw, eyes, nose, mouth, lips, brows) and by the
expression of a frame (mouth opening, blinks, brow raise). Head units: x right, y down, z
towards the camera; the eyes are at y = -0.12 and the chin at about y = 0.9.
"""

from __future__ import annotations

import numpy as np

_SKIN = np.array([[0.97, 0.82, 0.71], [0.86, 0.64, 0.50], [0.62, 0.42, 0.29],
                  [0.40, 0.26, 0.18]], dtype=np.float32)
_HAIR = np.array([[0.07, 0.06, 0.06], [0.24, 0.14, 0.08], [0.45, 0.30, 0.16],
                  [0.86, 0.71, 0.42], [0.62, 0.24, 0.10], [0.72, 0.72, 0.72]], dtype=np.float32)
_EYES = np.array([[0.33, 0.19, 0.09], [0.22, 0.45, 0.78], [0.27, 0.52, 0.30],
                  [0.50, 0.56, 0.62], [0.52, 0.40, 0.18]], dtype=np.float32)
# Colours of the one-sided details: dyed hair streaks, earrings, cheek marks (birthmark, tattoo).
_STREAK = np.array([[0.93, 0.35, 0.62], [0.25, 0.45, 0.92], [0.30, 0.78, 0.45],
                    [0.95, 0.93, 0.85], [0.85, 0.15, 0.12]], dtype=np.float32)
_EARRING = np.array([[0.98, 0.80, 0.25], [0.85, 0.87, 0.90], [0.90, 0.10, 0.20],
                     [0.15, 0.55, 0.95]], dtype=np.float32)
_MARK = np.array([[0.30, 0.16, 0.10], [0.15, 0.20, 0.55], [0.70, 0.10, 0.15]], dtype=np.float32)
HAIR_STYLES = ("short", "fringe", "side_parting", "receding", "long", "bald")


def identity_attributes(seed: int, split: int, identity: int) -> dict[str, np.ndarray]:
    """Draw one identity. The seed sequence (seed, split, identity) makes splits disjoint."""
    rng = np.random.default_rng([seed, split, identity, 0x5EED])
    u = rng.uniform
    skin_t = u(0, 1) * (len(_SKIN) - 1)
    lo = int(min(skin_t, len(_SKIN) - 2))
    skin = _SKIN[lo] + (_SKIN[lo + 1] - _SKIN[lo]) * (skin_t - lo) + u(-0.03, 0.03, 3)
    hair = _HAIR[rng.integers(len(_HAIR))] * u(0.85, 1.15) + u(-0.03, 0.03, 3)
    style_p = np.array([0.24, 0.2, 0.2, 0.12, 0.2, 0.04])
    top = u(0.15, 0.95, 3)
    attributes = {
        "face_width": u(0.88, 1.08), "face_length": u(0.92, 1.08), "jaw_power": u(0.5, 1.0),
        "eye_spacing": u(0.29, 0.36), "eye_width": u(0.11, 0.15), "eye_height": u(0.05, 0.075),
        "nose_length": u(0.85, 1.15), "nose_width": u(0.12, 0.19),
        "mouth_width": u(0.21, 0.29), "lip_thickness": u(0.08, 0.13),
        "brow_arch": u(0.01, 0.07), "brow_thickness": u(0.016, 0.04), "ear_size": u(0.85, 1.2),
        "hair_style": float(rng.choice(len(HAIR_STYLES), p=style_p)),
        "hair_volume": u(1.03, 1.12), "glasses": float(u(0, 1) < 0.25),
        "skin": skin, "hair": hair, "brow_color": hair * u(0.5, 0.9),
        "eyes": _EYES[rng.integers(len(_EYES))] + u(-0.04, 0.04, 3),
        "lips": skin * np.array([0.95, 0.58, 0.6]) + u(-0.04, 0.04, 3),
        "glasses_color": u(0.0, 0.5, 3) * (u(0, 1) < 0.5),
        "background_top": top, "background_bottom": top * u(0.45, 0.9),
        "clothing": u(0.05, 0.9, 3),
    }
    # Details on one side of the head, which only poses turned towards that side show (drawn
    # last, so the attributes above are the same as before these details existed).
    for name, chance, colours in (("streak", 0.75, _STREAK), ("earring", 0.5, _EARRING),
                                  ("mark", 0.5, _MARK)):
        attributes[name] = float(u(0, 1) < chance)
        attributes[f"{name}_side"] = float(rng.choice([-1.0, 1.0]))
        attributes[f"{name}_color"] = colours[rng.integers(len(colours))] + u(-0.04, 0.04, 3)
    return attributes



def rotation(yaw, pitch, roll) -> np.ndarray:
    """``(N, 3, 3)`` rotation Rz(roll) Rx(pitch) Ry(yaw); x right, y down, z towards camera."""
    y, p, r = (np.deg2rad(a).astype(np.float32) for a in (yaw, pitch, roll))
    one, zero = np.ones_like(y), np.zeros_like(y)
    ry = np.stack([np.cos(y), zero, np.sin(y), zero, one, zero, -np.sin(y), zero, np.cos(y)], -1)
    rx = np.stack([one, zero, zero, zero, np.cos(p), np.sin(p), zero, -np.sin(p), np.cos(p)], -1)
    rz = np.stack([np.cos(r), -np.sin(r), zero, np.sin(r), np.cos(r), zero, zero, zero, one], -1)
    shape = (-1, 3, 3)
    return rz.reshape(shape) @ rx.reshape(shape) @ ry.reshape(shape)


def _front_z(x, y):
    """Depth of the front of the face at (x, y), in head units."""
    return 0.62 - 0.55 * x**2 - 0.12 * y**2


def _stack(x, y, z) -> np.ndarray:
    x, y, z = np.broadcast_arrays(x, y, z)
    return np.stack([x, y, z], axis=-1).astype(np.float32)


def _col(a: dict, name: str) -> np.ndarray:
    return a[name][:, None]


def face_landmarks_3d(a: dict, p: dict) -> np.ndarray:
    """The 68 landmarks in head coordinates ``(N, 68, 3)`` for attributes ``a`` and pose ``p``.

    Head units: the chin is about 0.9 below the eyes' level, x right, y down, z to camera.
    """
    mouth, blink, brow = (p[k][:, None] for k in ("mouth", "blink", "brow"))
    jw, fl = 0.70 * _col(a, "face_width"), _col(a, "face_length")
    angle = np.linspace(0.0, np.pi, 17)[None]
    sin = np.sin(angle)
    chin = 0.88 * fl + 0.12 * mouth * sin**2
    jaw = _stack(-jw * np.cos(angle), -0.05 + (chin + 0.05) * sin ** _col(a, "jaw_power"),
                 0.05 + 0.6 * sin)

    es, t = _col(a, "eye_spacing"), np.linspace(0.0, 1.0, 5)[None]
    bx = -(es + 0.2) + 0.4 * t
    by = -0.30 * fl - _col(a, "brow_arch") * np.sin(np.pi * t) - 0.07 * brow
    brow_r = _stack(bx, by, _front_z(bx, by) + 0.02)
    brow_l = brow_r[:, ::-1] * np.float32([-1, 1, 1])

    nl, nw = _col(a, "nose_length"), _col(a, "nose_width")
    ny = np.float32([-0.22, -0.08, 0.06, 0.20])[None] * nl
    bridge = _stack(0.0, ny, _front_z(0.0, ny) + np.float32([0.02, 0.07, 0.13, 0.2]))
    nx = nw * np.float32([-1, -0.5, 0, 0.5, 1])
    nyy = 0.27 * nl + np.float32([0, 0.03, 0.045, 0.03, 0])
    nostrils = _stack(nx, nyy, _front_z(nx, nyy) + np.float32([0.05, 0.09, 0.12, 0.09, 0.05]))

    ew, eh = _col(a, "eye_width"), _col(a, "eye_height")
    up, low = -eh * (1 - blink) + blink * 0.45 * eh, 0.75 * eh
    ex = -es + ew * np.float32([-1, -1 / 3, 1 / 3, 1, 1 / 3, -1 / 3])
    ey = -0.12 + np.concatenate([0 * up, up, up, 0 * up + 0.005, low + 0 * up, low + 0 * up], 1)
    eye_r = _stack(ex, ey, _front_z(ex, ey) - 0.02)
    eye_l = eye_r[:, [3, 2, 1, 0, 5, 4]] * np.float32([-1, 1, 1])

    mw = _col(a, "mouth_width") * (1 - 0.12 * mouth)
    lt, o, my = _col(a, "lip_thickness"), 0.16 * mouth, 0.56 * fl
    ox = mw * np.float32([-1, -.6, -.22, 0, .22, .6, 1, .6, .22, 0, -.22, -.6])
    upper_lip = [-0.55 * lt, -0.75 * lt, -0.6 * lt, -0.75 * lt, -0.55 * lt]
    lower_lip = [0.8 * lt + o, lt + o, 1.05 * lt + o, lt + o, 0.8 * lt + o]
    oy = my + np.concatenate([0.3 * o, *upper_lip, 0.3 * o, *lower_lip], 1)
    ix = mw * np.float32([-0.8, -0.3, 0, 0.3, 0.8, 0.3, 0, -0.3])
    top, bottom = -0.1 * lt - 0.1 * o, 0.1 * lt + o
    iy = my + np.concatenate([0.3 * o, top, top, top, 0.3 * o, bottom, bottom, bottom], 1)
    outer = _stack(ox, oy, _front_z(ox, oy) + 0.05)
    inner = _stack(ix, iy, _front_z(ix, iy) + 0.04)
    return np.concatenate([jaw, brow_r, brow_l, bridge, nostrils, eye_r, eye_l, outer, inner], 1)


def _hairline(style: np.ndarray, u: np.ndarray, fl: np.ndarray) -> np.ndarray:
    """Height of the hairline across the forehead (u = -1 left temple .. 1 right temple)."""
    lines = np.stack([
        -0.62 * fl + 0.45 * u**4,                                    # short
        -0.42 * fl + 0.25 * u**4,                                    # fringe
        -0.55 * fl + 0.14 * u + 0.35 * u**4,                         # side parting
        -0.82 * fl + 0.12 * np.exp(-(u / 0.3) ** 2) + 0.6 * u**4,    # receding, widow's peak
        -0.60 * fl + 0.45 * u**4,                                    # long
        -0.62 * fl + 0.45 * u**4,                                    # bald (not drawn)
    ], 0)
    return np.take_along_axis(lines, style.astype(np.int64)[None, :, None], 0)[0]


def head_geometry_3d(a: dict, p: dict, landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Everything that is not a landmark: skull, ears, hair, nose shade, irises, glasses."""
    n = landmarks.shape[0]
    jw, fl = 0.70 * _col(a, "face_width"), _col(a, "face_length")
    b = np.linspace(0.0, np.pi, 15)[None, 1:-1]
    skull = _stack(jw * np.cos(b), -0.05 - (1.02 * fl - 0.05) * np.sin(b), 0.05 + 0.1 * np.sin(b))

    es = _col(a, "ear_size")
    t = np.linspace(0, 2 * np.pi, 8, endpoint=False)[None]
    ears = [_stack(side * (jw - 0.05 + 0.21 * es * (0.5 + 0.5 * np.cos(t))),
                   -0.08 + 0.17 * es * np.sin(t), -0.02 + 0.09 * es * np.cos(t))
            for side in (-1.0, 1.0)]

    vol = _col(a, "hair_volume")
    bo = np.linspace(-0.15, np.pi + 0.15, 13)[None]
    outer = _stack(vol * jw * np.cos(bo), -0.05 - (1.02 * fl - 0.05) * vol * np.sin(bo),
                   0.05 + 0.12 * np.sin(bo))
    u = np.linspace(-0.97, 0.97, 9)[None]
    hy = _hairline(a["hair_style"], np.broadcast_to(u, (n, 9)), fl)
    hairline = _stack(u * jw, hy, 0.08 + 0.55 * np.sqrt(1 - u**2))
    cap = np.concatenate([outer, hairline], 1)
    back_arc = skull * np.float32([1.12, 1.1, 1])
    down = _stack(jw * np.float32([-1.2, -1.1, 1.1, 1.2]), np.float32([0.4, 1.15, 1.15, 0.4]), -0.2)
    hair_back = np.concatenate([back_arc, down], 1)

    nl, nw = _col(a, "nose_length"), _col(a, "nose_width")
    shade = _stack(np.concatenate([0 * nw, 0 * nw, 0.9 * nw, 0.35 * nw], 1),
                   np.concatenate([-0.18 * nl, 0.2 * nl, 0.27 * nl, -0.05 + 0 * nl], 1),
                   np.float32([0.62, 0.8, 0.62, 0.6]))
    nostrils = _stack(nw * np.float32([-0.55, 0.55]), 0.27 * nl + 0.035, 0.7)

    eye_r, eye_l = landmarks[:, 36:42].mean(1), landmarks[:, 42:48].mean(1)
    gaze = np.stack([p["gaze_x"] * 0.5 * a["eye_width"], p["gaze_y"] * 0.02,
                     np.full(n, 0.02, np.float32)], -1)[:, None]
    irises = np.stack([eye_r, eye_l], 1) + gaze

    ring = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    circle = np.stack([0.17 * np.cos(ring), 0.15 * np.sin(ring), 0 * ring + 0.1], -1)[None]
    glasses = [(c[:, None] + circle).astype(np.float32) for c in (eye_r, eye_l)]
    neck = _stack(np.float32([0.27, -0.27]), 0.5, -0.1)
    return {"skull": skull, "ears": ears, "cap": cap, "hair_back": hair_back,
            "nose_shade": shade, "nostrils": nostrils, "irises": irises, "glasses": glasses,
            "neck": np.broadcast_to(neck, (n, 2, 3)), **side_details_3d(a, jw, fl, vol, es)}


def side_details_3d(a: dict, jw, fl, vol, es) -> dict[str, np.ndarray]:
    """The one-sided details: each a shape ``(N, M, 3)`` and the outward normal ``(N, 3)`` of
    the surface it lies on (its opacity follows how much that normal faces the camera)."""
    streak_side, ear_side, mark_side = (_col(a, f"{k}_side") for k in ("streak", "earring",
                                                                       "mark"))
    # A dyed band over the temple, from the parting down to the top of the ear.
    sx = np.float32([0.62, 0.98, 1.0, 0.9, 0.72, 0.6])[None] * vol * jw
    sy = np.float32([-0.62, -0.55, -0.3, -0.08, -0.1, -0.35])[None] * fl
    streak = _stack(streak_side * sx, sy, 0.12 + 0 * sx)
    # An earring hanging below the lobe: a centre and two radii (an ellipse).
    lobe = _stack(ear_side * (jw + 0.02), -0.08 + 0.2 * es, -0.02)
    earring = np.concatenate([lobe, _stack(0.075 + 0 * es, 0.085 + 0 * es, 0)], 1)
    # A mark on the outer cheek.
    mx = 0.62 * jw
    mark_centre = _stack(mark_side * mx, 0.3 + 0 * mx, _front_z(mx, 0.3))
    mark = np.concatenate([mark_centre, _stack(0.1 + 0 * mx, 0.08 + 0 * mx, 0)], 1)

    def normal(side, x, z):
        return np.concatenate([side * x, 0 * side, z + 0 * side], 1).astype(np.float32)

    return {"streak": streak, "streak_normal": normal(streak_side, 1.0, 0.25),
            "earring": earring, "earring_normal": normal(ear_side, 1.0, 0.35),
            "mark": mark, "mark_normal": normal(mark_side, 1.0, 0.3)}


# The display list: (name, kind, number of points, clip shape, shaded), painted in this order.

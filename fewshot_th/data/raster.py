"""A tiny anti-aliased 2D rasteriser for SynthHeads: a display list in, images out.

SynthHeads describes each frame as a *display list*: an ordered list of shapes (filled
polygons, thick polylines, ellipses), each with a colour, an opacity and an edge softness.
``paint`` draws the shapes back to front with the "over" operator. Coverage comes from a
signed distance ``sd`` to the shape's edge (negative inside): ``clamp(0.5 - sd / softness)``.
With ``softness = 1`` that is one pixel of anti-aliasing; larger values make soft shadows.
Each shape only visits the pixels of its own bounding box, and frames are painted in
parallel, which is what makes a few thousand 64 px frames per second possible on 2 cores.
"""

from __future__ import annotations

import numpy as np

from .._numba import numba

FILL, OPEN_LINE, CLOSED_LINE, ELLIPSE = 0, 1, 2, 3

# Direction of the light (towards the light), in camera space: upper left, in front.
LIGHT_DIRECTION = np.array([-0.45, -0.35, 0.82], dtype=np.float32)
LIGHT_DIRECTION /= np.linalg.norm(LIGHT_DIRECTION)


@numba.njit(cache=True, fastmath=True, inline="always")
def _clamp01(v):
    return min(max(v, 0.0), 1.0)


@numba.njit(cache=True, fastmath=True)
def _polyline_distance(pts, n, closed, x, y):
    """Distance from (x, y) to the polyline pts[:n] (closing it back to pts[0] if closed)."""
    best = 1e30
    last = n if closed else n - 1
    for i in range(last):
        j = i + 1 if i + 1 < n else 0
        ax, ay = pts[i, 0], pts[i, 1]
        ex, ey = pts[j, 0] - ax, pts[j, 1] - ay
        wx, wy = x - ax, y - ay
        length2 = ex * ex + ey * ey
        t = 0.0
        if length2 > 0.0:
            t = min(max((wx * ex + wy * ey) / length2, 0.0), 1.0)
        dx, dy = wx - t * ex, wy - t * ey
        best = min(best, dx * dx + dy * dy)
    return np.sqrt(best)


@numba.njit(cache=True, fastmath=True)
def _polygon_sd(pts, n, x, y):
    """Signed distance from (x, y) to the polygon pts[:n]: negative inside (even-odd rule)."""
    inside = False
    j = n - 1
    for i in range(n):
        ay, by = pts[j, 1], pts[i, 1]
        if (ay > y) != (by > y):
            ax, bx = pts[j, 0], pts[i, 0]
            if x < ax + (y - ay) * (bx - ax) / (by - ay):
                inside = not inside
        j = i
    d = _polyline_distance(pts, n, True, x, y)
    return -d if inside else d


@numba.njit(cache=True, fastmath=True)
def _ellipse_sd(cx, cy, rx, ry, x, y):
    """First-order signed distance to an axis-aligned ellipse (exact for circles)."""
    u, v = (x - cx) / rx, (y - cy) / ry
    k = np.sqrt(u * u + v * v)
    if k < 1e-6:
        return -min(rx, ry)
    gx, gy = u / (rx * k), v / (ry * k)
    return (k - 1.0) / max(np.sqrt(gx * gx + gy * gy), 1e-6)


@numba.njit(cache=True, fastmath=True)
def _shape_sd(kind, pts, n, width, x, y):
    if kind == 0:
        return _polygon_sd(pts, n, x, y)
    if kind == 1:
        return _polyline_distance(pts, n, False, x, y) - width
    if kind == 2:
        return _polyline_distance(pts, n, True, x, y) - width
    return _ellipse_sd(pts[0, 0], pts[0, 1], pts[1, 0], pts[1, 1], x, y)


@numba.njit(parallel=True, cache=True, fastmath=True)
def _paint(out, background, points, counts, kinds, clips, shaded, width, soft, color, alpha,
           light, light_dir):  # pragma: no cover - compiled
    num_frames, num_shapes = alpha.shape
    size = out.shape[2]
    for b in numba.prange(num_frames):
        for row in range(size):
            t = row / max(size - 1, 1)
            for c in range(3):
                value = background[b, 0, c] * (1.0 - t) + background[b, 1, c] * t
                for col in range(size):
                    out[b, c, row, col] = value
        for s in range(num_shapes):
            a = alpha[b, s]
            if a <= 0.0:
                continue
            n, kind, pts = counts[s], kinds[s], points[b, s]
            pad = width[b, s] + soft[b, s] + 1.0
            if kind == 3:
                x0, x1 = pts[0, 0] - pts[1, 0], pts[0, 0] + pts[1, 0]
                y0, y1 = pts[0, 1] - pts[1, 1], pts[0, 1] + pts[1, 1]
            else:
                x0, x1, y0, y1 = pts[0, 0], pts[0, 0], pts[0, 1], pts[0, 1]
                for i in range(1, n):
                    x0, x1 = min(x0, pts[i, 0]), max(x1, pts[i, 0])
                    y0, y1 = min(y0, pts[i, 1]), max(y1, pts[i, 1])
            c0 = int(max(np.ceil(x0 - pad), 0.0))
            c1 = int(min(np.floor(x1 + pad), size - 1.0))
            r0 = int(max(np.ceil(y0 - pad), 0.0))
            r1 = int(min(np.floor(y1 + pad), size - 1.0))
            clip = clips[s]
            for row in range(r0, r1 + 1):
                for col in range(c0, c1 + 1):
                    sd = _shape_sd(kind, pts, n, width[b, s], col, row)
                    cover = _clamp01(0.5 - sd / soft[b, s])
                    if cover <= 0.0:
                        continue
                    if clip >= 0:
                        inside = _polygon_sd(points[b, clip], counts[clip], col, row)
                        cover *= _clamp01(0.5 - inside)
                        if cover <= 0.0:
                            continue
                    cover *= a
                    shade = 1.0
                    if shaded[s]:
                        # Lambert shading on the ellipsoid that the head's outline bounds.
                        u = (col - light[b, 0]) / light[b, 2]
                        v = (row - light[b, 1]) / light[b, 3]
                        w = np.sqrt(max(1.0 - u * u - v * v, 0.0))
                        lambert = max(u * light_dir[0] + v * light_dir[1] + w * light_dir[2], 0.0)
                        shade = light[b, 4] + light[b, 5] * lambert
                    for c in range(3):
                        under = out[b, c, row, col]
                        out[b, c, row, col] = under + cover * (color[b, s, c] * shade - under)


def paint(size, background, points, counts, kinds, clips, shaded, width, soft, color, alpha,
          light) -> np.ndarray:
    """Paint a batch of display lists; returns float32 ``(B, 3, size, size)`` in [0, 1].

    Args (B frames, S shapes, M points at most per shape):
        background: ``(B, 2, 3)`` top and bottom colour of a vertical gradient.
        points: ``(B, S, M, 2)`` pixel coordinates; an ellipse stores its centre then radii.
        counts, kinds, clips, shaded: ``(S,)`` number of points, shape kind, index of a
            polygon that clips the shape (-1: none), whether the head's shading applies.
        width, soft, alpha: ``(B, S)`` half line width (px), edge softness (px, >= 1), opacity.
        color: ``(B, S, 3)``; light: ``(B, 6)`` = head centre x, y, radii x, y, ambient, diffuse.
    """
    out = np.empty((points.shape[0], 3, size, size), dtype=np.float32)
    _paint(out, background.astype(np.float32), points.astype(np.float32),
           counts.astype(np.int64), kinds.astype(np.int64), clips.astype(np.int64),
           shaded.astype(np.bool_), width.astype(np.float32), soft.astype(np.float32),
           color.astype(np.float32), alpha.astype(np.float32), light.astype(np.float32),
           LIGHT_DIRECTION)
    np.clip(out, 0.0, 1.0, out=out)
    return out

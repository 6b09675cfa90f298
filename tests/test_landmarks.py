import numpy as np
import pytest
import torch

from fewshot_th.data import SynthHeads
from fewshot_th.landmarks import PARTS, SEGMENT_COLORS, SEGMENTS, draw_landmarks


@pytest.fixture(scope="module")
def face_points():
    """Realistic landmarks: 6 frames of SynthHeads at 128 px."""
    ds = SynthHeads(num_identities=3, num_videos_per_identity=1, frames_per_video=8, size=128)
    return torch.cat([ds.get_frames(i, [0, 5])[1] for i in range(3)]).numpy()


def _distance_to_segments(points, segments, size):
    """Brute-force distance from every pixel centre to every segment: (S, size, size)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    a = points[segments[:, 0]].astype(np.float64)[:, None, None]
    b = points[segments[:, 1]].astype(np.float64)[:, None, None]
    d = b - a
    px, py = xs[None] - a[..., 0], ys[None] - a[..., 1]
    length2 = np.maximum((d**2).sum(-1), 1e-12)
    t = np.clip((px * d[..., 0] + py * d[..., 1]) / length2, 0, 1)
    return np.hypot(px - t * d[..., 0], py - t * d[..., 1])


def test_parts_cover_each_of_the_68_points_once_in_the_standard_order():
    indices = [i for part in PARTS for i in part.indices]
    assert indices == list(range(68))
    names = {p.name: p for p in PARTS}
    assert names["jaw"].indices == tuple(range(17))
    assert names["right_eye"].indices == tuple(range(36, 42)) and names["right_eye"].closed
    assert names["inner_lip"].indices == tuple(range(60, 68)) and names["inner_lip"].closed
    assert not names["nose_bridge"].closed
    assert len({p.color for p in PARTS}) == len(PARTS), "every part needs its own colour"


def test_segments_join_consecutive_points_and_close_the_loops():
    assert len(SEGMENTS) == 63
    assert [41, 36] in SEGMENTS.tolist(), "the right eye is a closed loop"
    assert [16, 0] not in SEGMENTS.tolist(), "the jaw is an open curve"


def test_output_shapes_range_and_dtype_for_single_and_batched_points(face_points):
    single = draw_landmarks(face_points[0], 128)
    batch = draw_landmarks(torch.from_numpy(face_points), 128)
    assert single.shape == (3, 128, 128) and batch.shape == (6, 3, 128, 128)
    assert single.dtype == torch.float32
    assert single.min() >= 0 and single.max() <= 1 and single.max() > 0.9


def test_batched_drawing_equals_drawing_item_by_item(face_points):
    batch = draw_landmarks(face_points, 128, thickness=2.5)
    for i, points in enumerate(face_points):
        assert torch.equal(batch[i], draw_landmarks(points, 128, thickness=2.5))


def test_each_segment_carries_its_part_colour_and_nothing_far_away_is_coloured(face_points):
    thickness, size = 3.0, 128
    radius = thickness / 2
    for points in face_points[:3]:
        image = draw_landmarks(points, size, thickness=thickness).numpy()
        dist = _distance_to_segments(points, SEGMENTS, size)
        nearest = dist.min(0)
        # Nothing beyond the anti-aliased edge is coloured, everything on the lines is.
        assert (image[:, nearest > radius + 0.5] == 0).all()
        assert (image.max(0)[nearest < radius - 0.5] > 0).all()
        # At each segment's midpoint the pixel has exactly that part's colour, unless another
        # part passes within reach of it.
        checked = 0
        for s, (a, b) in enumerate(SEGMENTS):
            mid = (points[a] + points[b]) / 2
            col, row = int(round(mid[0])), int(round(mid[1]))
            others = SEGMENT_COLORS != SEGMENT_COLORS[s]
            if dist[others.any(1), row, col].min() <= radius + 1.5:
                continue
            np.testing.assert_allclose(image[:, row, col], SEGMENT_COLORS[s], atol=1e-6)
            checked += 1
        assert checked > 30


def test_line_edges_are_anti_aliased_with_intermediate_values():
    points = np.zeros((68, 2), np.float32) + 20.0
    points[:17, 0] = np.linspace(3.3, 60.1, 17)
    points[:17, 1] = np.linspace(10.2, 40.7, 17)
    image = draw_landmarks(points, 64, thickness=2.0)
    jaw = image[0]
    assert ((jaw > 0.05) & (jaw < 0.9)).sum() > 20, "a slanted line needs partial coverage"


def test_default_thickness_is_one_pixel_per_hundred_pixels_and_at_least_one(face_points):
    assert torch.equal(draw_landmarks(face_points[0] * 2, 256),
                       draw_landmarks(face_points[0] * 2, 256, thickness=2.56))
    assert torch.equal(draw_landmarks(face_points[0] / 2, 64),
                       draw_landmarks(face_points[0] / 2, 64, thickness=1.0))


def test_points_outside_the_image_are_clipped_not_errors(face_points):
    far = face_points[0] + 10_000
    assert draw_landmarks(far, 64).abs().sum() == 0
    half = face_points[0].copy()
    half[:, 0] -= 64  # left half of the face leaves the image
    image = draw_landmarks(half, 128)
    assert image.abs().sum() > 0 and image.shape == (3, 128, 128)


def test_returns_tensor_on_the_device_of_torch_points(face_points):
    image = draw_landmarks(torch.from_numpy(face_points[0]).double(), 64)
    assert image.device.type == "cpu" and image.dtype == torch.float32


@pytest.mark.parametrize("bad, message", [
    (np.full((68, 2), np.nan), "NaN"),
    (np.zeros((67, 2)), "shape"),
    (np.zeros((2, 68, 3)), "shape"),
    (np.zeros((68,)), "shape"),
])
def test_bad_points_raise_value_error_with_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        draw_landmarks(bad, 64)


@pytest.mark.parametrize("size, thickness", [(0, None), (64.5, None), (64, 0.0), (64, -1)])
def test_bad_size_or_thickness_raise_value_error(size, thickness):
    with pytest.raises(ValueError):
        draw_landmarks(np.zeros((68, 2)), size, thickness=thickness)

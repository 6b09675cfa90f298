"""Landmark adaptation (fewshot_th.adaptation): Procrustes geometry and the learned landmark
model, measured against SynthHeads' exact landmarks of one person in another's poses."""

import numpy as np
import pytest
import torch

from fewshot_th.adaptation import (
    ADAPTATIONS,
    LandmarkModel,
    _align,
    adapt_landmarks,
    learned_landmark_model,
    mouth_opening,
    neutral_shape,
    similarity_transform,
)
from fewshot_th.data import Pose, SynthHeads
from fewshot_th.data.synthetic import frame_centre
from fewshot_th.reenact import cross_episode, landmark_error


@pytest.fixture(scope="module")
def heads():
    return SynthHeads("test", num_identities=12, num_videos_per_identity=2, frames_per_video=40,
                      size=64, seed=0)


def test_similarity_transform_recovers_a_known_one():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(68, 2)) * 10
    angle = -0.3
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = 0.8 * points @ rotation.T + [3.0, 4.0]
    scale, found, shift = similarity_transform(points, moved)
    assert scale == pytest.approx(0.8) and np.allclose(found, rotation)
    assert np.allclose(shift, [3.0, 4.0])
    mirrored = points * [-1, 1]  # a mirror image is not a rotation: the fit stays a rotation
    assert np.linalg.det(similarity_transform(points, mirrored)[1]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one point"):
        similarity_transform(np.zeros((68, 2)), moved)
    with pytest.raises(ValueError, match="68"):
        similarity_transform(points[:10], moved[:10])


def test_aligning_many_frames_at_once_equals_one_by_one():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(68, 2))
    frames = rng.normal(size=(5, 68, 2)) * rng.uniform(1, 9, (5, 1, 1)) + rng.normal(size=(5, 1, 2))
    frames[2] = frames[2] * [-1, 1]  # a mirrored frame still gets a rotation
    one_by_one = []
    for frame in frames:
        scale, rotation, shift = similarity_transform(frame, reference)
        one_by_one.append(scale * frame @ rotation.T + shift)
    assert np.allclose(_align(frames, reference), np.stack(one_by_one), atol=1e-9)


def test_landmarks_alone_equal_the_rendered_ones(heads):
    pose = heads.pose(5, [0, 7, 39])
    assert torch.equal(heads.landmarks(2, pose), heads.render(2, pose, return_landmarks=True)[1])
    assert heads.landmarks(2, Pose()).shape == (68, 2)


def test_mouth_opening_and_neutral_shape_ignore_pose_and_speech(heads):
    pose = heads.pose(0)
    _, points = heads.render(0, pose, return_landmarks=True)
    opening = mouth_opening(points)
    assert np.corrcoef(opening, pose.mouth)[0, 1] > 0.9
    calm = Pose(yaw=np.zeros(4), mouth=np.zeros(4))
    _, rest = heads.render(0, calm, return_landmarks=True)
    shape = neutral_shape(points)
    reference = neutral_shape(rest)  # the same person, still and silent
    s, r, t = similarity_transform(shape, reference)
    fitted = s * shape @ r.T + t
    assert np.linalg.norm(fitted - reference, axis=-1).mean() < 0.5
    with pytest.raises(ValueError, match="rest"):
        neutral_shape(points, rest=0)


@pytest.mark.parametrize("method", ADAPTATIONS)
def test_adapting_a_track_to_its_own_person_changes_nothing_much(heads, method):
    _, points = heads.get_frames(0, np.arange(40))
    same = adapt_landmarks(points, points, points, method=method)
    assert landmark_error(same, points).mean() < 0.05


def _errors(heads, method, k=8):
    raw, adapted = [], []
    for a in range(10):
        episode = cross_episode(heads, a, (a + 5) % 12, k=k)
        track = adapt_landmarks(episode["driver_points"], episode["driver_reference"],
                                episode["source_points"], method=method)
        raw.append(landmark_error(episode["driver_points"], episode["truth_points"]).mean())
        adapted.append(landmark_error(track, episode["truth_points"]).mean())
    return np.array(raw), np.array(adapted)


def test_procrustes_adaptation_brings_the_driver_closer_on_most_pairs(heads):
    raw, adapted = _errors(heads, "procrustes")
    assert adapted.mean() < 0.9 * raw.mean()
    assert (adapted < raw).sum() >= 7


@pytest.mark.parametrize("k", [8, 1])
def test_learned_adaptation_gives_nearly_the_persons_true_landmarks(heads, k):
    raw, adapted = _errors(heads, "learned", k=k)
    assert adapted.mean() < 0.25 * raw.mean()  # measured: 10% of the raw error, K = 8 or 1
    assert (adapted < raw).all()
    _, procrustes = _errors(heads, "procrustes", k=k)
    assert adapted.mean() < 0.5 * procrustes.mean()


def test_the_learned_model_finds_a_persons_size_and_shape_from_their_frames(heads):
    model = learned_landmark_model()
    for person in (0, 7):
        _, points = heads.get_frames(2 * person, np.arange(0, 40, 5))  # speaking, turning
        truth = heads.landmarks(person, Pose()).numpy()  # frontal, at rest
        truth = (truth - frame_centre(heads.size)) / (0.34 * heads.size)
        found = model.neutral(points)
        assert np.abs(found - truth).max() < 0.01  # head units; the faces differ by ~0.05
        other = model.neutral(heads.get_frames(2 * (person + 1), np.arange(8))[1])
        assert np.abs(other - truth).max() > 0.02


def test_landmark_model_and_adaptation_refuse_bad_arguments(heads):
    with pytest.raises(TypeError, match="SynthHeads"):
        LandmarkModel.fit([np.zeros((68, 2))])
    with pytest.raises(ValueError, match="identity_modes"):
        LandmarkModel.fit(heads, identity_modes=12)
    _, points = heads.get_frames(0, [0, 1])
    with pytest.raises(ValueError, match="method"):
        adapt_landmarks(points, points, points, method="3d")
    with pytest.raises(ValueError, match="target_reference"):
        adapt_landmarks(points, points, points[:, :10])
    with pytest.raises(ValueError, match="NaN"):
        adapt_landmarks(points * np.nan, points, points)


def test_a_model_fitted_on_few_people_still_separates_shape_from_pose(heads):
    model = LandmarkModel.fit(heads, identity_modes=8)  # the 12 test people themselves
    assert model.identity.shape == (136, 8) and model.motion.shape == (136, 9)
    episode = cross_episode(heads, 1, 6)
    track = model.adapt(episode["driver_points"], episode["driver_reference"],
                        episode["source_points"])
    raw = landmark_error(episode["driver_points"], episode["truth_points"]).mean()
    assert landmark_error(track, episode["truth_points"]).mean() < 0.5 * raw

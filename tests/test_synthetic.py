import numpy as np
import pytest
import torch

from fewshot_th.data import Pose, SynthHeads
from fewshot_th.data.synthetic import HAIR_STYLES, ONE_SIDED_DETAILS

SIZE = 64


@pytest.fixture(scope="module")
def heads():
    return SynthHeads("train", num_identities=8, num_videos_per_identity=2, frames_per_video=12,
                      size=SIZE, seed=3)


def test_len_item_shapes_dtype_and_range(heads):
    assert len(heads) == 16
    item = heads[5]
    assert item["frames"].shape == (12, 3, SIZE, SIZE) and item["frames"].dtype == torch.float32
    assert item["landmarks"].shape == (12, 68, 2)
    assert item["identity"] == 2 == heads.identity_of(5)
    assert 0 <= item["frames"].min() and item["frames"].max() <= 1


@pytest.mark.parametrize("size", [32, 45, 256])
def test_any_size_from_32_works(size):
    frames = SynthHeads(num_identities=1, num_videos_per_identity=1, frames_per_video=2,
                        size=size)[0]["frames"]
    assert frames.shape == (2, 3, size, size) and torch.isfinite(frames).all()


def test_frames_are_deterministic_across_instances_and_differ_across_seeds(heads):
    again = SynthHeads("train", num_identities=8, num_videos_per_identity=2, frames_per_video=12,
                       size=SIZE, seed=3)
    assert torch.equal(heads[7]["frames"], again[7]["frames"])
    other = SynthHeads("train", num_identities=8, num_videos_per_identity=2, frames_per_video=12,
                       size=SIZE, seed=4)
    assert not torch.equal(heads[7]["frames"], other[7]["frames"])


def test_a_frame_does_not_depend_on_which_other_frames_are_rendered(heads):
    frames, points = heads.get_frames(3, [9, 2])
    video = heads[3]
    assert torch.equal(frames[0], video["frames"][9]) and torch.equal(frames[1], video["frames"][2])
    assert torch.equal(points, video["landmarks"][[9, 2]])


def test_same_frames_in_dataloader_workers(heads):
    loader = torch.utils.data.DataLoader(heads, batch_size=4, num_workers=2)
    batch = next(iter(loader))
    for i in range(4):
        assert torch.equal(batch["frames"][i], heads[i]["frames"])


def test_train_and_test_identities_are_disjoint():
    train = SynthHeads("train", num_identities=40, size=32)
    test = SynthHeads("test", num_identities=40, size=32)

    def signature(ds, i):
        a = ds.attributes(i)
        return np.concatenate([np.ravel(a[k]) for k in sorted(a)])

    train_sigs = {signature(train, i).tobytes() for i in range(40)}
    test_sigs = {signature(test, i).tobytes() for i in range(40)}
    assert len(train_sigs) == 40 and len(test_sigs) == 40
    assert not train_sigs & test_sigs
    assert not torch.equal(train[0]["frames"], test[0]["frames"])


def test_identities_have_many_independent_attributes():
    ds = SynthHeads("train", num_identities=60, size=32)
    varying = [k for k in ds.attributes(0)
               if np.std([np.ravel(ds.attributes(i)[k]) for i in range(60)], 0).max() > 1e-3]
    assert len(varying) >= 8
    styles = {int(ds.attributes(i)["hair_style"]) for i in range(60)}
    assert len(styles) >= 4 and max(styles) < len(HAIR_STYLES)
    assert 0 < np.mean([ds.attributes(i)["glasses"] for i in range(60)]) < 1


def test_landmarks_stay_inside_the_frame():
    ds = SynthHeads("test", num_identities=20, num_videos_per_identity=2, frames_per_video=40,
                    size=SIZE)
    for i in range(len(ds)):
        points = ds.get_frames(i)[1]
        assert (points >= 0).all() and (points <= SIZE - 1).all()


def test_motion_is_smooth_within_the_ranges_and_the_face_talks_and_blinks():
    ds = SynthHeads(num_identities=6, num_videos_per_identity=2, frames_per_video=200, size=SIZE)
    for i in range(len(ds)):
        pose = ds.pose(i)
        assert np.abs(pose.yaw).max() <= 30 and np.abs(pose.pitch).max() <= 15
        assert np.abs(pose.roll).max() <= 10
        assert np.ptp(pose.yaw) > 10, "the head turns"
        assert pose.mouth.max() > 0.3 and pose.mouth.min() < 0.05, "the mouth opens and closes"
        assert pose.blink.max() > 0.5, "the eyes blink"
        points = ds.get_frames(i)[1]
        step = (points[1:] - points[:-1]).norm(dim=-1).mean(-1)
        assert step.max() < 0.1 * SIZE, "consecutive frames are close"


def test_one_identity_keeps_its_appearance_and_identities_differ(heads):
    # The per-video colour statistics of one identity are closer to its other video than to
    # any other identity's videos.
    def colours(i):
        frames = heads[i]["frames"]
        return torch.stack([frames.mean((0, 2, 3)), frames.std((0, 2, 3))]).flatten()

    stats = torch.stack([colours(i) for i in range(len(heads))])
    distance = torch.cdist(stats, stats)
    distance.fill_diagonal_(float("inf"))
    nearest = distance.argmin(1)
    same = [heads.identity_of(int(j)) == heads.identity_of(i) for i, j in enumerate(nearest)]
    assert all(same)


def test_render_of_a_videos_identity_and_pose_equals_the_video_frame(heads):
    video = heads[9]
    pose = heads.pose(9)
    for t in (0, 4, 11):
        frame, points = heads.render(heads.identity_of(9), pose[t], return_landmarks=True)
        assert frame.shape == (3, SIZE, SIZE)
        assert torch.equal(frame, video["frames"][t])
        assert torch.equal(points, video["landmarks"][t])


def test_render_drives_one_identity_with_another_videos_motion(heads):
    pose = heads.pose(0)  # motion of identity 0
    driven, points = heads.render(5, pose, return_landmarks=True)
    assert driven.shape == (12, 3, SIZE, SIZE)
    assert not torch.equal(driven, heads[0]["frames"])
    own = heads.render(5, Pose())
    assert own.shape == (3, SIZE, SIZE)


def _pixel(image, xy):
    return image[:, int(round(float(xy[1]))), int(round(float(xy[0])))]


def test_drawn_face_lines_up_with_its_landmarks():
    ds = SynthHeads("train", num_identities=40, size=256, seed=1)
    plain = [i for i in range(40) if ds.attributes(i)["glasses"] == 0
             and HAIR_STYLES[int(ds.attributes(i)["hair_style"])] in ("short", "receding")]
    assert plain
    for identity in plain[:3]:
        a = ds.attributes(identity)
        frame, p = ds.render(identity, Pose(), return_landmarks=True)
        # Lips: between the outer and inner outline of the upper lip, the lip colour.
        lips = p[[50, 51, 52, 61, 62, 63]].mean(0)
        assert torch.allclose(_pixel(frame, lips), torch.tensor(a["lips"]).clamp(0, 1), atol=0.02)
        # Eyes: the centre of each eye outline is the dark pupil.
        for eye in (slice(36, 42), slice(42, 48)):
            assert _pixel(frame, p[eye].mean(0)).max() < 0.1
        # Brows: the brow colour on the brow points.
        assert torch.allclose(_pixel(frame, p[19]), torch.tensor(a["brow_color"]).clamp(0, 1),
                              atol=0.05)
        # An open mouth: dark inside the inner lip outline, teeth along the upper inner lip.
        frame_open, q = ds.render(identity, Pose(mouth=1.0), return_landmarks=True)
        assert torch.allclose(_pixel(frame_open, q[60:68].mean(0)),
                              torch.tensor([0.22, 0.05, 0.07]), atol=0.03)
        assert _pixel(frame_open, q[62] + torch.tensor([0.0, 2.0])).min() > 0.8
        # Face outline: skin inside the jaw line, background just outside it.
        inward = (p[30] - p[3]) / (p[30] - p[3]).norm()
        inside, outside = p[3] + 3 * inward, p[3] - 3 * inward
        row = int(round(float(outside[1])))
        background = torch.tensor(a["background_top"] + (a["background_bottom"]
                                                         - a["background_top"]) * row / 255)
        assert torch.allclose(_pixel(frame, outside), background, atol=0.03)
        assert (_pixel(frame, inside) - background).abs().max() > 0.05


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "val"}, "split"),
    ({"num_identities": 0}, "num_identities"),
    ({"frames_per_video": 1}, "frames_per_video"),
    ({"size": 16}, "size"),
    ({"seed": -1}, "seed"),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SynthHeads(**kwargs)


def test_bad_indices_and_poses_raise_clear_errors(heads):
    with pytest.raises(IndexError):
        heads[len(heads)]
    with pytest.raises(ValueError, match="frame indices"):
        heads.get_frames(0, [12])
    with pytest.raises(ValueError, match="identity"):
        heads.render(8, Pose())
    with pytest.raises(ValueError, match="yaw"):
        heads.render(0, Pose(yaw=np.array([0.0, np.nan])))
    with pytest.raises(ValueError, match="length"):
        heads.render(0, Pose(yaw=np.zeros(3), pitch=np.zeros(2)))
    with pytest.raises(TypeError):
        heads.render(0, {"yaw": 0})


@pytest.mark.parametrize("detail, min_pixels", [("streak", 20), ("earring", 6), ("mark", 6)])
def test_one_sided_details_show_only_when_their_side_turns_to_the_camera(detail, min_pixels):
    ds = SynthHeads("test", num_identities=80, size=SIZE)
    only = [i for i in range(80) if ds.attributes(i)[detail] == 1
            and sum(ds.attributes(i)[d] for d in ONE_SIDED_DETAILS) == 1
            and HAIR_STYLES[int(ds.attributes(i)["hair_style"])] != "bald"]
    assert 2 <= len(only), "some people have just this one detail"
    for identity in only[:3]:
        side = float(ds.attributes(identity)[f"{detail}_side"])
        pose = Pose(yaw=np.float32([-28 * side, 28 * side]))  # towards the camera, then away
        mask = ds.detail_mask(identity, pose)
        assert mask.shape == (2, SIZE, SIZE)
        assert mask[0].sum() >= min_pixels, "visible when its side faces the camera"
        assert not mask[1].any(), "hidden when it faces away"
        plain = ds.render(identity, pose, without_details=True)
        assert torch.equal(plain[1], ds.render(identity, pose)[1])  # nothing to remove
        assert not torch.equal(plain[0], ds.render(identity, pose)[0])
    without = [i for i in range(80) if all(ds.attributes(i)[d] == 0
                                           for d in ONE_SIDED_DETAILS)]
    assert without and not ds.detail_mask(without[0], Pose(yaw=np.float32([-25, 25]))).any()
    shares = [np.mean([ds.attributes(i)[d] for i in range(80)]) for d in ONE_SIDED_DETAILS]
    assert all(0.2 < share < 0.95 for share in shares)


def test_distant_poses_put_targets_far_from_every_source_within_the_training_ranges():
    from fewshot_th.data import distant_poses

    sources, targets = distant_poses(3, 32, 8)
    again = distant_poses(3, 32, 8)
    assert np.array_equal(sources.yaw, again[0].yaw) and np.array_equal(targets.yaw,
                                                                         again[1].yaw)
    assert len(sources) == 32 and len(targets) == 8
    assert sources.yaw.min() < -15 and sources.yaw.max() > 15, "the sources show both sides"
    assert np.all(sources.mouth == 0) and targets.mouth.min() >= 0.6
    for name in ("pitch", "roll", "tx", "ty", "scale", "brow"):
        s, t = np.asarray(getattr(sources, name)), np.asarray(getattr(targets, name))
        assert t.min() > s.max() or t.max() < s.min(), name  # disjoint ranges
    for pose in (sources, targets):  # inside what the training videos do
        assert np.abs(pose.yaw).max() <= 30 and np.abs(pose.pitch).max() <= 15
        assert np.abs(pose.roll).max() <= 10 and np.abs(pose.tx).max() <= 0.05
    ds = SynthHeads("test", num_identities=1, num_videos_per_identity=1, frames_per_video=64,
                    size=SIZE)
    _, src = ds.render(0, sources, return_landmarks=True)
    _, tgt = ds.render(0, targets, return_landmarks=True)
    _, video = ds.get_frames(0)

    def nearest_distance(targets_points, sources_points):
        nearest = torch.cdist(targets_points.flatten(1), sources_points.flatten(1)).argmin(1)
        return (targets_points - sources_points[nearest]).norm(dim=-1).mean()

    assert nearest_distance(tgt, src) > 1.5 * nearest_distance(video[32:], video[:32])
    with pytest.raises(ValueError, match="num_sources"):
        distant_poses(0, 0, 8)


@pytest.fixture(scope="module")
def speaking():
    """Test people and a speaking, turning clip of each (several poses at once)."""
    ds = SynthHeads("test", num_identities=40, size=SIZE)
    pose = Pose(yaw=np.float32([-25, 0, 25]), pitch=np.float32([5, -5, 0]), mouth=0.8)
    return ds, pose


def test_a_counterfactual_that_changes_nothing_is_the_same_frame(speaking):
    ds, pose = speaking
    for identity in range(4):
        own = ds.attributes(identity)
        assert torch.equal(ds.render(identity, pose, attributes=own), ds.render(identity, pose))
        assert torch.equal(ds.render(identity, pose, attributes={"hair": own["hair"]}),
                           ds.render(identity, pose))


def _changed(a, b):
    return (a - b).abs().amax(dim=-3) > 1e-6


def test_closing_the_mouth_moves_only_the_lips_and_jaw_and_changes_only_their_pixels(speaking):
    ds, pose = speaking
    frames, points = ds.render(0, pose, return_landmarks=True)
    closed = ds.counterfactual(0, pose, "mouth open")
    _, closed_points = ds.render(0, Pose(**{**pose.as_arrays(), "mouth": 0.0}), True)
    assert torch.equal(closed, ds.render(0, Pose(**{**pose.as_arrays(), "mouth": 0.0})))
    moved = (points - closed_points).norm(dim=-1) > 1e-4
    assert moved[:, 48:].any() and moved[:, 8].all(), "the lips and the chin move"
    assert not moved[:, 17:48].any(), "brows, nose and eyes stay"
    changed = _changed(frames, closed)
    for t in range(len(pose)):
        ys, xs = torch.nonzero(changed[t], as_tuple=True)
        lips = torch.cat([points[t, moved[t]], closed_points[t, moved[t]]])  # what moves
        assert len(ys) >= 10, "an open mouth shows"
        # within a few pixels of the points that move (the head's outline runs on from them)
        assert xs.min() >= lips[:, 0].min() - 5 and xs.max() <= lips[:, 0].max() + 5
        assert ys.min() >= lips[:, 1].min() - 5 and ys.max() <= lips[:, 1].max() + 5
        assert ys.min() >= points[t, 36:48, 1].max() - 1, "nothing above the eyes changes"
    # With the mouth already closed there is nothing to change.
    shut = Pose(yaw=np.float32([0.0]), mouth=0.0)
    assert torch.equal(ds.counterfactual(0, shut, "mouth open"), ds.render(0, shut))


def test_each_counterfactual_changes_only_its_own_pixels(speaking):
    ds, pose = speaking
    glasses = next(i for i in range(ds.num_identities) if ds.attributes(i)["glasses"])
    for identity in (0, 1, glasses):
        frames, points = ds.render(identity, pose, return_landmarks=True)
        person = ds.person_mask(identity, pose)
        inside = -torch.nn.functional.max_pool2d(-person[:, None].float(), 3, 1, 1)[:, 0] > 0
        near = torch.nn.functional.max_pool2d(person[:, None].float(), 3, 1, 1)[:, 0] > 0
        change = {name: (frames - ds.counterfactual(identity, pose, name)).abs().amax(dim=-3)
                  for name in ("background", "clothes", "hair", "skin")}
        assert all((c > 1e-6).any() for c in change.values())
        for behind in ("background", "clothes"):  # the person stays, but for slivers by the ears
            assert (change[behind][inside] > 1e-6).float().mean() < 0.01
            assert change[behind][inside].max() < 0.5 * change[behind][~person].max()
        for part in ("hair", "skin"):  # part of the person, but for their anti-aliased edges
            assert (change[part][~near] > 1e-6).float().mean() < 0.01
            assert change[part][~near].max() < 0.5 * change[part][person].max()
    frames, points = ds.render(glasses, pose, return_landmarks=True)
    changed = _changed(frames, ds.counterfactual(glasses, pose, "glasses"))
    eyes = points[:, 36:48]
    for t in range(len(pose)):
        ys, xs = torch.nonzero(changed[t], as_tuple=True)
        assert len(ys) > 20
        assert ys.min() >= eyes[t, :, 1].min() - 8 and ys.max() <= eyes[t, :, 1].max() + 8
    assert ds.counterfactual(next(i for i in range(40) if not ds.attributes(i)["glasses"]),
                             pose, "glasses") is None, "nothing to take off"


def test_removing_one_detail_removes_that_detail_and_no_other(speaking):
    ds, pose = speaking
    everyone = [i for i in range(ds.num_identities)
                if all(ds.attributes(i)[d] for d in ONE_SIDED_DETAILS)
                and HAIR_STYLES[int(ds.attributes(i)["hair_style"])] != "bald"]
    assert everyone, "some test people have all three details"
    identity = everyone[0]
    frames = ds.render(identity, pose)
    plain = ds.render(identity, pose, without_details=True)
    union = torch.zeros_like(_changed(frames, plain))
    for detail in ONE_SIDED_DETAILS:
        changed = _changed(frames, ds.counterfactual(identity, pose, detail))
        assert changed.any()
        assert not (changed & ~_changed(frames, plain)).any(), "only the details' pixels"
        union |= changed
    assert torch.equal(union, _changed(frames, plain))
    without = next(i for i in range(ds.num_identities) if not ds.attributes(i)["earring"])
    assert ds.counterfactual(without, pose, "earring") is None


def test_person_mask_covers_the_face_and_not_the_corners(speaking):
    ds, pose = speaking
    frames, points = ds.render(0, pose, return_landmarks=True)
    mask = ds.person_mask(0, pose)
    assert mask.shape == (3, SIZE, SIZE) and mask.dtype == torch.bool
    assert not mask[:, :3, :3].any() and not mask[:, -1, :].any(), "background and clothes"
    nose = points[:, 30].round().long()
    assert all(mask[t, nose[t, 1], nose[t, 0]] for t in range(3))
    assert 0.1 < mask.float().mean() < 0.5
    assert ds.person_mask(0, pose[0]).shape == (SIZE, SIZE)


def test_counterfactuals_refuse_unknown_attributes_and_bad_values(speaking):
    ds, pose = speaking
    with pytest.raises(ValueError, match="attribute must be one of"):
        ds.counterfactual(0, pose, "nose")
    with pytest.raises(ValueError, match="no attribute 'nose'"):
        ds.render(0, pose, attributes={"nose": 1.0})
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        ds.render(0, pose, attributes={"hair": 0.5})
    with pytest.raises(ValueError, match="finite"):
        ds.render(0, pose, attributes={"glasses": float("nan")})
    one = SynthHeads("test", num_identities=1, size=SIZE)
    with pytest.raises(ValueError, match="another person"):
        one.counterfactual(0, pose, "hair")
    assert ds.counterfactual(0, pose, "hair", other=5) is not None
    with pytest.raises(ValueError, match="identity must be"):
        ds.counterfactual(0, pose, "hair", other=40)

"""Puppeteering: exact ground truth, real-image crops, video I/O, CLI (landmark adaptation:
test_adaptation.py)."""

import numpy as np
import pytest
import torch

from fewshot_th.config import tiny
from fewshot_th.data import Pose, SynthHeads
from fewshot_th.finetune import spread_sources
from fewshot_th.meta import TalkingHeadModel
from fewshot_th.reenact import (
    crop_faces,
    cross_episode,
    driver_from,
    face_box,
    landmark_error,
    read_frames,
    reenactment_grid,
    sources_from,
    write_video,
)


@pytest.fixture(scope="module")
def heads():
    return SynthHeads("test", num_identities=12, num_videos_per_identity=2, frames_per_video=40,
                      size=64, seed=0)


def test_cross_episode_renders_the_person_in_the_drivers_exact_pose(heads):
    episode = cross_episode(heads, 2, 5, k=4, frames=[30, 35])
    assert episode["sources"].shape == (4, 3, 64, 64)
    assert torch.equal(episode["sources"], heads.get_frames(4, [0, 10, 21, 31])[0])
    truth, points = heads.render(2, heads.pose(10, [30, 35]), return_landmarks=True)
    assert torch.equal(episode["truth"], truth) and torch.equal(episode["truth_points"], points)
    assert torch.equal(episode["driver_frames"], heads.get_frames(10, [30, 35])[0])
    own = cross_episode(heads, 2, 2, k=4, frames=[30], driver_video=1)
    assert torch.allclose(own["truth"], own["driver_frames"], atol=1e-6)  # A is A
    for bad, message in (({"source": 12}, "source"), ({"driver": -1}, "driver"),
                         ({"k": 0}, "k must"), ({"driver_video": 2}, "driver_video")):
        arguments = {"source": 0, "driver": 1, **bad}
        with pytest.raises(ValueError, match=message):
            cross_episode(heads, **arguments)


def test_crop_puts_a_face_where_synthheads_puts_it(heads):
    frame, points = heads.render(0, Pose(yaw=np.zeros(1)), return_landmarks=True)  # frontal
    image = (frame[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    big = np.kron(image, np.ones((4, 4, 1), dtype=np.uint8))  # the same face at 256 px
    crops, moved = crop_faces([big], points.numpy() * 4, 64)
    assert crops.shape == (1, 3, 64, 64)
    assert landmark_error(moved, points).mean() < 1.0  # a frontal face stays where it was
    assert (crops - frame)[..., 12:52, 12:52].abs().mean() < 0.05  # the face, not the corners
    left, top, side = face_box(points[0].numpy() * 4)
    assert 150 < side < 400


def test_video_round_trip_and_unreadable_files(tmp_path):
    frames = torch.rand(6, 3, 33, 32)
    path = write_video(tmp_path / "v.mp4", frames, fps=6)
    back = read_frames(path)
    assert len(back) == 6 and back[0].shape == (34, 32, 3)  # padded to even sides
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(ValueError, match="cannot read"):
        read_frames(tmp_path / "broken.mp4")
    with pytest.raises(FileNotFoundError):
        read_frames(tmp_path / "missing.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        read_frames(tmp_path / "empty")
    with pytest.raises(ValueError, match="T >= 1"):
        write_video(tmp_path / "x.mp4", torch.rand(0, 3, 8, 8))


def test_reenactment_grid_holds_every_mode_and_kind_of_landmarks(heads):
    torch.manual_seed(0)
    model = TalkingHeadModel.build(tiny(), num_videos=4).eval()
    small = SynthHeads("test", num_identities=3, num_videos_per_identity=2, frames_per_video=36,
                       size=tiny().image_size, seed=0)
    grid = reenactment_grid(model, small, [(0, 1)], k=2, modes=("ff", "ft"), frames=[33, 35],
                            ft_steps=1, progress=False)
    entry = grid[(0, 1)]
    for key in (("ff", False), ("ff", True), ("ft", False), ("ft", True)):
        assert entry[key].shape == (2, 3, 32, 32)
    assert not torch.equal(entry[("ff", False)], entry[("ff", True)])


def test_reenact_command_writes_a_video_and_refuses_bad_input(tmp_path, capsys):
    from fewshot_th.cli import main

    out = tmp_path / "a.mp4"
    code = main(["reenact", "--source-person", "1", "--driver-person", "4", "--adapt",
                 "--side-by-side", "--frames", "6", "--k", "2", "--out", str(out)])
    assert code == 0 and out.exists()
    frames = read_frames(out)
    assert len(frames) == 6 and frames[0].shape == (64, 192, 3)
    assert main(["reenact", "--source-person", "1", "--driver-person", "4", "--adapt",
                 "procrustes", "--frames", "3", "--k", "1", "--out", str(out)]) == 0
    assert "procrustes-adapted landmarks" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["reenact", "--source-person", "1", "--driver-person", "4", "--adapt", "3d",
              "--out", str(out)])
    with pytest.raises(SystemExit):
        main(["reenact", "--source-person", "1", "--driver-person", "4", "--out", "a.avi"])
    blank = tmp_path / "blank.mp4"
    write_video(blank, torch.full((4, 3, 64, 64), 0.5))
    assert main(["reenact", "--source-person", "1", "--driver-video", str(blank),
                 "--out", str(tmp_path / "b.mp4")]) == 2
    assert "no face found" in capsys.readouterr().err
    assert main(["reenact", "--source-images", str(tmp_path / "nothing"), "--driver-person",
                 "2", "--out", str(tmp_path / "c.mp4")]) == 2


def test_crop_faces_refuses_landmarks_that_do_not_match_the_images(heads):
    frame, points = heads.get_frames(0, [0, 1])
    images = list((frame.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="2 images and landmarks of 1"):
        crop_faces(images, points[:1], 64)
    with pytest.raises(ValueError, match="size"):
        crop_faces(images, points, 0)


def test_sources_and_driver_come_from_a_synthheads_person_or_a_file(tmp_path):
    heads = SynthHeads("test", num_identities=3, num_videos_per_identity=2,
                       frames_per_video=64, size=32, seed=0)
    frames, points = sources_from(32, 4, person=2)
    assert torch.equal(frames, spread_sources(heads, 2, 4)[0]) and points.shape == (4, 68, 2)
    # the driver's first video; the person's second when it drives itself
    for source_person, video in ((0, 4), (2, 5)):
        driver, _ = driver_from(32, 6, person=2, source_person=source_person)
        assert torch.equal(driver, heads.get_frames(video, np.arange(6))[0])
    with pytest.raises(ValueError, match="exactly one of person, images and video"):
        sources_from(32, 4, person=1, video=tmp_path / "a.mp4")
    with pytest.raises(ValueError, match="exactly one of person and video"):
        driver_from(32, 6)


class _Drawn:
    """A stand-in person model that draws given frames whatever the landmarks."""

    def __init__(self, frames):
        self.frames = frames

    def render(self, track):
        assert len(track) == len(self.frames)
        return self.frames


def test_reenactment_scores_count_what_the_frames_show(monkeypatch):
    """With frames that are exactly A in B's poses every attribute that shows is recalled and
    SSIM is 1; with A's frames in B's hair colour the hair is never recalled; the counts of
    frames that show each attribute are those of the counterfactual renders."""
    from fewshot_th import reenact
    from fewshot_th.data.synthetic import COUNTERFACTUALS
    from fewshot_th.metrics import attribute_recall

    heads = SynthHeads("test", num_identities=6, num_videos_per_identity=2, frames_per_video=40,
                       size=64, seed=0)
    pairs = [(0, 3), (2, 5)]
    for drawn in ("exact", "hair of B"):
        def maker(model, k, ft_steps, drawn=drawn):
            def made(source, mode, episode):
                if drawn == "exact":
                    return _Drawn(episode["truth"])
                return _Drawn(heads.counterfactual(source, episode["pose"], "hair",
                                                   other=episode["driver"]))
            return made

        monkeypatch.setattr(reenact, "_personal_models", maker)
        scores = reenact.reenactment_scores(None, heads, pairs, k=4, progress=False,
                                            adaptations=("procrustes",))["ff"]
        for kind in ("raw", "procrustes", "true"):
            row = scores[kind]
            assert set(row["recall"]) == set(COUNTERFACTUALS)
            if drawn == "exact":
                assert np.allclose(row["ssim"], 1.0) and np.allclose(row["l1"], 0.0)
                for name in COUNTERFACTUALS:
                    shown = row["recall_frames"][name]
                    assert reenact.pooled_recall(row, name) == (1.0 if shown.sum() else None)
            else:
                assert reenact.pooled_recall(row, "hair") == 0.0
                assert reenact.pooled_recall(row, "mouth open") == 1.0
    episode = cross_episode(heads, 2, 5, k=4)
    changed = reenact.counterfactuals_in_drivers_pose(heads, episode)
    for name, frames in changed.items():
        shown = (~attribute_recall(episode["truth"], episode["truth"], frames).isnan()).sum()
        assert scores["raw"]["recall_frames"][name][1] == shown
    assert set(COUNTERFACTUALS) - set(changed) == {
        name for name in COUNTERFACTUALS if heads.counterfactual(2, episode["pose"], name) is None}

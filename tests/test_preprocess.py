"""fewshot-th preprocess: videos the tests make, with known landmarks where SynthHeads draws
them, and every kind of bad video."""

import json
import re

import numpy as np
import pytest
import torch

from fewshot_th import preprocess
from fewshot_th.data.example_videos import moving_astronaut, write_example_videos
from fewshot_th.preprocess import preprocess_videos
from fewshot_th.reenact import write_video

FRAMES = 12


def _prepare(videos, out, **settings):
    """preprocess_videos with dlib (the same detector on every machine), FRAMES frames."""
    return preprocess_videos(videos, out, frames=FRAMES, detector="dlib", progress=False,
                             **settings)


def _video(path, images):
    """Write ``(T, H, W, 3)`` uint8 images as an mp4."""
    frames = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).float() / 255
    return write_video(path, frames)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    made = write_example_videos(folder, frames=FRAMES)
    assert sorted(made["files"]) == sorted(p.stem for p in folder.glob("*.mp4"))
    (folder / "notes.txt").write_text("not a video: left alone")
    return folder, made["synth_landmarks"]


def test_good_videos_are_kept_and_bad_ones_skipped_with_their_reason(videos, tmp_path):
    folder, truth = videos
    manifest = _prepare(folder, tmp_path, size=64)
    kept = {entry["name"]: entry for entry in manifest["videos"]}
    assert set(kept) == {"synth", "astronaut"}
    reasons = {entry["name"]: entry["skipped"] for entry in manifest["skipped"]}
    assert reasons.keys() == {"corrupt", "no_face", "one_frame", "tiny", "two_people"}
    assert reasons["corrupt"].startswith("unreadable")
    assert reasons["no_face"] == f"no face in any of {FRAMES} frames"
    assert reasons["one_frame"] == "only 1 of 1 frames show a face, 8 needed"
    assert reasons["tiny"].startswith("too small: 26x26 pixels")  # H.264 made the sides even
    assert reasons["two_people"].startswith("several faces")
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    # the astronaut: every frame, 64 px crops with landmarks inside them
    frames = np.load(tmp_path / "videos" / "astronaut" / "frames.npy", mmap_mode="r")
    points = np.load(tmp_path / "videos" / "astronaut" / "landmarks.npy")
    assert frames.shape == (FRAMES, 64, 64, 3) and frames.dtype == np.uint8
    assert points.shape == (FRAMES, 68, 2) and np.isfinite(points).all()
    assert (points > 0).all() and (points < 64).all()
    assert kept["astronaut"]["frame_indices"] == list(range(FRAMES))
    # one box for the whole video: the head moves in the crop as it moved in the video
    assert np.linalg.norm(points[-1].mean(0) - points[0].mean(0)) > 3


def test_the_crops_landmarks_are_where_synthheads_drew_the_face(videos, tmp_path):
    """Detector and crop measured against the exact landmarks of the rendered video."""
    folder, truth = videos
    _prepare(folder / "synth.mp4", tmp_path, size=64)
    info = json.loads((tmp_path / "videos" / "synth" / "info.json").read_text())
    detected = np.load(tmp_path / "videos" / "synth" / "landmarks.npy")
    left, top, side = info["box"]
    exact = (truth.numpy()[info["frame_indices"]] - [left, top]) * 64 / side
    error = np.linalg.norm(detected - exact, axis=-1).mean()
    eyes = np.linalg.norm(exact[:, 36:42].mean(1) - exact[:, 42:48].mean(1), axis=-1).mean()
    assert info["frames"] >= 8
    assert error < 0.15 * eyes, f"landmarks {error:.2f} px off, eyes {eyes:.1f} px apart"
    frames = np.load(tmp_path / "videos" / "synth" / "frames.npy")
    assert frames.std() > 20, "the crop shows the face, not a flat border"


def test_a_rerun_skips_what_is_done_and_redoes_what_a_kill_cut_short(videos, tmp_path,
                                                                   monkeypatch):
    folder, _ = videos
    first = _prepare(folder, tmp_path, size=64)
    # killed while writing the astronaut: its folder is gone, a temporary one is left
    import shutil

    shutil.rmtree(tmp_path / "videos" / "astronaut")
    (tmp_path / "videos" / ".astronaut.tmp").mkdir()
    (tmp_path / "videos" / ".astronaut.tmp" / "frames.npy").write_bytes(b"cut short")
    done = []
    real = preprocess._one_video
    monkeypatch.setattr(preprocess, "_one_video",
                        lambda path, *rest: done.append(path.name) or real(path, *rest))
    again = _prepare(folder, tmp_path, size=64)
    assert done == ["astronaut.mp4"]
    assert again == first and not (tmp_path / "videos" / ".astronaut.tmp").exists()
    with pytest.raises(ValueError, match="holds 64 px crops"):
        _prepare(folder, tmp_path, size=128)


def test_worker_processes_give_the_same_dataset(videos, tmp_path):
    folder, _ = videos
    files = [folder / "astronaut.mp4", folder / "corrupt.mp4", folder / "synth.mp4"]
    one = _prepare(files, tmp_path / "one", size=32)
    two = _prepare(files, tmp_path / "two", size=32, workers=2)
    assert one == two
    for name in ("astronaut", "synth"):
        for array in ("frames.npy", "landmarks.npy"):
            assert np.array_equal(np.load(tmp_path / "one" / "videos" / name / array),
                                  np.load(tmp_path / "two" / "videos" / name / array))


def test_the_command_reports_and_refuses_bad_arguments(videos, tmp_path, cli):
    folder, _ = videos
    result = cli(["preprocess", str(folder / "astronaut.mp4"), str(tmp_path / "out"),
                  "--size", "32", "--frames", str(FRAMES)])
    assert result.returncode == 0, result.stderr
    assert "1 videos kept, 0 skipped" in result.stdout
    for flags, message in ((["--size", "4"], "size must be an integer of at least 8"),
                           (["--min-frames", "40"], "cannot exceed frames")):
        bad = cli(["preprocess", str(folder), str(tmp_path / "bad")] + flags)
        assert bad.returncode == 2 and message in bad.stderr and "Traceback" not in bad.stderr
    missing = cli(["preprocess", str(tmp_path / "nowhere"), str(tmp_path / "bad")])
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    empty = cli(["preprocess", str(tmp_path / "out"), str(tmp_path / "bad")])
    assert empty.returncode == 2 and "no video files" in empty.stderr


@pytest.fixture(scope="module")
def folder(videos, tmp_path_factory):
    """A preprocessed folder of 32 px crops: the astronaut and the SynthHeads person, and
    six more short videos of the astronaut moving in other ways (take5 is the one that
    VideoFolder holds out, by its name)."""
    source, _ = videos
    more = tmp_path_factory.mktemp("more")
    for n in range(6):
        _video(more / f"take{n}.mp4", [image[:, n * 8:n * 8 + 160] for image in
                                       moving_astronaut(10, side=168, down=3, right=1, start=0)])
    files = [source / "astronaut.mp4", source / "synth.mp4"] + sorted(more.glob("*.mp4"))
    out = tmp_path_factory.mktemp("folder")
    _prepare(files, out, size=32)
    return out


def test_a_video_folder_reads_only_the_frames_an_episode_needs(folder):
    from fewshot_th.data import EpisodeDataset, VideoFolder

    videos = VideoFolder(folder)
    assert len(videos) == 8 and videos.size == 32
    assert [videos.num_frames(i) for i in range(8)] == [FRAMES, FRAMES] + [10] * 6
    frames, points = videos.get_frames(2, [9, 0])
    stored = np.load(folder / "videos" / videos.videos[2]["name"] / "frames.npy")
    assert torch.equal(frames[1], torch.from_numpy(stored[0]).permute(2, 0, 1) / 255)
    assert frames.shape == (2, 3, 32, 32) and points.shape == (2, 68, 2)
    episode = EpisodeDataset(videos, k=9)[3]  # K + 1 = 10: every frame of a 10-frame video
    assert sorted(episode["frame_indices"].tolist()) == list(range(10))
    # the held-out part is fixed by the names: train and test split the videos between them
    train, test = VideoFolder(folder, "train", 0.3), VideoFolder(folder, "test", 0.3)
    names = sorted(v["name"] for v in train.videos + test.videos)
    assert names == sorted(v["name"] for v in videos.videos) and len(test) >= 1
    assert len(VideoFolder(folder, min_frames=11)) == 2
    with pytest.raises(FileNotFoundError, match="fewshot-th preprocess"):
        VideoFolder(folder / "videos")
    with pytest.raises(IndexError):
        videos.get_frames(8)
    assert [v["name"] for v in VideoFolder(folder, "test").videos] == ["take5"]


def test_train_takes_a_video_folder(folder, tmp_path, cli):
    command = ["train", "--profile", "tiny", "--data", str(folder), "--batch-size", "2",
               "--sample-every", "0", "--checkpoint-every", "0", "--set", "k=4"]
    result = cli(command + ["--out", str(tmp_path / "run"), "--steps", "2"])
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "run" / "step-00000002.json").read_text())
    assert meta["data"]["dataset"] == "VideoFolder" and meta["data"]["split"] == "train"
    assert meta["data"]["videos"] == 7  # take5 is held out
    # evaluate scores the held-out video, with the K gain, and no SynthHeads-only tables
    scored = cli(["evaluate", "--checkpoint", tmp_path / "run" / "step-00000002.json",
                  "--data", folder, "--k", "1", "4", "--modes", "ff", "--no-fid",
                  "--out", tmp_path / "scores"])
    assert scored.returncode == 0, scored.stderr
    table = (tmp_path / "scores" / "table.md").read_text()
    assert "1 held-out videos of" in table
    assert re.search(r"\| FF \| 1 -> 4 \| [+-]\d\.\d{4} ± - \| [01] of 1 \|", table)
    assert "| held-out videos, same-video targets | FF |" in table and "SynthHeads," not in table
    assert "Attribute recall" not in table
    too_many = cli(["evaluate", "--checkpoint", tmp_path / "run" / "step-00000002.json",
                    "--data", folder, "--k", "8", "--no-fid", "--out", tmp_path / "x"])
    assert too_many.returncode == 2 and "no test videos with at least 16 frames" \
        in too_many.stderr
    wrong = cli(["train", "--profile", "cpu", "--data", str(folder), "--steps", "1",
                 "--out", str(tmp_path / "wrong")])
    assert wrong.returncode == 2 and "holds 32 px crops and the cpu profile draws 64 px" \
        in wrong.stderr
    scored_on_synthheads = cli(command + ["--out", str(tmp_path / "e"), "--steps", "1",
                                          "--eval-every", "1"])
    assert scored_on_synthheads.returncode == 2 and "--eval-every scores held-out SynthHeads" \
        in scored_on_synthheads.stderr
    missing = cli(command + ["--out", str(tmp_path / "missing"), "--steps", "1", "--data",
                             str(tmp_path)])
    assert missing.returncode == 2 and "manifest.json does not exist" in missing.stderr


def test_folder_scores_are_the_frames_scores(folder):
    from fewshot_th.config import tiny
    from fewshot_th.data import VideoFolder
    from fewshot_th.folder_evaluation import evaluate_video_folder
    from fewshot_th.meta import TalkingHeadModel
    from fewshot_th.metrics import ssim

    torch.manual_seed(0)
    model = TalkingHeadModel.build(tiny(), num_videos=2)
    videos = VideoFolder(folder)
    results = evaluate_video_folder(model, videos, k_values=(1, 4), modes=("ff", "ft"),
                                    ft_steps=1)["same-video"]
    assert list(results[4]) == ["FF", "FT", "mean of sources", "nearest-landmark source"]
    assert all(len(m["ssim_by_identity"]) == 8 for m in results[4].values())
    # copying the one source (frame 0) onto the targets of the second half, recomputed here
    frames, _ = videos.get_frames(2, [0, 5, 6, 7, 8, 9])
    copied = results[1]["mean of sources"]["ssim_by_identity"][2]
    assert copied == pytest.approx(float(ssim(frames[:1].expand(5, -1, -1, -1),
                                              frames[1:]).mean()), abs=1e-6)
    # dlib finds no face in 32 px crops: CSIM is left out, not made up
    assert results[1]["FF"]["csim"] is None and results[1]["FF"]["csim_frames"] == 0
    videos.size = 64  # as a folder preprocessed for another profile
    with pytest.raises(ValueError, match="the videos hold 64 px frames and the model draws 32"):
        evaluate_video_folder(model, videos)


def test_auto_picks_face_alignment_when_its_weights_are_cached_and_dlib_otherwise(
        tmp_path, monkeypatch):
    from fewshot_th.landmarks import FACE_ALIGNMENT_FILES
    from fewshot_th.preprocess import choose_detector

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    detector, note = choose_detector("auto")
    assert detector == "dlib" and "dlib's detector is used" in note
    (tmp_path / "checkpoints").mkdir()
    for name in FACE_ALIGNMENT_FILES:
        (tmp_path / "checkpoints" / name).write_bytes(b"weights")
    assert choose_detector("auto") == ("face_alignment", "")
    assert choose_detector("dlib") == ("dlib", "")


def test_voxceleb_layout_names_videos_by_their_path_and_holds_out_whole_people(tmp_path):
    from fewshot_th.data import VideoFolder

    paths = [tmp_path / "id00012" / "_raLTH_FA6w" / "00001.mp4",
             tmp_path / "id00012" / "_raLTH_FA6w" / "00002.mp4",
             tmp_path / "id00012" / "2DLq_Kkc1r8" / "00001.mp4",
             tmp_path / "id00015" / "0fijmz4vTVU" / "00001.mp4",
             tmp_path / "loose clip.mp4"]
    assert preprocess._names(paths, tmp_path) == [
        ("id00012___raLTH_FA6w__00001", "id00012"), ("id00012___raLTH_FA6w__00002", "id00012"),
        ("id00012__2DLq_Kkc1r8__00001", "id00012"), ("id00015__0fijmz4vTVU__00001", "id00015"),
        ("loose_clip", "loose_clip")]
    assert preprocess._names(paths[:3]) == [("00001", "00001"), ("00002", "00002"),
                                           ("00001-2", "00001-2")]
    # a manifest of 60 people with 3 videos each: every person's videos on one side
    videos = [{"name": f"id{p:05d}__v{v}", "person": f"id{p:05d}", "frames": 12}
              for p in range(60) for v in range(3)]
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"format": preprocess.FORMAT, "size": 64, "videos": videos, "skipped": []}))
    test = {v["person"] for v in VideoFolder(tmp_path, "test", test_share=0.2).videos}
    train = {v["person"] for v in VideoFolder(tmp_path, "train", test_share=0.2).videos}
    assert test and train and not test & train and len(test | train) == 60
    assert len(VideoFolder(tmp_path, "test", test_share=0.2)) == 3 * len(test)


def test_the_folder_viewer_follows_each_videos_length(folder):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fewshot_th.data import VideoFolder
    from fewshot_th.plot import show_video_folder_frame
    from fewshot_th.widgets import video_folder_viewer

    videos = VideoFolder(folder)
    viewer = video_folder_viewer(videos)
    menu, slider = viewer.children[0].children
    assert [name for name, _ in menu.options] == [v["name"] for v in videos.videos]
    assert slider.max == FRAMES - 1
    menu.value = 2  # a 10-frame take
    assert slider.max == 9
    fig = show_video_folder_frame(videos, 2, 9)
    assert f"frame {videos.videos[2]['frame_indices'][9]} of the video" in fig._suptitle.get_text()
    plt.close("all")
    with pytest.raises(ValueError, match=r"frame must be in \[0, 10\)"):
        show_video_folder_frame(videos, 2, 10)


def test_fan_weights_from_a_folder_go_where_face_alignment_looks(tmp_path, monkeypatch, cli):
    from fewshot_th.landmarks import FACE_ALIGNMENT_FILES, install_face_alignment_weights
    from fewshot_th.preprocess import choose_detector

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    weights = tmp_path / "downloaded"
    weights.mkdir()
    first, second = FACE_ALIGNMENT_FILES
    (weights / first).write_bytes(b"fan")
    with pytest.raises(FileNotFoundError, match=second):
        install_face_alignment_weights(weights)
    assert choose_detector("auto")[0] == "dlib"
    (weights / second).write_bytes(b"s3fd")
    cache = install_face_alignment_weights(weights)
    assert (cache / first).read_bytes() == b"fan" and (cache / second).read_bytes() == b"s3fd"
    assert choose_detector("auto") == ("face_alignment", "")
    assert install_face_alignment_weights(weights) == cache  # again: nothing to do
    bad = cli(["preprocess", str(tmp_path), str(tmp_path / "out"), "--fan-weights",
               str(tmp_path / "nowhere")])
    assert bad.returncode == 2 and "lacks face-alignment's" in bad.stderr


def test_face_alignment_without_its_weights_and_a_bad_device_stop_before_any_video(
        videos, tmp_path, monkeypatch):
    folder, _ = videos
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    monkeypatch.setenv("FEWSHOT_TH_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="--fan-weights DIR, or --detector auto"):
        preprocess_videos(folder, tmp_path / "out", detector="face_alignment", progress=False)
    with pytest.raises(ValueError, match="device"):
        preprocess_videos(folder, tmp_path / "out", detector="dlib", device="gpu",
                          progress=False)
    assert not (tmp_path / "out" / "videos").exists()  # nothing started

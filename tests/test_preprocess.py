"""fewshot-th preprocess: videos the tests make, with known landmarks where SynthHeads draws
them, and every kind of bad video."""

import json

import numpy as np
import pytest
import torch
from skimage.data import astronaut
from skimage.transform import resize

from fewshot_th import preprocess
from fewshot_th.data import SynthHeads
from fewshot_th.preprocess import preprocess_videos
from fewshot_th.reenact import write_video

FRAMES = 12


def _video(path, images):
    """Write ``(T, H, W, 3)`` uint8 images as an mp4."""
    frames = torch.from_numpy(np.asarray(images)).permute(0, 3, 1, 2).float() / 255
    return write_video(path, frames)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    heads = SynthHeads("test", num_identities=2, num_videos_per_identity=1,
                       frames_per_video=FRAMES, size=128, seed=0)
    frames, points = heads.get_frames(1, np.arange(FRAMES))
    _video(folder / "synth.mp4", (frames.permute(0, 2, 3, 1) * 255).round().byte().numpy())
    face = astronaut()[:320, 60:380]  # the head and shoulders, 320 x 320
    moving = [resize(face[max(0, 4 * t - 20):, 2 * t:][:280, :280], (200, 200),
                     preserve_range=True).astype(np.uint8) for t in range(FRAMES)]
    _video(folder / "astronaut.mp4", moving)
    _video(folder / "one_frame.mp4", moving[:1])
    _video(folder / "no_face.mp4", np.full((FRAMES, 128, 128, 3), 120, np.uint8))
    _video(folder / "tiny.mp4", [m[::8, ::8] for m in moving])
    _video(folder / "two_people.mp4", [np.concatenate([m, m[:, ::-1]], axis=1) for m in moving])
    (folder / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    (folder / "notes.txt").write_text("not a video: left alone")
    return folder, points


def test_good_videos_are_kept_and_bad_ones_skipped_with_their_reason(videos, tmp_path):
    folder, truth = videos
    manifest = preprocess_videos(folder, tmp_path, size=64, frames=FRAMES, progress=False)
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
    preprocess_videos(folder / "synth.mp4", tmp_path, size=64, frames=FRAMES, progress=False)
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
    first = preprocess_videos(folder, tmp_path, size=64, frames=FRAMES, progress=False)
    # killed while writing the astronaut: its folder is gone, a temporary one is left
    import shutil

    shutil.rmtree(tmp_path / "videos" / "astronaut")
    (tmp_path / "videos" / ".astronaut.tmp").mkdir()
    (tmp_path / "videos" / ".astronaut.tmp" / "frames.npy").write_bytes(b"cut short")
    done = []
    real = preprocess._one_video
    monkeypatch.setattr(preprocess, "_one_video",
                        lambda path, *rest: done.append(path.name) or real(path, *rest))
    again = preprocess_videos(folder, tmp_path, size=64, frames=FRAMES, progress=False)
    assert done == ["astronaut.mp4"]
    assert again == first and not (tmp_path / "videos" / ".astronaut.tmp").exists()
    with pytest.raises(ValueError, match="holds 64 px crops"):
        preprocess_videos(folder, tmp_path, size=128, frames=FRAMES, progress=False)


def test_worker_processes_give_the_same_dataset(videos, tmp_path):
    folder, _ = videos
    files = [folder / "astronaut.mp4", folder / "corrupt.mp4", folder / "synth.mp4"]
    one = preprocess_videos(files, tmp_path / "one", size=32, frames=FRAMES, progress=False)
    two = preprocess_videos(files, tmp_path / "two", size=32, frames=FRAMES, workers=2,
                            progress=False)
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

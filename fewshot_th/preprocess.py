"""From a folder of talking-head videos to a training set (the paper trained on VoxCeleb2).

``preprocess_videos(VIDEOS, OUT)`` (and ``fewshot-th preprocess VIDEOS OUT``) decodes each
video (imageio), keeps ``frames`` frames spread evenly over it, finds the 68 landmarks of the
largest face in each (``fewshot_th.landmarks.detect_landmarks``: face-alignment's FAN as in
the paper when its weights are in the torch hub cache, dlib's offline detector otherwise:
``choose_detector``), crops one square per
video around the face track, framed as SynthHeads frames its faces (``reenact.face_box``), and
resizes it to ``size``. The result on disk::

    OUT/manifest.json                 what was kept and what was skipped, and why
    OUT/videos/NAME/frames.npy        uint8 (T, size, size, 3), read with np.load(mmap_mode="r")
    OUT/videos/NAME/landmarks.npy     float32 (T, 68, 2), pixels of the crop
    OUT/videos/NAME/info.json         its source, person, the frames kept (their indices), the box
    OUT/skipped/NAME.json             the source and the reason it was skipped

A video is written to a temporary folder and renamed when complete, so a run that is killed
loses at most the videos it was working on, and a rerun skips every video that is done or
skipped. A bad video never stops the run: unreadable or truncated files, videos without a
face, with too few frames that show one, with several faces, or too small to hold a face are
skipped with their reason in the manifest and in the summary.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from tqdm.auto import tqdm

from .checkpoint import atomic_write
from .checks import is_int
from .config import as_device
from .landmarks import (
    FACE_ALIGNMENT_FILES,
    LandmarkWeightsMissing,
    count_faces_and_landmarks,
    ensure_face_alignment_weights,
    install_face_alignment_weights,
)
from .reenact import as_rgb, crop_faces, face_box

__all__ = ["preprocess_videos", "choose_detector", "VIDEO_SUFFIXES", "FORMAT"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
FORMAT = "fewshot_th video folder, version 1"


def _even_frames(path: Path, count: int) -> tuple[list[np.ndarray], list[int], int]:
    """``count`` frames spread evenly over a video decoded once, holding at most
    ``2 * count`` frames in memory (every other kept frame is dropped when the store is
    full): the frames, their indices in the video, and the number of frames it has."""
    kept, stride, total = [], 1, 0
    for index, frame in enumerate(iio.imiter(path)):
        total = index + 1
        if index % stride:
            continue
        kept.append((index, np.asarray(frame)))
        if len(kept) == 2 * count:
            kept, stride = kept[::2], stride * 2
    if len(kept) > count:
        kept = [kept[i] for i in np.linspace(0, len(kept) - 1, count).round().astype(int)]
    return [frame for _, frame in kept], [index for index, _ in kept], total


def choose_detector(detector: str = "auto") -> tuple[str, str]:
    """The landmark detector to use and a note on why: ``"auto"`` is face-alignment's FAN (as
    in the paper) when its weights are in the torch hub cache, else dlib's offline detector."""
    if detector != "auto":
        return detector, ""
    import torch

    directory = Path(torch.hub.get_dir()) / "checkpoints"
    missing = [name for name in FACE_ALIGNMENT_FILES if not (directory / name).exists()]
    if not missing:
        return "face_alignment", ""
    return "dlib", (f"face-alignment's weights ({', '.join(missing)}) are not in {directory}: "
                    "dlib's detector is used (--detector face_alignment downloads them)")


def _one_video(path: Path, folder: Path, person: str, size: int, frames: int, detector: str,
               min_frames: int, min_face: int, device: str = "cpu") -> dict:
    """Preprocess one video into ``folder``; returns its manifest entry (with ``"skipped"``
    and no folder written when it cannot be used)."""
    entry = {"name": folder.name, "person": person, "source": str(path)}
    try:
        images, indices, total = _even_frames(path, frames)
        images = [as_rgb(image, path) for image in images]
    except Exception as error:  # imageio and its plugins raise many types for bad files
        return {**entry, "skipped": f"unreadable: {str(error).splitlines()[0][:200]}"}
    if not images:
        return {**entry, "skipped": "unreadable: no frames"}
    height, width = images[0].shape[:2]
    if min(height, width) < min_face:
        return {**entry, "skipped": f"too small: {width}x{height} pixels, a face needs at "
                                    f"least {min_face}"}
    counts, points = count_faces_and_landmarks(images, backend=detector, device=device)
    found = counts > 0
    if not found.any():
        return {**entry, "skipped": f"no face in any of {len(images)} frames"}
    if (counts[found] > 1).mean() > 0.5:
        return {**entry, "skipped": f"several faces in {int((counts > 1).sum())} of "
                                    f"{int(found.sum())} frames with a face"}
    if found.sum() < min_frames:
        return {**entry, "skipped": f"only {int(found.sum())} of {len(images)} frames show a "
                                    f"face, {min_frames} needed"}
    box = face_box(points[found])
    if box[2] < min_face:
        return {**entry, "skipped": f"face too small: {box[2]:.0f} pixels across, "
                                    f"{min_face} needed"}
    kept = np.flatnonzero(found)
    crops, moved = crop_faces([images[i] for i in kept], points[kept], size, box=box)
    temporary = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    np.save(temporary / "frames.npy",
            (crops * 255).round().byte().permute(0, 2, 3, 1).numpy())
    np.save(temporary / "landmarks.npy", moved.numpy().astype(np.float32))
    entry = {**entry, "frames": len(kept), "video_frames": total,
             "frame_indices": [indices[i] for i in kept], "size": size,
             "box": [round(v, 2) for v in box], "detector": detector}
    (temporary / "info.json").write_text(json.dumps(entry, indent=1))
    os.replace(temporary, folder)
    return entry


def _clean(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text) or "video"


def _names(paths: list[Path], root: Path | None = None) -> list[tuple[str, str]]:
    """A folder name and a person per video. Under a folder ``root`` the name is the path
    below it (``id00012/_raLTH_FA6w/00001.mp4``, VoxCeleb2's layout, becomes
    ``id00012__raLTH_FA6w__00001``) and the person is its first folder (``id00012``); for a
    list of files, or a file directly in ``root``, both are the file name without its suffix.
    Names that still agree are numbered."""
    named, seen = [], {}
    for path in paths:
        parts = path.relative_to(root).with_suffix("").parts if root is not None \
            else (path.stem,)
        stem = "__".join(_clean(part) for part in parts)
        seen[stem] = seen.get(stem, 0) + 1
        name = stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"
        named.append((name, _clean(parts[0]) if len(parts) > 1 else name))
    return named


def _video_files(videos) -> tuple[list[Path], Path | None]:
    """The video files, and the folder they were found in (``None`` for a list of files)."""
    if isinstance(videos, (str, os.PathLike)):
        root = Path(videos)
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist")
        if root.is_file():
            return [root], None
        return sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES), root
    paths = [Path(p) for p in videos]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"these videos do not exist: {', '.join(missing[:5])}")
    return paths, None


def preprocess_videos(videos, out, size: int = 256, frames: int = 32, detector: str = "auto",
                      min_frames: int = 8, min_face: int = 64, workers: int = 1,
                      progress: bool = True, fan_weights=None, device: str = "cpu") -> dict:
    """Preprocess ``videos`` (a folder, searched recursively for video files, or a list of
    files) into ``out`` (see the module's docstring); returns the manifest:
    ``{"format", "size", "videos": [entries of the kept videos], "skipped": [{"name",
    "source", "skipped": reason}]}``. Videos done or skipped by an earlier run into ``out``
    are not processed again. ``workers`` processes work on different videos; they are
    started fresh ("spawn"), so a script that calls this with ``workers > 1`` must do so
    under ``if __name__ == "__main__":``. ``fan_weights``: a folder holding face-alignment's
    two weight files (``landmarks.FACE_ALIGNMENT_FILES``), linked into the torch hub cache
    where face-alignment looks for them. ``device``: where FAN runs (``"cuda"`` on a GPU
    machine; dlib always runs on the CPU)."""
    for name, value, low in (("size", size, 8), ("frames", frames, 2),
                             ("min_frames", min_frames, 2), ("min_face", min_face, 1),
                             ("workers", workers, 1)):
        if not is_int(value) or value < low:
            raise ValueError(f"{name} must be an integer of at least {low}, got {value!r}")
    if min_frames > frames:
        raise ValueError(f"min_frames ({min_frames}) cannot exceed frames ({frames})")
    if detector not in ("auto", "dlib", "face_alignment"):
        raise ValueError(f"detector must be 'auto', 'dlib' or 'face_alignment', got "
                         f"{detector!r}")
    if fan_weights is not None:
        install_face_alignment_weights(fan_weights)
    detector, note = choose_detector(detector)
    device = str(as_device(device))
    if detector == "face_alignment":  # fail now, with what to do, not in every video
        try:
            ensure_face_alignment_weights()
        except LandmarkWeightsMissing as error:
            raise FileNotFoundError(f"{error} (or give --fan-weights DIR, or --detector "
                                    "auto, which falls back to dlib)") from None
    if note and progress:
        print(note)
    paths, root = _video_files(videos)
    named = _names(paths, root)
    if not paths:
        raise ValueError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) in {videos}")
    out = Path(out)
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        earlier = json.loads(manifest_path.read_text())
        if earlier.get("size") != size:
            raise ValueError(f"{out} holds {earlier.get('size')} px crops; give another OUT "
                             f"for {size} px")
    (out / "videos").mkdir(parents=True, exist_ok=True)
    (out / "skipped").mkdir(exist_ok=True)
    todo = []
    for path, (name, person) in zip(paths, named):
        if not (out / "videos" / name / "info.json").exists() and \
                not (out / "skipped" / f"{name}.json").exists():
            todo.append((path, out / "videos" / name, person))
    arguments = [[a] * len(todo) for a in (size, frames, detector, min_frames, min_face,
                                           device)]
    bar = tqdm(total=len(todo), desc="preprocessing", disable=not progress or not todo)
    # "spawn": a process forked from one whose OpenMP threads have run (torch's) can hang
    with ProcessPoolExecutor(min(workers, max(len(todo), 1)),
                             mp_context=multiprocessing.get_context("spawn")) \
            if workers > 1 else _InProcess() as pool:
        sources, folders, people = zip(*todo) if todo else ((), (), ())
        for entry in pool.map(_one_video, sources, folders, people, *arguments):
            if "skipped" in entry:
                (out / "skipped" / f"{entry['name']}.json").write_text(json.dumps(entry))
            bar.update(1)
    bar.close()
    manifest = _manifest(out, size, [name for name, _ in named])
    if progress:
        print(f"{len(manifest['videos'])} videos kept, {len(manifest['skipped'])} skipped "
              f"({len(paths) - len(todo)} done before); manifest: {manifest_path}")
        for entry in manifest["skipped"]:
            print(f"  skipped {entry['source']}: {entry['skipped']}")
    return manifest


def _manifest(out: Path, size: int, names: list[str]) -> dict:
    kept, skipped = [], []
    for name in names:
        info, skip = out / "videos" / name / "info.json", out / "skipped" / f"{name}.json"
        if info.exists():
            kept.append(json.loads(info.read_text()))
        elif skip.exists():
            skipped.append(json.loads(skip.read_text()))
    manifest = {"format": FORMAT, "size": size, "videos": kept, "skipped": skipped}
    atomic_write(out / "manifest.json",
                 lambda path: path.write_text(json.dumps(manifest, indent=1)))
    return manifest


class _InProcess:
    """``ProcessPoolExecutor``'s ``map`` in this process (one worker: no pickling)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def map(function, *iterables):
        return map(function, *iterables)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fewshot-th preprocess``."""
    parser.add_argument("videos", help="a folder of videos (searched recursively) or one file")
    parser.add_argument("out", help="the dataset folder to write (a rerun continues it)")
    parser.add_argument("--size", type=int, default=256, help="crop side in pixels")
    parser.add_argument("--frames", type=int, default=32, help="frames kept per video")
    parser.add_argument("--detector", choices=["auto", "dlib", "face_alignment"], default="auto",
                        help="auto: face-alignment (FAN) when its weights are cached, else dlib")
    parser.add_argument("--min-frames", type=int, default=8,
                        help="skip a video with fewer frames that show a face")
    parser.add_argument("--min-face", type=int, default=64,
                        help="skip videos whose face is smaller, in pixels across")
    parser.add_argument("--workers", type=int, default=1, help="videos processed in parallel")
    parser.add_argument("--device", default="cpu",
                        help="where face-alignment's FAN runs (cuda on a GPU machine)")
    parser.add_argument("--fan-weights", metavar="DIR",
                        help="a folder with face-alignment's weight files (2DFAN4-*.pth.tar, "
                             "s3fd-*.pth), for a machine without internet")


def run(args: argparse.Namespace) -> int:
    """``fewshot-th preprocess``: one clear error (exit status 2) for bad arguments."""
    import sys

    try:
        preprocess_videos(args.videos, args.out, size=args.size, frames=args.frames,
                          detector=args.detector, min_frames=args.min_frames,
                          min_face=args.min_face, workers=args.workers,
                          fan_weights=args.fan_weights, device=args.device)
    except (ValueError, FileNotFoundError) as error:
        print(f"fewshot-th preprocess: {error}", file=sys.stderr)
        return 2
    return 0

"""SynthHeads frames per second at 64 and 256 px, batched and one frame at a time.

    python bench/synthheads_speed.py
"""

from __future__ import annotations

from fewshot_th.data import SynthHeads

from common import machine, median_seconds


def main() -> None:
    print(f"machine: {machine()}")
    for size, frames in ((64, 512), (256, 128)):
        heads = SynthHeads(num_identities=8, num_videos_per_identity=1, frames_per_video=frames,
                           size=size, seed=0)
        batched = median_seconds(lambda heads=heads: heads.get_frames(1), repeats=7)
        videos = SynthHeads(num_identities=32, num_videos_per_identity=1, frames_per_video=32,
                            size=size, seed=0)
        per_video = median_seconds(lambda videos=videos: [videos[i] for i in range(8)], repeats=5)
        single = median_seconds(lambda heads=heads: [heads.get_frames(1, [t]) for t in range(32)],
                                repeats=5)
        print(f"{size:4d} px: {frames / batched:7.0f} frames/s batched ({frames} frames a call), "
              f"{8 * 32 / per_video:7.0f} frames/s as 32-frame videos (ds[i]), "
              f"{32 / single:6.0f} frames/s one frame a call")


if __name__ == "__main__":
    main()

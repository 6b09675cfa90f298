"""SynthHeads frames per second at 64 and 256 px, batched and one frame at a time, and the
time to make one training batch of the `cpu` profile (32 episodes of K + 1 = 9 frames, with
their landmark images), the work a meta-learning step waits for when data is made in the
training process.

    python bench/synthheads_speed.py
"""

from __future__ import annotations

from fewshot_th.config import profile, training
from fewshot_th.data import EpisodeDataset, SynthHeads, episode_batches

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
    train = training("cpu")
    videos = SynthHeads(num_identities=1000, num_videos_per_identity=2, frames_per_video=32,
                        size=profile("cpu").image_size, seed=0)
    batches = episode_batches(EpisodeDataset(videos, train.k), train.batch_size)
    seconds = median_seconds(lambda: next(batches), repeats=15)
    print(f"one `cpu` training batch ({train.batch_size} episodes, K = {train.k}): "
          f"{1000 * seconds:.0f} ms")


if __name__ == "__main__":
    main()

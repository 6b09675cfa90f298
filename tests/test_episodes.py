import pytest
import torch

from fewshot_th.data import EpisodeDataset, SynthHeads
from fewshot_th.landmarks import draw_landmarks


@pytest.fixture(scope="module")
def videos():
    return SynthHeads(num_identities=4, num_videos_per_identity=2, frames_per_video=10, size=32)


def test_episode_keys_and_shapes(videos):
    episode = EpisodeDataset(videos, k=8)[3]
    assert episode["source_frames"].shape == (8, 3, 32, 32)
    assert episode["source_landmarks"].shape == (8, 3, 32, 32)
    assert episode["target_frame"].shape == (3, 32, 32)
    assert episode["target_landmarks"].shape == (3, 32, 32)
    assert episode["source_points"].shape == (8, 68, 2)
    assert episode["target_points"].shape == (68, 2)
    assert episode["video_index"] == 3 and len(EpisodeDataset(videos, k=8)) == len(videos)


def test_target_is_never_one_of_the_sources(videos):
    episodes = EpisodeDataset(videos, k=9)  # 9 of 10 frames: the tightest case
    for epoch in range(5):
        episodes.set_epoch(epoch)
        for i in range(len(episodes)):
            chosen = episodes[i]["frame_indices"].tolist()
            assert len(set(chosen)) == 10 and chosen[-1] not in chosen[:-1]


def test_frames_and_landmark_images_come_from_the_video(videos):
    episode = EpisodeDataset(videos, k=3)[5]
    video = videos[5]
    chosen = episode["frame_indices"]
    assert torch.equal(episode["source_frames"], video["frames"][chosen[:3]])
    assert torch.equal(episode["target_frame"], video["frames"][chosen[3]])
    points = video["landmarks"][chosen]
    assert torch.equal(episode["source_landmarks"], draw_landmarks(points[:3], 32))
    assert torch.equal(episode["target_landmarks"], draw_landmarks(points[3], 32))


def test_episodes_are_deterministic_per_seed_and_change_with_the_epoch(videos):
    a, b = EpisodeDataset(videos, k=4, seed=1), EpisodeDataset(videos, k=4, seed=1)
    assert torch.equal(a[2]["frame_indices"], b[2]["frame_indices"])
    c = EpisodeDataset(videos, k=4, seed=2)
    assert any(not torch.equal(a[i]["frame_indices"], c[i]["frame_indices"]) for i in range(8))
    before = [a[i]["frame_indices"] for i in range(8)]
    a.set_epoch(1)
    assert any(not torch.equal(before[i], a[i]["frame_indices"]) for i in range(8))


def test_dataloader_workers_give_the_same_episodes(videos):
    episodes = EpisodeDataset(videos, k=2, seed=7)
    loader = torch.utils.data.DataLoader(episodes, batch_size=4, num_workers=2)
    batch = next(iter(loader))
    assert batch["source_frames"].shape == (4, 2, 3, 32, 32)
    for i in range(4):
        assert torch.equal(batch["frame_indices"][i], episodes[i]["frame_indices"])
        assert torch.equal(batch["target_frame"][i], episodes[i]["target_frame"])


def test_any_sequence_of_video_dicts_works(videos):
    plain = [videos[i] for i in range(3)]  # no get_frames, no frames_per_video
    episode = EpisodeDataset(plain, k=5)[1]
    chosen = episode["frame_indices"]
    assert torch.equal(episode["target_frame"], plain[1]["frames"][chosen[-1]])
    with pytest.raises(ValueError, match="10"):
        EpisodeDataset(plain, k=10)[0]


@pytest.mark.parametrize("k", [0, -1, 10, 11])
def test_k_out_of_range_raises_with_the_numbers(videos, k):
    with pytest.raises(ValueError, match=f"k={k}.*10 frames"):
        EpisodeDataset(videos, k=k)


def test_bad_k_type_and_empty_videos_raise(videos):
    with pytest.raises(ValueError, match="integer"):
        EpisodeDataset(videos, k=2.5)
    with pytest.raises(ValueError, match="empty"):
        EpisodeDataset([], k=1)
    with pytest.raises(IndexError):
        EpisodeDataset(videos, k=1)[len(videos)]

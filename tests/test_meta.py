import pytest
import torch

from fewshot_th.config import tiny
from fewshot_th.data import EpisodeDataset, SynthHeads, episode_batches
from fewshot_th.nn import Embedder, Generator
from fewshot_th.warmup import fit_reconstruction


@pytest.fixture(scope="module")
def episodes():
    videos = SynthHeads(num_identities=4, num_videos_per_identity=2, frames_per_video=6, size=32)
    return EpisodeDataset(videos, k=2)


def test_episode_batches_cover_every_video_each_epoch_with_new_frames(episodes):
    batches = episode_batches(episodes, batch_size=4, seed=0)
    first_epoch = [next(batches) for _ in range(2)]
    second_epoch = [next(batches) for _ in range(2)]
    seen = sorted(torch.cat([b["video_index"] for b in first_epoch]).tolist())
    assert seen == list(range(8))
    assert first_epoch[0]["source_frames"].shape == (4, 2, 3, 32, 32)
    by_video = {int(v): b["frame_indices"][i] for b in first_epoch
                for i, v in enumerate(b["video_index"])}
    again = {int(v): b["frame_indices"][i] for b in second_epoch
             for i, v in enumerate(b["video_index"])}
    assert any(not torch.equal(by_video[v], again[v]) for v in by_video)


def test_episode_batches_are_reproducible_with_a_seed(episodes):
    a = next(episode_batches(episodes, batch_size=4, seed=3))
    b = next(episode_batches(episodes, batch_size=4, seed=3))
    assert torch.equal(a["video_index"], b["video_index"])
    assert torch.equal(a["target_frame"], b["target_frame"])


@pytest.mark.parametrize("batch_size", [0, 9, 2.0])
def test_episode_batches_reject_bad_batch_sizes(episodes, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        next(episode_batches(episodes, batch_size=batch_size))


def test_fit_reconstruction_lowers_the_l1_loss(episodes):
    torch.manual_seed(0)
    embedder, generator = Embedder(tiny()), Generator(tiny())
    batches = episode_batches(episodes, batch_size=4, seed=0)
    losses = fit_reconstruction(embedder, generator, batches, seconds=120.0, steps=12,
                                progress=False)
    assert len(losses) == 12
    assert sum(losses[-5:]) / 5 < losses[0], "a few seconds of Adam reduce the pixel loss"
    assert embedder.training and generator.training


def test_fit_reconstruction_needs_a_positive_budget(episodes):
    batches = episode_batches(episodes, batch_size=4)
    with pytest.raises(ValueError, match="seconds"):
        fit_reconstruction(Embedder(tiny()), Generator(tiny()), batches, seconds=0)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="steps"):
            fit_reconstruction(Embedder(tiny()), Generator(tiny()), batches, steps=bad)
    with pytest.raises(ValueError, match="give steps"):
        fit_reconstruction(Embedder(tiny()), Generator(tiny()), batches)


def test_fit_reconstruction_by_steps_gives_the_same_run_twice(episodes):
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(fit_reconstruction(Embedder(tiny()), Generator(tiny()),
                                       episode_batches(episodes, batch_size=4, seed=0),
                                       steps=3, progress=False))
    assert len(runs[0]) == 3 and runs[0] == runs[1]

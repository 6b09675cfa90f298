"""One device for everything a chapter computes, and the warm-up chapters 2 and 3 share."""

import json
import warnings

import pytest
import torch

import fewshot_th
from fewshot_th import warmup
from fewshot_th.config import as_device, profile, tiny
from fewshot_th.data import EpisodeDataset, SynthHeads, episode_batches, to_device
from fewshot_th.nn import Embedder, Generator
from fewshot_th.warmup import fit_reconstruction, reconstruction_warmup


def test_default_device_is_the_cpu_without_a_gpu_and_follows_the_environment(monkeypatch):
    monkeypatch.delenv("FEWSHOT_TH_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert fewshot_th.default_device() == torch.device(expected)
    monkeypatch.setenv("FEWSHOT_TH_DEVICE", "cpu")
    assert fewshot_th.default_device() == torch.device("cpu")
    monkeypatch.setenv("FEWSHOT_TH_DEVICE", "gpu please")
    with pytest.raises(ValueError, match="FEWSHOT_TH_DEVICE 'gpu please' is not a device"):
        fewshot_th.default_device()


def test_default_profile_is_cpu_whatever_the_device_unless_the_environment_says(monkeypatch):
    monkeypatch.delenv("FEWSHOT_TH_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on Colab
    assert fewshot_th.default_profile() == "cpu"
    monkeypatch.setenv("FEWSHOT_TH_PROFILE", "paper")
    assert fewshot_th.default_profile() == "paper"
    monkeypatch.setenv("FEWSHOT_TH_PROFILE", "huge")
    with pytest.raises(ValueError, match="FEWSHOT_TH_PROFILE"):
        fewshot_th.default_profile()


@pytest.mark.parametrize("value, message", [
    ("nonsense", "is not a device"), ("mps", "'cpu' or a CUDA device"), (3, "must be"),
    (None, "must be")])
def test_as_device_names_what_is_wrong(value, message):
    with pytest.raises(ValueError, match=message):
        as_device(value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_asking_for_a_gpu_that_is_not_there_says_so():
    with pytest.raises(ValueError, match="no CUDA GPU"):
        as_device("cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        fewshot_th.load_pretrained("synthheads-cpu", device="cuda")


def test_load_pretrained_puts_the_model_on_the_device():
    model = fewshot_th.load_pretrained("synthheads-cpu", device=torch.device("cpu"))
    devices = {p.device for net in model.networks().values() for p in net.parameters()}
    assert devices == {torch.device("cpu")}


def test_episode_batches_move_every_tensor_to_the_device():
    videos = SynthHeads(num_identities=2, num_videos_per_identity=2, frames_per_video=4, size=32)
    batch = next(episode_batches(EpisodeDataset(videos, k=2), batch_size=2, device="cpu"))
    assert all(v.device == torch.device("cpu") for v in batch.values()
               if isinstance(v, torch.Tensor))
    with pytest.raises(ValueError, match="is not a device"):
        next(episode_batches(EpisodeDataset(videos, k=2), batch_size=2, device="floppy"))
    moved = to_device({"x": torch.ones(1), "name": "kept"}, "cpu")
    assert moved["name"] == "kept" and moved["x"].device == torch.device("cpu")


def test_fit_reconstruction_refuses_networks_on_two_devices():
    videos = SynthHeads(num_identities=2, num_videos_per_identity=2, frames_per_video=4, size=32)
    batches = episode_batches(EpisodeDataset(videos, k=2), batch_size=2)
    generator = Generator(tiny()).to("meta")  # a device without data: nothing runs on it
    with pytest.raises(ValueError, match="different devices"):
        fit_reconstruction(Embedder(tiny()), generator, batches, steps=1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_TH_CACHE", str(tmp_path))
    return tmp_path


def _weights(*nets):
    return [p.detach().clone() for net in nets for p in net.state_dict().values()]


def test_warmup_is_trained_once_and_then_read_from_the_cache(cache, monkeypatch, capsys):
    config = tiny()
    embedder, generator, losses = reconstruction_warmup(config, 2, progress=False)
    assert len(losses) == 2 and embedder.training and generator.training
    assert len(list(cache.glob("warmup-*/step-00000002.json"))) == 1

    def must_not_train(*args, **kwargs):
        raise AssertionError("the cached warm-up was trained again")

    monkeypatch.setattr(warmup, "fit_reconstruction", must_not_train)
    embedder_2, generator_2, losses_2 = reconstruction_warmup(config, 2)
    assert "from the cache" in capsys.readouterr().out
    assert losses_2 == losses
    assert all(torch.equal(a, b) for a, b in zip(_weights(embedder, generator),
                                                  _weights(embedder_2, generator_2)))


def test_warmup_cache_tells_runs_apart_and_retrains_a_damaged_file(cache, monkeypatch):
    _, generator, losses = reconstruction_warmup(tiny(), 2, progress=False)
    _, _, longer = reconstruction_warmup(tiny(), 3, progress=False)
    _, _, other_seed = reconstruction_warmup(tiny(), 2, seed=1, progress=False)
    assert len(list(cache.glob("warmup-*"))) == 3
    assert longer[:2] == losses and other_seed != losses
    tensors = next(cache.glob("warmup-*/step-00000002.safetensors"))
    data = bytearray(tensors.read_bytes())
    data[-8:] = bytes(8)  # damage the weights: the checksum no longer matches
    tensors.write_bytes(bytes(data))
    record = json.loads(tensors.with_suffix(".json").read_text())
    assert record["losses"] in (losses, other_seed)
    trained = []
    monkeypatch.setattr(warmup, "fit_reconstruction",
                        lambda *a, **k: trained.append(1) or fit_reconstruction(*a, **k))
    _, again, losses_again = reconstruction_warmup(tiny(), 2, seed=record["key"]["seed"],
                                                   progress=False)
    assert losses_again == record["losses"] and trained == [1]
    if record["key"]["seed"] == 0:
        assert all(torch.equal(a, b) for a, b in zip(_weights(generator), _weights(again)))


def test_warmup_without_cache_writes_nothing_and_an_unwritable_cache_only_warns(cache, tmp_path,
                                                                                monkeypatch):
    reconstruction_warmup(tiny(), 1, cache=False, progress=False)
    assert not list(cache.glob("warmup-*"))
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("FEWSHOT_TH_CACHE", str(blocked))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, _, losses = reconstruction_warmup(tiny(), 1, progress=False)
    assert len(losses) == 1
    assert any("could not cache the warm-up" in str(w.message) for w in caught)


@pytest.mark.parametrize("steps", [0, -1, 2.5, True])
def test_warmup_checks_its_arguments(cache, steps):
    with pytest.raises(ValueError, match="steps"):
        reconstruction_warmup(tiny(), steps)
    with pytest.raises(TypeError, match="ModelConfig"):
        reconstruction_warmup("cpu", 2)
    with pytest.raises(ValueError, match="is not a device"):
        reconstruction_warmup(profile("cpu"), 2, device="abacus")

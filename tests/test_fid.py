import pytest
import torch

from fewshot_th import fid as fid_module
from fewshot_th.fid import (
    FIDInception,
    FIDWeightsMissing,
    frechet_inception_distance,
    load_fid_inception,
)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A state dict in the FID network's format: its keys, a 1008-class classifier, no
    num_batches_tracked (as in the published file)."""
    torch.manual_seed(0)
    network = FIDInception()
    # Random weights shrink activations layer by layer; batch-norm statistics measured on
    # random images keep them at a usable scale, as trained statistics would.
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a plain average over the calibration batch
    with torch.no_grad():
        network.train()(torch.rand(8, 3, 64, 64))
    state = {k: v for k, v in network.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    state["fc.weight"], state["fc.bias"] = torch.randn(1008, 2048), torch.randn(1008)
    path = tmp_path_factory.mktemp("fid") / fid_module.FID_FILE
    torch.save(state, path)
    return path, state


def test_the_fid_network_loads_the_published_layout_and_gives_2048_features(weights_file):
    path, state = weights_file
    network = load_fid_inception(path)
    assert not network.training and not any(p.requires_grad for p in network.parameters())
    for name, value in network.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            assert torch.equal(value, state[name]), name
    assert network.Mixed_7c.max_pool and not network.Mixed_7b.max_pool
    features = network(torch.rand(2, 3, 64, 64))
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    # inputs are resized to 299 x 299: the size of the input does not change the layout
    assert network(torch.rand(1, 3, 299, 299)).shape == (1, 2048)


def test_fid_is_zero_for_the_same_images_and_grows_with_a_shift(weights_file):
    network = load_fid_inception(weights_file[0])
    torch.manual_seed(1)
    images = torch.rand(6, 3, 32, 32) * 0.5
    same = frechet_inception_distance(network, images, images)
    shifted = frechet_inception_distance(network, images, (images + 0.4).clamp(0, 1))
    assert abs(same) < 1e-3 * max(1.0, shifted) and shifted > same + 1e-3


def test_without_weights_offline_the_message_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSHOT_TH_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FIDWeightsMissing) as error:
        load_fid_inception()
    assert fid_module.FID_FILE in str(error.value) and "without FID" in str(error.value)
    bad = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="not the FID Inception"):
        load_fid_inception(bad)

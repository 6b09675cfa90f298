import numpy as np
import pytest
import torch

from fewshot_th import landmarks as lmk
from fewshot_th.landmarks import LandmarkWeightsMissing, detect_landmarks

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut():
    return skimage_data.astronaut()  # (512, 512, 3) uint8, one face


def test_dlib_finds_the_astronauts_face_with_eyes_inside_the_face(astronaut):
    points, found = detect_landmarks(astronaut[None], backend="dlib")
    assert points.shape == (1, 68, 2) and found.tolist() == [True]
    face = points[0]
    # The face of this photo lies around x 170-280, y 60-190 (pixels).
    assert 150 < face[:, 0].min() and face[:, 0].max() < 300
    assert 50 < face[:, 1].min() and face[:, 1].max() < 200
    left, right = face[:17, 0].min(), face[:17, 0].max()
    top, bottom = face[17:27, 1].min(), face[:17, 1].max()
    eyes = face[36:48]
    assert (eyes[:, 0] > left).all() and (eyes[:, 0] < right).all()
    assert (eyes[:, 1] > top).all() and (eyes[:, 1] < bottom).all()
    # The subject's right eye (36-41) appears on the image's left.
    assert face[36:42, 0].mean() < face[42:48, 0].mean()


def test_dlib_reports_images_without_a_face_as_not_found(astronaut):
    blank = np.full((2, 120, 160, 3), 127, np.uint8)
    points, found = detect_landmarks([blank[0], astronaut, blank[1]], backend="dlib")
    assert found.tolist() == [False, True, False]
    assert np.isnan(points[0]).all() and not np.isnan(points[1]).any()


@pytest.mark.parametrize("images", [
    np.zeros((1, 32, 32, 3), np.float32),
    np.zeros((1, 32, 32), np.uint8),
    "photo.jpg",
])
def test_wrong_images_raise_value_error(images):
    with pytest.raises(ValueError, match="uint8"):
        detect_landmarks(images, backend="dlib")


def test_unknown_backend_raises_value_error(astronaut):
    with pytest.raises(ValueError, match="backend"):
        detect_landmarks(astronaut[None], backend="mediapipe")


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    lmk._face_alignment_model.cache_clear()
    yield tmp_path / "hub" / "checkpoints"
    lmk._face_alignment_model.cache_clear()


def test_face_alignment_without_weights_offline_names_the_files_and_suggests_dlib(
        empty_hub, monkeypatch, astronaut):
    monkeypatch.setenv("FEWSHOT_TH_OFFLINE", "1")
    with pytest.raises(LandmarkWeightsMissing) as error:
        detect_landmarks(astronaut[None], backend="face_alignment")
    message = str(error.value)
    for name in lmk.FACE_ALIGNMENT_FILES:
        assert name in message
    assert str(empty_hub) in message and "backend='dlib'" in message


def test_face_alignment_download_failure_gives_the_same_clear_error(empty_hub, monkeypatch,
                                                                   astronaut):
    monkeypatch.delenv("FEWSHOT_TH_OFFLINE", raising=False)
    calls = []

    def no_network(url, path, progress=True):
        calls.append(url)
        raise OSError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(LandmarkWeightsMissing, match="Name or service not known"):
        detect_landmarks(astronaut[None], backend="face_alignment")
    assert sorted(calls) == sorted(lmk.FACE_ALIGNMENT_FILES.values())


def test_face_alignment_loads_weights_from_the_hub_cache(empty_hub, monkeypatch):
    """Weight files in the real format (state dicts of the real networks) are found offline."""
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    monkeypatch.setenv("FEWSHOT_TH_OFFLINE", "1")
    empty_hub.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(FAN(4).state_dict(), empty_hub / "2DFAN4-11f355bf06.pth.tar")
    torch.save(s3fd().state_dict(), empty_hub / "s3fd-619a316812.pth")
    model = lmk._face_alignment_model("cpu")
    assert lmk.ensure_face_alignment_weights() == empty_hub
    assert not model.face_alignment_net.training
    weights = torch.load(empty_hub / "2DFAN4-11f355bf06.pth.tar", weights_only=True)
    name, value = next(iter(weights.items()))
    assert torch.equal(model.face_alignment_net.state_dict()[name], value)

import numpy as np
import pytest
import torch
from skimage.data import astronaut

from fewshot_th import identity
from fewshot_th.identity import (
    IdentityNet,
    csim,
    identity_separation,
    load_identity_net,
    roc_auc,
    save_identity_net,
    train_identity_net,
)


def test_roc_auc_by_hand():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([1.0, 1.0], [1, 0]) == pytest.approx(0.5)  # a tie counts half
    assert roc_auc([0.9, 0.1, 0.2], [1, 0, 0]) == 1.0
    with pytest.raises(ValueError, match="both labels"):
        roc_auc([0.3, 0.4], [1, 1])


def test_identity_net_gives_unit_embeddings_and_trains_saves_and_loads(tmp_path):
    net = train_identity_net(steps=3, identities=4, videos_per_step=2, frames_per_video=2,
                             image_size=32, progress=False)
    images = torch.rand(5, 3, 32, 32)
    vectors = net(images)
    assert vectors.shape == (5, 128)
    torch.testing.assert_close(vectors.norm(dim=1), torch.ones(5))
    save_identity_net(net, tmp_path, "tiny-id", {"note": "test"})
    loaded = load_identity_net(tmp_path, "tiny-id")
    torch.testing.assert_close(loaded(images), vectors)
    assert loaded.info["note"] == "test"
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        net(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="no identity network"):
        load_identity_net(tmp_path, "missing")


def test_the_shipped_identity_network_separates_unseen_synthheads_identities():
    net = load_identity_net()
    auc = identity_separation(net, identities=20, frames=6)
    assert auc >= 0.95
    assert net.info["roc_auc_test"] >= 0.95


def test_csim_is_one_for_the_same_frames_and_checks_its_inputs():
    net = IdentityNet(32)
    frames = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(csim(frames, frames, net=net), torch.ones(3))
    with pytest.raises(ValueError, match="one shape"):
        csim(frames, frames[:2], net=net)
    with pytest.raises(ValueError, match="backend"):
        csim(frames, frames, backend="arcface-x")


def test_dlib_backend_recognises_a_real_face_and_finds_none_in_noise():
    photo = torch.tensor(astronaut()[:256, 64:320] / 255.0, dtype=torch.float32)
    photo = photo.permute(2, 0, 1)[None]
    noise = torch.rand(1, 3, 256, 256)
    vectors = identity.dlib_embeddings(torch.cat([photo, noise]))
    assert torch.isfinite(vectors[0]).all() and torch.isnan(vectors[1]).all()
    same = csim(photo, photo.flip(3), backend="dlib")  # the mirrored face: the same person
    assert float(same[0]) > 0.9
    assert np.isnan(float(csim(noise, noise, backend="dlib")[0]))


def _five_point_landmarks(points):
    """68 landmarks whose eye centres, nose tip and mouth corners are the five given."""
    marks = torch.zeros(1, 68, 2)
    marks[0, 36:42], marks[0, 42:48] = torch.tensor(points[0]), torch.tensor(points[1])
    marks[0, 30], marks[0, 48], marks[0, 54] = (torch.tensor(p) for p in points[2:])
    return marks


def test_alignment_puts_the_eye_where_arcface_expects_it():
    image = torch.zeros(1, 3, 200, 200)
    image[0, :, 89:92, 79:82] = 1.0  # a bright spot on the left eye, at x = 80, y = 90
    marks = _five_point_landmarks([(80, 90), (150, 92), (115, 130), (88, 170), (146, 168)])
    crop = identity.align_for_arcface(image, marks)
    assert crop.shape == (1, 3, 112, 112)
    y, x = divmod(int(crop[0, 0].argmax()), 112)
    assert abs(x - 38.3) <= 2 and abs(y - 51.7) <= 2


def test_arcface_loads_an_insightface_state_dict_and_compares_faces(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "backbone.pth"
    torch.save(identity.ArcFace((1, 1, 2, 1)).state_dict(), path)
    net = identity.load_arcface(path)
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == [1, 1, 2, 1]
    assert not net.training
    faces = torch.rand(2, 3, 96, 96)
    marks = _five_point_landmarks([(35, 40), (60, 40), (48, 55), (38, 72), (58, 72)])
    same = csim(faces, faces, backend="arcface", net=net, landmarks=marks.expand(2, -1, -1))
    torch.testing.assert_close(same, torch.ones(2))
    with pytest.raises(ValueError, match="landmarks"):
        csim(faces, faces, backend="arcface", net=net)
    with pytest.raises(FileNotFoundError, match="dlib"):
        identity.load_arcface(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="112"):
        net(torch.rand(1, 3, 64, 64))

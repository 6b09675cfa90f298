import tempfile

import pytest
import torch

from fewshot_th import losses
from fewshot_th.losses import (
    ContentLoss,
    FeatureWeightsMissing,
    VGG19Features,
    VGGFaceFeatures,
    adversarial_loss,
    content_loss_from,
    discriminator_hinge_loss,
    feature_matching_loss,
    load_synthface,
    load_vgg19,
    load_vggface,
    match_loss,
)


def test_hinge_loss_against_values_computed_by_hand():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-3.0, 0.0, 0.25])
    # real: max(0, 1 - r) = 0, 0.5, 2 -> mean 5/6; fake: max(0, 1 + f) = 0, 1, 1.25 -> 0.75
    assert discriminator_hinge_loss(real, fake).item() == pytest.approx(5 / 6 + 0.75)


def test_hinge_loss_is_clamped_so_confident_scores_give_no_gradient():
    real = torch.tensor([3.0], requires_grad=True)
    fake = torch.tensor([-3.0], requires_grad=True)
    discriminator_hinge_loss(real, fake).backward()
    assert real.grad.item() == 0 and fake.grad.item() == 0


def test_match_loss_is_lambda_times_mean_absolute_difference():
    w = torch.tensor([[1.0, -2.0], [0.0, 4.0]])
    e = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert match_loss(w, e, 80.0).item() == pytest.approx(80 * (1 + 2 + 1 + 3) / 4)
    with pytest.raises(ValueError, match="must match"):
        match_loss(w, e[:, :1], 1.0)


def test_match_loss_reaches_both_w_and_e_hat():
    w = torch.zeros(2, 3, requires_grad=True)
    e = torch.ones(2, 3, requires_grad=True)
    match_loss(w, e, 1.0).backward()
    assert (w.grad != 0).all() and (e.grad != 0).all()


def test_adversarial_loss_by_hand_and_no_gradient_into_the_real_maps():
    fake_score = torch.tensor([1.0, 3.0])
    real = [torch.ones(1, 2, 2, 2, requires_grad=True)]
    fake = [torch.zeros(1, 2, 2, 2, requires_grad=True)]
    loss = adversarial_loss(fake_score, real, fake, lambda_fm=10.0)
    assert loss.item() == pytest.approx(-2.0 + 10 * 1.0)
    loss.backward()
    assert real[0].grad is None and fake[0].grad is not None
    with pytest.raises(ValueError, match="feature maps"):
        feature_matching_loss(real, fake + fake)


def test_lambda_score_weighs_only_the_score_part_of_the_adversarial_loss():
    fake_score = torch.tensor([1.0, 3.0], requires_grad=True)
    real, fake = [torch.ones(1, 2, 2, 2)], [torch.zeros(1, 2, 2, 2, requires_grad=True)]
    loss = adversarial_loss(fake_score, real, fake, lambda_fm=10.0, lambda_score=0.25)
    assert loss.item() == pytest.approx(-0.25 * 2.0 + 10 * 1.0)
    loss.backward()
    torch.testing.assert_close(fake_score.grad, torch.tensor([-0.125, -0.125]))
    only_fm = adversarial_loss(fake_score, real, fake, lambda_fm=10.0, lambda_score=0.0)
    assert only_fm.item() == pytest.approx(10.0)


def _torchvision_style_vgg19_state():
    """A state dict in torchvision's vgg19 key format, including its classifier."""
    torch.manual_seed(0)
    net = VGG19Features()
    state = {k.replace("layers.", "features.", 1): v.clone()
             for k, v in net.state_dict().items() if k.startswith("layers.")}
    state["features.30.weight"] = torch.randn(512, 512, 3, 3)  # beyond relu5_1: ignored
    state["classifier.0.weight"] = torch.randn(4096, 25088 // 64)  # never used
    return state


def test_vgg19_loads_a_torchvision_format_file_and_is_frozen(tmp_path):
    state = _torchvision_style_vgg19_state()
    torch.save(state, tmp_path / "vgg19.pth")
    network = load_vgg19(tmp_path / "vgg19.pth")
    torch.testing.assert_close(network.layers[28].weight, state["features.28.weight"])
    assert not any(p.requires_grad for p in network.parameters())
    network.train()
    assert not network.training, "the loss network stays in eval mode"
    maps = network(torch.rand(1, 3, 32, 32))
    assert [m.shape[1] for m in maps] == [64, 128, 256, 512, 512]
    assert all((m >= 0).all() for m in maps), "taps are ReLU outputs"


def test_vgg19_from_the_hub_cache_and_the_clear_error_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    monkeypatch.setenv("FEWSHOT_TH_OFFLINE", "1")
    with pytest.raises(FeatureWeightsMissing) as error:
        load_vgg19()
    assert losses.VGG19_FILE in str(error.value) and "pixel" in str(error.value)
    directory = tmp_path / "hub" / "checkpoints"
    directory.mkdir(parents=True)
    torch.save(_torchvision_style_vgg19_state(), directory / losses.VGG19_FILE)
    assert isinstance(load_vgg19(), VGG19Features)


def test_vgg19_normalises_rgb_input_with_imagenet_statistics():
    network = VGG19Features()
    white = network.preprocess(torch.ones(1, 3, 1, 1)).flatten()
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(white, expected)


def test_vgg19_in_the_papers_caffe_form_loads_by_its_keys_and_takes_bgr_0_255(tmp_path):
    """The paper's VGG19 is the Caffe model: a conversion with conv1_1.weight ... keys loads
    with Caffe's input convention, the same weights as torchvision's layout."""
    torchvision_state = _torchvision_style_vgg19_state()
    names = VGG19Features.conv_names
    convs = sorted({int(k.split(".")[1]) for k in torchvision_state
                    if k.startswith("features.") and int(k.split(".")[1]) < 29})
    caffe_state = {f"{names[n]}.{part}": torchvision_state[f"features.{index}.{part}"]
                   for n, index in enumerate(convs) for part in ("weight", "bias")}
    torch.save(caffe_state, tmp_path / "vgg19_caffe.pth")
    caffe = load_vgg19(tmp_path / "vgg19_caffe.pth")
    assert caffe.caffe and not load_vgg19(_saved(tmp_path, torchvision_state)).caffe
    torch.testing.assert_close(caffe.layers[28].weight, torchvision_state["features.28.weight"])
    red = torch.zeros(1, 3, 1, 1)
    red[0, 0] = 1.0
    torch.testing.assert_close(caffe.preprocess(red).flatten(),
                               torch.tensor([-103.939, -116.779, 255 - 123.68]))
    del caffe_state["conv5_1.bias"]
    torch.save(caffe_state, tmp_path / "vgg19_caffe.pth")
    with pytest.raises(ValueError, match="conv5_1.bias"):
        load_vgg19(tmp_path / "vgg19_caffe.pth")


def _saved(folder, state):
    torch.save(state, folder / "vgg19_torchvision.pth")
    return folder / "vgg19_torchvision.pth"


def test_vggface_takes_caffe_style_bgr_0_255_mean_subtracted_input():
    network = VGGFaceFeatures()
    red = torch.zeros(1, 3, 1, 1)
    red[0, 0] = 1.0  # pure red in RGB, [0, 1]
    bgr = network.preprocess(red).flatten()
    torch.testing.assert_close(bgr, torch.tensor([0 - 93.5940, 0 - 104.7624, 255 - 129.1863]))


def test_vggface_loads_the_converted_key_format_and_rejects_others(tmp_path):
    torch.manual_seed(1)
    state = {}
    for name in VGGFaceFeatures.conv_names + ["conv5_2", "conv5_3"]:
        cin = {"conv1_1": 3, "conv1_2": 64, "conv2_1": 64, "conv2_2": 128, "conv3_1": 128}.get(
            name, 256 if name.startswith("conv3") or name == "conv4_1" else 512)
        cout = 64 if name.startswith("conv1") else 128 if name.startswith("conv2") else \
            256 if name.startswith("conv3") else 512
        state[f"{name}.weight"] = torch.randn(cout, cin, 3, 3)
        state[f"{name}.bias"] = torch.randn(cout)
    state["fc6.weight"] = torch.randn(8, 8)
    torch.save(state, tmp_path / "vgg_face.pth")
    network = load_vggface(tmp_path / "vgg_face.pth")
    torch.testing.assert_close(network.layers[24].weight, state["conv5_1.weight"])
    assert [m.shape[1] for m in network(torch.rand(1, 3, 32, 32))] == [64, 128, 256, 512, 512]
    del state["conv3_2.bias"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="conv3_2.bias"):
        load_vggface(tmp_path / "broken.pth")
    with pytest.raises(FeatureWeightsMissing, match="VGG-Face"):
        load_vggface(None)


def test_content_loss_weights_terms_and_only_the_fake_gets_gradients():
    torch.manual_seed(0)
    vgg = VGG19Features().freeze()
    fake = torch.rand(2, 3, 32, 32, requires_grad=True)
    real = torch.rand(2, 3, 32, 32)
    pixel = ContentLoss({"pixel": 2.0})(fake, real)
    assert pixel.item() == pytest.approx(2.0 * (fake - real).abs().mean().item(), rel=1e-6)
    both = ContentLoss({"vgg19": 0.5, "pixel": 2.0}, {"vgg19": vgg})(fake, real)
    by_hand = pixel + 0.5 * sum((f - r).abs().mean() for f, r in zip(vgg(fake), vgg(real)))
    assert both.item() == pytest.approx(by_hand.item(), rel=1e-5)
    both.backward()
    assert fake.grad is not None and all(p.grad is None for p in vgg.parameters())


def test_content_loss_rejects_unknown_terms_and_missing_networks():
    with pytest.raises(ValueError, match="unknown"):
        ContentLoss({"lpips": 1.0})
    with pytest.raises(ValueError, match="need their networks"):
        ContentLoss({"vggface": 1.0})


def test_synthface_is_a_frozen_identity_network_tapped_after_each_stage(tmp_path):
    from fewshot_th.identity import IdentityNet, save_identity_net

    torch.manual_seed(0)
    net = IdentityNet(image_size=32, width=8)
    save_identity_net(net, tmp_path, name="face-loss", info={"made": "by this test"})
    features = load_synthface(tmp_path / "face-loss.safetensors")
    assert all(not p.requires_grad for p in features.parameters()) and not features.training
    x = torch.rand(2, 3, 32, 32)
    maps = features(x)
    assert [m.shape[1:] for m in maps] == [(8, 16, 16), (16, 8, 8), (32, 4, 4), (64, 2, 2)]
    # the same numbers as the network's own trunk, stage by stage
    h = x * 2 - 1
    for stage, m in zip(range(4), maps):
        h = net.trunk[5 * stage:5 * stage + 5](h)
        assert torch.allclose(h, m)
    loss = ContentLoss({"synthface": 1.0}, {"synthface": features})
    fake = torch.rand(2, 3, 32, 32, requires_grad=True)
    assert loss(x, x).item() == 0.0
    value = loss(fake, x)
    value.backward()
    assert value.item() > 0 and fake.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="32 px"):
        features(torch.rand(1, 3, 64, 64))
    with pytest.raises(FeatureWeightsMissing, match="no identity network"):
        load_synthface(tmp_path / "missing.safetensors")


def test_the_shipped_synthface_network_is_not_the_one_that_scores_csim():
    from fewshot_th.identity import load_identity_net

    shipped = load_synthface()
    scorer = load_identity_net()
    assert shipped.image_size == scorer.image_size == 64
    assert not torch.equal(shipped.layers[0].weight, scorer.trunk[0].weight)
    content = content_loss_from((("pixel", 10.0), ("synthface", 0.2)))
    assert set(content.networks) == {"synthface"}
    frames = torch.rand(2, 3, 64, 64)
    assert content(frames, frames).item() == 0.0


def test_the_shipped_landmark_network_finds_the_landmarks_it_was_stored_with():
    """Its stored test error is recomputed; it sees a mouth open and shut; as a content term
    it is zero for equal frames and grows when only the mouth differs."""
    import numpy as np

    from fewshot_th.data import SynthHeads
    from fewshot_th.landmark_net import landmark_net_error, load_landmark_net, predict_landmarks
    from fewshot_th.losses import load_synthlandmarks

    net = load_landmark_net()
    assert landmark_net_error(net) == pytest.approx(net.info["landmark_error_test_px"], abs=2e-3)
    assert net.info["landmark_error_test_px"] < 1.5  # pixels of a 64 px frame
    heads = SynthHeads("test", num_identities=3, num_videos_per_identity=1, frames_per_video=64,
                       size=64, seed=0)
    pose = heads.pose(0, np.arange(64))
    speaking = int(np.argmax(pose.mouth))
    frame = heads.render(0, pose[speaking:speaking + 1])
    shut = heads.counterfactual(0, pose[speaking:speaking + 1], "mouth open")

    def opening(images):  # inner lips: upper 61-63 against lower 65-67
        points = predict_landmarks(net, images)[0]
        return float((points[65:68, 1] - points[61:64, 1].flip(0)).mean())

    assert opening(frame) > opening(shut) + 1.0
    content = content_loss_from((("synthlandmarks", 1.0),))
    assert isinstance(content.networks["synthlandmarks"], type(load_synthlandmarks()))
    assert content(frame, frame).item() == 0.0
    # the term is the mean distance of the landmarks found in the two frames
    found = (predict_landmarks(net, shut) - predict_landmarks(net, frame)) / 64 * 2
    assert content(shut, frame).item() == pytest.approx(float(found.abs().mean()), rel=1e-4)
    with pytest.raises(ValueError, match="64 px frames"):
        content(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    with pytest.raises(FeatureWeightsMissing, match="no landmark network"):
        load_synthlandmarks("nowhere.safetensors")


def test_train_landmark_net_learns_and_the_command_line_takes_term_weights():
    from fewshot_th.cli import content_terms
    from fewshot_th.landmark_net import (
        LandmarkNet,
        landmark_net_error,
        load_landmark_net,
        save_landmark_net,
        train_landmark_net,
    )

    torch.manual_seed(0)
    untrained = landmark_net_error(LandmarkNet(32), identities=4, frames=4)
    trained = train_landmark_net(60, identities=8, videos_per_step=4, image_size=32,
                                 progress=False)
    assert landmark_net_error(trained, identities=4, frames=4) < 0.5 * untrained
    with tempfile.TemporaryDirectory() as directory:
        save_landmark_net(trained, directory, name="mine", info={"made": "here"})
        again = load_landmark_net(directory, "mine")
        frames = torch.rand(2, 3, 32, 32)
        assert torch.equal(again(frames), trained(frames)) and again.info["made"] == "here"
        with pytest.raises(ValueError, match="no landmark network"):
            load_landmark_net(directory, "other")
    profile = (("pixel", 10.0), ("synthface", 0.2))
    assert content_terms(["pixel", "synthface", "synthlandmarks=3.5"], profile) == (
        ("pixel", 10.0), ("synthface", 0.2), ("synthlandmarks", 3.5))
    assert content_terms(["vgg19"], profile) == (("vgg19", 1.0),)
    for bad, message in ((["lpips"], "unknown term"), (["pixel=x"], "needs a number"),
                         (["pixel=-1"], "must be positive")):
        with pytest.raises(ValueError, match=message):
            content_terms(bad, profile)


def _face(gap: float) -> torch.Tensor:
    """68 landmarks of a 64 px face, the inner lips ``gap`` px apart."""
    points = torch.zeros(1, 68, 2)
    points[0, :, 0] = torch.linspace(10, 50, 68)
    points[0, :, 1] = 20.0
    points[0, 5:12] = torch.tensor([[24.0 + i, 50.0 + (i % 2)] for i in range(7)])  # chin
    points[0, 48:68, 0] = torch.linspace(26, 38, 20)
    points[0, 48:68, 1] = 40.0
    points[0, 65:68, 1] = 40.0 + gap  # the inner bottom lip
    return points


def test_mouth_region_is_the_box_of_lips_and_chin_weighed_by_the_opening():
    from fewshot_th.losses import mouth_region

    shut, half, wide = (mouth_region(_face(gap), 64) for gap in (0.0, 1.5, 4.0))
    assert shut.shape == (1, 1, 64, 64) and shut.abs().max() == 0
    assert wide.max() == 1 and half.max() == pytest.approx(0.5)
    rows, cols = torch.nonzero(wide[0, 0], as_tuple=True)
    # lips x 26-38, chin x 24-30 and y 50-51, lips y 40-44, one pixel more each way
    assert (cols.min().item(), cols.max().item()) == (23, 38)
    assert (rows.min().item(), rows.max().item()) == (39, 51)
    assert torch.equal(half > 0, wide > 0)
    with pytest.raises(ValueError, match=r"\(B, 68, 2\)"):
        mouth_region(torch.zeros(1, 5, 2), 64)


def test_inner_lip_gap_is_how_far_the_inner_lips_are_apart():
    from fewshot_th.losses import inner_lip_gap

    faces = torch.cat([_face(gap) for gap in (0.0, 0.7, 3.0)])
    assert inner_lip_gap(faces).tolist() == pytest.approx([0.0, 0.7, 3.0], abs=1e-6)
    moved = faces + torch.tensor([5.0, -3.0])  # the same faces elsewhere in the frame
    assert torch.allclose(inner_lip_gap(moved), inner_lip_gap(faces), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, 68, 2\)"):
        inner_lip_gap(torch.zeros(68, 2))


def test_the_mouth_term_counts_only_the_mouth_region_and_needs_the_landmarks():
    real = torch.rand(1, 3, 64, 64)
    points = _face(4.0)
    region = losses.mouth_region(points, 64)
    outside = real + 0.3 * (region == 0)  # wrong everywhere but around the mouth
    term = ContentLoss({"mouth": 5.0})
    assert term(outside, real, points).item() == 0
    inside = real + 0.3 * region
    assert term(inside, real, points).item() == pytest.approx(
        5 * (0.3 * region * region).mean().item(), rel=1e-5)
    both = ContentLoss({"pixel": 10.0, "mouth": 5.0})(inside, real, points)
    assert both.item() == pytest.approx(10 * (0.3 * region).mean().item()
                                        + term(inside, real, points).item(), rel=1e-5)
    with pytest.raises(ValueError, match="landmarks"):
        term(inside, real)
    with pytest.raises(ValueError, match="2 landmark sets for 1 frames"):
        term(inside, real, points.expand(2, -1, -1))


def test_the_mouth_region_covers_what_changes_when_a_synthheads_mouth_opens():
    """On speaking frames of held-out people, the region found from the landmarks holds most
    of the pixels that differ from the same frame with the mouth shut (the counterfactual
    render), in a small part of the frame, and nearly nothing when the mouth is shut."""
    from fewshot_th.data import SynthHeads
    from fewshot_th.diagnosis import speaking_episode

    test = SynthHeads("test", num_identities=6, num_videos_per_identity=1, frames_per_video=64,
                      size=64, seed=0)
    episodes = [e for i in range(6) if (e := speaking_episode(test, i)) is not None]
    assert episodes
    truth = torch.cat([e["truth"] for e in episodes])
    shut = torch.cat([e["shut"] for e in episodes])
    changed = (truth - shut).abs().amax(dim=1, keepdim=True) > 0.03
    region = losses.mouth_region(torch.cat([e["points"] for e in episodes]), 64)
    assert (region > 0)[changed].float().mean() > 0.8
    assert (region > 0).float().mean() < 0.1
    closed = losses.mouth_region(torch.cat([e["shut_points"] for e in episodes]), 64)
    assert closed.max() < 0.3 < region.amax(dim=(1, 2, 3)).mean()


def test_eyes_region_is_the_box_around_both_eyes_and_covers_synthheads_glasses():
    from fewshot_th.data import SynthHeads
    from fewshot_th.diagnosis import glasses_episode
    from fewshot_th.losses import eyes_region

    test = SynthHeads("test", num_identities=12, num_videos_per_identity=1,
                      frames_per_video=64, size=64, seed=0)
    episodes = [glasses_episode(test, i) for i in range(12)]
    assert any(e["wears"] for e in episodes) and not all(e["wears"] for e in episodes)
    points = torch.cat([e["points"] for e in episodes])
    region = eyes_region(points, 64)
    assert region.shape == (len(points), 1, 64, 64)
    assert set(region.unique().tolist()) <= {0.0, 1.0}
    # every eye landmark lies inside, the mouth outside
    for frame, pts in zip(region[:, 0], points):
        x, y = pts[:, 0].long(), pts[:, 1].long()
        assert frame[y[36:48], x[36:48]].all()
        assert not frame[y[62], x[62]]
    # the pixels that change when glasses go on or off: almost all inside, in a small box
    changed = (torch.cat([e["truth"] for e in episodes])
               - torch.cat([e["flipped"] for e in episodes])).abs().amax(dim=1, keepdim=True) > 0.03
    assert float((region.bool() & changed).sum() / changed.sum()) > 0.95
    assert float(region.mean()) < 0.1
    with pytest.raises(ValueError, match="68, 2"):
        eyes_region(torch.zeros(1, 5, 2), 64)


def test_the_eyes_term_counts_only_the_eye_region():
    from fewshot_th.losses import ContentLoss, eyes_region

    points = _face(2.0)
    region = eyes_region(points, 64)
    real = torch.full((1, 3, 64, 64), 0.5)
    inside = real + 0.2 * region
    outside = real + 0.2 * (1 - region)
    term = ContentLoss({"eyes": 3.0})
    assert float(term(outside, real, points)) == pytest.approx(0.0, abs=1e-7)
    assert float(term(inside, real, points)) == pytest.approx(3.0 * 0.2 * float(region.mean()),
                                                              rel=1e-5)
    with pytest.raises(ValueError, match="eyes.*landmarks"):
        term(inside, real)

import pytest
import torch
from torch import nn

from fewshot_th.config import ModelConfig, cpu, paper, profile, tiny
from fewshot_th.nn import Embedder, Generator, ProjectionDiscriminator
from fewshot_th.nn.blocks import SelfAttention, SNConv2d, adain, is_spectrally_normalized


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(0)
    config = tiny()
    # Eval mode: spectral norm's power iteration must not change the weights between calls.
    return config, Embedder(config).eval(), Generator(config).eval(), \
        ProjectionDiscriminator(config, 5).eval()


def _batch(config, b=2, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = config.image_size
    return torch.rand(b, k, 3, s, s, generator=g), torch.rand(b, k, 3, s, s, generator=g)


# --- configuration ---------------------------------------------------------------------

def test_profiles_by_name_and_the_papers_values():
    assert profile("tiny") == tiny() and profile("cpu") == cpu() and profile("paper") == paper()
    p = paper()
    assert (p.image_size, p.min_channels, p.max_channels, p.embedding_size) == (256, 64, 512, 512)
    assert p.channels(6) == [64, 128, 256, 512, 512, 512]
    assert p.image_size // 2**p.embedder_down_blocks == 4, "E and D end at 4 x 4"
    assert p.attention_down == (32,) and p.spectral_norm
    with pytest.raises(ValueError, match="unknown profile"):
        profile("gpu")


@pytest.mark.parametrize("changes, message", [
    ({"image_size": 100}, "divisible"),
    ({"min_channels": 128, "max_channels": 64}, "min_channels"),
    ({"generator_up_blocks": 3}, "up-sample"),
    ({"embedding_size": 0}, "positive"),
    ({"adain_eps": 0.0}, "eps"),
    ({"embedder_pooling": "max"}, "embedder_pooling must be one of"),
])
def test_bad_configs_raise_value_error(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny().with_changes(**changes)


# --- shapes ------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [tiny(), cpu(), paper()], ids=["tiny", "cpu", "paper"])
def test_shapes_for_every_profile(config):
    torch.manual_seed(0)
    b, k = (2, 3) if config.image_size <= 64 else (1, 2)
    frames, landmarks = _batch(config, b, k)
    embedder, generator = Embedder(config), Generator(config)
    discriminator = ProjectionDiscriminator(config, num_videos=7)
    with torch.no_grad():
        e, e_hat = embedder(frames, landmarks)
        fake = generator(landmarks[:, 0], e_hat)
        score, features = discriminator(fake, landmarks[:, 0], torch.arange(b))
    d = config.embedding_size
    assert e.shape == (b, k, d) and e_hat.shape == (b, d)
    assert fake.shape == (b, 3, config.image_size, config.image_size)
    assert score.shape == (b,) and len(features) == config.embedder_down_blocks + 1
    assert generator.project(e_hat).shape == (b, generator.num_adain_params)
    assert discriminator.W.shape == (7, d) and discriminator.w0.shape == (d,)


# --- AdaIN -------------------------------------------------------------------------------

def test_adain_output_has_the_mean_and_std_that_psi_prescribes():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 9, 9) * 5 + 2
    gamma = torch.tensor([[0.5, 2.0, 1.0, 3.0]] * 3)
    beta = torch.tensor([[-1.0, 0.0, 4.0, 0.25]] * 3)
    out = adain(x, torch.cat([gamma - 1, beta], 1), eps=1e-5)
    mean = out.mean((2, 3))
    std = out.var((2, 3), unbiased=False).sqrt()
    var_x = x.var((2, 3), unbiased=False)
    torch.testing.assert_close(mean, beta, atol=1e-5, rtol=0)
    torch.testing.assert_close(std, gamma * (var_x / (var_x + 1e-5)).sqrt(), atol=1e-5, rtol=0)


def test_adain_of_a_constant_map_is_finite_because_eps_is_inside_the_root():
    out = adain(torch.ones(1, 2, 4, 4), torch.zeros(1, 4))
    assert torch.isfinite(out).all() and (out == 0).all()


def test_adain_rejects_psi_of_the_wrong_size():
    with pytest.raises(ValueError, match="psi"):
        adain(torch.ones(1, 2, 4, 4), torch.zeros(1, 3))


# --- generator ---------------------------------------------------------------------------

def test_psi_hat_is_p_times_e_hat_and_explicit_psi_gives_the_same_frame(nets):
    config, embedder, generator, _ = nets
    frames, landmarks = _batch(config)
    generator.eval()
    with torch.no_grad():
        _, e_hat = embedder(frames, landmarks)
        psi_hat = generator.project(e_hat)
        weight = generator.P.normalized_weight()  # the matrix P actually applied
        torch.testing.assert_close(psi_hat, e_hat @ weight.T)
        torch.testing.assert_close(generator(landmarks[:, 0], e_hat),
                                   generator(landmarks[:, 0], psi=psi_hat))
        one_person = generator(landmarks[:, 0], psi=psi_hat[0])
        torch.testing.assert_close(one_person[0], generator(landmarks[:1, 0], psi=psi_hat[:1])[0])


def test_e_hat_changes_the_frame_only_through_the_adain_parameters(nets):
    config, _, generator, _ = nets
    generator.eval()
    torch.manual_seed(1)
    e1 = torch.randn(1, 512)
    landmarks = torch.rand(1, 3, config.image_size, config.image_size)
    with torch.no_grad():
        weight = generator.P.normalized_weight()  # (num_adain_params, 512): has a null space
        null = torch.linalg.svd(weight, full_matrices=True).Vh[weight.shape[0]:]
        e2 = e1 + 3.0 * null[0]  # a very different ê with the same ψ̂ = P ê
        torch.testing.assert_close(generator.project(e2), generator.project(e1),
                                   atol=1e-4, rtol=0)
        torch.testing.assert_close(generator(landmarks, e2), generator(landmarks, e1),
                                   atol=1e-5, rtol=0)
        e3 = e1 + 3.0 * weight[0] / weight[0].norm()  # changes ψ̂, so the frame changes
        assert not torch.allclose(generator(landmarks, e3), generator(landmarks, e1))


def test_generator_output_is_an_image_in_0_1(nets):
    config, _, generator, _ = nets
    with torch.no_grad():
        out = generator(torch.rand(2, 3, 32, 32), torch.randn(2, 512) * 100)
    assert out.min() >= 0 and out.max() <= 1


def test_generator_checks_its_arguments(nets):
    _, _, generator, _ = nets
    y = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="exactly one"):
        generator(y)
    with pytest.raises(ValueError, match="exactly one"):
        generator(y, torch.zeros(1, 512), psi=torch.zeros(1, generator.num_adain_params))
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        generator(torch.rand(1, 3, 64, 64), torch.zeros(1, 512))
    with pytest.raises(ValueError, match="psi must have shape"):
        generator(y, psi=torch.zeros(1, 7))
    with pytest.raises(ValueError, match="e_hat"):
        generator.project(torch.zeros(1, 3))


# --- embedder ----------------------------------------------------------------------------

def test_e_hat_is_the_mean_of_e_and_ignores_the_order_of_the_frames(nets):
    config, embedder, _, _ = nets
    frames, landmarks = _batch(config, b=2, k=5)
    with torch.no_grad():
        e, e_hat = embedder(frames, landmarks)
        order = torch.tensor([3, 0, 4, 2, 1])
        e2, e_hat2 = embedder(frames[:, order], landmarks[:, order])
        single, _ = embedder(frames[:1, 2:3], landmarks[:1, 2:3])
    torch.testing.assert_close(e_hat, e.mean(1))
    torch.testing.assert_close(e_hat2, e_hat, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(e2, e[:, order], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(single[0, 0], e[0, 2], atol=1e-5, rtol=1e-5,
                               msg="each frame is embedded on its own (no mixing across K)")
    assert (e >= 0).all(), "sum pooling is followed by a ReLU"


def test_embedder_checks_its_inputs(nets):
    _, embedder, _, _ = nets
    with pytest.raises(ValueError, match=r"\(B, K, 3, 32, 32\)"):
        embedder(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="same shape"):
        embedder(torch.rand(2, 3, 3, 32, 32), torch.rand(2, 4, 3, 32, 32))


# --- discriminator -----------------------------------------------------------------------

def test_score_equals_v_dot_w_i_plus_w0_plus_b_computed_by_hand(nets):
    config, _, _, discriminator = nets
    torch.manual_seed(2)
    with torch.no_grad():
        discriminator.w0.normal_()
        discriminator.b.fill_(0.7)
        image, landmarks = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
        index = torch.tensor([4, 0, 4])
        score, _ = discriminator(image, landmarks, index)
        v = discriminator.embed(image, landmarks)
        by_hand = torch.stack([v[n] @ (discriminator.W[index[n]] + discriminator.w0) + 0.7
                               for n in range(3)])
        torch.testing.assert_close(score, by_hand)
        w_prime = torch.randn(512)
        personal, _ = discriminator(image, landmarks, w=w_prime)
        torch.testing.assert_close(personal, v @ w_prime + 0.7)


def test_discriminator_checks_its_arguments(nets):
    _, _, _, discriminator = nets
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="exactly one"):
        discriminator(x, x)
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        discriminator(x, x, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="integers"):
        discriminator(x, x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="w must have shape"):
        discriminator(x, x, w=torch.zeros(3))
    with pytest.raises(ValueError, match="num_videos"):
        ProjectionDiscriminator(tiny(), 0)


# --- spectral norm, stability, gradients -------------------------------------------------

def _layers(module):
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("enabled", [True, False])
def test_spectral_norm_is_on_every_conv_and_linear_layer_when_enabled(enabled):
    config = tiny().with_changes(spectral_norm=enabled)
    for net in (Embedder(config), Generator(config), ProjectionDiscriminator(config, 3)):
        layers = _layers(net)
        assert len(layers) > 5
        normalised = [is_spectrally_normalized(m) for m in layers]
        assert all(normalised) if enabled else not any(normalised)


@pytest.mark.parametrize("zero", [True, False])
def test_zero_bias_init_starts_every_spectrally_normalised_layer_with_zero_biases(zero):
    config = tiny().with_changes(zero_bias_init=zero)
    for net in (Embedder(config), Generator(config), ProjectionDiscriminator(config, 3)):
        biases = [m.bias for m in _layers(net) if m.bias is not None]
        assert len(biases) > 3
        zeroed = [bool((b == 0).all()) for b in biases]
        # without it, torch's default initialisation draws every bias at random
        assert all(zeroed) if zero else not any(zeroed)


def test_configs_saved_before_a_field_existed_load_as_they_were_trained():
    from fewshot_th.config import TrainConfig, training

    old = {k: v for k, v in cpu().as_dict().items() if k != "zero_bias_init"}
    assert ModelConfig.from_dict(old) == cpu().with_changes(zero_bias_init=False)
    old = {k: v for k, v in cpu().as_dict().items() if k != "embedder_pooling"}
    assert ModelConfig.from_dict(old).embedder_pooling == "sum"
    old = {k: v for k, v in training("cpu").as_dict().items() if k != "adv_trains_w"}
    assert TrainConfig.from_dict(old).adv_trains_w is True
    # checkpoints written before adv_trains_w spelt it as a string
    for spelling, value in (("dsc+mch+adv", True), ("dsc+mch", False)):
        assert TrainConfig.from_dict({**old, "w_losses": spelling}).adv_trains_w is value
    with pytest.raises(ValueError, match="w_losses .now adv_trains_w. must be one of"):
        TrainConfig.from_dict({**old, "w_losses": "dsc"})
    # today's profiles: both discriminator fixes; the paper trains W with L_DSC and L_MCH only
    assert all(profile(name).zero_bias_init for name in ("tiny", "cpu", "paper"))
    assert not any(training(name).adv_trains_w for name in ("tiny", "cpu", "paper"))
    assert ModelConfig.from_dict(cpu().as_dict()) == cpu()
    assert TrainConfig.from_dict(training("cpu").as_dict()) == training("cpu")
    with pytest.raises(ValueError, match="adv_trains_w must be True or False"):
        training("cpu").with_changes(adv_trains_w="dsc+mch")


def test_spectral_norm_bounds_the_largest_singular_value_of_p():
    generator = Generator(tiny())
    generator.train()
    for _ in range(20):  # power iterations run in training-mode forward passes
        generator.project(torch.randn(1, 512))
    sigma = torch.linalg.matrix_norm(generator.P.normalized_weight().detach(), ord=2)
    assert 0.9 < float(sigma) < 1.1


@pytest.mark.parametrize("value", [0.0, 1.0, 0.5])
def test_no_nan_or_inf_for_black_white_and_constant_inputs(nets, value):
    config, embedder, generator, discriminator = nets
    s = config.image_size
    frames = torch.full((2, 3, 3, s, s), value)
    with torch.no_grad():
        e, e_hat = embedder(frames, frames)
        out = generator(frames[:, 0], e_hat)
        score, features = discriminator(out, frames[:, 0], torch.tensor([0, 1]))
    for t in (e, e_hat, out, score, *features):
        assert torch.isfinite(t).all()


def test_after_one_backward_pass_every_learning_parameter_has_a_gradient():
    torch.manual_seed(0)
    config = tiny()
    embedder, generator = Embedder(config), Generator(config)
    discriminator = ProjectionDiscriminator(config, 4)
    frames, landmarks = _batch(config, b=2, k=2)
    index = torch.tensor([1, 3])

    def step():
        for net in (embedder, generator, discriminator):
            net.zero_grad(set_to_none=True)
        _, e_hat = embedder(frames, landmarks)
        fake = generator(landmarks[:, 0], e_hat)
        fake_score, _ = discriminator(fake, landmarks[:, 0], index)
        real_score, _ = discriminator(frames[:, 0], landmarks[:, 0], index)
        loss = -fake_score.mean() + torch.relu(1 - real_score).mean() + \
            (discriminator.W[index] - e_hat).abs().mean()
        loss.backward()

    def without_grad(net):
        return {name for name, p in net.named_parameters()
                if p.grad is None or not p.grad.abs().sum() > 0}

    step()
    # With γ = 0 (its initial value) attention is the identity: only γ learns at first.
    for net in (embedder, generator, discriminator):
        missing = without_grad(net)
        assert all(".query." in n or ".key." in n or ".value." in n or ".out." in n
                   for n in missing), missing
    for module in (*embedder.modules(), *generator.modules(), *discriminator.modules()):
        if isinstance(module, SelfAttention):
            module.gamma.data.fill_(0.5)
    step()
    for net in (embedder, generator):
        assert not without_grad(net)
    assert not without_grad(discriminator), "W too: the loss above includes a match term"
    rows = discriminator.W.grad.abs().sum(1)
    assert (rows[[1, 3]] > 0).all() and (rows[[0, 2]] == 0).all(), \
        "only the rows of the videos in the batch learn"


def test_model_config_is_frozen_and_round_trips_through_a_dict():
    config = cpu()
    with pytest.raises(AttributeError):
        config.image_size = 128
    assert ModelConfig(**config.as_dict()) == config


@pytest.mark.parametrize("shape", [(2, 4, 3, 3), (2, 64, 3, 3)])
def test_output_scaled_spectral_norm_equals_dividing_the_weight(shape):
    """Both ways of applying 1/σ (weight or output, whichever is cheaper) agree, with grads."""
    torch.manual_seed(0)
    layer = SNConv2d(shape[1], 8, 3)
    x = torch.randn(*shape, requires_grad=True)
    layer.eval()  # keep u, v fixed
    out = layer(x)
    reference = torch.nn.functional.conv2d(x, layer.weight / layer.sigma(), layer.bias,
                                           padding=1)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
    grad_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x, layer.weight), grad_out)
    grads_ref = torch.autograd.grad(reference, (x, layer.weight), grad_out)
    for g, r in zip(grads, grads_ref):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)


def test_configs_come_back_from_json_as_they_were():
    import json

    from fewshot_th.config import TrainConfig, training

    for config in (profile("cpu"), profile("paper")):
        assert ModelConfig.from_dict(json.loads(json.dumps(config.as_dict()))) == config
    for name in ("cpu", "paper"):
        train = training(name)
        assert TrainConfig.from_dict(json.loads(json.dumps(train.as_dict()))) == train
    with pytest.raises(ValueError, match="no fields"):
        ModelConfig.from_dict({"image_size": 64, "colour": "red"})


def test_self_attention_weights_are_the_ones_forward_uses():
    torch.manual_seed(0)
    block = SelfAttention(16, sn=False).eval()
    with torch.no_grad():
        block.gamma.fill_(0.7)
    x = torch.randn(2, 16, 8, 6)
    weights = block.attention(x)
    assert weights.shape == (2, 48, 12)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 48), atol=1e-5)
    values = torch.nn.functional.max_pool2d(block.value(x), 2).flatten(2)  # (B, C/2, 12)
    attended = (weights @ values.transpose(1, 2)).transpose(1, 2).reshape(2, 8, 8, 6)
    with torch.no_grad():
        assert torch.allclose(block(x), x + 0.7 * block.out(attended), atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        block.attention(torch.randn(2, 8, 8, 8))


def test_weighted_pooling_starts_as_the_papers_sum_and_weights_each_channel_and_position():
    from fewshot_th.nn import count_parameters
    from fewshot_th.nn.embedder import load_embedder

    torch.manual_seed(0)
    config = tiny()
    summed = Embedder(config).eval()
    weighted = Embedder(config.with_changes(embedder_pooling="weighted")).eval()
    load_embedder(weighted, summed.state_dict())  # the paper's E, its positions weighted 1
    side = config.image_size // 2**config.embedder_down_blocks
    assert count_parameters(weighted) - count_parameters(summed) == config.embedding_size * side**2
    frames, landmarks = _batch(config)
    with torch.no_grad():
        e_hat = summed(frames, landmarks)[1]
        assert torch.equal(weighted(frames, landmarks)[1], e_hat)
        # weight 0 for one channel at one corner: that channel's sum loses that position only
        c = int(e_hat[0].argmax())
        weighted.position_weights[c, 0, 0] = 0.0
        maps = weighted.trunk(torch.cat([frames, landmarks], dim=2).flatten(0, 1))[-1]
        sums = maps.sum(dim=(2, 3))
        sums[:, c] -= maps[:, c, 0, 0]
        expected = torch.relu(sums).view(2, 3, -1).mean(dim=1)
        assert torch.allclose(weighted(frames, landmarks)[1], expected, atol=1e-5)
        assert not torch.allclose(weighted(frames, landmarks)[1], e_hat)
    weighted.train()
    weighted(frames, landmarks)[1].sum().backward()
    assert weighted.position_weights.grad.abs().sum() > 0
    with pytest.raises(RuntimeError, match="position_weights"):  # no way back to the sum
        load_embedder(summed, weighted.state_dict())
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_embedder(weighted, Embedder(config.with_changes(min_channels=4)).state_dict())

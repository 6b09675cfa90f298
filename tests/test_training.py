import json
import math
import subprocess
import sys

import pytest
import torch

from fewshot_th import checkpoint as ckpt
from fewshot_th.config import tiny, training
from fewshot_th.data import EpisodeDataset, SynthHeads, episode_batches
from fewshot_th.losses import ContentLoss
from fewshot_th.meta import TalkingHeadModel, TrainingDiverged, meta_step
from fewshot_th.trainer import RunDirectoryInUse, Trainer


@pytest.fixture(scope="module")
def videos():
    return SynthHeads(num_identities=3, num_videos_per_identity=2, frames_per_video=5, size=32)


def _trainer(videos, out, **kwargs):
    torch.manual_seed(0)
    model = TalkingHeadModel.build(kwargs.pop("config", tiny()), num_videos=len(videos))
    train = kwargs.pop("train", training("tiny"))
    return Trainer(model, videos, train, ContentLoss({"pixel": 10.0}), out,
                   checkpoint_every=kwargs.pop("checkpoint_every", 0), sample_every=0,
                   **kwargs)


def test_one_meta_step_updates_e_g_d_and_w_learns_from_the_match_loss(videos):
    torch.manual_seed(0)
    model = TalkingHeadModel.build(tiny(), num_videos=len(videos))
    train = training("tiny")
    opt_eg = torch.optim.Adam([*model.embedder.parameters(), *model.generator.parameters()])
    opt_d = torch.optim.SGD(model.discriminator.parameters(), lr=1.0)
    batch = next(episode_batches(EpisodeDataset(videos, k=2), batch_size=2))
    before = {k: v.clone() for k, v in model.state_tensors().items()}
    # With the hinge loss switched off, W moves only through L_MCH.
    original = meta_step.__globals__["discriminator_hinge_loss"]
    meta_step.__globals__["discriminator_hinge_loss"] = lambda r, f: 0 * (r.sum() + f.sum())
    try:
        losses = meta_step(model, batch, opt_eg, opt_d, ContentLoss({"pixel": 1.0}), train)
    finally:
        meta_step.__globals__["discriminator_hinge_loss"] = original
    after = model.state_tensors()
    assert set(losses) == {"cnt", "adv", "mch", "dsc"}
    rows = batch["video_index"]
    changed = (after["discriminator.W"] - before["discriminator.W"]).abs().sum(1)
    assert (changed[rows] > 0).all(), "W_i learns from the match loss"
    untouched = [i for i in range(len(videos)) if i not in rows.tolist()]
    assert (changed[untouched] == 0).all()
    for name in ("embedder.trunk.blocks.0.conv1.weight", "generator.P.weight"):
        assert not torch.equal(before[name], after[name])


@pytest.mark.parametrize("learns_from_adv", [True, False])
def test_w_learns_from_the_adversarial_loss_only_when_asked_to(videos, monkeypatch,
                                                               learns_from_adv):
    import fewshot_th.meta

    train = training("tiny").with_changes(adv_trains_w=learns_from_adv)
    real_adversarial_loss = fewshot_th.meta.adversarial_loss

    def w_gradient(with_adv: bool) -> torch.Tensor:
        monkeypatch.setattr(fewshot_th.meta, "adversarial_loss", real_adversarial_loss if with_adv
                            else lambda fake_score, *rest: 0 * fake_score.sum())
        model, _, _ = _one_step(videos, train, step=10)
        assert model.embedder.trunk.blocks[0].conv1.weight.grad.abs().sum() > 0
        return model.discriminator.W.grad.clone()

    with_adv, without_adv = w_gradient(True), w_gradient(False)
    assert without_adv.abs().sum() > 0, "L_DSC moves W"
    assert torch.allclose(with_adv, without_adv, atol=1e-6) != learns_from_adv
    if learns_from_adv:  # D scores real and generated frames above 1 here, so L_DSC gives W
        # only +v(x̂), which L_ADV's -v(x̂) cancels exactly (bench/RESULTS.md)
        assert with_adv.abs().max() < 1e-3 * without_adv.abs().max()


def test_d_steps_runs_extra_discriminator_updates(videos):
    torch.manual_seed(0)
    model = TalkingHeadModel.build(tiny(), num_videos=len(videos))
    train = training("tiny").with_changes(d_steps=3)
    opt_eg = torch.optim.Adam([*model.embedder.parameters(), *model.generator.parameters()])
    opt_d = torch.optim.Adam(model.discriminator.parameters())
    batch = next(episode_batches(EpisodeDataset(videos, k=2), batch_size=2))
    meta_step(model, batch, opt_eg, opt_d, ContentLoss({"pixel": 1.0}), train)
    first = next(iter(opt_d.state.values()))
    assert int(first["step"]) == 3


@pytest.mark.parametrize("step, e_and_g_learn", [(0, False), (1, False), (2, True)])
def test_d_warmup_keeps_e_and_g_fixed_while_d_and_w_learn(videos, step, e_and_g_learn):
    torch.manual_seed(0)
    model = TalkingHeadModel.build(tiny(), num_videos=len(videos))
    train = training("tiny").with_changes(d_warmup_steps=2, mch_warmup_steps=0)
    opt_eg = torch.optim.Adam([*model.embedder.parameters(), *model.generator.parameters()])
    opt_d = torch.optim.Adam(model.discriminator.parameters())
    batch = next(episode_batches(EpisodeDataset(videos, k=2), batch_size=2))
    nets = {"E": model.embedder, "G": model.generator, "D": model.discriminator}
    before = {k: [p.detach().clone() for p in net.parameters()] for k, net in nets.items()}
    losses = meta_step(model, batch, opt_eg, opt_d, ContentLoss({"pixel": 1.0}), train,
                       step=step)
    assert all(map(math.isfinite, losses.values()))
    moved = {k: sum(not torch.equal(b, p) for b, p in zip(before[k], net.parameters()))
             for k, net in nets.items()}
    for name in ("E", "G"):
        assert (moved[name] > 0) == e_and_g_learn, moved
    names = [n for n, _ in model.discriminator.named_parameters()]
    assert not torch.equal(before["D"][names.index("W")], model.discriminator.W), "W learns"
    assert moved["D"] > 1, "D learns throughout"
    assert bool(opt_eg.state) == e_and_g_learn


@pytest.mark.parametrize("lambda_score", [1.0, 0.1, 0.0])
def test_meta_step_weighs_the_score_term_by_lambda_score(videos, monkeypatch, lambda_score):
    """L_ADV's -D(x̂) enters E's and G's loss times ``lambda_score``; with λ_FM = 0 the
    adversarial loss is exactly that term."""
    import fewshot_th.meta

    torch.manual_seed(0)
    model = TalkingHeadModel.build(tiny(), num_videos=len(videos))
    train = training("tiny").with_changes(lambda_fm=0.0, lambda_score=lambda_score)
    seen = []
    real_and_fake = fewshot_th.meta.real_and_fake

    def recording(*args, **kwargs):
        out = real_and_fake(*args, **kwargs)
        seen.append(out[1].detach().float().mean().item())
        return out

    monkeypatch.setattr(fewshot_th.meta, "real_and_fake", recording)
    opt_eg = torch.optim.Adam([*model.embedder.parameters(), *model.generator.parameters()])
    opt_d = torch.optim.Adam(model.discriminator.parameters())
    batch = next(episode_batches(EpisodeDataset(videos, k=2), batch_size=2))
    losses = meta_step(model, batch, opt_eg, opt_d, ContentLoss({"pixel": 1.0}), train)
    assert seen[0] != 0
    assert losses["adv"] == pytest.approx(-lambda_score * seen[0], rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("bad", [-1, float("inf"), "0.1"])
def test_lambda_score_must_be_a_finite_weight(bad):
    with pytest.raises(ValueError, match="lambda_score"):
        training("tiny").with_changes(lambda_score=bad)


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_d_warmup_steps_must_be_a_count(bad):
    with pytest.raises(ValueError, match="d_warmup_steps"):
        training("tiny").with_changes(d_warmup_steps=bad)


def test_resume_continues_exactly(videos, tmp_path):
    straight = _trainer(videos, tmp_path / "a")
    straight.run(4, progress=False)
    interrupted = _trainer(videos, tmp_path / "b")
    interrupted.run(2, progress=False)
    interrupted.save()
    resumed = _trainer(videos, tmp_path / "b")
    assert resumed.load() == 2
    resumed.run(4, progress=False)
    a, b = straight.model.state_tensors(), resumed.model.state_tensors()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]


def test_d_margin_parts_split_the_score_difference_into_its_w_and_w0_parts(videos, bench_module):
    tool = bench_module("d_margin_parts")  # bench/: where a trained D's margin lives
    torch.manual_seed(0)
    model = TalkingHeadModel.build(tiny(), num_videos=len(videos)).eval()
    with torch.no_grad():
        model.discriminator.w0.normal_()
        model.discriminator.b.fill_(0.7)  # cancels in the difference
    parts = tool.parts(model, videos, episodes=4, seed=3, k=2)
    batch = next(episode_batches(EpisodeDataset(videos, k=2, seed=3), 4, seed=10))
    with torch.no_grad():
        _, e_hat = model.embedder(batch["source_frames"], batch["source_landmarks"])
        x_hat = model.generator(batch["target_landmarks"], e_hat)
        D, y, i = model.discriminator, batch["target_landmarks"], batch["video_index"]
        margin = D(batch["target_frame"], y, i)[0] - D(x_hat, y, i)[0]
    total = parts["margin via W_i"] + parts["margin via w0"]
    assert total == pytest.approx(float(margin.mean()), abs=1e-5)
    assert parts["real above generated"] == float((margin > 0).float().mean())
    assert parts["‖w0‖"] == pytest.approx(float(D.w0.detach().norm()))
    assert parts["‖v(x) - v(x̂)‖"] > 0  # an untrained G does not redraw the frame


def test_hinge_curves_average_windows_and_count_a_resumed_step_once(tmp_path, bench_module):
    tool = bench_module("hinge_curves")
    lines = [{"step": s, "dsc": 2.0} for s in (1, 2, 3, 4)]  # a first leg to step 4
    lines += [{"step": s, "dsc": 1.0} for s in (3, 4, 5)]  # resumed from step 2's checkpoint
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert tool.window_means(tmp_path / "metrics.jsonl", 2) == [(2, 2.0), (4, 1.0), (5, 1.0)]
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(SystemExit, match="metrics.jsonl:1: not a metrics line"):
        tool.window_means(tmp_path / "metrics.jsonl", 2)


def test_a_packed_checkpoint_travels_in_small_parts_and_resumes(videos, tmp_path, bench_module):
    parts_tool = bench_module("checkpoint_parts")  # bench/: a limit of the GPU set-up only
    trainer = _trainer(videos, tmp_path / "a")
    trainer.run(2, progress=False)
    original = trainer.save()
    parts = parts_tool.pack_checkpoint(original, tmp_path / "parts", max_mib=12)
    assert len(parts) > 1
    assert all(p.stat().st_size <= 12 * 2**20 for p in parts)
    joined = parts_tool.unpack_checkpoint(tmp_path / "parts", tmp_path / "b")
    (a, meta_a), (b, meta_b) = ckpt.load_checkpoint(original), ckpt.load_checkpoint(joined)
    assert meta_a == meta_b and a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        if name.endswith((".exp_avg", ".exp_avg_sq")):  # bfloat16 on the way: 8 bits
            assert torch.allclose(a[name], b[name], rtol=2**-8, atol=0), name
        else:  # weights, step counters and random states: exact
            assert torch.equal(a[name], b[name]), name
    resumed = _trainer(videos, tmp_path / "b")
    assert resumed.load() == 2
    resumed.run(3, progress=False)
    assert resumed.step == 3
    with pytest.raises(FileNotFoundError, match="no packed checkpoint"):
        parts_tool.unpack_checkpoint(tmp_path / "a", tmp_path / "c")
    with pytest.raises(ValueError, match="max_mib"):
        parts_tool.pack_checkpoint(original, tmp_path / "tiny", max_mib=1)


def test_checkpoints_keep_the_last_n_and_a_failed_save_keeps_the_last_good(
        videos, tmp_path, monkeypatch):
    trainer = _trainer(videos, tmp_path, checkpoint_every=1, keep=2)
    trainer.run(3, progress=False)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ["step-00000002.json", "step-00000003.json"]

    def killed(*args):
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(ckpt.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        trainer.run(4, progress=False)
    monkeypatch.undo()
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest.name == "step-00000003.json"
    tensors, meta = ckpt.load_checkpoint(latest)
    assert meta["step"] == 3 and "embedder.trunk.blocks.0.conv1.weight" in tensors


def test_checkpoints_are_safetensors_and_json_only(videos, tmp_path):
    trainer = _trainer(videos, tmp_path)
    trainer.run(1, progress=False)
    path = trainer.save()
    suffixes = sorted(p.suffix for p in tmp_path.iterdir() if p.name.startswith("step-"))
    assert suffixes == [".json", ".safetensors"]
    with pytest.raises(ValueError, match="json"):
        ckpt.load_checkpoint(path.with_suffix(".pt"))


def test_a_nan_loss_stops_training_and_names_the_last_good_checkpoint(videos, tmp_path):
    trainer = _trainer(videos, tmp_path, checkpoint_every=1)
    trainer.run(1, progress=False)

    class Broken(ContentLoss):
        def forward(self, fake, real, points=None):
            return fake.sum() * float("nan")

    trainer.content_loss = Broken({"pixel": 1.0})
    with pytest.raises(TrainingDiverged, match="step 2.*step-00000001"):
        trainer.run(3, progress=False)
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000001.json"


def test_w_learns_at_its_own_rate_and_a_bad_rate_is_refused(videos, tmp_path):
    trainer = _trainer(videos, tmp_path, train=training("tiny").with_changes(
        lr_w=0.05, init_w_from_e_hat=False))
    W = trainer.model.discriminator.W
    rest, w_group = trainer.opt_d.param_groups
    assert w_group["params"] == [W] and w_group["lr"] == 0.05
    assert rest["lr"] == training("tiny").lr_d and all(p is not W for p in rest["params"])
    before = W.detach().clone()
    trainer.run(1, progress=False)
    touched = (W.detach() - before).abs().amax(dim=1) > 0
    assert touched.any() and (W.detach() - before).abs().max() > 0.01  # a step of ~lr_w
    with pytest.raises(ValueError, match="lr_w"):
        training("tiny").with_changes(lr_w=0.0)


def test_trainer_rejects_a_discriminator_of_the_wrong_size(videos, tmp_path):
    model = TalkingHeadModel.build(tiny(), num_videos=len(videos) + 1)
    with pytest.raises(ValueError, match="columns"):
        Trainer(model, videos, training("tiny"), ContentLoss({"pixel": 1.0}), tmp_path)


def test_command_line_trains_and_resumes(tmp_path, cli):
    command = ["train", "--profile", "tiny", "--out", str(tmp_path), "--identities", "2",
               "--frames", "4", "--sample-every", "1"]
    first = cli(command + ["--steps", "1"])
    assert first.returncode == 0, first.stderr
    second = cli(command + ["--steps", "2", "--resume"])
    assert second.returncode == 0, second.stderr
    assert "resumed" in second.stdout and ckpt.latest_checkpoint(tmp_path).name.endswith("2.json")
    assert (tmp_path / "samples" / "step-00000002.png").exists()


def test_command_line_scores_held_out_people_as_it_trains_without_changing_the_training(
        tmp_path, cli, bench_module):
    command = ["train", "--profile", "tiny", "--identities", "2", "--frames", "4",
               "--sample-every", "0", "--checkpoint-every", "0"]
    scored = command + ["--out", str(tmp_path / "a"), "--eval-every", "1e-6",
                        "--test-identities", "2"]
    assert cli(scored + ["--steps", "1"]).returncode == 0
    log = tmp_path / "a" / "quality.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [row["step"] for row in rows] == [0, 1]  # before training, then every step
    assert set(rows[0]["scores"]) == {"same-video", "pose-distant"}
    assert set(rows[0]["scores"]["same-video"]) == {"1", "8", "32"}
    assert 0 == rows[0]["minutes"] <= rows[1]["minutes"]
    # a resumed run continues the log: no second line for step 1
    assert cli(scored + ["--steps", "2", "--resume"]).returncode == 0
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [0, 1, 2]
    bench_module("time_to_quality").main([str(tmp_path / "a")])  # the curves of the scores
    assert (tmp_path / "a" / "quality.png").stat().st_size > 0
    # the scores set the random state aside: the same weights as a run without them
    assert cli(command + ["--out", str(tmp_path / "b"), "--steps", "2"]).returncode == 0
    a, _ = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "a"))
    b, _ = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path / "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)
    bad = cli(command + ["--out", str(tmp_path / "c"), "--steps", "1", "--eval-every", "0"])
    assert bad.returncode == 2 and "--eval-every takes positive minutes" in bad.stderr


def test_command_line_changes_the_recipe_and_resume_keeps_the_model_it_was_made_with(tmp_path,
                                                                                    cli):
    command = ["train", "--profile", "tiny", "--out", str(tmp_path), "--identities", "2",
               "--frames", "4", "--sample-every", "0"]
    # the recipe of the models made before both discriminator fixes became the defaults
    changed = ["--set", "adv_trains_w=True", "--model", "zero_bias_init=False"]
    first = cli(command + ["--steps", "1"] + changed)
    assert first.returncode == 0, first.stderr
    meta = json.loads(ckpt.latest_checkpoint(tmp_path).read_text())
    assert meta["model_config"]["zero_bias_init"] is False
    assert meta["train_config"]["adv_trains_w"] is True
    # resuming with another recipe is allowed, and said; with another model it is refused
    other_recipe = cli(command + ["--steps", "2", "--resume"] + changed[2:])
    assert other_recipe.returncode == 0, other_recipe.stderr
    assert "another recipe" in other_recipe.stderr and "adv_trains_w" in other_recipe.stderr
    other_model = cli(command + ["--steps", "3", "--resume"])
    assert other_model.returncode == 2 and "zero_bias_init: False -> True" in other_model.stderr
    assert "Traceback" not in other_model.stderr
    bad = cli(command + ["--steps", "1", "--set", "lr_egg=1e-3"])
    assert bad.returncode == 2 and "no field 'lr_egg'" in bad.stderr


def test_with_assignments_reads_command_line_values_and_refuses_bad_ones():
    from fewshot_th.config import with_assignments

    changed = with_assignments(training("cpu"), ["lr_eg=5e-4", "adv_trains_w=True",
                                                 "betas=(0.0, 0.9)"])
    assert (changed.lr_eg, changed.adv_trains_w, changed.betas) == (5e-4, True, (0.0, 0.9))
    assert with_assignments(tiny(), ["zero_bias_init=True"]).zero_bias_init is True
    for pairs, message in ((["lr_eg"], "NAME=VALUE"), (["colour=red"], "no field 'colour'"),
                           (["adv_trains_w=dsc"], "True or False"),
                           (["w_losses=dsc+mch"], "is now adv_trains_w"),
                           (["lr_eg=fast"], "lr_eg takes a number"),
                           (["init_w_from_e_hat=false"], "True or False")):
        with pytest.raises(ValueError, match=message):
            with_assignments(training("cpu"), pairs)


def test_run_stops_at_a_time_limit_and_the_command_line_saves_there(videos, tmp_path, cli):
    trainer = _trainer(videos, tmp_path / "a")
    trainer.run(10 ** 6, progress=False, max_seconds=1.0)
    assert 1 <= trainer.step < 10 ** 6
    with pytest.raises(ValueError, match="max_seconds"):
        trainer.run(10, max_seconds=0)
    command = ["train", "--profile", "tiny", "--out", str(tmp_path / "b"), "--identities", "2",
               "--frames", "4", "--steps", "100000", "--minutes", "0.02", "--checkpoint-every",
               "0"]
    result = cli(command)
    assert result.returncode == 0, result.stderr
    saved = ckpt.latest_checkpoint(tmp_path / "b")
    assert saved is not None and 0 < int(saved.stem.split("-")[1]) < 100000
    bad = cli(command[:-4] + ["--minutes", "0"])
    assert bad.returncode == 2 and "--minutes" in bad.stderr


def test_the_installed_command_runs_as_a_process_and_refuses_vgg_content_without_weights(
        tmp_path):
    # The one test that starts ``python -m fewshot_th`` itself (the others call cli.main).
    env = {"FEWSHOT_TH_OFFLINE": "1", "TORCH_HOME": str(tmp_path / "torch"), "PATH": "/usr/bin"}
    result = subprocess.run([sys.executable, "-m", "fewshot_th", "train", "--profile", "tiny",
                             "--out", str(tmp_path / "run"), "--steps", "1", "--content",
                             "vgg19", "pixel"], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and "pixel" in result.stderr and "vgg19" in result.stderr


def _one_step(videos, train, step=0):
    torch.manual_seed(0)
    model = TalkingHeadModel.build(tiny(), num_videos=len(videos))
    opt_eg = torch.optim.SGD([*model.embedder.parameters(), *model.generator.parameters()],
                             lr=0.0)
    opt_d = torch.optim.SGD(model.discriminator.parameters(), lr=0.0)
    batch = next(episode_batches(EpisodeDataset(videos, k=2), batch_size=2))
    losses = meta_step(model, batch, opt_eg, opt_d, ContentLoss({"pixel": 1.0}), train,
                       step=step)
    return model, batch, losses


def test_w_is_initialised_from_e_hat_the_first_time_a_video_is_seen(videos):
    train = training("tiny").with_changes(mch_warmup_steps=0)
    model, batch, losses = _one_step(videos, train)
    D, index = model.discriminator, batch["video_index"]
    assert D.W_initialised[index].all() and D.W_initialised.sum() == len(index)
    model.eval()  # the same spectral-norm estimates as the step used, no new power iteration
    with torch.no_grad():
        _, e_hat = model.embedder(batch["source_frames"], batch["source_landmarks"])
    torch.testing.assert_close(D.W[index], e_hat, atol=1e-5, rtol=1e-5)
    assert losses["mch"] < 1e-4, "right after initialisation W_i equals ê_i"


def test_the_match_loss_ramps_in_linearly(videos):
    train = training("tiny").with_changes(init_w_from_e_hat=False, mch_warmup_steps=10)
    _, _, first = _one_step(videos, train, step=0)
    _, _, later = _one_step(videos, train, step=9)
    _, _, after = _one_step(videos, train, step=50)
    assert later["mch"] == pytest.approx(10 * first["mch"], rel=1e-4)
    assert after["mch"] == pytest.approx(later["mch"], rel=1e-4)


def test_bfloat16_autocast_runs_where_the_cpu_has_it_and_stays_close_to_float32(
        videos, tmp_path, monkeypatch):
    from fewshot_th.meta import fast_bfloat16
    from fewshot_th.nn.blocks import SNConv2d

    assert not fast_bfloat16("meta")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for capability, native in (((7, 5), False), ((8, 0), True), ((9, 0), True)):  # T4, A100, H100
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None, c=capability: c)
        assert fast_bfloat16("cuda") == native, capability
    monkeypatch.undo()
    with monkeypatch.context() as patch:  # a CPU without AVX512-BF16 or AMX: float32
        for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
            patch.setattr(torch.cpu, name, lambda: False, raising=False)
        assert not fast_bfloat16("cpu")
    # Spectral norm's σ stays float32 under autocast (a bfloat16 σ is off by up to 1%).
    layer = SNConv2d(4, 8, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer.sigma().dtype == torch.float32
        assert layer(torch.rand(1, 4, 8, 8)).dtype == torch.bfloat16
    mixed = _trainer(videos, tmp_path / "bf16")
    plain = _trainer(videos, tmp_path / "fp32", mixed_precision=False)
    assert isinstance(plain._autocast(), type(__import__("contextlib").nullcontext()))
    if not fast_bfloat16("cpu"):
        assert isinstance(mixed._autocast(), type(__import__("contextlib").nullcontext()))
        pytest.skip("this CPU has no native bfloat16: float32 is used, as checked above")
    assert isinstance(mixed._autocast(), torch.autocast)
    first_mixed = mixed.run(1, progress=False)[0]
    first_plain = plain.run(1, progress=False)[0]
    for key in ("cnt", "adv", "dsc"):  # same networks, same batch: close losses
        assert first_mixed[key] == pytest.approx(first_plain[key], rel=0.05, abs=0.02), key


def test_a_warm_start_copies_e_and_g_leaves_d_afresh_and_is_recorded(videos, tmp_path):
    torch.manual_seed(1)
    trained = TalkingHeadModel.build(tiny(), num_videos=2)  # other weights, another W size
    trainer = _trainer(videos, tmp_path)
    fresh_d = {k: v.clone() for k, v in trainer.model.discriminator.state_dict().items()}
    trainer.start_from(trained, "a test model")
    for mine, theirs in ((trainer.model.embedder, trained.embedder),
                         (trainer.model.generator, trained.generator)):
        for name, value in theirs.state_dict().items():
            assert torch.equal(mine.state_dict()[name], value), name
    for name, value in trainer.model.discriminator.state_dict().items():
        assert torch.equal(value, fresh_d[name]), name
    trainer.run(1, progress=False)
    meta = json.loads(trainer.save().read_text())
    assert meta["started_from"] == "a test model"
    resumed = _trainer(videos, tmp_path)
    resumed.load()
    assert resumed.started_from == "a test model"
    with pytest.raises(ValueError, match="before the first step"):
        trainer.start_from(trained, "again")
    other = TalkingHeadModel.build(tiny().with_changes(min_channels=4), num_videos=2)
    with pytest.raises(ValueError, match="other sizes"):
        _trainer(videos, tmp_path / "b").start_from(other, "a smaller model")


def test_a_warm_start_may_weight_the_positions_the_sum_pooling_of_its_source_adds(videos,
                                                                                tmp_path):
    torch.manual_seed(1)
    trained = TalkingHeadModel.build(tiny(), num_videos=2)
    weighted = tiny().with_changes(embedder_pooling="weighted")
    trainer = _trainer(videos, tmp_path, config=weighted)
    trainer.start_from(trained, "the paper's pooling")
    E = trainer.model.embedder
    ones = torch.ones_like(E.position_weights)
    assert torch.equal(E.position_weights, ones)
    for name, value in trained.embedder.state_dict().items():
        assert torch.equal(E.state_dict()[name], value), name
    trainer.run(1, progress=False)
    assert not torch.equal(E.position_weights, ones), "the weights train with E"
    learned = E.position_weights.detach().clone()
    trainer.save()
    resumed = _trainer(videos, tmp_path, config=weighted)
    resumed.load()
    assert torch.equal(resumed.model.embedder.position_weights, learned)
    with pytest.raises(ValueError, match="embedder_pooling: 'weighted' -> 'sum'"):
        _trainer(videos, tmp_path).load()


def test_a_branch_into_weighted_pooling_takes_the_step_the_run_would_have_taken(videos,
                                                                               tmp_path):
    """``Trainer.branch`` carries a run's G, D and Adam state into a weighted-pooling E: with
    the position weights at one, its first step is the step the run itself takes next."""
    run = _trainer(videos, tmp_path / "a")
    run.run(2, progress=False)
    path = run.save()
    weighted = tiny().with_changes(embedder_pooling="weighted")
    branch = _trainer(videos, tmp_path / "b", config=weighted)
    assert branch.branch(path) == 2 and branch.started_from == f"a branch of {path}"
    E = branch.model.embedder
    assert torch.equal(E.position_weights, torch.ones_like(E.position_weights))
    assert E.position_weights not in branch.opt_eg.state  # Adam starts it on its first step
    assert len(branch.opt_eg.state) == len(run.opt_eg.state) and \
        len(branch.opt_d.state) == len(run.opt_d.state)
    resumed = _trainer(videos, tmp_path / "a")
    resumed.load()
    resumed.run(3, progress=False)
    branch.run(3, progress=False)
    assert not torch.equal(E.position_weights, torch.ones_like(E.position_weights))
    mine = branch.model.state_tensors()
    for name, value in resumed.model.state_tensors().items():  # E, G and D: the same step
        assert torch.allclose(mine[name], value, atol=1e-6), name
    branch.save()
    again = _trainer(videos, tmp_path / "b", config=weighted)
    assert again.load() == 3 and again.started_from == f"a branch of {path}"


def test_a_branch_changes_only_the_pooling_and_keeps_another_run_safe(videos, tmp_path):
    run = _trainer(videos, tmp_path / "a")
    run.run(1, progress=False)
    path = run.save()
    weighted = tiny().with_changes(embedder_pooling="weighted")
    with pytest.raises(ValueError, match="changes only embedder_pooling.*--resume"):
        _trainer(videos, tmp_path / "b").branch(path)  # the same model: that is a resume
    with pytest.raises(ValueError, match="min_channels"):
        _trainer(videos, tmp_path / "b",
                 config=weighted.with_changes(min_channels=4)).branch(path)
    trained = _trainer(videos, tmp_path / "w", config=weighted)
    trained.run(1, progress=False)
    with pytest.raises(ValueError, match="'weighted' -> 'sum'"):  # the pooling can't be undone
        _trainer(videos, tmp_path / "b").branch(trained.save())
    with pytest.raises(ValueError, match="before the first step"):
        trained.branch(path)
    busy = _trainer(videos, tmp_path / "w", config=weighted)
    with pytest.raises(RunDirectoryInUse):
        busy.branch(path)
    assert busy.step == 0 and ckpt.latest_checkpoint(tmp_path / "w").name == "step-00000001.json"


def test_command_line_branches_a_run_into_weighted_pooling(tmp_path, cli):
    command = ["train", "--profile", "tiny", "--identities", "2", "--frames", "4",
               "--sample-every", "0"]
    assert cli(command + ["--out", str(tmp_path / "a"), "--steps", "1"]).returncode == 0
    source = str(ckpt.latest_checkpoint(tmp_path / "a"))
    branch = cli(command + ["--out", str(tmp_path / "b"), "--steps", "2", "--branch-from", source,
                            "--model", "embedder_pooling=weighted"])
    assert branch.returncode == 0, branch.stderr
    assert f"branched {source}" in branch.stdout and "at step 1" in branch.stdout
    meta = json.loads(ckpt.latest_checkpoint(tmp_path / "b").read_text())
    assert meta["step"] == 2 and meta["model_config"]["embedder_pooling"] == "weighted"
    same = cli(command + ["--out", str(tmp_path / "c"), "--steps", "2", "--branch-from", source])
    assert same.returncode == 2 and "changes only embedder_pooling" in same.stderr
    assert "Traceback" not in same.stderr
    both = cli(command + ["--out", str(tmp_path / "b"), "--steps", "3", "--resume",
                          "--branch-from", source])
    assert both.returncode == 2 and "--resume continues a run" in both.stderr


def test_command_line_warm_start_from_a_checkpoint_and_a_clear_error_for_a_bad_one(tmp_path,
                                                                                   cli):
    command = ["train", "--profile", "tiny", "--identities", "2", "--frames", "4",
               "--sample-every", "0", "--steps", "1"]
    first = cli(command + ["--out", str(tmp_path / "a")])
    assert first.returncode == 0, first.stderr
    source = ckpt.latest_checkpoint(tmp_path / "a")
    warm = cli(command + ["--out", str(tmp_path / "b"), "--start-from", str(source)])
    assert warm.returncode == 0, warm.stderr
    meta = json.loads(ckpt.latest_checkpoint(tmp_path / "b").read_text())
    assert meta["started_from"] == str(source)
    bad = cli(command + ["--out", str(tmp_path / "c"), "--start-from", "synthheads-cpu"])
    assert bad.returncode == 2 and "other sizes" in bad.stderr and "Traceback" not in bad.stderr


def test_generate_draws_the_watched_targets_and_keeps_the_mode(videos, tmp_path):
    trainer = _trainer(videos, tmp_path)
    batch = next(episode_batches(EpisodeDataset(videos, 2, seed=1), 3, seed=1))
    trainer.model.train()
    frames = trainer.generate(batch, count=2)
    assert frames.shape == (2, 3, 32, 32) and frames.dtype == torch.float32
    assert trainer.model.training and trainer.model.generator.training
    trainer.model.eval()
    assert torch.equal(trainer.generate(batch, count=2), frames)  # eval mode: deterministic
    assert not trainer.model.training
    with pytest.raises(ValueError, match="count"):
        trainer.generate(batch, count=4)  # the batch holds 3 episodes


def test_meta_step_and_fine_tuning_give_the_mouth_term_the_target_landmarks(videos):
    """A recipe with the ``mouth`` content term trains: the episodes' target points reach it
    in meta-learning, the K frames' points in fine-tuning."""
    from fewshot_th.finetune import few_shot

    torch.manual_seed(0)
    model = TalkingHeadModel.build(tiny(), num_videos=len(videos))
    train = training("tiny").with_changes(content=(("pixel", 10.0), ("mouth", 90.0)))
    content = ContentLoss(dict(train.content))
    opt_eg = torch.optim.Adam([*model.embedder.parameters(), *model.generator.parameters()])
    opt_d = torch.optim.Adam(model.discriminator.parameters())
    batch = next(episode_batches(EpisodeDataset(videos, k=2), batch_size=2))
    losses = meta_step(model, batch, opt_eg, opt_d, content, train)
    assert math.isfinite(losses["cnt"]) and losses["cnt"] > 0
    frames, points = videos.get_frames(0, [0, 1, 2])
    ft = few_shot(model, frames, points, mode="ft", steps=2, train=train, progress=False)
    assert len(ft.history) == 2 and not torch.equal(ft.psi, ft.psi_init)


def test_why_mouth_reads_the_landmark_networks_opening_and_where_g_lies_between_shut_and_open(
        bench_module):
    """A 'generator' that draws every speaking frame with the mouth shut lies at 0 between shut
    and open; one that draws the truth at 1; the landmark network finds the true mouths open
    wider than the shut ones."""
    from types import SimpleNamespace

    from fewshot_th.data import SynthHeads
    from fewshot_th.diagnosis import speaking_episode

    tool = bench_module("why_mouth")
    test = SynthHeads("test", num_identities=4, num_videos_per_identity=1, frames_per_video=64,
                      size=64, seed=0)
    people = [dict(e, e_hat=torch.zeros(4)) for i in range(4)
              if (e := speaking_episode(test, i)) is not None]
    assert people
    for key, expected in (("shut", 0.0), ("truth", 1.0)):
        frames = iter([p[key] for p in people])
        model = SimpleNamespace(config=SimpleNamespace(image_size=64),
                                generator=lambda images, e_hat, frames=frames: next(frames))
        found = tool.landmark_net_opening(model, people)
        assert found["generated_pixels_between_shut_and_open"] == pytest.approx(expected)
        assert found["generated"] == pytest.approx(found[key if key == "shut" else "true"])
        assert found["true"] > found["shut"] + 1


def test_why_glasses_trains_e_and_g_or_e_alone_and_leaves_the_rest_as_it_was(bench_module):
    tool = bench_module("why_glasses")
    torch.manual_seed(0)
    model = TalkingHeadModel.build(tiny(), 4).eval()
    episodes = tool.training_episodes(model.config.image_size, 12, seed=2)
    assert {e["wears"] for e in episodes} == {True, False}
    assert all("flipped" in e and "sources_flipped" not in e for e in episodes)

    def state(module):
        return {k: v.clone() for k, v in module.state_dict().items()}

    before = {name: state(getattr(model, name))
              for name in ("embedder", "generator", "discriminator")}
    reports = []
    trained = tool.train_eg(model, episodes, steps=2, weight=10.0, seed=0, eyes_term=5.0,
                            batch_size=2, every=1, report=lambda step, m: reports.append(step))
    assert reports == [1]  # the last step is the caller's to measure

    def changed(new, old):
        return any(not torch.equal(new[k], old[k]) for k in old)

    assert changed(state(trained.embedder), before["embedder"])
    assert changed(state(trained.generator), before["generator"])
    assert not changed(state(trained.discriminator), before["discriminator"])
    told, head = tool.supervised_e(model, episodes, steps=2, seed=0, batch_size=4)
    assert changed(state(told.embedder), before["embedder"])
    assert not changed(state(told.generator), before["generator"])
    assert 0 <= tool.head_auc(told, head, episodes) <= 1
    for name, module in before.items():  # the model handed in is untouched
        assert not changed(state(getattr(model, name)), module), name
    weighted = tool.with_weighted_pooling(model)  # the same ê until the weights train
    assert weighted.config.embedder_pooling == "weighted" and weighted.generator is model.generator
    sources = torch.stack([episodes[0]["sources"]])
    images = torch.rand_like(sources)
    with torch.no_grad():
        e_hat = model.embedder(sources, images)[1]
        assert torch.equal(weighted.embedder(sources, images)[1], e_hat)
    assert tool.position_weights(weighted)["position_weights_moved"] == 0
    groups = tool.adam(weighted.embedder, weighted.generator, pooling_lr=0.01).param_groups
    assert [g["lr"] for g in groups] == [4e-4, 0.01]
    assert groups[1]["params"] == [weighted.embedder.position_weights]
    assert len(tool.adam(model.embedder, model.generator, pooling_lr=0.01).param_groups) == 1
    assert tool.position_weights(model) == {}
    trained = tool.train_eg(weighted, episodes, steps=1, weight=1.0, seed=0, batch_size=2)
    assert not torch.equal(trained.embedder.position_weights, weighted.embedder.position_weights)
    moved = tool.position_weights(trained)
    side = model.config.image_size // 2**model.config.embedder_down_blocks
    assert moved["position_weights_moved"] > 0
    assert len(moved["position_weights_moved_by_position"]) == side
    rounded = tool.rounded({"a": [[0.123456]], "b": 1.000049, "c": "x"})
    assert rounded == {"a": [[0.1235]], "b": 1.0, "c": "x"}


def test_why_glasses_oracle_writes_who_wears_glasses_into_e_hat_and_trains_g_alone(bench_module):
    tool = bench_module("why_glasses")
    torch.manual_seed(0)
    model = TalkingHeadModel.build(tiny(), 4).eval()
    episodes = tool.training_episodes(model.config.image_size, 12, seed=2)
    oracle = tool.with_oracle(model, episodes, identities=6, seed=0)
    E = oracle.embedder
    size = model.config.image_size
    with torch.no_grad():
        for episode in episodes[:6]:
            sources = episode["sources"][None]
            images = torch.rand_like(sources)
            told = E(sources, images)[1]
            plain = model.embedder(sources, images)[1]
            expected = plain + E.direction if episode["wears"] else plain
            assert torch.allclose(told, expected), episode["wears"]
        assert E.direction.min() >= 0 and E.direction.norm() > 0
        with pytest.raises(KeyError):  # sources it was not told about
            E(torch.rand(1, 8, 3, size, size), torch.rand(1, 8, 3, size, size))
    before_e = {k: v.clone() for k, v in E.inner.state_dict().items()}
    before_g = {k: v.clone() for k, v in model.generator.state_dict().items()}
    trained = tool.train_eg(oracle, episodes, steps=1, weight=1.0, seed=0, batch_size=2)
    assert all(torch.equal(v, before_e[k]) for k, v in trained.embedder.inner.state_dict().items())
    assert any(not torch.equal(v, before_g[k])
               for k, v in trained.generator.state_dict().items())

import pytest
import torch

import fewshot_th
from fewshot_th import pretrained
from fewshot_th.config import cpu, tiny, training
from fewshot_th.data import SynthHeads
from fewshot_th.evaluation import evaluate_feed_forward
from fewshot_th.losses import ContentLoss
from fewshot_th.meta import TalkingHeadModel
from fewshot_th.trainer import Trainer


def test_export_and_load_pretrained_round_trip(tmp_path, monkeypatch):
    videos = SynthHeads(num_identities=2, num_videos_per_identity=2, frames_per_video=4,
                        size=32)
    torch.manual_seed(0)
    trainer = Trainer(TalkingHeadModel.build(tiny(), len(videos)), videos, training("tiny"),
                      ContentLoss({"pixel": 1.0}), tmp_path / "run", checkpoint_every=0,
                      sample_every=0)
    trainer.run(1, progress=False)
    checkpoint = trainer.save()
    monkeypatch.setattr(pretrained, "ASSETS", tmp_path / "assets")
    path = pretrained.export_pretrained(checkpoint, "tiny-test", {"command": "pytest"},
                                        directory=tmp_path / "assets", dtype=torch.float32)
    assert path.suffix == ".safetensors"
    assert pretrained.available() == ["tiny-test"]
    model = fewshot_th.load_pretrained("tiny-test")
    assert model.config == tiny() and model.info["command"] == "pytest"
    assert not model.generator.training and not model.embedder.training
    for name, value in trainer.model.state_tensors().items():
        assert torch.equal(model.state_tensors()[name], value.cpu()), name
    with pytest.raises(ValueError, match="available"):
        fewshot_th.load_pretrained("no-such-model")


def test_half_precision_export_loads_as_float32_close_to_the_original(tmp_path, monkeypatch):
    videos = SynthHeads(num_identities=2, num_videos_per_identity=1, frames_per_video=4,
                        size=32)
    torch.manual_seed(0)
    model = TalkingHeadModel.build(tiny(), len(videos))
    trainer = Trainer(model, videos, training("tiny").with_changes(batch_size=1),
                      ContentLoss({"pixel": 1.0}), tmp_path / "run", checkpoint_every=0,
                      sample_every=0)
    checkpoint = trainer.save()
    monkeypatch.setattr(pretrained, "ASSETS", tmp_path / "assets")
    pretrained.export_pretrained(checkpoint, "half", {}, directory=tmp_path / "assets")
    loaded = fewshot_th.load_pretrained("half")
    for name, value in trainer.model.state_tensors().items():
        got = loaded.state_tensors()[name]
        assert got.dtype == value.dtype, name
        if value.is_floating_point():
            torch.testing.assert_close(got, value.cpu(), atol=1e-3, rtol=1e-3)


def test_the_shipped_model_loads_in_eval_mode_and_keeps_unseen_identities():
    assert "synthheads-cpu" in pretrained.available()
    files = [pretrained.ASSETS / f"synthheads-cpu.{ext}" for ext in ("safetensors", "json")]
    assert sum(f.stat().st_size for f in files) <= 25 * 2**20
    model = fewshot_th.load_pretrained("synthheads-cpu")
    # the cpu profile's networks (both discriminator fixes), with E's weighted pooling
    assert model.config == cpu().with_changes(embedder_pooling="weighted")
    for net in (model.embedder, model.generator, model.discriminator):
        assert not net.training
    info = model.info
    for key in ("step", "training_minutes", "machine", "command", "scores", "train_config"):
        assert key in info, key
    assert info["scores"]["same-video"]["8"]["model"]["retrieval"] >= 0.95
    # The stored scores are the model's own: re-score 4 test identities at K = 8 here.
    torch.manual_seed(0)
    scores = evaluate_feed_forward(model, identities=4, k_values=(8,))
    same, far = scores["same-video"][8], scores["pose-distant"][8]
    assert same["model"]["retrieval"] >= 0.9
    assert same["model"]["ssim"] > 0.65 and same["model"]["l1"] < 0.08
    # Where copying cannot work (pose-distant targets) the model beats both ways of copying.
    for baseline in ("mean of sources", "nearest-landmark source"):
        assert far["model"]["ssim"] > far[baseline]["ssim"] + 0.05, baseline


def test_the_readme_gives_the_recipe_the_shipped_model_was_trained_with():
    """The README's flags for the shipped model's last leg, applied to today's cpu profile,
    give the model and training configuration stored with it."""
    import re
    from pathlib import Path

    from fewshot_th.cli import content_terms
    from fewshot_th.config import ModelConfig, TrainConfig, training, with_assignments

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    flags = re.search(r"last leg's recipe, the one stored with it\s+and fine-tuning starts "
                      r"from, is\s+`([^`]+)`", readme).group(1).split()
    assert flags[0] == "--content"
    terms = flags[1:flags.index("--set")]
    info = fewshot_th.load_pretrained("synthheads-cpu").info
    sets = [flags[i + 1] for i, f in enumerate(flags) if f == "--set"]
    models = [flags[i + 1] for i, f in enumerate(flags) if f == "--model"]
    profile = training("cpu")
    train = with_assignments(profile, sets).with_changes(
        content=content_terms(terms, profile.content))
    assert train == TrainConfig.from_dict(info["train_config"])
    assert with_assignments(cpu(), models) == ModelConfig.from_dict(info["model_config"])
    # every leg is in the stored command, the last one ending at the shipped step
    assert info["command"].count("fewshot-th train") >= 2 and f"{info['step']:,}" in \
        info["command"]

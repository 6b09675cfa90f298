import numpy as np
import pytest
import torch

import fewshot_th
from fewshot_th.config import tiny, training
from fewshot_th.data import SynthHeads
from fewshot_th.finetune import default_steps, few_shot
from fewshot_th.landmarks import draw_landmarks
from fewshot_th.meta import TalkingHeadModel


@pytest.fixture(scope="module")
def person():
    heads = SynthHeads("test", num_identities=1, num_videos_per_identity=1, frames_per_video=12,
                       size=32)
    return heads.get_frames(0, np.arange(12))


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TalkingHeadModel.build(tiny(), num_videos=4).eval()


def test_feed_forward_uses_the_mean_embedding_and_renders_like_g(model, person):
    frames, points = person
    personal = few_shot(model, frames[:4], points[:4], mode="ff", progress=False)
    with torch.no_grad():
        _, e_hat = model.embedder(frames[None, :4], draw_landmarks(points[:4], 32)[None])
        expected = model.generator(draw_landmarks(points[4:], 32), e_hat.expand(8, -1))
    torch.testing.assert_close(personal.e_hat, e_hat[0])
    torch.testing.assert_close(personal.psi, model.generator.project(e_hat)[0])
    rendered = personal.render(points[4:])
    assert rendered.shape == (8, 3, 32, 32) and 0 <= rendered.min() and rendered.max() <= 1
    torch.testing.assert_close(rendered, expected)
    assert personal.generator is model.generator and personal.history == []


def test_fine_tuning_starts_from_p_e_hat_and_w0_plus_e_hat_and_fits_the_k_frames(model, person):
    frames, points = person
    before = {k: v.clone() for k, v in model.state_tensors().items()}
    ff = few_shot(model, frames[:4], points[:4], mode="ff")
    ft = few_shot(model, frames[:4], points[:4], mode="ft", steps=40, progress=False)
    torch.testing.assert_close(ft.psi_init, ff.psi)
    torch.testing.assert_close(ft.w_init, model.discriminator.w0 + ff.e_hat)
    assert not torch.equal(ft.psi, ft.psi_init) and not torch.equal(ft.w, ft.w_init)
    assert len(ft.history) == 40 and ft.generator is not model.generator
    for name, value in model.state_tensors().items():  # the meta-learned model is untouched
        assert torch.equal(value, before[name]), name
    error_ff = (ff.render(points[:4]) - frames[:4]).abs().mean()
    error_ft = (ft.render(points[:4]) - frames[:4]).abs().mean()
    assert error_ft < 0.8 * error_ff


def test_fine_tuning_is_reproducible_with_a_seed(model, person):
    frames, points = person
    a = few_shot(model, frames[:3], points[:3], mode="ft", steps=3, seed=5, progress=False)
    b = few_shot(model, frames[:3], points[:3], mode="ft", steps=3, seed=5, progress=False)
    torch.testing.assert_close(a.psi, b.psi)


def test_default_steps_are_forty_passes_over_the_k_frames():
    assert [default_steps(k) for k in (1, 8, 32)] == [40, 40, 160]


@pytest.mark.parametrize("change, message", [
    (lambda f, p: (f[:0], p[:0]), "K >= 1"),
    (lambda f, p: (f[:, :, :16, :16], p), r"\(K, 3, 32, 32\)"),
    (lambda f, p: (f * 255, p), r"\[0, 1\]"),
    (lambda f, p: ((f * 255).to(torch.uint8), p), "255"),
    (lambda f, p: (f, p[:2]), "one set per frame"),
    (lambda f, p: (f, p[:, :5]), r"\(T, 68, 2\)"),
    (lambda f, p: (f, p * float("nan")), "NaN"),
])
def test_bad_inputs_are_refused_with_a_clear_message(model, person, change, message):
    frames, points = change(person[0][:3], person[1][:3])
    with pytest.raises(ValueError, match=message):
        few_shot(model, frames, points, mode="ft", steps=1, progress=False)


def test_bad_modes_and_steps_are_refused(model, person):
    frames, points = person[0][:2], person[1][:2]
    with pytest.raises(ValueError, match="'ff'"):
        few_shot(model, frames, points, mode="fine-tune")
    with pytest.raises(ValueError, match="fine-tuning only"):
        few_shot(model, frames, points, mode="ff", steps=10)
    with pytest.raises(ValueError, match="non-negative"):
        few_shot(model, frames, points, mode="ft", steps=-1)
    personal = few_shot(model, frames, points)
    with pytest.raises(ValueError, match=r"\(T, 68, 2\)"):
        personal.render(points[0])


def test_fine_tuning_uses_the_recipe_a_shipped_model_was_trained_with(model, person):
    model.info = {"train_config": {**training("tiny").as_dict(), "lr_eg": 1e-12,
                                   "lr_d": 1e-9, "content": [["pixel", 1.0]],
                                   "betas": [0.5, 0.999]}}
    frames, points = person[0][:2], person[1][:2]
    ft = few_shot(model, frames, points, mode="ft", steps=2, progress=False)
    torch.testing.assert_close(ft.psi, ft.psi_init)  # G at lr 1e-12: ψ' barely moved


def test_fine_tuning_makes_the_changes_a_shipped_model_stores_for_it(model, person):
    from fewshot_th.finetune import fine_tuning_recipe, train_config_of

    fast = {**training("tiny").as_dict(), "lr_eg": 1e-2, "lr_d": 1e-2,
            "content": [["pixel", 1.0]], "betas": [0.5, 0.999]}
    frames, points = person[0][:2], person[1][:2]
    model.info = {"train_config": fast}
    moved = few_shot(model, frames, points, mode="ft", steps=2, progress=False)
    assert (moved.psi - moved.psi_init).abs().max() > 1e-3  # at 1e-2 ψ' moves
    model.info = {"train_config": fast, "fine_tuning": {"lr_eg": 1e-12, "lr_d": 1e-9}}
    recipe = fine_tuning_recipe(model)
    assert (recipe.lr_eg, recipe.lr_d) == (1e-12, 1e-9)
    assert recipe.with_changes(lr_eg=1e-2, lr_d=1e-2) == train_config_of(model)
    kept = few_shot(model, frames, points, mode="ft", steps=2, progress=False)
    torch.testing.assert_close(kept.psi, kept.psi_init)  # the stored 1e-12, not 1e-2
    given = train_config_of(model)  # a recipe given outright wins over the stored changes
    assert fine_tuning_recipe(model, given) is given


def test_the_shipped_model_fine_tunes_at_the_papers_learning_rates():
    from fewshot_th.finetune import fine_tuning_recipe, train_config_of

    shipped = fewshot_th.load_pretrained("synthheads-cpu")
    recipe = fine_tuning_recipe(shipped)
    assert (recipe.lr_eg, recipe.lr_d) == (5e-5, 2e-4)  # the paper's Adam rates
    assert train_config_of(shipped).lr_eg == 4e-4  # what it was meta-learned with


def test_few_shot_grid_draws_every_k_and_mode_and_reuses_its_cache(model, tmp_path, monkeypatch):
    from fewshot_th import finetune
    from fewshot_th.finetune import few_shot_grid

    monkeypatch.setenv("FEWSHOT_TH_CACHE", str(tmp_path))
    videos = SynthHeads("test", num_identities=3, num_videos_per_identity=2, frames_per_video=36,
                        size=32, seed=0)
    targets = np.array([33, 35])
    truth, grid = few_shot_grid(model, videos, [2], targets, k_values=(1, 2), ft_steps=1,
                                progress=False)
    assert torch.equal(truth[2], videos.get_frames(4, targets)[0])  # person 2's first video
    sources, points = videos.get_frames(4, [0, 31])
    expected = few_shot(model, sources, points, mode="ft", steps=1, progress=False).render(
        videos.get_frames(4, targets)[1])
    assert torch.allclose(grid[2][(2, "ft")], expected, atol=1e-6)
    assert set(grid[2]) == {(1, "ff"), (1, "ft"), (2, "ff"), (2, "ft")}

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cached grid was computed again")

    monkeypatch.setattr(finetune, "few_shot", must_not_run)
    _, again = few_shot_grid(model, videos, [2], targets, k_values=(1, 2), ft_steps=1,
                             progress=False)
    assert all(torch.equal(again[2][key], grid[2][key]) for key in grid[2])
    with pytest.raises(AssertionError, match="computed again"):  # other steps: not cached
        few_shot_grid(model, videos, [2], targets, k_values=(1, 2), ft_steps=2, progress=False)
    model.info = {**getattr(model, "info", {}), "fine_tuning": {"lr_eg": 1e-5}}
    with pytest.raises(AssertionError, match="computed again"):  # another FT recipe: not cached
        few_shot_grid(model, videos, [2], targets, k_values=(1, 2), ft_steps=1, progress=False)
    with pytest.raises(ValueError, match="k_values"):
        few_shot_grid(model, videos, [2], targets, k_values=(0,))
    with pytest.raises(ValueError, match="modes"):
        few_shot_grid(model, videos, [2], targets, modes=("fast",))
    with pytest.raises(ValueError, match="identity"):
        few_shot_grid(model, videos, [7], targets)

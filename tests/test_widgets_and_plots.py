import ipywidgets as widgets
import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch

matplotlib.use("Agg")

from fewshot_th.data import SynthHeads  # noqa: E402
from fewshot_th.plot import (  # noqa: E402
    animate,
    overlay,
    show_few_shot,
    show_frame,
    show_images,
    to_numpy_image,
)
from fewshot_th.widgets import (  # noqa: E402
    UserStudy,
    episode_viewer,
    few_shot_explorer,
    synthheads_viewer,
)


@pytest.fixture(scope="module")
def heads():
    return SynthHeads(num_identities=3, num_videos_per_identity=2, frames_per_video=10, size=32)


def _sliders(widget):
    return {child.description: child for child in widget.children[0].children}


def test_synthheads_viewer_has_identity_video_and_frame_sliders_that_redraw(heads):
    viewer = synthheads_viewer(heads)
    sliders = _sliders(viewer)
    assert set(sliders) == {"identity", "video", "frame"}
    assert sliders["identity"].max == 2 and sliders["frame"].max == 9
    sliders["identity"].value = 2  # re-renders through the callback; must not raise
    sliders["frame"].value = 7
    assert isinstance(viewer.children[1], widgets.Output)


def test_show_frame_draws_one_frame_and_refuses_a_frame_that_does_not_exist(heads):
    fig = show_frame(heads, identity_index=2, video_of_identity=1, frame_index=9)
    assert len(fig.axes) == 3 and "video 5, frame 9" in fig._suptitle.get_text()
    for bad in ({"video_of_identity": 2}, {"identity_index": 3}, {"frame_index": 10},
                {"frame_index": 1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            show_frame(heads, **bad)
    matplotlib.pyplot.close("all")


def test_episode_viewer_offers_only_k_below_the_video_length(heads):
    viewer = episode_viewer(heads, k_values=(1, 8, 32))
    k = _sliders(viewer)["K"]
    assert list(k.options) == [1, 8]
    k.value = 1
    with pytest.raises(ValueError, match="below the 10 frames"):
        episode_viewer(heads, k_values=(10, 32))


def test_plot_helpers_check_their_inputs(heads):
    frames = heads[0]["frames"]
    assert to_numpy_image(frames[0]).shape == (32, 32, 3)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        to_numpy_image(frames)
    with pytest.raises(ValueError, match="same shape"):
        overlay(frames, frames[:2])
    with pytest.raises(ValueError, match="titles"):
        show_images(list(frames[:3]), ["one"])
    figure = show_images(list(frames[:3]), ["a", "b", "c"], ncols=2)
    assert len(figure.axes) == 4
    animation = animate([frames, frames.flip(0)], ["forward", "backward"])
    assert "<script" in animation.to_jshtml()
    assert torch.equal(overlay(frames, torch.zeros_like(frames)), frames * 0.6)


def _few_shot_results():
    torch.manual_seed(0)
    truth = {0: torch.rand(3, 3, 16, 16), 4: torch.rand(3, 3, 16, 16)}
    results = {person: {(k, mode): torch.rand(3, 3, 16, 16) for k in (1, 8, 32)
                        for mode in ("ff", "ft")} for person in truth}
    return truth, results


def test_few_shot_explorer_offers_person_k_mode_and_frame_and_redraws():
    truth, results = _few_shot_results()
    explorer = few_shot_explorer(truth, results)
    controls = {child.description: child for row in explorer.children[:2]
                for child in row.children}
    assert list(controls["person"].options) == [0, 4]
    assert list(controls["K"].options) == [1, 8, 32] and controls["K"].value == 8
    assert [value for _, value in controls["mode"].options] == ["ff", "ft"]
    assert controls["frame"].max == 2
    output = explorer.children[2]
    controls["mode"].value = "ft"
    controls["person"].value = 4
    assert isinstance(output, widgets.Output)
    with pytest.raises(ValueError, match="identities"):
        few_shot_explorer(truth, {0: results[0]})


def test_show_few_shot_draws_the_truth_and_every_k_for_each_mode():
    truth, results = _few_shot_results()
    fig = show_few_shot(truth[0], results[0], frame=1, identity=0)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["true frame", "FF, K = 1", "FF, K = 8", "FF, K = 32",
                      "true frame", "FT, K = 1", "FT, K = 8", "FT, K = 32"]
    shown = fig.axes[2].images[0].get_array()
    assert abs(float(shown.mean()) - float(results[0][(8, "ff")][1].mean())) < 1e-2


def test_user_study_tallies_the_fakes_found_and_saves_csv(tmp_path):
    torch.manual_seed(0)
    trials = [([torch.zeros(3, 8, 8), torch.zeros(3, 8, 8)], torch.ones(3, 8, 8), f"t{i}")
              for i in range(4)]
    study = UserStudy(trials, seed=1)
    first = study.images(0)
    assert len(first) == 3 and sum(float(img.mean()) for img in first) == 1.0
    assert study.score is None
    assert study.answer(study.fake_positions[0]) is True
    wrong = (study.fake_positions[1] + 1) % 3
    assert study.answer(wrong) is False
    assert study.score == 0.5
    with pytest.raises(ValueError, match="from 0 to 2"):
        study.answer(3)
    widget = study.widget()
    buttons = widget.children[0].children
    assert [b.description for b in buttons] == ["1 is fake", "2 is fake", "3 is fake"]
    buttons[study.fake_positions[2]].click()  # the widget records answers like answer()
    buttons[0].click()
    assert study.done and len(study.answers) == 4 and study.answers[2]["found"]
    with pytest.raises(ValueError, match="already"):
        study.answer(0)
    rows = study.to_csv(tmp_path / "answers.csv").read_text().splitlines()
    assert rows[0] == "trial,label,choice,fake,found" and len(rows) == 5
    assert rows[1].startswith("0,t0,")
    with pytest.raises(ValueError, match="at least one trial"):
        UserStudy([])


def test_architecture_draws_the_blocks_the_steps_after_them_and_where_psi_enters():
    from fewshot_th.config import tiny
    from fewshot_th.nn import Embedder, Generator
    from fewshot_th.plot import architecture, stage_shapes

    config = tiny()
    s = config.image_size
    frames = torch.rand(1, 1, 3, s, s)
    shapes = stage_shapes(Embedder(config), frames, frames)
    assert [name for name, _ in shapes][:1] == ["down 1"]
    attention = [name for name, _ in shapes if name.endswith("+ attention")]
    assert len(attention) == len([size for size in config.attention_down
                                  if size in [shape[1] for _, shape in shapes]])
    fig = architecture(shapes, "E", input_shape=(6, s, s), then=["sum pool", "mean over K"])
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "sum pool" in texts and "mean over K" in texts
    plt.close(fig)
    g_shapes = stage_shapes(Generator(config), torch.rand(1, 3, s, s),
                            torch.rand(1, config.embedding_size))
    fig = architecture(g_shapes, "G", adain="ψ̂ = P ê")
    adain_blocks = sum(name.startswith("AdaIN") for name, _ in g_shapes)
    arrows = [p for p in fig.axes[0].patches if type(p).__name__ == "FancyArrowPatch"]
    assert "ψ̂ = P ê" in [t.get_text() for t in fig.axes[0].texts]
    assert len(arrows) == len(g_shapes) - 1 + adain_blocks  # block to block, ψ̂ to each AdaIN
    plt.close(fig)


def test_method_diagram_names_every_input_of_d_and_every_loss():
    from fewshot_th.plot import method_diagram

    fig = method_diagram()
    text = " ".join(t.get_text() for t in fig.axes[0].texts)
    for needed in ("x̂_i(t)", "x_i(t)", "y_i(t)", "W_i", "L_CNT", "L_ADV", "L_DSC", "L_MCH", "ê_i"):
        assert needed in text, needed
    plt.close(fig)

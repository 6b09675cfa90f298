import ipywidgets as widgets
import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from fewshot_th.data import SynthHeads  # noqa: E402
from fewshot_th.plot import animate, overlay, show_images, to_numpy_image  # noqa: E402
from fewshot_th.widgets import episode_viewer, synthheads_viewer  # noqa: E402


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

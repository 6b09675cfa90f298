"""ipywidgets apps for the book. Each returns a widget; the book also shows a static figure."""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt

from .data.episodes import EpisodeDataset
from .landmarks import draw_landmarks
from .plot import overlay, show_images

__all__ = ["synthheads_viewer", "episode_viewer", "show_episode"]


def synthheads_viewer(dataset) -> widgets.Widget:
    """Identity, video and frame sliders: the frame, its landmark image and both overlaid."""
    identity = widgets.IntSlider(0, 0, dataset.num_identities - 1, description="identity")
    video = widgets.IntSlider(0, 0, dataset.num_videos_per_identity - 1, description="video")
    frame = widgets.IntSlider(0, 0, dataset.frames_per_video - 1, description="frame")

    def show(identity_index, video_of_identity, frame_index):
        index = identity_index * dataset.num_videos_per_identity + video_of_identity
        frames, points = dataset.get_frames(index, [frame_index])
        image = draw_landmarks(points, dataset.size)
        show_images([frames[0], image[0], overlay(frames, image)[0]],
                    ["frame", "landmark image y", "overlay"], size=2.4,
                    suptitle=f"identity {identity_index}, video {index}, frame {frame_index}")
        plt.show()

    controls = {"identity_index": identity, "video_of_identity": video, "frame_index": frame}
    out = widgets.interactive_output(show, controls)
    return widgets.VBox([widgets.HBox([identity, video, frame]), out])


def show_episode(episode: dict, max_sources: int = 16):
    """Figure of one episode: the K sources with their landmarks, and the target."""
    k = episode["source_frames"].shape[0]
    shown = min(k, max_sources)
    sources = overlay(episode["source_frames"][:shown], episode["source_landmarks"][:shown])
    target = overlay(episode["target_frame"][None], episode["target_landmarks"][None])[0]
    index = episode["frame_indices"].tolist()
    titles = [f"source {index[i]}" for i in range(shown)] + [f"TARGET {index[-1]}"]
    more = "" if shown == k else f" (first {shown} of {k} shown)"
    return show_images(list(sources) + [target], titles, ncols=min(shown + 1, 9), size=1.5,
                       suptitle=f"an episode: K = {k} source frames{more} and a different target")


def episode_viewer(dataset, k_values=(1, 8, 32)) -> widgets.Widget:
    """A K slider (and a video slider) showing one meta-learning episode."""
    k_values = [k for k in k_values if k < dataset.frames_per_video]
    if not k_values:
        raise ValueError(f"every K in k_values must be below the {dataset.frames_per_video} "
                         "frames of a video")
    k = widgets.SelectionSlider(options=k_values, value=k_values[min(1, len(k_values) - 1)],
                                description="K")
    video = widgets.IntSlider(0, 0, len(dataset) - 1, description="video")
    episodes = {value: EpisodeDataset(dataset, value) for value in k_values}

    def show(k_value, video_index):
        show_episode(episodes[k_value][video_index])
        plt.show()

    out = widgets.interactive_output(show, {"k_value": k, "video_index": video})
    return widgets.VBox([widgets.HBox([k, video]), out])

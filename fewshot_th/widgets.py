"""ipywidgets apps for the book. Each returns a widget; the book also shows a static figure."""

from __future__ import annotations

import csv
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from .checks import is_integer
from .data.episodes import EpisodeDataset
from .plot import (
    show_episode,
    show_frame,
    show_images,
    show_reenactment,
    show_video_folder_frame,
)

# The static figures these widgets draw live in fewshot_th.plot (show_frame, show_episode,
# show_few_shot, show_reenactment, show_video_folder_frame).
__all__ = ["synthheads_viewer", "episode_viewer", "few_shot_explorer", "UserStudy",
           "reenactment_explorer", "video_folder_viewer"]


def synthheads_viewer(dataset) -> widgets.Widget:
    """Identity, video and frame sliders: the frame, its landmark image and both overlaid."""
    identity = widgets.IntSlider(0, 0, dataset.num_identities - 1, description="identity")
    video = widgets.IntSlider(0, 0, dataset.num_videos_per_identity - 1, description="video")
    frame = widgets.IntSlider(0, 0, dataset.frames_per_video - 1, description="frame")

    def show(identity_index, video_of_identity, frame_index):
        show_frame(dataset, identity_index, video_of_identity, frame_index)
        plt.show()

    controls = {"identity_index": identity, "video_of_identity": video, "frame_index": frame}
    out = widgets.interactive_output(show, controls)
    return widgets.VBox([widgets.HBox([identity, video, frame]), out])


def video_folder_viewer(videos) -> widgets.Widget:
    """A video menu and a frame slider over a preprocessed folder (``VideoFolder``): each
    crop with its landmarks (``fewshot_th.plot.show_video_folder_frame``)."""
    if len(videos) == 0:
        raise ValueError(f"{videos!r} holds no videos to show")
    names = [(entry["name"], i) for i, entry in enumerate(videos.videos)]
    video = widgets.Dropdown(options=names, value=0, description="video")
    frame = widgets.IntSlider(0, 0, videos.num_frames(0) - 1, description="frame")

    def follow(change):  # videos differ in length
        frame.max = videos.num_frames(change["new"]) - 1

    video.observe(follow, names="value")

    def show(index, frame_index):
        show_video_folder_frame(videos, index, min(frame_index, videos.num_frames(index) - 1))
        plt.show()

    out = widgets.interactive_output(show, {"index": video, "frame_index": frame})
    return widgets.VBox([widgets.HBox([video, frame]), out])


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


def few_shot_explorer(truth: dict, results: dict) -> widgets.Widget:
    """Precomputed few-shot results, browsed instantly: identity, K, FF/FT and frame.

    ``truth``: ``{identity: (T, 3, H, W)}`` true frames; ``results``:
    ``{identity: {(K, mode): (T, 3, H, W)}}`` the person's model's frames for the same poses.
    """
    if not truth or set(truth) != set(results):
        raise ValueError("truth and results must have the same, non-empty set of identities")
    identities = sorted(truth)
    first = results[identities[0]]
    ks = sorted({k for k, _ in first})
    modes = sorted({mode for _, mode in first})
    identity = widgets.Dropdown(options=identities, description="person")
    k = widgets.SelectionSlider(options=ks, value=ks[len(ks) // 2], description="K")
    mode = widgets.ToggleButtons(options=[(m.upper(), m) for m in modes], description="mode")
    frame = widgets.IntSlider(0, 0, len(truth[identities[0]]) - 1, description="frame")

    def show(person, k_value, mode_value, frame_index):
        generated = results[person][(k_value, mode_value)][frame_index]
        real = truth[person][frame_index]
        error = (generated - real).abs().mean().item()
        show_images([real, generated, (generated - real).abs().mean(0, keepdim=True)
                     .expand(3, -1, -1).clamp(0, 1) * 3],
                    ["true frame", f"{mode_value.upper()}, K = {k_value}",
                     f"|difference| x 3 (L1 {error:.3f})"], size=2.4,
                    suptitle=f"person {person}, frame {frame_index}")
        plt.show()

    controls = {"person": identity, "k_value": k, "mode_value": mode, "frame_index": frame}
    out = widgets.interactive_output(show, controls)
    return widgets.VBox([widgets.HBox([identity, mode]), widgets.HBox([k, frame]), out])


class UserStudy:
    """The paper's USER metric as a study you take yourself (Sec. 4 of the paper).

    Each trial shows real frames of a person and one generated frame, in a shuffled order;
    you pick the one you think is fake. The score is the fraction of fakes found: 1/(number
    of images) is chance, lower is better for the generator.

    Args:
        trials: ``[(reals, fake, label), ...]``: ``reals`` a list of ``(3, H, W)`` real
            frames, ``fake`` one ``(3, H, W)`` generated frame, ``label`` what to record
            (e.g. ``"FT, K = 8"``).
        seed: the positions of the fakes.
    """

    def __init__(self, trials, seed: int = 0):
        if not trials:
            raise ValueError("a user study needs at least one trial")
        for number, trial in enumerate(trials):
            if len(trial) != 3 or not len(trial[0]):
                raise ValueError(f"trial {number} must be (reals, fake, label) with at least "
                                 "one real frame")
        rng = np.random.default_rng(seed)
        self.trials = list(trials)
        self.fake_positions = [int(rng.integers(len(reals) + 1)) for reals, _, _ in trials]
        self.answers: list[dict] = []

    @property
    def done(self) -> bool:
        return len(self.answers) == len(self.trials)

    @property
    def score(self) -> float | None:
        """Fraction of fakes found so far (None before the first answer)."""
        if not self.answers:
            return None
        return sum(a["found"] for a in self.answers) / len(self.answers)

    def images(self, trial: int) -> list:
        """The frames of a trial in the order they are shown."""
        reals, fake, _ = self.trials[trial]
        shown = list(reals)
        shown.insert(self.fake_positions[trial], fake)
        return shown

    def answer(self, choice: int) -> bool:
        """Record that the current trial's image number ``choice`` (from 0) was picked as the
        fake; returns whether it was."""
        if self.done:
            raise ValueError("every trial is answered already")
        trial = len(self.answers)
        options = len(self.trials[trial][0]) + 1
        if not is_integer(choice) or \
                not 0 <= choice < options:
            raise ValueError(f"choice must be an image number from 0 to {options - 1}, "
                             f"got {choice!r}")
        found = int(choice) == self.fake_positions[trial]
        self.answers.append({"trial": trial, "label": self.trials[trial][2],
                             "choice": int(choice), "fake": self.fake_positions[trial],
                             "found": found})
        return found

    def to_csv(self, path) -> Path:
        """Write the answers so far as CSV (trial, label, choice, fake, found)."""
        path = Path(path)
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["trial", "label", "choice", "fake", "found"])
            writer.writeheader()
            writer.writerows(self.answers)
        return path

    def widget(self) -> widgets.Widget:
        """Buttons to pick the fake, one trial after another, a running tally and a CSV button."""
        out = widgets.Output()
        status = widgets.Label()
        count = len(self.trials[0][0]) + 1
        buttons = [widgets.Button(description=f"{i + 1} is fake") for i in range(count)]
        path = widgets.Text(value="user_study.csv", description="CSV file")
        save = widgets.Button(description="save answers")

        def redraw():
            out.clear_output(wait=True)
            with out:
                if self.done:
                    print(f"Done: you found {self.score:.0%} of the fakes "
                          f"(chance: {1 / count:.0%}).")
                    return
                trial = len(self.answers)
                show_images(self.images(trial), [str(i + 1) for i in range(count)], size=2.4,
                            suptitle=f"trial {trial + 1} of {len(self.trials)}: which is fake?")
                plt.show()
            found = "" if self.score is None else f"; fakes found so far: {self.score:.0%}"
            status.value = f"{len(self.answers)} of {len(self.trials)} answered{found}"

        def pick(button):
            if not self.done:
                self.answer(buttons.index(button))
                redraw()

        def write(_):
            status.value = f"saved to {self.to_csv(path.value)}"

        for button in buttons:
            button.on_click(pick)
        save.on_click(write)
        redraw()
        return widgets.VBox([widgets.HBox(buttons), out, status, widgets.HBox([path, save])])


def reenactment_explorer(grid: dict) -> widgets.Widget:
    """Precomputed reenactments browsed instantly: person, driver, FF/FT, raw or adapted
    landmarks, and frame. ``grid``: ``{(person, driver): entry}`` from
    ``fewshot_th.reenact.reenactment_grid``."""
    if not grid:
        raise ValueError("grid must hold at least one (person, driver) entry")
    people = sorted({person for person, _ in grid})
    drivers = sorted({driver for _, driver in grid})
    first = next(iter(grid.values()))
    modes = sorted({key[0] for key in first if isinstance(key, tuple)})
    person = widgets.Dropdown(options=people, description="person")
    driver = widgets.Dropdown(options=drivers, description="driver")
    mode = widgets.ToggleButtons(options=[(m.upper(), m) for m in modes], description="mode")
    adapt = widgets.ToggleButtons(options=[("raw", False), ("adapted", True)], value=True,
                                  description="landmarks")
    frame = widgets.IntSlider(0, 0, len(first["truth"]) - 1, description="frame")

    def show(person_value, driver_value, mode_value, adapt_value, frame_index):
        entry = grid.get((person_value, driver_value))
        if entry is None:
            print(f"person {person_value} with driver {driver_value} was not computed")
            return
        show_reenactment(entry, mode_value, adapt_value, frame_index,
                         title=f"person {person_value} driven by person {driver_value}")
        plt.show()

    controls = {"person_value": person, "driver_value": driver, "mode_value": mode,
                "adapt_value": adapt, "frame_index": frame}
    out = widgets.interactive_output(show, controls)
    return widgets.VBox([widgets.HBox([person, driver]), widgets.HBox([mode, adapt]), frame,
                         out])

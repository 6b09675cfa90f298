"""ipywidgets apps for the book. Each returns a widget; the book also shows a static figure."""

from __future__ import annotations

import csv
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from .data.episodes import EpisodeDataset
from .landmarks import draw_landmarks
from .plot import overlay, show_images

__all__ = ["synthheads_viewer", "show_frame", "episode_viewer", "show_episode",
           "few_shot_explorer", "show_few_shot", "UserStudy"]


def show_frame(dataset, identity_index: int = 0, video_of_identity: int = 0,
               frame_index: int = 0):
    """Figure of one SynthHeads frame, its landmark image y and both overlaid (what
    ``synthheads_viewer`` draws for its sliders' values)."""
    for name, value, count in (("identity_index", identity_index, dataset.num_identities),
                               ("video_of_identity", video_of_identity,
                                dataset.num_videos_per_identity),
                               ("frame_index", frame_index, dataset.frames_per_video)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
            raise ValueError(f"{name} must be an integer in [0, {count}), got {value!r}")
    index = identity_index * dataset.num_videos_per_identity + video_of_identity
    frames, points = dataset.get_frames(index, [frame_index])
    image = draw_landmarks(points, dataset.size)
    return show_images([frames[0], image[0], overlay(frames, image)[0]],
                       ["frame", "landmark image y", "overlay"], size=2.4,
                       suptitle=f"identity {identity_index}, video {index}, frame {frame_index}")


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


def show_episode(episode: dict, max_sources: int = 16):
    """Figure of one episode: the K sources with their landmarks, and the target."""
    k = episode["source_frames"].shape[0]
    shown = min(k, max_sources)
    sources = overlay(episode["source_frames"][:shown], episode["source_landmarks"][:shown])
    target = overlay(episode["target_frame"][None], episode["target_landmarks"][None])[0]
    index = episode["frame_indices"].tolist()
    titles = [f"source {index[i]}" for i in range(shown)] + [f"TARGET {index[-1]}"]
    more = "" if shown == k else f" (first {shown} of {k} shown)"
    return show_images(list(sources) + [target], titles, ncols=min(shown + 1, 6), size=2.0,
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


def show_few_shot(truth, results: dict, frame: int = 0, identity=None):
    """Figure: the true frame and every (K, mode) result for it, one column per K.

    ``truth``: ``(T, 3, H, W)``; ``results``: ``{(K, mode): (T, 3, H, W)}``.
    """
    ks = sorted({k for k, _ in results})
    modes = sorted({mode for _, mode in results})
    images, titles = [], []
    for mode in modes:
        images.append(truth[frame])
        titles.append("true frame")
        for k in ks:
            images.append(results[(k, mode)][frame])
            titles.append(f"{mode.upper()}, K = {k}")
    who = "" if identity is None else f"person {identity}, "
    return show_images(images, titles, ncols=len(ks) + 1, size=1.8,
                       suptitle=f"{who}frame {frame}: feed-forward and fine-tuned, K = "
                                + ", ".join(str(k) for k in ks))


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
        if isinstance(choice, bool) or not isinstance(choice, (int, np.integer)) or \
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


def show_reenactment(entry: dict, mode: str = "ff", adapted: bool = True, frame: int = 0,
                     title: str | None = None):
    """One frame of a reenactment (an entry of ``fewshot_th.reenact.reenactment_grid``): the
    driver's frame, the driving landmark image, the generated frame and the exact frame of the
    person in that pose. Returns the figure."""
    key = (mode, adapted)
    if key not in entry:
        have = sorted(k for k in entry if isinstance(k, tuple))
        raise ValueError(f"no {mode.upper()} frames with {'adapted' if adapted else 'raw'} "
                         f"landmarks in this entry; it has (mode, adapted) = {have}")
    if not 0 <= frame < len(entry["truth"]):
        raise ValueError(f"frame must be in [0, {len(entry['truth'])}), got {frame}")
    generated, truth = entry[key][frame], entry["truth"][frame]
    landmarks = entry["adapted_images" if adapted else "raw_images"][frame]
    error = (generated - truth).abs().mean().item()
    return show_images([entry["driver"][frame], landmarks, generated, truth],
                       ["driver's frame", f"{'adapted' if adapted else 'raw'} landmarks",
                        f"{mode.upper()} (L1 {error:.3f})", "exact frame"], size=2.2,
                       suptitle=title)


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

"""Figures for the book: image grids, landmark overlays, animations, the method diagram."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import animation
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .checks import is_int
from .landmarks import draw_landmarks

__all__ = ["to_numpy_image", "overlay", "show_images", "animate", "method_diagram",
           "stage_shapes", "architecture", "scores_against_k", "gains_against_paper",
           "show_methods", "show_frame", "show_episode", "show_few_shot", "show_reenactment",
           "show_video_folder_frame", "show_mouth_by_opening"]


def to_numpy_image(image) -> np.ndarray:
    """``(3, H, W)`` tensor or array in [0, 1] -> ``(H, W, 3)`` float array for ``imshow``."""
    array = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) else \
        np.asarray(image, dtype=np.float32)
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"expected an image of shape (3, H, W), got {array.shape}")
    return np.clip(array.transpose(1, 2, 0), 0.0, 1.0)


def overlay(frames: torch.Tensor, landmark_images: torch.Tensor, dim: float = 0.6) -> torch.Tensor:
    """Landmark images drawn over (dimmed) frames: the brighter value wins per channel."""
    if frames.shape != landmark_images.shape:
        raise ValueError(f"frames {tuple(frames.shape)} and landmark images "
                         f"{tuple(landmark_images.shape)} must have the same shape")
    return torch.maximum(frames * dim, landmark_images)


def show_images(images: Sequence | torch.Tensor, titles: Sequence[str] | None = None,
                ncols: int | None = None, size: float = 2.2, suptitle: str | None = None):
    """Show ``(3, H, W)`` images in a grid; returns the matplotlib figure."""
    images = list(images)
    if not images:
        raise ValueError("show_images needs at least one image")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(titles)} titles for {len(images)} images")
    ncols = min(ncols or len(images), len(images))
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(to_numpy_image(images[i]), interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_methods(examples: dict[str, torch.Tensor], size: float = 2.2,
                 suptitle: str | None = None):
    """The same frames drawn by several methods: one row per method (``{name: (N, 3, H, W)}``,
    e.g. ``fewshot_th.diagnosis.method_examples``), one column per frame; the row's name
    stands over its first frame. Returns the figure."""
    if not examples:
        raise ValueError("show_methods needs at least one method's frames")
    counts = {name: len(frames) for name, frames in examples.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"every method needs the same number of frames, got {counts}")
    n = next(iter(counts.values()))
    images = [frame for frames in examples.values() for frame in frames]
    titles = [name if i == 0 else "" for name in examples for i in range(n)]
    return show_images(images, titles, ncols=n, size=size, suptitle=suptitle)


def animate(videos: Sequence[torch.Tensor], titles: Sequence[str] | None = None,
            fps: int = 8, size: float = 2.2):
    """Play several ``(T, 3, H, W)`` videos side by side; returns a ``FuncAnimation``.

    In a notebook, ``IPython.display.HTML(anim.to_jshtml())`` shows it with a play button,
    also in the rendered book.
    """
    videos = list(videos)
    if not videos or any(v.ndim != 4 for v in videos):
        raise ValueError("animate needs one or more videos of shape (T, 3, H, W)")
    length = min(len(v) for v in videos)
    fig, axes = plt.subplots(1, len(videos), figsize=(size * len(videos), size + 0.3),
                             squeeze=False)
    shown = []
    for i, (ax, video) in enumerate(zip(axes[0], videos)):
        ax.axis("off")
        shown.append(ax.imshow(to_numpy_image(video[0]), interpolation="nearest"))
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()

    def step(t):
        for artist, video in zip(shown, videos):
            artist.set_data(to_numpy_image(video[t]))
        return shown

    anim = animation.FuncAnimation(fig, step, frames=length, interval=1000 / fps, blit=True)
    plt.close(fig)
    return anim


def _box(ax, xy, text, color, width=1.5, height=0.8):
    ax.add_patch(FancyBboxPatch((xy[0] - width / 2, xy[1] - height / 2), width, height,
                                boxstyle="round,pad=0.05", fc=color, ec="black", lw=1))
    ax.text(xy[0], xy[1], text, ha="center", va="center", fontsize=9)


def _arrow(ax, start, end, text=None):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, lw=1.2))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.15, text,
                ha="center", fontsize=8)


def method_diagram():
    """The paper's Fig. 2 in boxes: what each network takes and gives, and where each loss
    of a meta-learning step compares what (Sec. 3.2)."""
    fig, ax = plt.subplots(figsize=(12, 5.6))
    ax.set_xlim(0, 14)
    ax.set_ylim(-0.3, 6.3)
    ax.axis("off")
    embed, person = (4.0, 5.2), (6.9, 5.2)
    _box(ax, (1.3, 5.2), "K frames x_i(s)\n+ landmarks y_i(s)", "#dfe9f7", 2.2)
    _box(ax, embed, "Embedder E\n(one frame at a time)", "#ffd9a8", 2.0)
    _box(ax, person, "ê_i = mean of\nthe K vectors (Eq. 1)", "#fff3c4", 2.2)
    _box(ax, (1.3, 2.9), "target landmarks\ny_i(t)", "#dfe9f7", 2.2)
    _box(ax, (6.9, 2.9), "Generator G\nAdaIN(ψ̂_i = P ê_i)", "#c9efc9", 2.2)
    _box(ax, (9.5, 2.9), "x̂_i(t)", "#f3d1f4", 1.0)
    _box(ax, (9.5, 0.6), "real frame\nx_i(t)", "#dfe9f7", 1.6)
    _box(ax, (12.4, 2.9), "Discriminator D\nr = V(x, y)ᵀ(W_i + w0) + b", "#f7c6c6", 2.8, 1.0)
    _box(ax, (12.4, 5.2), "W_i: column of video i\n(index i in)", "#f7c6c6", 2.8)
    _arrow(ax, (2.4, 5.2), (3.0, 5.2))
    _arrow(ax, (5.0, 5.2), (5.8, 5.2), "e_i(s)")
    _arrow(ax, (6.9, 4.8), (6.9, 3.35), "ψ̂_i = P ê_i")
    _arrow(ax, (2.4, 2.9), (5.8, 2.9))
    _arrow(ax, (8.0, 2.9), (9.0, 2.9))
    _arrow(ax, (10.0, 2.9), (11.0, 2.9), "x̂ or x")
    _arrow(ax, (10.3, 0.75), (11.4, 2.4))
    _arrow(ax, (1.8, 2.45), (11.2, 2.38))  # y(t) goes to D too
    ax.text(5.0, 2.12, "y_i(t), to D as well", ha="center", fontsize=8)
    _arrow(ax, (12.4, 4.75), (12.4, 3.4))
    losses = {(9.5, 1.65): "L_CNT: x̂ against x\n(perceptual)",
              (12.85, 1.35): "L_ADV (for G): -r(x̂)\n+ feature matching\n"
                             "L_DSC (for D): hinge",
              (9.7, 5.65): "L_MCH: |W_i - ê_i| (for E and W)"}
    for (x, y), text in losses.items():
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5, color="#8b1a1a",
                bbox={"boxstyle": "round", "fc": "white", "ec": "#8b1a1a", "lw": 0.8})
    ax.plot([8.0, 11.0], [5.4, 5.4], color="#8b1a1a", lw=1, ls="--")
    ax.text(7.0, -0.15, "meta-learning: E, G, D trained on K-shot episodes of many videos; "
            "few-shot: ê from K frames of a new person (FF), then fine-tuning (FT)",
            ha="center", fontsize=8.5, style="italic")
    ax.set_title("Few-shot talking heads (Zakharov et al., 2019): one meta-learning step")
    return fig


def stage_shapes(network: torch.nn.Module, *inputs, **kwargs) -> list[tuple[str, tuple]]:
    """Run ``network(*inputs, **kwargs)`` once and record the output shape of each of its
    ``stages()`` (``[(name, (C, H, W)), ...]``); a stage that ends in self-attention is named
    "... + attention"."""
    from .nn.blocks import SelfAttention

    shapes, hooks = [], []
    for name, module in network.stages():
        if any(isinstance(m, SelfAttention) for m in module.modules()):
            name = f"{name} + attention"
        hooks.append(module.register_forward_hook(
            lambda m, a, out, name=name: shapes.append((name, tuple(out.shape[1:])))))
    try:
        with torch.no_grad():
            network(*inputs, **kwargs)
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def architecture(shapes: list[tuple[str, tuple]], title: str, input_shape: tuple | None = None,
                 then: Sequence[str] = (), adain: str | None = None):
    """Draw a network as a row of blocks (height ~ resolution, width ~ log2(channels)) joined
    by arrows, followed by the steps ``then`` names (e.g. sum pooling, the mean over K
    frames); ``adain`` labels the vector that feeds every block whose name starts with
    "AdaIN" (G's ψ̂ = P ê). Returns the figure."""
    items = ([("input", input_shape)] if input_shape else []) + list(shapes)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.05 * len(items) + 1.6 * len(then)), 3.8))
    largest = max(shape[1] for _, shape in items)
    x, previous, adain_x = 0.0, None, []
    for name, (channels, height, width) in items:
        h = 0.25 + 2.2 * height / largest
        w = 0.12 * np.log2(channels + 1)
        if previous is not None:
            _arrow(ax, (previous, 0), (x, 0))
        color = "#c9efc9" if name.startswith("AdaIN") else "#c9dcf2"
        ax.add_patch(plt.Rectangle((x, -h / 2), w, h, fc=color, ec="black"))
        label = name.replace(" + ", "\n+ ")  # "down 2 + attention" on two lines
        ax.text(x + w / 2, -h / 2 - 0.12, f"{label}\n{channels}x{height}x{width}",
                ha="center", va="top", fontsize=7)
        if name.startswith("AdaIN"):
            adain_x.append((x + w / 2, h / 2))
        previous = x + w
        x += w + 0.55
    for label in then:
        _arrow(ax, (previous, 0), (x, 0))
        width = 0.13 * max(len(line) for line in label.splitlines()) + 0.3
        ax.add_patch(FancyBboxPatch((x, -0.35), width, 0.7, boxstyle="round,pad=0.05",
                                    fc="#fff3c4", ec="black"))
        ax.text(x + width / 2, 0, label, ha="center", va="center", fontsize=8)
        previous = x + width
        x += width + 0.55
    if adain and adain_x:
        left, right = adain_x[0][0], adain_x[-1][0]
        ax.text((left + right) / 2, 1.75, adain, ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "round", "fc": "#fff3c4", "ec": "black"})
        for centre, top in adain_x:
            _arrow(ax, (centre, 1.55), (centre, top + 0.02))
    ax.set_xlim(-0.3, x)
    ax.set_ylim(-2.1, 2.1)
    ax.axis("off")
    ax.set_title(title)
    return fig


def scores_against_k(results: dict):
    """One panel per metric (FID, SSIM, L1, L1 on one-sided details, identity retrieval, CSIM:
    those present) against K for every method of
    ``fewshot_th.evaluation.evaluate_few_shot``'s results, one row of panels per kind of
    target, one legend under the panels. A metric with the same value for every method, K and
    kind (identity retrieval at 1.00, typically) is named in the title instead of drawn as a
    flat line. The paper's VoxCeleb2 numbers are another dataset: ``gains_against_paper``
    compares trends. Returns the figure."""
    from .tables import by_target_kind

    kinds = by_target_kind(results)
    first = next(iter(kinds.values()))
    ks = sorted(first, key=int)
    x = [int(k) for k in ks]
    methods = list(first[ks[0]])
    candidates = [("fid", "FID (lower is better)"), ("ssim", "SSIM (higher is better)"),
                  ("l1", "L1 (lower is better)"),
                  ("detail_l1", "L1 on one-sided details (lower)"),
                  ("retrieval", "identity retrieval (higher)"),
                  ("csim", "CSIM (higher)")]
    # a metric not measured for every method and K (CSIM where no face was found) is left out
    present = [(m, t) for m, t in candidates
               if all(by_k[k][method].get(m) is not None for by_k in kinds.values()
                      for k in ks for method in methods)]
    panels, constant = [], []
    for metric, title in present:
        values = {round(float(by_k[k][method][metric]), 4) for by_k in kinds.values()
                  for k in ks for method in methods}
        (constant if len(values) == 1 else panels).append((metric, title, values))
    if not panels:
        raise ValueError("every metric is the same for every method and K: nothing to plot")
    fig, axes = plt.subplots(len(kinds), len(panels), squeeze=False,
                             figsize=(3.6 * len(panels), 3.0 * len(kinds) + 0.8))
    for row, (kind, by_k) in zip(axes, kinds.items()):
        for ax, (metric, title, _) in zip(row, panels):
            for i, method in enumerate(methods):
                ax.plot(x, [by_k[k][method][metric] for k in ks], marker="o", color=f"C{i}",
                        label=method)
            ax.set_xscale("log", base=2)
            ax.set_xticks(x, [str(k) for k in x])
            ax.set_xlabel("K (frames of the new person)")
            ax.set_title(f"{title}\n{kind} targets", fontsize=9)
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(methods), fontsize=8,
               frameon=False)
    note = "; ".join(f"{title.split(' (')[0]} is {next(iter(values)):g} for every method and K"
                     for _, title, values in constant)
    if note:
        fig.suptitle(f"({note}: not plotted)", fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 0.95 if note else 1))
    return fig


def gains_against_paper(results: dict, metric: str = "ssim", paper: dict | None = None):
    """What K buys, ours beside the paper's: ``metric`` at K minus at K = 1, for FF and FT,
    one panel per kind of our targets and one for the paper's Table 1 (VoxCeleb2, 256 px).
    Different data and sizes make the values incomparable; the signs and shapes of the
    curves are what to compare. Returns the figure."""
    from .tables import PAPER_TABLE1, by_target_kind

    paper = PAPER_TABLE1 if paper is None else paper
    if metric not in ("ssim", "csim", "fid"):
        raise ValueError(f"the paper reports ssim, csim and fid, not {metric!r}")
    kinds = by_target_kind(results)
    fig, axes = plt.subplots(1, len(kinds) + 1, figsize=(3.6 * (len(kinds) + 1), 3.2),
                             sharey=False, squeeze=False)
    panels = [(f"SynthHeads, {kind} targets", {
        method: ([int(k) for k in sorted(by_k, key=int)],
                 [by_k[k][method][metric] for k in sorted(by_k, key=int)])
        for method in ("FF", "FT") if method in by_k[min(by_k, key=int)]})
        for kind, by_k in kinds.items()]
    panels.append(("the paper, VoxCeleb2 (Table 1)",
                   {method: ([1, 8, 32], list(values[metric]))
                    for method, values in paper.items()}))
    for ax, (title, curves) in zip(axes[0], panels):
        for i, (method, (x, y)) in enumerate(curves.items()):
            if 1 not in x:
                continue
            base = y[x.index(1)]
            ax.plot(x, [v - base for v in y], marker="o", color=f"C{i}", label=method)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 8, 32], ["1", "8", "32"])
        ax.set_xlabel("K")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0, 0].set_ylabel(f"{metric.upper()} at K minus at K = 1")
    fig.tight_layout()
    return fig


# ------------------------------------------------ the figures the widgets draw

def show_frame(dataset, identity_index: int = 0, video_of_identity: int = 0,
               frame_index: int = 0):
    """Figure of one SynthHeads frame, its landmark image y and both overlaid (what
    ``synthheads_viewer`` draws for its sliders' values)."""
    for name, value, count in (("identity_index", identity_index, dataset.num_identities),
                               ("video_of_identity", video_of_identity,
                                dataset.num_videos_per_identity),
                               ("frame_index", frame_index, dataset.frames_per_video)):
        if not is_int(value) or not 0 <= value < count:
            raise ValueError(f"{name} must be an integer in [0, {count}), got {value!r}")
    index = identity_index * dataset.num_videos_per_identity + video_of_identity
    frames, points = dataset.get_frames(index, [frame_index])
    image = draw_landmarks(points, dataset.size)
    return show_images([frames[0], image[0], overlay(frames, image)[0]],
                       ["frame", "landmark image y", "overlay"], size=2.4,
                       suptitle=f"identity {identity_index}, video {index}, frame {frame_index}")


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


def show_video_folder_frame(videos, index: int = 0, frame: int = 0, size: float = 2.6):
    """One frame of a preprocessed video (``fewshot_th.data.VideoFolder``): the crop, its
    landmark image and both overlaid, titled with the video's name and source frame."""
    frames = videos.num_frames(index)  # checks the index
    if not 0 <= frame < frames:
        raise ValueError(f"frame must be in [0, {frames}), got {frame}")
    entry = videos.videos[index]
    images, points = videos.get_frames(index, [frame])
    drawn = draw_landmarks(points, videos.size)
    source_frame = entry["frame_indices"][frame]
    return show_images([images[0], drawn[0], overlay(images, drawn)[0]],
                       ["crop", "landmarks", "both"], ncols=3, size=size,
                       suptitle=f"{entry['name']}: frame {source_frame} of the video")


def show_mouth_by_opening(result: dict, title: str | None = None):
    """``fewshot_th.diagnosis.mouth_recall_by_opening``'s answer as a figure: on the left the
    mouth-open recall of each range of inner-lip gaps (bars, with the number of frames) and
    where the generated frames lie between the shut (0) and the open mouth (1) (dots); on the
    right each range's example, cropped around the mouth: the truth, the same frame with the
    mouth shut, the generated frame, and the landmark images (G's input) of the open and the
    shut mouth, titled with the gap and whether the generated frame counts as open (FF open)
    or shut. Returns the figure."""
    bins = [b for b in result.get("bins", ()) if b["frames"]]
    examples = result.get("examples", {})
    rows = tuple(examples)  # truth, mouth shut, FF and the two landmark images, in order
    if not bins or not rows or any(len(examples[name]) != len(bins) for name in rows):
        raise ValueError("show_mouth_by_opening needs the result of mouth_recall_by_opening "
                         "(bins with frames and one example of each)")
    fig = plt.figure(figsize=(3.4 + 1.25 * len(bins), 5.6))
    grid = fig.add_gridspec(len(rows), 1 + len(bins), width_ratios=[2.6] + [1] * len(bins))
    ax = fig.add_subplot(grid[:, 0])
    labels = [f">= {b['low']:g}" if b["high"] is None else f"{b['low']:g}-{b['high']:g}"
              for b in bins]
    x = np.arange(len(bins))
    ax.bar(x, [b["recall"] for b in bins], color="tab:blue", alpha=0.7, label="recall")
    ax.plot(x, [b["position"] for b in bins], "o", color="black",
            label="median position (0 shut, 1 open)")
    for i, b in enumerate(bins):
        ax.text(i, 0.02, f"{b['frames']}", ha="center", va="bottom", fontsize=8, color="white")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1.3)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_xlabel("inner lips apart (px at 64 px)\nframes in the bars")
    ax.set_ylabel("mouth-open recall")
    ax.legend(fontsize=7, loc="upper center", ncol=2, handlelength=1.2, columnspacing=0.8)
    if title:
        ax.set_title(title, fontsize=9)
    for row, name in enumerate(rows):
        for column in range(len(bins)):
            cell = fig.add_subplot(grid[row, 1 + column])
            cell.imshow(to_numpy_image(examples[name][column]), interpolation="nearest")
            cell.set_xticks([])
            cell.set_yticks([])
            if column == 0:
                cell.set_ylabel(name, fontsize=8)
            if row == 0:
                gap, hit = result["example_gaps"][column], result["example_hits"][column]
                cell.set_title(f"{gap:.1f} px, FF {'open' if hit else 'shut'}", fontsize=8)
    fig.tight_layout()
    return fig

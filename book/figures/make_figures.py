"""Regenerate the static figures of the book and the README: python book/figures/make_figures.py"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from fewshot_th.data import SynthHeads  # noqa: E402
from fewshot_th.landmarks import draw_landmarks  # noqa: E402
from fewshot_th.plot import method_diagram, overlay, to_numpy_image  # noqa: E402

HERE = Path(__file__).parent
RUNS = HERE.parent.parent / "bench" / "data" / "time_to_quality"
HINGE = HERE.parent.parent / "bench" / "data" / "hinge_working_d.json"
SHIPPED = HERE.parent.parent / "fewshot_th" / "assets" / "synthheads-cpu.json"
# The first shipped model (50 minutes from scratch, D blind: hinge loss 2 throughout), kept
# in the repository's history; chapter 6 shows its faces and its D's curve.
BLIND_COMMIT = "42c734f"
BLIND_CURVE = HERE.parent.parent / "bench" / "data" / "blind_d_curve.json"
GPU_RECIPES = {"control": "λ_MCH = 80 (the first recipe)", "lrw": "λ_MCH = 80, W at lr 1e-2",
               "mch8": "λ_MCH = 8", "nomch": "λ_MCH = 0",
               "mch8-b32": "λ_MCH = 8, batch 32, lr 4e-4 (the `cpu` profile)"}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def time_to_quality_figure(path: Path) -> None:
    """SSIM (K = 8, held-out identities) against training minutes: the recipes on a GPU
    (bench/gpu_sweep.sh, SynthHeads before its one-sided details) and the `cpu` profile on 2
    CPU cores (bench/time_to_quality.py), same-video and pose-distant targets."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for i, (name, label) in enumerate(GPU_RECIPES.items()):
        rows = _rows(RUNS / f"gpu-h200-{name}.jsonl")
        axes[0].plot([r["minutes"] for r in rows],
                     [r["scores"]["8"]["model"]["ssim"] for r in rows], marker="o", ms=3,
                     color=f"C{i}", label=label)
    last = _rows(RUNS / "gpu-h200-mch8-b32.jsonl")[-1]["scores"]["8"]
    for name, style in (("nearest-landmark source", ":"), ("mean of sources", "--")):
        axes[0].axhline(last[name]["ssim"], color="grey", ls=style, lw=1,
                        label=f"copying: {name}")
    axes[0].set_title("five recipes side by side on one GPU\n(same-video targets, "
                      "SynthHeads before its one-sided details)", fontsize=9)
    rows = _rows(RUNS / "cpu-2cores-cpu-profile.jsonl")
    for kind, colour in (("same-video", "C4"), ("pose-distant", "C3")):
        axes[1].plot([r["minutes"] for r in rows],
                     [r["scores"][kind]["8"]["model"]["ssim"] for r in rows], marker="o",
                     color=colour, label=f"`cpu` profile, {kind} targets")
        final = rows[-1]["scores"][kind]["8"]
        for name, style in (("nearest-landmark source", ":"), ("mean of sources", "--")):
            axes[1].axhline(final[name]["ssim"], color=colour, ls=style, lw=1, alpha=0.7,
                            label=f"copying ({kind}): {name}")
    axes[1].set_title("the `cpu` profile on 2 CPU cores\n(the first shipped model's run)",
                      fontsize=9)
    for ax in axes:
        ax.set_xlabel("minutes of training")
        ax.legend(fontsize=6.5, loc="lower right")
    axes[0].set_ylabel("SSIM, K = 8, unseen people")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def blind_model():
    """The first shipped model, read from the repository's history (commit BLIND_COMMIT)."""
    import subprocess
    import tempfile

    from safetensors.torch import load_file

    from fewshot_th.config import ModelConfig
    from fewshot_th.pretrained import _model_from

    root = HERE.parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for suffix in ("json", "safetensors"):
            files[suffix] = Path(tmp) / f"blind.{suffix}"
            shown = subprocess.run(
                ["git", "show", f"{BLIND_COMMIT}:fewshot_th/assets/synthheads-cpu.{suffix}"],
                cwd=root, capture_output=True)
            if shown.returncode != 0:
                raise SystemExit(f"the first shipped model lives in the repository's history "
                                 f"(commit {BLIND_COMMIT}), which this checkout lacks: "
                                 "git fetch --unshallow, or a full git clone")
            files[suffix].write_bytes(shown.stdout)
        info = json.loads(files["json"].read_text())
        model = _model_from(load_file(str(files["safetensors"])),
                            ModelConfig.from_dict(info["model_config"]))
    model.info = info
    return model


def blind_d_figure(path: Path) -> None:
    """Chapter 6's record of what a blind D gives: the first shipped model's feed-forward
    frames (K = 8, same-video, the widest-open target of test people 0-3) beside the truth and
    the copies; also stores its training curve for the hinge figure."""
    from fewshot_th.diagnosis import method_examples
    from fewshot_th.plot import show_methods

    model = blind_model()
    BLIND_CURVE.write_text(json.dumps(model.info["curve"]))
    fig = show_methods(method_examples(model, identities=(0, 1, 2, 3), k=8, kind="same-video",
                                       modes=("ff",)),
                       suptitle="The first shipped model (D blind), K = 8, same-video targets")
    fig.savefig(path, dpi=80)
    plt.close(fig)


def shipped_faces_figure(path: Path) -> None:
    """The README's picture of the shipped model: held-out people at the target where each
    opens the mouth widest (K = 8, same-video), the truth, FF, FT and the nearest copy."""
    from fewshot_th.diagnosis import method_examples
    from fewshot_th.plot import show_methods
    from fewshot_th.pretrained import load_pretrained

    examples = method_examples(load_pretrained("synthheads-cpu"), identities=(0, 1, 2, 3, 7, 14),
                               k=8, kind="same-video", modes=("ff", "ft"))
    del examples["mean of sources"]
    fig = show_methods(examples, size=1.7, suptitle="The shipped model on people it never "
                       "saw, K = 8: truth, feed-forward, fine-tuned, nearest source frame")
    fig.savefig(path, dpi=80)
    plt.close(fig)


def hinge_figure(path: Path) -> None:
    """D's hinge loss over training: the first shipped model's run (D blind; its stored
    curve), the warm starts of bench/RESULTS.md that made D learn (bench/hinge_curves.py's
    JSON) and the run the shipped model comes from (its stored curve)."""
    blind = json.loads(BLIND_CURVE.read_text())
    shipped = json.loads(SHIPPED.read_text())["curve"]
    runs = json.loads(HINGE.read_text())
    fig, ax = plt.subplots(figsize=(10.5, 3.6))
    ax.plot(blind["step"], blind["dsc"], color="grey", lw=1.2,
            label="the first shipped model's run\n(from scratch, λ_FM 10, D's two defects)")
    for i, (name, curve) in enumerate(runs["curves"].items()):
        ax.plot([c[0] for c in curve], [c[1] for c in curve], color=f"C{i}", lw=1.4,
                label=name)
    ax.plot(shipped["step"], shipped["dsc"], color="k", lw=1.4,
            label="the shipped model's run: weighted\npooling, eyes term (from step "
                  "7,500;\n50-step averages)")
    ax.axhline(2, color="k", lw=0.6, ls="--")
    ax.text(3500, 2.1, "2: real and generated frames scored alike", fontsize=8)
    ax.set_ylim(0, 2.5)
    ax.set_xlabel("training step (the warm starts count from the first shipped model's E and G)")
    ax.set_ylabel(f"D's hinge loss (mean\nof {runs['window']} steps)")
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# The shipped model's lineage after its first 50 minutes: (jsonl, first step, last step, what
# the leg began, if the figure marks it).
LINEAGE = (("cpu-1core-warm-start-score-0.1-d2-fm1", 0, 2115, "D learns"),
           ("cpu-1core-working-d-lr-4e-4", 2116, 3801, None),
           ("cpu-1core-working-d-mouth-90", 3802, 5841, "mouth term"),
           ("cpu-1core-working-d-mouth-90-fm-10", 5842, 7500, None),
           ("cpu-2cores-working-d-weighted-eyes", 7500, 10 ** 9, "weighted pooling,\neyes term"))
FIRST_MODEL_MINUTES = 50.0


def recall_curve_figure(path: Path) -> None:
    """Attribute recall (FF, K = 8, 20 held-out people) against minutes of training, along
    the legs that made the shipped model (their quality.jsonl scores in bench/data): the
    warm starts count their minutes from the first model's 50."""
    rows, starts = [], []
    for name, first, last, began in LINEAGE:
        leg = _rows(RUNS / f"{name}.jsonl")
        rows += [r for r in leg if first <= r["step"] <= last]
        if began:
            starts.append((FIRST_MODEL_MINUTES + leg[0]["minutes"], began))
    rows = sorted({r["step"]: r for r in rows}.values(), key=lambda r: r["step"])
    minutes = [FIRST_MODEL_MINUTES + r["minutes"] for r in rows]

    def model(r, kind="same-video"):
        return r["scores"][kind]["8"]["model"]

    fig, axes = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    left = {"mouth open, same-video": lambda r: model(r)["recall"]["mouth open"],
            "mouth open, pose-distant":
                lambda r: model(r, "pose-distant")["recall"]["mouth open"],
            "glasses (4 wearers)": lambda r: model(r)["recall"]["glasses"],
            "D's accuracy (real vs FF)": lambda r: model(r)["d_accuracy"]}
    right = {name: (lambda r, name=name: model(r)["recall"][name])
             for name in ("hair", "skin", "lips", "earring", "streak")}
    for ax, curves, targets in ((axes[0], left, (0.9, 0.8)), (axes[1], right, (0.95,))):
        for i, (label, value) in enumerate(curves.items()):
            ax.plot(minutes, [value(r) for r in rows], marker="o", ms=2.5, lw=1.2,
                    color=f"C{i}", label=label)
        for target in targets:
            ax.axhline(target, color="grey", lw=0.7, ls=":")
        for start, text in starts:
            ax.axvline(start, color="k", lw=0.5)
            ax.text(start + 4, 0.03, text, fontsize=7)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("recall (FF, K = 8, same-video\nunless named; 20 held-out people)")
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    axes[1].set_xlabel("minutes of training on 2 CPU cores (the first 50: the first model)")
    axes[0].set_title("the mouth, the glasses and D (dotted: the goals, 0.9 and 0.8)", fontsize=9)
    axes[1].set_title("colours and one-sided details (dotted: the goal, 0.95)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def synthheads_figure(path: Path) -> None:
    ds = SynthHeads("train", num_identities=6, num_videos_per_identity=1, frames_per_video=24,
                    size=128, seed=0)
    fig, axes = plt.subplots(3, 6, figsize=(11, 6))
    for column in range(6):
        frames, points = ds.get_frames(column, [0, 12])
        images = draw_landmarks(points, 128)
        row_images = [frames[0], frames[1], overlay(frames[1:], images[1:])[0]]
        for row, image in enumerate(row_images):
            axes[row, column].imshow(to_numpy_image(image))
            axes[row, column].axis("off")
    for row, label in enumerate(["identity, frame 0", "frame 12", "frame 12 + landmarks"]):
        axes[row, 0].set_title(label, fontsize=9, loc="left")
    fig.suptitle("SynthHeads: procedural talking heads with exact landmarks")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    torch.manual_seed(0)
    method_diagram().savefig(HERE / "method.png", dpi=90, bbox_inches="tight")
    synthheads_figure(HERE / "synthheads.png")
    time_to_quality_figure(HERE / "time_to_quality.png")
    blind_d_figure(HERE / "blind_d.png")
    hinge_figure(HERE / "hinge.png")
    recall_curve_figure(HERE / "recall_curve.png")
    shipped_faces_figure(HERE / "shipped_faces.png")
    print("wrote", ", ".join(str(HERE / name) for name in
                             ("method.png", "synthheads.png", "time_to_quality.png",
                              "blind_d.png", "hinge.png", "recall_curve.png",
                              "shipped_faces.png")))

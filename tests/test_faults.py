"""Training runs that lose nothing: faults injected on purpose (kills during a save, damaged
files, non-finite weights, a full disk, bad flags), and what must hold after each.

`python bench/fault_injection.py` runs this file and prints the summary table of
bench/RESULTS.md.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from fewshot_th import checkpoint as ckpt
from fewshot_th.cli import main

DATA = ["--profile", "tiny", "--identities", "4", "--videos-per-identity", "2", "--frames", "8",
        "--sample-every", "0"]


def train(out, *flags, steps=4, every=2):
    """``fewshot-th train`` in this process; its exit status (argparse errors give 2)."""
    try:
        return main(["train", *DATA, "--out", str(out), "--steps", str(steps),
                     "--checkpoint-every", str(every), *flags])
    except SystemExit as exit:
        return exit.code


def steps_on_disk(out):
    return [int(p.stem.split("-")[1]) for p in ckpt.list_checkpoints(out)]


def tensors_at(out, step):
    return ckpt.load_checkpoint(Path(out) / f"step-{step:08d}.json")[0]


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run to step 6 (checkpoints every step, the last 3 kept)."""
    out = tmp_path_factory.mktemp("straight")
    assert train(out, steps=6, every=1) == 0
    return out


# 1. A fresh run never deletes another run's work.

def test_a_fresh_run_refuses_a_directory_with_another_run(tmp_path, capsys):
    assert train(tmp_path, steps=6, every=3) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert train(tmp_path, steps=2, every=1) == 2
    assert "holds another run" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert before == after, "nothing of the old run changed"


def test_overwrite_replaces_the_old_run_and_resume_continues_it(tmp_path):
    assert train(tmp_path, steps=6, every=2) == 0
    assert train(tmp_path, "--overwrite", steps=2, every=1) == 0
    assert steps_on_disk(tmp_path) == [1, 2]
    log = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").open()]
    assert log == [1, 2], "the old run's log went with it"
    assert train(tmp_path, "--resume", steps=3, every=1) == 0
    assert steps_on_disk(tmp_path) == [1, 2, 3]


# 2. Non-finite weights are never saved, and never resumed from.

def test_nan_gradients_with_finite_losses_stop_before_a_save(tmp_path, monkeypatch, capsys):
    from fewshot_th import meta, trainer

    real_step = meta.meta_step

    def poisoned(model, *args, **kwargs):
        step = kwargs.get("step", args[7] if len(args) > 7 else 0)
        if step == 2:  # the third step: the gradients turn NaN, the losses stay finite
            hook = model.generator.P.weight.register_hook(lambda g: g * float("nan"))
            try:
                return real_step(model, *args, **kwargs)
            finally:
                hook.remove()
        return real_step(model, *args, **kwargs)

    monkeypatch.setattr(trainer, "meta_step", poisoned)  # the step the Trainer calls
    assert train(tmp_path, steps=6, every=1) == 3
    err = capsys.readouterr().err
    assert "weight tensors are not finite" in err and "step-00000002.json" in err
    assert steps_on_disk(tmp_path) == [1, 2]
    for step in (1, 2):
        assert not meta.non_finite(tensors_at(tmp_path, step))


def ckpt_non_finite(out, step):
    from fewshot_th.meta import non_finite

    return non_finite(tensors_at(out, step))


def test_resume_skips_a_non_finite_checkpoint_and_names_it(tmp_path, straight):
    assert train(tmp_path, steps=2, every=1) == 0
    tensors, meta = ckpt.load_checkpoint(tmp_path / "step-00000002.json")
    tensors["generator.P.weight"] = tensors["generator.P.weight"] * float("inf")
    ckpt.save_checkpoint(tmp_path, 3, tensors, {k: v for k, v in meta.items() if k != "step"})
    with pytest.warns(UserWarning, match="step-00000003.json.*not finite"):
        assert train(tmp_path, "--resume", steps=4, every=1) == 0
    assert steps_on_disk(tmp_path) == [2, 3, 4]
    assert not ckpt_non_finite(tmp_path, 3), "the bad step 3 was trained again"
    assert same(tensors_at(tmp_path, 4), tensors_at(straight, 4)), "continued from step 2"


# 3. Damaged files: named, skipped for the newest intact checkpoint, or one clear error.

def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "zeroed":  # same size, tensor bytes zeroed: only the checksum notices
        path.write_bytes(data[:200] + bytes(len(data) - 200))
    elif how == "missing":
        path.unlink()
    elif how == "garbage":
        path.write_bytes(b"\x00not json")


@pytest.mark.parametrize("suffix, how", [(".safetensors", "truncated"),
                                         (".safetensors", "zeroed"),
                                         (".safetensors", "missing"),
                                         (".json", "garbage"), (".json", "truncated")])
def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, straight, suffix, how,
                                                          recwarn):
    assert train(tmp_path, steps=4, every=1) == 0
    damage(tmp_path / f"step-00000004{suffix}", how)
    assert train(tmp_path, "--resume", steps=6, every=1) == 0
    if how != "missing":  # a missing half is simply not a checkpoint; the others are named
        assert any("step-00000004" in str(w.message) for w in recwarn)
    assert same(tensors_at(tmp_path, 6), tensors_at(straight, 6)), "continued exactly"


def test_no_intact_checkpoint_is_one_clear_error(tmp_path, capsys):
    assert train(tmp_path, steps=2, every=1) == 0
    for step in (1, 2):
        damage(tmp_path / f"step-{step:08d}.safetensors", "zeroed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert train(tmp_path, "--resume", steps=4, every=1) == 2
    err = capsys.readouterr().err
    assert "no intact checkpoint" in err and "Traceback" not in err


def test_evaluate_refuses_a_file_that_is_not_a_training_checkpoint(tmp_path, capsys):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    (tmp_path / "other.json").write_text(json.dumps({"step": 1}))
    code = main(["evaluate", "--checkpoint", str(tmp_path / "other.json"),
                 "--out", str(tmp_path / "eval"), "--identities", "2", "--no-fid"])
    assert code == 2 and "not a training checkpoint" in capsys.readouterr().err


def test_evaluate_names_a_damaged_checkpoint(tmp_path, capsys):
    assert train(tmp_path, steps=1, every=1) == 0
    damage(tmp_path / "step-00000001.safetensors", "truncated")
    code = main(["evaluate", "--checkpoint", str(tmp_path / "step-00000001.json"),
                 "--out", str(tmp_path / "eval"), "--identities", "2", "--k", "1",
                 "--modes", "ff", "--no-fid"])
    assert code == 2 and "step-00000001.safetensors" in capsys.readouterr().err


# 4. Resume refuses other data.

@pytest.mark.parametrize("flag, value, field", [("--frames", "9", "frames_per_video"),
                                                ("--identities", "5", "num_identities"),
                                                ("--seed", "1", "seed")])
def test_resume_refuses_other_data_flags(tmp_path, capsys, flag, value, field):
    assert train(tmp_path, steps=1, every=1) == 0
    flags = [*DATA, "--out", str(tmp_path), "--steps", "2", "--resume"]
    if flag in DATA:
        flags[flags.index(flag) + 1] = value
    else:
        flags += [flag, value]
    assert main(["train", *flags]) == 2
    err = capsys.readouterr().err
    assert "other videos" in err and field in err


# 5. Leftovers of a kill are cleaned; a full disk loses nothing.

def test_leftovers_of_an_interrupted_save_are_removed(tmp_path):
    assert train(tmp_path, steps=2, every=1) == 0
    (tmp_path / ".step-00000003.safetensors.tmp").write_bytes(b"x" * 1000)
    (tmp_path / ".step-00000003.json.tmp").write_text("{")
    (tmp_path / "step-00000003.safetensors").write_bytes(b"orphan")
    assert train(tmp_path, "--resume", steps=3, every=1) == 0
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert names == ["metrics.jsonl"] + [f"step-{s:08d}.{e}" for s in (1, 2, 3)
                                         for e in ("json", "safetensors")]


@pytest.mark.parametrize("target", [".safetensors", ".json"])
def test_a_full_disk_during_a_save_loses_nothing(tmp_path, straight, monkeypatch, capsys,
                                                 target):
    real = ckpt.atomic_write

    def full(path, write):
        if path.name == f"step-00000003{target}":
            def partial(temporary):
                temporary.write_bytes(b"half")
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(path, partial)
        return real(path, write)

    monkeypatch.setattr(ckpt, "atomic_write", full)
    assert train(tmp_path, steps=4, every=1) == 4
    assert "No space left on device" in capsys.readouterr().err
    monkeypatch.setattr(ckpt, "atomic_write", real)
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file is left behind"
    assert train(tmp_path, "--resume", steps=6, every=1) == 0
    assert same(tensors_at(tmp_path, 6), tensors_at(straight, 6))


KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from fewshot_th import checkpoint
    from fewshot_th.cli import main

    point, calls = sys.argv[1], {"n": 0}

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def at_step_4(path):
        return "00000004" in str(path)

    if point == "tensor-write":  # half of the tensor file written
        real = checkpoint.save_file
        def save_file(tensors, path):
            if at_step_4(path):
                Path(path).write_bytes(b"partial")
                die()
            return real(tensors, path)
        checkpoint.save_file = save_file
    elif point in ("before-json", "json-write"):
        real = checkpoint.atomic_write
        def atomic(path, write):
            if at_step_4(path) and path.suffix == ".json":
                if point == "json-write":
                    path.with_name("." + path.name + ".tmp").write_text('{"half')
                die()
            return real(path, write)
        checkpoint.atomic_write = atomic
    elif point == "pruning":  # the old JSON removed, its tensor file not yet
        real = Path.unlink
        def unlink(self, missing_ok=False):
            if self.suffix == ".safetensors" and "00000001" in self.name:
                die()
            return real(self, missing_ok=missing_ok)
        Path.unlink = unlink
    sys.exit(main(["train", *sys.argv[3:], "--out", sys.argv[2]]))
""")


@pytest.mark.parametrize("point", ["tensor-write", "before-json", "json-write", "pruning"])
def test_kill_9_during_a_save_then_resume_continues_exactly(tmp_path, straight, point):
    out = tmp_path / "run"
    flags = [*DATA, "--steps", "6", "--checkpoint-every", "1"]
    result = subprocess.run([sys.executable, "-c", KILLER, point, str(out), *flags],
                            capture_output=True, text=True, timeout=600,
                            # as many threads as this process: the same sums, bit for bit
                            env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    newest = 4 if point == "pruning" else 3
    assert steps_on_disk(out)[-1] == newest
    assert train(out, "--resume", steps=6, every=1) == 0
    assert same(tensors_at(out, 6), tensors_at(straight, 6)), "continued exactly"
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")
                 or (p.suffix == ".safetensors" and not p.with_suffix(".json").exists())]
    assert not leftovers
    log = [json.loads(line)["step"] for line in (out / "metrics.jsonl").open()]
    assert log == list(range(1, 7)), "one record per step"


# 6. Reproducible runs.

def test_the_same_seed_gives_the_same_run_and_another_seed_another(tmp_path):
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert train(tmp_path / name, "--seed", seed, steps=1, every=1) == 0
    a, b, c = (tensors_at(tmp_path / name, 1) for name in "abc")
    assert same(a, b)
    assert not torch.equal(a["generator.P.weight"], c["generator.P.weight"])


def test_an_interrupted_run_ends_like_an_uninterrupted_one(tmp_path, straight):
    assert train(tmp_path, steps=3, every=1) == 0
    assert train(tmp_path, "--resume", steps=6, every=1) == 0
    assert same(tensors_at(tmp_path, 6), tensors_at(straight, 6)), \
        "weights, optimiser states and torch's RNG state"


# 7. Bad flags: one clear error and a non-zero exit, never a traceback or a silent run.

BAD_TRAIN_FLAGS = [
    (["--batch-size", "-1"], "--batch-size"), (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "100"], "needs at least that many training videos"),
    (["--identities", "0"], "--identities"), (["--frames", "1"], "--frames"),
    (["--videos-per-identity", "0"], "--videos-per-identity"), (["--seed", "-1"], "--seed"),
    (["--workers", "-1"], "--workers"), (["--device", "nonsense"], "not a device"),
    (["--device", "cuda:99"], "--device cuda:99"), (["--set", "betas=(2,3)"], "betas"),
    (["--set", "k=8"], "k must be between"), (["--checkpoint-every", "-1"], "--checkpoint-every"),
    (["--sample-every", "-1"], "--sample-every"), (["--set", "lambda_fm=-1"], "lambda_fm"),
    (["--set", "lambda_mch=-1"], "lambda_mch"), (["--set", "lr_eg=1e39"], "lr_eg"),
    (["--set", "lr_eg=1e400"], "lr_eg"), (["--set", "lr_d=0"], "lr_d"),
    (["--set", "nonsense=1"], "no field"), (["--model", "attention_down=(5,)"], "attention_down"),
    (["--model", "image_size=50"], "divisible"), (["--minutes", "0"], "--minutes"),
    (["--steps", "0"], "--steps"), (["--resume", "--overwrite"], "--resume"),
    (["--set", "d_warmup_steps=-2"], "d_warmup_steps"),
]


@pytest.mark.parametrize("flags, message", BAD_TRAIN_FLAGS, ids=lambda v: " ".join(v)
                         if isinstance(v, list) else None)
def test_bad_train_flags_give_one_clear_error(tmp_path, capsys, flags, message):
    assert train(tmp_path / "run", *flags) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not ckpt.list_checkpoints(tmp_path / "run"), "nothing was trained"


def test_out_naming_a_file_or_an_unwritable_place_is_refused(tmp_path, capsys, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    assert train(a_file) == 2
    assert "is a file" in capsys.readouterr().err and a_file.read_text() == "keep me"
    real_open = open

    def read_only(path, *args, **kwargs):
        if ".write-test" in str(path):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only)
    assert train(tmp_path / "ro") == 2
    assert "cannot write to --out" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--pretrained", "synthheads-identity"], "no shipped model"),
    (["--pretrained", "../assets/synthheads-cpu"], "no shipped model"),
    (["--checkpoint", "nothing.json"], "missing"), (["--identities", "1"], "--identities"),
    (["--k", "0"], "--k"), (["--device", "nonsense"], "not a device"),
    (["--seed", "-3"], "--seed"),
])
def test_bad_evaluate_flags_give_one_clear_error(tmp_path, capsys, flags, message):
    try:
        code = main(["evaluate", "--out", str(tmp_path / "eval"), "--no-fid", *flags])
    except SystemExit as exit:
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_api_arguments_get_one_clear_error():
    import numpy as np

    from fewshot_th import load_pretrained
    from fewshot_th.finetune import few_shot
    from fewshot_th.landmarks import draw_landmarks
    from fewshot_th.pretrained import available

    assert "synthheads-identity" not in available() and "synthheads-cpu" in available()
    with pytest.raises(TypeError, match="TalkingHeadModel"):
        few_shot(None, torch.rand(2, 3, 64, 64), torch.rand(2, 68, 2))
    with pytest.raises(ValueError, match="thickness"):
        draw_landmarks(np.zeros((68, 2)), 64, thickness="a")
    person = few_shot(load_pretrained(), torch.rand(1, 3, 64, 64), torch.rand(1, 68, 2) * 64,
                      progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        person.render(torch.rand(2, 68, 2) * 64, batch_size=0)

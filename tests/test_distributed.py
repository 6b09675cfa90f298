"""Data-parallel meta-learning on CPU with the gloo backend and two processes."""

import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fewshot_th.config import tiny, training
from fewshot_th.data import EpisodeDataset, SynthHeads, episode_batches
from fewshot_th.distributed import DistributedNetworks
from fewshot_th.losses import ContentLoss
from fewshot_th.meta import TalkingHeadModel, meta_step
from fewshot_th.trainer import Trainer

STEPS = 2


def _videos():
    return SynthHeads(num_identities=4, num_videos_per_identity=2, frames_per_video=5, size=32)


def _model(videos):
    torch.manual_seed(0)
    return TalkingHeadModel.build(tiny(), num_videos=len(videos))


def _sgd_step(batch_size, rank=0, world_size=1, parallel=False):
    """One meta-learning step with plain SGD, whose update is linear in the gradient, so that
    float rounding stays at rounding size (Adam's g / |g| would magnify it, and so would a
    second step, through ReLUs and max-pooling switching on rounding-size differences)."""
    videos = _videos()
    model = _model(videos)
    train = training("tiny").with_changes(batch_size=batch_size)
    opt_eg = torch.optim.SGD([*model.embedder.parameters(), *model.generator.parameters()],
                             lr=0.05)
    opt_d = torch.optim.SGD(model.discriminator.parameters(), lr=0.05)
    batches = episode_batches(EpisodeDataset(videos, train.k), batch_size, seed=0, rank=rank,
                              world_size=world_size)
    wrapped = DistributedNetworks(model) if parallel else None
    meta_step(model, next(batches), opt_eg, opt_d, ContentLoss({"pixel": 10.0}), train,
              parallel=wrapped)
    return model.state_tensors()


def _worker(rank, world_size, port, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size)
    try:
        torch.set_num_threads(1)
        torch.save(_sgd_step(2, rank, world_size, parallel=True), out / f"sgd{rank}.pt")
        videos = _videos()
        trainer = Trainer(_model(videos), videos, training("tiny"), ContentLoss({"pixel": 10.0}),
                          out / "run", checkpoint_every=1, sample_every=0)
        assert trainer.parallel is not None and trainer.world_size == 2
        trainer.run(STEPS, progress=False)
        torch.save(trainer.model.state_tensors(), out / f"adam{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_agree_and_match_one_process_on_the_same_global_batch(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), tmp_path), nprocs=2, join=True)
    sgd = [torch.load(tmp_path / f"sgd{r}.pt", weights_only=True) for r in range(2)]
    adam = [torch.load(tmp_path / f"adam{r}.pt", weights_only=True) for r in range(2)]
    single = _sgd_step(batch_size=4)
    for name, value in single.items():
        assert torch.equal(sgd[0][name], sgd[1][name]), f"ranks differ in {name}"
        assert torch.equal(adam[0][name], adam[1][name]), f"ranks differ in {name} (Adam)"
        torch.testing.assert_close(sgd[0][name], value, atol=1e-5, rtol=1e-4,
                                   msg=lambda m, n=name: f"{n}: {m}")
    # Rows of W that no global batch used have not moved; the others have.
    before = _model(_videos()).state_tensors()["discriminator.W"]
    moved = (sgd[0]["discriminator.W"] - before).abs().sum(1) > 0
    assert int(moved.sum()) == 4, "one global batch of 4 videos moves exactly 4 rows"
    # Only process 0 writes the run directory.
    checkpoints = sorted(p.name for p in (tmp_path / "run").glob("step-*.json"))
    assert checkpoints == ["step-00000001.json", "step-00000002.json"]


def test_the_same_command_runs_under_torchrun(tmp_path):
    import subprocess
    import sys

    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", str(_free_port()), "-m", "fewshot_th", "train",
               "--profile", "tiny", "--out", str(tmp_path), "--steps", "2", "--identities", "4",
               "--frames", "4", "--sample-every", "0", "--checkpoint-every", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("checkpoint") == 1, "only process 0 reports and writes"
    assert (tmp_path / "step-00000002.json").exists()

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_trainer import TinyDual, learnable_dataset

from agecurriculum.schedule import MultiDatasetSample, TrainingSchedule
from agecurriculum.train import CurriculumTrainer, TrainerConfig
from agecurriculum.train import distributed as ddp

TESTS_DIR = Path(__file__).resolve().parent


def build_trainer(run_dir, batch_size, callbacks=()):
    """2 epochs of 64 images: with 2 ranks of 8 images a step, each step sees the same 16 images as one process
    with batches of 16 (rank r takes positions r::2 of the epoch's permutation), so the runs must agree."""
    torch.manual_seed(0)
    schedule = TrainingSchedule([MultiDatasetSample(["a"], range(8), epochs=2)])
    cfg = TrainerConfig(batch_size=batch_size, lr=1e-2, seed=3, early_stopping_patience=None)
    return CurriculumTrainer(
        TinyDual(),
        schedule,
        {"a": learnable_dataset(64, 1)},
        {"a": learnable_dataset(37, 2)},
        config=cfg,
        callbacks=list(callbacks),
        run_dir=run_dir,
    )


RANK_SCRIPT = """
import sys
import torch
sys.path.insert(0, {tests_dir!r})
from agecurriculum.train import distributed as ddp
from test_distributed import build_trainer

info = ddp.init_distributed()
assert ddp.is_distributed() and info.world_size == 2 and ddp.get_rank() == info.rank
out = {out!r}
calls = []
trainer = build_trainer(f"{{out}}/run{{info.rank}}", batch_size=8, callbacks=[calls.append])
history = trainer.fit()
# A finished fit holds no DDP wrapper, whose reducer would keep the process group (and its Gloo threads) alive
# past destroy_distributed, into the interpreter's shutdown, where a rank could abort after a finished run.
assert not any(isinstance(v, torch.nn.parallel.DistributedDataParallel) for v in vars(trainer).values())
result = {{"model": trainer.model.state_dict(), "loss": trainer.loss_fn.state_dict(), "calls": len(calls),
          "val": [r.val.loss for r in history], "images": [r.images for r in history]}}
torch.save(result, f"{{out}}/rank{{info.rank}}.pt")
ddp.destroy_distributed()
"""


def run_two_ranks(script_text, tmp_path):
    """Runs ``script_text`` (formatted with ``tests_dir`` and ``out``) as two Gloo ranks under torchrun; returns what
    each rank saved to ``out/rank{r}.pt``."""
    script = tmp_path / "rank.py"
    script.write_text(script_text.format(tests_dir=str(TESTS_DIR), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return tuple(torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))


def test_two_gloo_ranks_agree_with_each_other_and_with_one_process(tmp_path):
    rank0, rank1 = run_two_ranks(RANK_SCRIPT, tmp_path)

    # DDP averaged every gradient, the loss's log-variances included: the ranks hold the very same weights.
    for key in ("model", "loss"):
        assert all(torch.equal(rank0[key][k], rank1[key][k]) for k in rank0[key])
    # Only rank 0 wrote a checkpoint and called the callbacks.
    assert (tmp_path / "run0" / "checkpoint.pt").is_file() and not (tmp_path / "run1").exists()
    assert (rank0["calls"], rank1["calls"]) == (2, 0)

    single = build_trainer(None, batch_size=16)
    history = single.fit()
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(rank0["model"][k], v, rtol=1e-4, atol=1e-5)
    # Validation covers all 37 images once over both ranks (19 + 18), averaged by sums: the single-process numbers.
    torch.testing.assert_close(
        torch.tensor(rank0["val"]), torch.tensor([r.val.loss for r in history]), rtol=1e-4, atol=1e-5
    )
    assert rank0["val"] == rank1["val"] and rank0["images"] == [r.images for r in history] == [64, 64]


TIME_BUDGET_SCRIPT = """
import sys
import types
import torch
sys.path.insert(0, {tests_dir!r})
import agecurriculum.train.trainer as trainer_module
from agecurriculum.train import distributed as ddp
from test_distributed import build_trainer

info = ddp.init_distributed()
if info.rank == 1:  # only rank 1's clock runs fast (10 s a reading): only it would see the budget spent
    clock = iter(range(0, 10**7, 10))
    trainer_module.time = types.SimpleNamespace(perf_counter=lambda: float(next(clock)))
trainer = build_trainer(None, batch_size=8)
trainer.config.time_budget = 1.0
history = trainer.fit()
torch.save({{"images": [r.images for r in history]}}, f"{out}/rank{{info.rank}}.pt")
ddp.destroy_distributed()
"""


def test_a_time_budget_spent_on_one_rank_stops_every_rank_at_the_same_batch(tmp_path):
    # Each rank clocks its own steps; were each to stop on its own clock, the other would wait in a collective.
    rank0, rank1 = (saved["images"] for saved in run_two_ranks(TIME_BUDGET_SCRIPT, tmp_path))
    assert rank0 == rank1 and len(rank0) == 1 and rank0[0] < 64  # the first epoch stopped part-way, then the run


def test_helpers_without_torchrun_are_single_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert ddp.init_distributed() == ddp.DistributedInfo(rank=0, world_size=1, local_rank=0)
    assert not ddp.is_distributed() and ddp.is_main_process() and ddp.get_world_size() == 1
    t = torch.arange(3.0)
    assert ddp.all_reduce_sum(t) is t and ddp.all_gather_object("x") == ["x"]


def test_bad_torchrun_variable_is_named(monkeypatch):
    monkeypatch.setenv("RANK", "zero")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK must be an integer, got 'zero'"):
        ddp.init_distributed()


def _torchrun_env_of_one(monkeypatch):
    # What torchrun sets for a single process: a real group of one, so joining and leaving can be observed.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_PORT", str(port))


def test_a_session_joins_torchruns_group_and_leaves_it_before_the_command_ends(monkeypatch):
    _torchrun_env_of_one(monkeypatch)
    with ddp.distributed_session() as info:
        assert info == ddp.DistributedInfo(rank=0, world_size=1, local_rank=0) and ddp.group_joined()
    assert not ddp.group_joined()  # left while the interpreter is whole, not at its shutdown


def test_a_session_keeps_a_group_joined_before_it_and_one_left_by_an_error(monkeypatch):
    _torchrun_env_of_one(monkeypatch)
    ddp.init_distributed()
    try:
        with ddp.distributed_session():
            pass
        assert ddp.group_joined()  # the caller joined it: the caller leaves it
    finally:
        ddp.destroy_distributed()
    # A failing block leaves the group as it is: the other ranks may be inside a collective.
    with pytest.raises(RuntimeError, match="boom"), ddp.distributed_session():
        raise RuntimeError("boom")
    assert ddp.group_joined()
    ddp.destroy_distributed()
    assert not ddp.group_joined()


def test_without_torchrun_a_session_is_a_no_op(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with ddp.distributed_session() as info:
        assert info.world_size == 1 and not ddp.group_joined()
    assert not ddp.group_joined()

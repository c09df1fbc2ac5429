"""An output folder owned by one run at a time: the lock file, a second run, stale locks."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from dataclasses import asdict

import pytest

from masktok.errors import OutputInUseError
from masktok.output_lock import (LockHolder, OutputLock, hold_run_output, live_holders, lock_path,
                                 read_holder)


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _write_holder(path, **fields) -> LockHolder:
    holder = LockHolder(**{"host": socket.gethostname(), "pid": 1, "started": "2025-01-01T00:00:00Z",
                           "command": "masktok tokenize-dataset coco", "token": "t0", **fields})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(holder)))
    return holder


def test_the_lock_names_its_holder_and_is_given_back(tmp_path):
    with OutputLock(tmp_path / "out", command="masktok build-sft res") as lock:
        holder = read_holder(lock_path(tmp_path / "out"))
        assert holder == lock.holder and holder.command == "masktok build-sft res"
        assert holder.host == socket.gethostname() and holder.pid > 0 and holder.started.endswith("Z")
        assert list(live_holders(tmp_path / "out")) == [lock.path]
    assert not lock_path(tmp_path / "out").exists()


def test_a_second_run_is_refused_with_the_holder_named(tmp_path):
    first = OutputLock(tmp_path, part="rank0", command="first run").acquire()
    with pytest.raises(OutputInUseError) as info:
        OutputLock(tmp_path, part="rank0", command="second run").acquire()
    message = str(info.value)
    assert str(tmp_path) in message and f"pid {first.holder.pid}" in message and "first run" in message
    assert read_holder(first.path).token == first.holder.token  # untouched
    first.release()
    OutputLock(tmp_path, part="rank0").acquire().release()  # free again


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    dead = _dead_pid()
    _write_holder(lock_path(tmp_path), pid=dead)
    with caplog.at_level(logging.WARNING, logger="masktok.output_lock"):
        lock = OutputLock(tmp_path).acquire()
    assert f"pid {dead}" in caplog.text and "stale lock" in caplog.text
    assert read_holder(lock.path).token == lock.holder.token
    lock.release()


def test_a_reused_pid_is_stale_too(tmp_path):
    """The recorded pid runs, but it is a process started after the lock was written."""
    from masktok.output_lock import _process_start

    start = _process_start(os.getpid())
    if start is None:
        pytest.skip("process start times are read from /proc (Linux)")
    _write_holder(lock_path(tmp_path), pid=os.getpid(), process_start=start - 1)
    OutputLock(tmp_path).acquire().release()


def test_a_lock_from_another_host_is_not_guessed_at(tmp_path):
    _write_holder(lock_path(tmp_path), host="elsewhere.example", pid=_dead_pid())
    with pytest.raises(OutputInUseError, match="another host: delete .*_lock.json"):
        OutputLock(tmp_path).acquire()
    assert lock_path(tmp_path).exists()


def test_a_file_that_is_not_a_lock_is_reported(tmp_path):
    lock_path(tmp_path).write_text("not json")
    with pytest.raises(OutputInUseError, match="not a masktok lock file"):
        OutputLock(tmp_path).acquire()


def test_release_leaves_a_lock_that_is_not_its_own(tmp_path):
    lock = OutputLock(tmp_path).acquire()
    lock.path.unlink()
    other = _write_holder(lock.path, pid=1, token="someone else")
    lock.release()
    assert read_holder(lock.path) == other


def test_runs_of_different_sizes_refuse_each_other(tmp_path):
    """Ranks of one run (same world size) share a folder; a single-process run does not join them."""
    rank1 = hold_run_output(tmp_path, rank=1, world_size=2)
    rank0 = hold_run_output(tmp_path, rank=0, world_size=2)  # the same run's other rank
    with pytest.raises(OutputInUseError, match="another run"):
        hold_run_output(tmp_path, rank=0, world_size=1)
    rank0.release()
    with pytest.raises(OutputInUseError, match="2 process"):
        hold_run_output(tmp_path, rank=0, world_size=1)  # rank 1 of the two-process run still writes
    rank1.release()
    hold_run_output(tmp_path, rank=0, world_size=1).release()


def test_rank_and_world_size_come_from_torchrun(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    lock = hold_run_output(tmp_path)
    assert lock.path.name == "_lock.rank3.json" and lock.holder.info == {"rank": 3, "world_size": 4}
    lock.release()


def _held_by_another_run(folder):
    """A live lock on ``folder`` as a running single-process job holds it (this test's own pid is
    alive, so the lock is not stale)."""
    return OutputLock(folder, part="rank0", command="an earlier run", info={"rank": 0, "world_size": 1}).acquire()


def test_tokenizer_training_refuses_a_run_folder_in_use_and_leaves_it_untouched(tmp_path):
    from masktok.train import TrainConfig, train_tokenizer
    from masktok.train.tokenizer.config import HiMTokTrainConfig

    run_dir = tmp_path / "run"
    other = _held_by_another_run(run_dir)
    config = TrainConfig(tokenizer=HiMTokTrainConfig(synthetic_fraction=1.0, batch_size=2),
                         steps=1, checkpoint_every=0, log_every=1, progress=False, device="cpu",
                         run_dir=str(run_dir))
    with pytest.raises(OutputInUseError, match="an earlier run"):
        train_tokenizer(config)
    assert sorted(p.name for p in run_dir.iterdir()) == ["_lock.rank0.json"]
    other.release()


def test_vlm_recipes_refuse_an_output_folder_in_use(tmp_path):
    from masktok.train.vlm.config import GRPORecipe, HiMTokStage2Recipe, ModelSettings, SFTRecipe, TrainSettings
    from masktok.train.vlm.grpo import run_grpo
    from masktok.train.vlm.himtok_stage2 import run_himtok_stage2
    from masktok.train.vlm.sft import run_sft

    out = tmp_path / "out"
    other = _held_by_another_run(out)
    model = ModelSettings(path=str(tmp_path / "no-model-needed"))
    train = TrainSettings(output_dir=str(out))
    for run, recipe_class in ((run_sft, SFTRecipe), (run_grpo, GRPORecipe), (run_himtok_stage2, HiMTokStage2Recipe)):
        recipe = recipe_class(model=model, train=train, data=(str(tmp_path / "data.jsonl"),))
        with pytest.raises(OutputInUseError, match="an earlier run"):
            run(recipe)  # refused before the model or the data is read
    other.release()

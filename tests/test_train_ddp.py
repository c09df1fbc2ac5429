"""Two CPU processes (gloo) train DDP steps; their EMA codebooks and weights must agree."""

from __future__ import annotations

import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, model_dir: str, run_dir: str, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    from masktok.train.tokenizer import trainer as tokenizer_trainer

    built = []
    original = tokenizer_trainer.build_recipe

    def recording(config, ctx):
        recipe = original(config, ctx)
        built.append((recipe, ctx))
        return recipe

    tokenizer_trainer.build_recipe = recording
    cfg = tokenizer_trainer.TrainConfig.from_dict(dict(
        family="himtok", model=model_dir, synthetic_fraction=1.0, batch_size=3, steps=2, checkpoint_every=0,
        log_every=1, progress=False, device="cpu", run_dir=run_dir, lr=1e-3, val_prefix_lengths=(1,)))
    tokenizer_trainer.train_tokenizer(cfg)
    recipe, ctx = built[0]
    state = {k: v.detach().clone() for k, v in recipe.model.state_dict().items()}
    torch.save({"state": state, "rank": ctx.rank, "world": ctx.world_size,
                "first_batch": recipe.batch(0)}, Path(out_dir) / f"rank{rank}.pt")


@pytest.mark.slow
def test_two_process_ddp_step_keeps_ema_codebooks_in_sync(tmp_path):
    from masktok.tokenizers.himtok import HiMTok

    from test_train_tokenizer import tiny_himtok_config

    model_dir = tmp_path / "model"
    HiMTok.from_config(replace(tiny_himtok_config(quantizer="rvq"), codebook_size=32), seed=0).save_pretrained(model_dir)
    mp.spawn(_worker, args=(2, _free_port(), str(model_dir), str(tmp_path / "run"), str(tmp_path)), nprocs=2,
             join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert (r0["rank"], r1["rank"], r0["world"]) == (0, 1, 2)
    # The ranks saw different masks …
    assert not torch.equal(r0["first_batch"], r1["first_batch"])
    ema = [k for k in r0["state"] if "cluster_size_ema" in k or "embed_ema" in k]
    assert ema, "the rvq model must carry EMA codebooks"
    initial = HiMTok.from_pretrained(model_dir).model.state_dict()
    # … the EMA statistics moved, and they are identical on both ranks (all-reduced, not broadcast).
    assert any(not torch.equal(r0["state"][k], initial[k]) for k in ema)
    for key in r0["state"]:
        assert torch.allclose(r0["state"][key], r1["state"][key], atol=1e-6), key
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()

"""Residual VQ with EMA codebooks: assignment, prefixes, validation, EMA, restarts, DDP."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from masktok.tokenizers.quantizers.residual_vq import EMACodebook, ResidualVQ


def _rvq(seed: int = 0, **kwargs) -> ResidualVQ:
    torch.manual_seed(seed)
    return ResidualVQ(8, kwargs.pop("codebook_size", 16), kwargs.pop("depth", 2), **kwargs)


def test_layout_has_zero_padding_row_and_ema_buffers():
    rvq = _rvq()
    state = rvq.state_dict()
    assert set(state) == {f"codebooks.{d}.{n}" for d in (0, 1) for n in ("weight", "cluster_size_ema", "embed_ema")}
    assert state["codebooks.0.weight"].shape == (17, 8)
    assert torch.equal(state["codebooks.1.weight"][16], torch.zeros(8))
    assert state["codebooks.0.cluster_size_ema"].shape == (16,)
    assert state["codebooks.0.embed_ema"].shape == (16, 8)
    assert not rvq.codebooks[0].weight.requires_grad


def test_greedy_residual_assignment_matches_brute_force():
    rvq = _rvq().eval()
    x = torch.randn(50, 8)
    codes, partial = rvq.quantize(x)
    cb0, cb1 = rvq.codebooks[0].codewords, rvq.codebooks[1].codewords
    expect0 = torch.cdist(x, cb0).argmin(1)
    residual = x - cb0[expect0]
    expect1 = torch.cdist(residual, cb1).argmin(1)
    assert torch.equal(codes[:, 0], expect0) and torch.equal(codes[:, 1], expect1)
    torch.testing.assert_close(partial[0], cb0[expect0])
    torch.testing.assert_close(partial[1], cb0[expect0] + cb1[expect1])
    torch.testing.assert_close(rvq.lookup(codes), partial[1])


def test_lookup_accepts_prefixes_and_trailing_gaps():
    rvq = _rvq().eval()
    codes = torch.tensor([[3, 5], [0, 15]])
    level0 = rvq.codebooks[0].codewords[codes[:, 0]]
    torch.testing.assert_close(rvq.lookup(codes[:, :1]), level0)
    torch.testing.assert_close(rvq.lookup(torch.tensor([[3, -1], [0, -1]])), level0)
    mixed = rvq.lookup(torch.tensor([[3, -1], [0, 15]]))
    torch.testing.assert_close(mixed[0], level0[0])
    torch.testing.assert_close(mixed[1], level0[1] + rvq.codebooks[1].codewords[15])


@pytest.mark.parametrize("codes, message", [
    (torch.tensor([[16, 0]]), "outside"),
    (torch.tensor([[0, 16]]), "outside"),
    (torch.tensor([[-1, 2]]), "level-0"),
    (torch.tensor([[-2, -1]]), "outside"),
    (torch.tensor([[1, 2, 3]]), "shape"),
    (torch.tensor([[1.0, 2.0]]), "integer"),
])
def test_invalid_codes_raise(codes, message):
    with pytest.raises(ValueError, match=message):
        _rvq().lookup(codes)


def test_gap_before_a_present_level_raises():
    rvq = _rvq(depth=3)
    with pytest.raises(ValueError, match="only a prefix"):
        rvq.lookup(torch.tensor([[1, -1, 2]]))


def test_straight_through_and_commitment_loss():
    rvq = _rvq().eval()
    x = torch.randn(10, 8, requires_grad=True)
    out = rvq(x)
    torch.testing.assert_close(out.quantized.detach(), out.partial_quantized[-1])
    expected = torch.stack([(x.detach() - q).pow(2).mean() for q in out.partial_quantized]).mean()
    torch.testing.assert_close(out.loss.detach(), expected)
    (out.quantized.sum() + 0 * out.loss).backward()
    torch.testing.assert_close(x.grad, torch.ones_like(x))


def test_eval_mode_leaves_codebooks_unchanged():
    rvq = _rvq().eval()
    before = {k: v.clone() for k, v in rvq.state_dict().items()}
    rvq(torch.randn(40, 8))
    assert all(torch.equal(before[k], v) for k, v in rvq.state_dict().items())


def test_ema_update_formula_without_restarts():
    book = EMACodebook(4, 3, decay=0.9, eps=1e-5)
    with torch.no_grad():
        book.cluster_size_ema.fill_(5.0)
    old_size, old_embed = book.cluster_size_ema.clone(), book.embed_ema.clone()
    vectors = torch.randn(6, 3)
    codes = torch.tensor([0, 0, 1, 3, 3, 3])
    book.ema_update(vectors, codes)
    counts = torch.tensor([2.0, 1.0, 0.0, 3.0])
    sums = torch.stack([vectors[codes == k].sum(0) for k in range(4)])
    torch.testing.assert_close(book.cluster_size_ema, 0.9 * old_size + 0.1 * counts)
    torch.testing.assert_close(book.embed_ema, 0.9 * old_embed + 0.1 * sums)
    book.refresh_weight()
    n = book.cluster_size_ema.sum()
    smoothed = n * (book.cluster_size_ema + 1e-5) / (n + 4 * 1e-5)
    torch.testing.assert_close(book.codewords, book.embed_ema / smoothed[:, None])
    assert torch.equal(book.weight[4], torch.zeros(3))


def test_dead_codes_restart_from_batch_vectors():
    torch.manual_seed(1)
    book = EMACodebook(4, 3, decay=0.99)
    with torch.no_grad():
        book.cluster_size_ema.copy_(torch.tensor([50.0, 0.0, 0.0, 0.0]))
    vectors = torch.randn(8, 3) + 10.0
    book.ema_update(vectors, torch.zeros(8, dtype=torch.long))
    assert book.cluster_size_ema[0] > 1 and torch.equal(book.cluster_size_ema[1:], torch.ones(3))
    for row in book.embed_ema[1:]:
        assert torch.isclose(row[None], vectors).all(dim=1).any(), "a dead code must take a batch vector"


def test_restarted_codes_start_at_a_lower_threshold():
    torch.manual_seed(2)
    book = EMACodebook(4, 3, decay=0.99, dead_code_threshold=0.05)
    with torch.no_grad():
        book.cluster_size_ema.copy_(torch.tensor([0.2, 0.06, 0.01, 0.0]))
    vectors = torch.randn(2, 3) + 5.0
    book.ema_update(vectors, torch.zeros(2, dtype=torch.long))
    # Code 1 (0.06 · 0.99 ≈ 0.059) stays; codes 2 and 3 restart at count 0.05 holding one batch vector.
    assert book.cluster_size_ema[1] == pytest.approx(0.0594) and torch.allclose(book.cluster_size_ema[2:], torch.tensor(0.05))
    book.refresh_weight()
    for row in book.codewords[2:]:
        assert (row[None] - vectors).norm(dim=1).min() < 0.05


def test_training_forward_updates_and_keeps_padding_zero():
    rvq = _rvq().train()
    before = rvq.codebooks[0].weight.clone()
    rvq(torch.randn(64, 8))
    assert not torch.equal(before, rvq.codebooks[0].weight)
    assert torch.equal(rvq.codebooks[0].weight[16], torch.zeros(8))


def test_shared_codebook_is_one_module():
    rvq = _rvq(shared=True)
    assert rvq.codebooks[0] is rvq.codebooks[1]
    assert "codebooks.1.weight" in rvq.state_dict()
    with pytest.raises(ValueError, match="shared"):
        ResidualVQ(8, [16, 32], 2, shared=True)


def _ddp_model(restart: bool) -> ResidualVQ:
    torch.manual_seed(0)
    rvq = ResidualVQ(4, 8, 2, decay=0.5, restart_dead_codes=restart)
    with torch.no_grad():
        for book in rvq.codebooks:
            book.cluster_size_ema.fill_(10.0)
            book.cluster_size_ema[6:] = 0.0  # codes 6 and 7 are dead
    return rvq.train()


def _rank_batch(rank: int) -> torch.Tensor:
    return torch.randn(16, 4, generator=torch.Generator().manual_seed(100 + rank))


def _ddp_worker(rank: int, world: int, store_file: str, result_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world)
    try:
        plain, restarting = _ddp_model(False), _ddp_model(True)
        plain(_rank_batch(rank))
        torch.manual_seed(1000 + rank)  # ranks draw different restart candidates; rank 0's win
        restarting(_rank_batch(rank))
        torch.save({"plain": plain.state_dict(), "restart": restarting.state_dict()}, f"{result_file}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_distributed_statistics_and_restarts_are_identical_on_every_rank():
    with tempfile.TemporaryDirectory() as tmp:
        store, result = os.path.join(tmp, "store"), os.path.join(tmp, "state")
        mp.spawn(_ddp_worker, args=(2, store, result), nprocs=2, join=True)
        states = [torch.load(f"{result}.{r}", weights_only=True) for r in range(2)]
    for kind in ("plain", "restart"):
        for key in states[0][kind]:
            torch.testing.assert_close(states[0][kind][key], states[1][kind][key], msg=f"{kind} {key}")
    # All-reduced statistics equal one process seeing both ranks' batches.
    single = _ddp_model(False)
    single(torch.cat([_rank_batch(0), _rank_batch(1)]))
    for key, value in single.state_dict().items():
        torch.testing.assert_close(states[0]["plain"][key], value, msg=key)
    restarted = states[0]["restart"]["codebooks.0.cluster_size_ema"]
    assert (restarted >= 1).all(), "dead codes are restarted with a count of 1"

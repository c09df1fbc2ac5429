"""Finite scalar quantization: grid values, code ids, straight-through, lookups."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from masktok.tokenizers.quantizers.fsq import FiniteScalarQuantizer


def test_codebook_size_and_bijective_ids():
    fsq = FiniteScalarQuantizer((4, 3, 5))
    assert fsq.codebook_size == 60 and fsq.dim == 3
    ids = torch.arange(60)
    values = fsq.indices_to_codes(ids)
    assert torch.equal(fsq.codes_to_indices(values), ids)
    # every value combination appears once
    assert len({tuple(v.tolist()) for v in values}) == 60


def test_values_lie_on_the_level_grid():
    fsq = FiniteScalarQuantizer((4, 3))
    out = fsq(torch.randn(8, 16, 2) * 3)
    q = out.quantized
    assert set(q[..., 0].unique().tolist()) <= {-1.0, -0.5, 0.0, 0.5}  # 4 levels, half width 2
    assert set(q[..., 1].unique().tolist()) <= {-1.0, 0.0, 1.0}  # 3 levels, half width 1
    assert torch.equal(fsq.indices_to_codes(out.codes), q)
    assert out.loss.item() == 0.0


def test_all_levels_are_reachable():
    fsq = FiniteScalarQuantizer((4, 4))
    z = torch.linspace(-6, 6, 200)
    grid = torch.tensor(list(itertools.product(z.tolist(), repeat=2))).view(1, -1, 2)
    assert fsq(grid).codes.unique().numel() == 16


def test_straight_through_gradient():
    fsq = FiniteScalarQuantizer((5, 5, 5))
    z = torch.randn(2, 4, 3, requires_grad=True)
    fsq(z).quantized.sum().backward()
    assert z.grad is not None and (z.grad != 0).any()


def test_lookup_matches_forward_and_soft_lookup_one_hot():
    fsq = FiniteScalarQuantizer((4, 4, 4, 4, 4))
    out = fsq(torch.randn(3, 6, 5))
    assert torch.equal(fsq.lookup(out.codes), out.quantized)
    soft = fsq.soft_lookup(F.one_hot(out.codes, 1024).float())
    assert torch.allclose(soft, out.quantized)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="levels"):
        FiniteScalarQuantizer((4, 1))
    fsq = FiniteScalarQuantizer((4, 4))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        fsq.lookup(torch.tensor([[16]]))
    with pytest.raises(ValueError, match="shape"):
        fsq(torch.randn(2, 3, 3))

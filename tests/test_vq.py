"""Cosine VQ with SimVQ projection: nearest code, straight-through, losses, bf16, lookups."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from masktok.tokenizers.quantizers.vq import CosineVectorQuantizer


@pytest.fixture()
def vq() -> CosineVectorQuantizer:
    torch.manual_seed(0)
    quantizer = CosineVectorQuantizer(codebook_size=64, dim=8, commitment_cost=0.01)
    with torch.no_grad():
        quantizer.embedding.weight.normal_()
    return quantizer


def test_codes_are_cosine_nearest_neighbours(vq):
    z = torch.randn(3, 5, 8)
    out = vq(z)
    codebook = F.normalize(vq.embedding.weight @ vq.embedding_proj.weight.T, dim=-1)
    distances = torch.cdist(F.normalize(z, dim=-1).reshape(-1, 8), codebook)
    assert out.codes.shape == (3, 5)
    assert torch.equal(out.codes.reshape(-1), distances.argmin(dim=-1))
    # the quantized vectors are the chosen (unit-norm) codebook rows
    assert torch.allclose(out.quantized, codebook[out.codes], atol=1e-6)
    assert torch.allclose(out.quantized.norm(dim=-1), torch.ones(3, 5), atol=1e-5)


def test_scale_of_input_does_not_change_codes(vq):
    z = torch.randn(2, 4, 8)
    assert torch.equal(vq(z).codes, vq(z * 37.5).codes)


def test_loss_is_commitment_plus_codebook_term(vq):
    z = torch.randn(2, 6, 8)
    out = vq(z)
    z_n = F.normalize(z, dim=-1)
    mse = torch.mean((out.quantized.detach() - z_n) ** 2)
    assert torch.allclose(out.loss, 1.01 * mse, rtol=1e-5)


def test_straight_through_gradient_reaches_input_and_projection_only(vq):
    z = torch.randn(2, 3, 8, requires_grad=True)
    out = vq(z)
    (out.quantized * torch.randn_like(out.quantized)).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    out2 = vq(torch.randn(2, 3, 8))
    vq.zero_grad()
    out2.loss.backward()
    assert vq.embedding_proj.weight.grad.abs().sum() > 0
    assert vq.embedding.weight.grad is None and not vq.embedding.weight.requires_grad  # SimVQ: frozen table


def test_bf16_input_gives_same_codes_and_keeps_dtype(vq):
    z = torch.randn(4, 8, 8)
    ref = vq(z.bfloat16().float())
    out = vq(z.bfloat16())
    assert out.quantized.dtype == torch.bfloat16
    assert torch.equal(out.codes, ref.codes)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(vq(z.bfloat16()).codes, ref.codes)


def test_lookup_and_soft_lookup_agree_on_one_hot(vq):
    codes = torch.randint(0, 64, (2, 7))
    hard = vq.lookup(codes)
    soft = vq.soft_lookup(F.one_hot(codes, 64).float())
    assert torch.allclose(hard, soft, atol=1e-6)
    raw = vq.soft_lookup(F.one_hot(codes, 64).float(), renormalize=False)
    assert torch.allclose(raw, (vq.embedding.weight @ vq.embedding_proj.weight.T)[codes], atol=1e-6)


def test_soft_lookup_mixes_codebook_rows(vq):
    probs = torch.zeros(1, 1, 64)
    probs[0, 0, 3] = 0.25
    probs[0, 0, 9] = 0.75
    projected = vq.embedding.weight @ vq.embedding_proj.weight.T
    expected = F.normalize(0.25 * projected[3] + 0.75 * projected[9], dim=-1)
    assert torch.allclose(vq.soft_lookup(probs)[0, 0], expected, atol=1e-6)


@pytest.mark.parametrize("codes", [torch.tensor([[0, 64]]), torch.tensor([[-1, 2]]), torch.tensor([[0.0, 1.0]])])
def test_bad_codes_raise(vq, codes):
    with pytest.raises(ValueError, match="codes"):
        vq.lookup(codes)


def test_bad_probabilities_and_shapes_raise(vq):
    with pytest.raises(ValueError, match="last dimension"):
        vq.soft_lookup(torch.rand(1, 2, 63))
    with pytest.raises(ValueError, match="negative"):
        vq.soft_lookup(torch.randn(1, 2, 64))
    with pytest.raises(ValueError, match="NaN"):
        vq.soft_lookup(torch.full((1, 2, 64), float("nan")))
    with pytest.raises(ValueError, match=r"\(B, L, 8\)"):
        vq(torch.randn(2, 8))

"""SAMTokModel on tiny configs: prompt encoding by hand, batching invariance, gradients, sizes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers.models.sam2.modeling_sam2 import Sam2MultiScaleAttention

from masktok.tokenizers.samtok import HIERA_PRESETS, SAMTokModel, samtok_config, tiny_test_config
from masktok.tokenizers.samtok.hiera_attention import FusedMultiScaleAttention


@pytest.fixture(scope="module")
def model() -> SAMTokModel:
    torch.manual_seed(0)
    return SAMTokModel(tiny_test_config()).eval()


def _features(model, batch=2, seed=1):
    torch.manual_seed(seed)
    return model.image_features(torch.randn(batch, 3, 128, 128))


def test_box_prompt_matches_hand_computation(model):
    """Box corners as points with labels 2 and 3, SAM's +0.5 shift, /S, random Fourier features,
    plus SAM's padding point (not_a_point) — computed from the weights by hand."""
    boxes = torch.tensor([[10.0, 20.0, 50.0, 60.0], [0.0, 0.0, 127.0, 127.0]])
    masks = torch.rand(2, 1, 32, 32)
    sparse, dense = model.mask_prompt_embeddings(boxes, masks)
    enc = model.sam2.prompt_encoder
    gauss = enc.shared_embedding.positional_embedding  # (2, C/2)
    corners = (boxes.reshape(2, 2, 2) + 0.5) / 128.0
    proj = 2 * math.pi * ((2 * corners - 1) @ gauss)
    fourier = torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)
    expected = torch.stack([fourier[:, 0] + enc.point_embed.weight[2], fourier[:, 1] + enc.point_embed.weight[3],
                            enc.not_a_point_embed.weight.expand(2, -1)], dim=1)
    torch.testing.assert_close(sparse, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dense, enc.mask_embed(masks))
    assert sparse.shape == (2, 3, 32) and dense.shape == (2, 32, 8, 8)


def test_decode_prompt_is_two_not_a_point_tokens_plus_embedding(model):
    feats = _features(model, batch=1)
    emb = torch.randn(3, 32)
    captured = {}
    hook = model.sam2.mask_decoder.register_forward_hook(
        lambda mod, args, kwargs, out: captured.update(kwargs), with_kwargs=True)
    try:
        model.decode_logits(feats, torch.zeros(3, dtype=torch.long), emb)
    finally:
        hook.remove()
    sparse = captured["sparse_prompt_embeddings"]
    not_a_point = model.sam2.prompt_encoder.not_a_point_embed.weight[0]
    assert sparse.shape == (3, 1, 3, 32)
    torch.testing.assert_close(sparse[:, 0, 0], not_a_point.expand(3, -1))
    torch.testing.assert_close(sparse[:, 0, 1], not_a_point.expand(3, -1))
    torch.testing.assert_close(sparse[:, 0, 2], emb)
    no_mask = model.sam2.prompt_encoder.no_mask_embed.weight[0]
    torch.testing.assert_close(captured["dense_prompt_embeddings"][:, :, 3, 5], no_mask.expand(3, -1))
    assert captured["multimask_output"] is True


def test_batched_masks_equal_each_mask_alone(model):
    feats = _features(model)
    index = torch.tensor([0, 1, 1, 0])
    boxes = torch.tensor([[1.0, 2, 60, 70], [5, 5, 20, 30], [0, 0, 127, 127], [30, 40, 90, 100]])
    prompts = torch.rand(4, 1, 32, 32)
    together = model.mask_embeddings(feats, index, boxes, prompts)
    logits, iou = model.decode_logits(feats, index, together)
    for i in range(4):
        alone_feats = feats.select(index[i: i + 1])
        zero = torch.zeros(1, dtype=torch.long)
        alone = model.mask_embeddings(alone_feats, zero, boxes[i: i + 1], prompts[i: i + 1])
        torch.testing.assert_close(together[i: i + 1], alone, rtol=0, atol=1e-5)
        alone_logits, alone_iou = model.decode_logits(alone_feats, zero, alone)
        torch.testing.assert_close(logits[i: i + 1], alone_logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(iou[i: i + 1], alone_iou, rtol=0, atol=1e-5)


def test_best_mask_picks_highest_iou():
    logits = torch.arange(3.0)[None, :, None, None].expand(2, 3, 4, 4)
    iou = torch.tensor([[0.1, 0.9, 0.3], [0.8, 0.2, 0.1]])
    best = SAMTokModel.best_mask(logits, iou)
    assert torch.equal(best[:, 0, 0], torch.tensor([1.0, 0.0]))


def test_training_pieces_carry_gradients(model):
    model.train()
    try:
        feats = model.image_features(torch.randn(1, 3, 128, 128))
        index = torch.zeros(2, dtype=torch.long)
        emb = model.mask_embeddings(feats, index, torch.tensor([[1.0, 2, 60, 70], [5, 5, 20, 30]]),
                                    torch.rand(2, 1, 32, 32))
        out = model.quantizer(emb, update_codebooks=False)
        logits, iou = model.decode_logits(feats, index, out.quantized)
        assert logits.shape == (2, 3, 32, 32) and iou.shape == (2, 3)
        (logits.mean() + out.loss).backward()
        assert model.mask_encoder.mask_tokens.weight.grad is not None
        assert model.sam2.vision_encoder.backbone.patch_embed.projection.weight.grad is not None
        assert model.sam2.mask_decoder.upscale_conv1.weight.grad is not None
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


@pytest.mark.parametrize("query_stride", [None, [2, 2]])
def test_fused_attention_equals_transformers_attention(query_stride):
    config = tiny_test_config().to_sam2_config().vision_config.backbone_config
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    original = Sam2MultiScaleAttention(config, 8, 16, 2, query_stride=query_stride)
    fused = FusedMultiScaleAttention(8, 16, 2, query_stride)
    fused.load_state_dict(original.state_dict())
    x = torch.randn(3, 8, 8, 8)
    torch.testing.assert_close(fused(x), original(x), rtol=1e-5, atol=1e-5)


def test_compute_dtype_keeps_prompt_encoder_and_codebooks_float32():
    model = SAMTokModel(tiny_test_config()).set_compute_dtype(torch.bfloat16)
    assert model.compute_dtype == torch.bfloat16
    assert model.sam2.mask_decoder.iou_token.weight.dtype == torch.bfloat16
    assert model.mask_encoder.mask_tokens.weight.dtype == torch.bfloat16
    assert model.sam2.prompt_encoder.point_embed.weight.dtype == torch.float32
    assert model.sam2.shared_image_embedding.positional_embedding.dtype == torch.float32
    assert model.quantizer.codebooks[0].weight.dtype == torch.float32
    feats = model.image_features(torch.randn(1, 3, 128, 128))
    emb = model.mask_embeddings(feats, torch.zeros(1, dtype=torch.long), torch.tensor([[1.0, 2, 60, 70]]),
                                torch.rand(1, 1, 32, 32))
    assert emb.dtype == torch.float32 and torch.isfinite(emb).all()


@pytest.mark.parametrize("size", sorted(HIERA_PRESETS))
def test_every_hiera_size_builds(size):
    with torch.device("meta"):
        model = SAMTokModel(samtok_config(size))
    hiera = HIERA_PRESETS[size]
    backbone = model.sam2.vision_encoder.backbone
    assert len(backbone.blocks) == hiera.num_blocks
    assert backbone.pos_embed.shape == (1, hiera.embed_dim, *hiera.window_pos_embed_background)
    assert backbone.blocks[-1].attn.qkv.weight.shape == (3 * 8 * hiera.embed_dim, 8 * hiera.embed_dim)
    assert all(isinstance(b.attn, FusedMultiScaleAttention) for b in backbone.blocks)


def test_positional_matrices_start_tied():
    model = SAMTokModel(tiny_test_config())
    assert torch.equal(model.sam2.shared_image_embedding.positional_embedding,
                       model.sam2.prompt_encoder.shared_embedding.positional_embedding)


def test_pixel_shape_is_checked(model):
    with pytest.raises(ValueError, match="pixel_values"):
        model.image_features(torch.randn(1, 3, 64, 64))


def test_decoded_masks_are_stride_4_of_the_input(model):
    feats = _features(model, batch=1)
    logits, _ = model.decode_logits(feats, torch.zeros(1, dtype=torch.long), torch.randn(1, 32))
    assert logits.shape[-2:] == (32, 32)
    assert F.interpolate(logits, size=(128, 128)).shape == (1, 3, 128, 128)

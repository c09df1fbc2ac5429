"""HiMTok network (compact configs): causality by perturbation, prefix zero-fill, training step."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from masktok.tokenizers.himtok import (
    HierarchicalMaskLoss,
    HiMTokModel,
    PixelDecoderConfig,
    get_config,
    masktok_s_config,
    sample_prefix_lengths,
)
from masktok.tokenizers.himtok.encoder import causal_latent_attention_mask


def tiny_compact(**overrides):
    """masktok-s structure at toy sizes: 64² frame, 4×4 grid, 8 latents."""
    config = replace(
        masktok_s_config(), name="tiny", image_size=64, patch_size=16, num_latent_tokens=8,
        encoder_width=32, encoder_depth=2, encoder_heads=2, decoder_width=32, decoder_depth=2,
        decoder_heads=2, token_dim=4, codebook_size=64,
        pixel_decoder=PixelDecoderConfig(z_channels=16, hidden_channels=8, channel_mult=(1, 1, 2),
                                         num_res_blocks=1, out_channels=1, norm_groups=4,
                                         legacy_shortcut=False, pixel_shuffle=4))
    return replace(config, **overrides)


def box_masks(batch: int, size: int = 64) -> torch.Tensor:
    masks = torch.zeros(batch, 1, size, size)
    for i in range(batch):
        top, left = 4 + 5 * i, 8 + 3 * i
        masks[i, 0, top:top + 24, left:left + 30] = 1
    return masks


def test_attention_mask_pattern():
    mask = causal_latent_attention_mask(3, 4)  # True = blocked
    assert not mask[:3, :3].any()  # image tokens see each other
    assert mask[:3, 3:].all()  # image tokens never see latents
    assert not mask[3:, :3].any()  # latents see all image tokens
    assert torch.equal(mask[3:, 3:], torch.triu(torch.ones(4, 4, dtype=torch.bool), diagonal=1))


@pytest.mark.parametrize("quantizer", ["vq", "fsq"])
def test_token_k_depends_only_on_latents_up_to_k(quantizer):
    torch.manual_seed(0)
    overrides = {"quantizer": "fsq", "fsq_levels": (4, 4, 4, 2), "token_dim": 4, "codebook_size": 128} \
        if quantizer == "fsq" else {}
    model = HiMTokModel(tiny_compact(**overrides)).eval()
    pixels = box_masks(2)
    with torch.no_grad():
        before = model.encode_latents(pixels)
        for j in (0, 3, 7):
            saved = model.latent_tokens[j].clone()
            model.latent_tokens[j] += torch.randn_like(saved)
            after = model.encode_latents(pixels)
            model.latent_tokens[j] = saved
            assert torch.equal(after[:, :j], before[:, :j]), f"latent {j} leaked into earlier tokens"
            assert (after[:, j] - before[:, j]).abs().max() > 1e-4
            if j < 7:
                assert (after[:, j + 1:] - before[:, j + 1:]).abs().max() > 1e-4


def test_codes_of_a_prefix_do_not_depend_on_later_latents():
    torch.manual_seed(1)
    model = HiMTokModel(tiny_compact()).eval()
    with torch.no_grad():
        codes = model.encode(box_masks(3)).codes
        model.latent_tokens[5:] += 10 * torch.randn_like(model.latent_tokens[5:])
        changed = model.encode(box_masks(3)).codes
    assert torch.equal(changed[:, :5], codes[:, :5])


def test_decoding_a_prefix_zero_fills_later_slots():
    torch.manual_seed(2)
    model = HiMTokModel(tiny_compact()).eval()
    codes = torch.randint(0, 64, (3, 8))
    with torch.no_grad():
        prefix = model.decode_codes(codes[:, :3])
        ragged = model.decode_codes(codes, torch.tensor([3, 3, 3]))
        other_tail = codes.clone()
        other_tail[:, 3:] = torch.randint(0, 64, (3, 5))
        ragged_other = model.decode_codes(other_tail, torch.tensor([3, 3, 3]))
        full = model.decode_codes(codes)
    assert prefix.shape == (3, 1, 64, 64)
    assert torch.allclose(prefix, ragged, atol=1e-5)
    assert torch.allclose(prefix, ragged_other, atol=1e-5)
    assert (prefix - full).abs().max() > 1e-4


def test_forward_train_shapes_and_validation():
    torch.manual_seed(3)
    model = HiMTokModel(tiny_compact())
    masks = box_masks(2)
    out = model.forward_train(masks, torch.tensor([2, 8]))
    assert out["logits"].shape == (2, 1, 64, 64)
    assert out["codes"].shape == (2, 8) and out["codes"].dtype == torch.int64
    assert out["quant_loss"].ndim == 0
    out = model.forward_train(masks, torch.tensor([[1, 4, 8], [2, 3, 8]]))
    assert out["logits"].shape == (2, 3, 64, 64)
    with torch.no_grad():  # each column equals decoding the codes' prefix on its own
        alone = model.decode_codes(out["codes"][:, :4])
    assert torch.allclose(out["logits"][0, 1], alone[0, 0], atol=1e-4)
    with pytest.raises(ValueError, match="prefix_lengths"):
        model.forward_train(masks, torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="prefix_lengths"):
        model.forward_train(masks, torch.tensor([9, 8]))
    with pytest.raises(ValueError, match="shape"):
        model.forward_train(masks[:, :, :32], torch.tensor([1, 1]))


@pytest.mark.slow
def test_a_few_training_steps_reduce_the_hierarchical_loss():
    torch.manual_seed(4)
    config = tiny_compact(encoder_depth=1, decoder_depth=1)
    model = HiMTokModel(config)
    loss_fn = HierarchicalMaskLoss(config.num_latent_tokens)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    masks = box_masks(4)
    generator = torch.Generator().manual_seed(0)
    fixed = sample_prefix_lengths(4, config.num_latent_tokens, 2, generator=generator)
    full_level = []
    for _ in range(20):
        out = model.forward_train(masks, fixed)
        losses = loss_fn(out["logits"], masks, fixed)
        optimizer.zero_grad()
        (losses["loss"] + out["quant_loss"]).backward()
        optimizer.step()
        full_level.append(losses["per_level"][-1].item())
    assert full_level[-1] < 0.75 * full_level[0]


def test_bf16_model_runs_end_to_end_on_cpu():
    torch.manual_seed(5)
    model = HiMTokModel(tiny_compact()).to(torch.bfloat16).eval()
    with torch.no_grad():
        enc = model.encode(box_masks(2).bfloat16())
        logits = model.decode_codes(enc.codes[:, :5])
    assert enc.codes.dtype == torch.int64 and logits.dtype == torch.bfloat16
    assert torch.isfinite(logits.float()).all()


def test_compact_configs_are_small():
    with torch.device("meta"):
        small = HiMTokModel(get_config("masktok-s"))
        official_decode = HiMTokModel(get_config("official"))
    params = sum(p.numel() for p in small.parameters())
    assert params <= 8_000_000  # ≤ 16 MB in fp16
    decode_params = sum(p.numel() for name, p in small.named_parameters() if "decoder" in name)
    official = sum(p.numel() for name, p in official_decode.named_parameters() if "decoder" in name)
    assert decode_params < 0.05 * official


def test_training_step_under_bf16_autocast():
    torch.manual_seed(6)
    config = tiny_compact()
    model = HiMTokModel(config)
    masks = box_masks(2)
    lengths = sample_prefix_lengths(2, config.num_latent_tokens, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_train(masks, lengths)
        loss = HierarchicalMaskLoss(config.num_latent_tokens)(out["logits"], masks, lengths)["loss"]
        loss = loss + out["quant_loss"]
    loss.backward()
    assert torch.isfinite(loss) and model.latent_tokens.grad is not None
    assert all(p.grad is not None for p in model.decoder.parameters())


@pytest.mark.parametrize("overrides", [
    {"quantizer": "rvq", "rvq_depth": 2},
    {"quantizer": "fsq", "fsq_levels": (4, 4, 2, 2), "token_dim": 4},
])
def test_ablation_quantizers_train(overrides):
    torch.manual_seed(7)
    config = tiny_compact(**overrides)
    model = HiMTokModel(config)
    lengths = torch.tensor([[2, 8], [5, 8]])
    out = model.forward_train(box_masks(2), lengths)
    assert out["codes"].shape == (2, config.max_codes)
    loss = HierarchicalMaskLoss(8)(out["logits"], box_masks(2), lengths)["loss"] + out["quant_loss"]
    loss.backward()
    assert model.encoder.conv_out.weight.grad.abs().sum() > 0

"""Hierarchical mask loss: σ schedule, blurred targets, level sampling, BCE + Dice summed over levels."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from masktok.tokenizers.himtok.loss import (
    HierarchicalMaskLoss,
    blur_and_renormalize,
    gaussian_kernel1d,
    dice_loss,
    level_sigma,
    level_targets,
    sample_prefix_lengths,
)


def test_sigma_schedule():
    assert level_sigma(1) == pytest.approx(48.0)
    assert level_sigma(4) == pytest.approx(18.0)
    assert level_sigma(31) == pytest.approx(1.125)
    assert all(level_sigma(l) > level_sigma(l + 1) for l in range(1, 31))
    with pytest.raises(ValueError, match="level"):
        level_sigma(0)


def test_blurred_point_is_a_renormalised_gaussian():
    mask = torch.zeros(1, 1, 21, 21)
    mask[0, 0, 10, 10] = 1
    sigma = level_sigma(31)  # 1.125, kernel side 2·⌈3.375⌉ + 1 = 9
    out = blur_and_renormalize(mask, sigma)[0, 0]
    assert out[10, 10] == pytest.approx(1.0)
    assert out[10, 11] == pytest.approx(math.exp(-1 / (2 * sigma ** 2)), rel=1e-5)
    assert out[12, 9] == pytest.approx(math.exp(-5 / (2 * sigma ** 2)), rel=1e-5)
    assert out[10, 14] > 0 and out[10, 15] == 0  # the kernel radius is 4
    assert out.max() == 1.0


def test_empty_masks_stay_empty():
    assert blur_and_renormalize(torch.zeros(2, 1, 16, 16), 3.0).abs().max() == 0


def test_full_level_is_the_sharp_mask_and_partial_levels_are_blurred():
    mask = torch.zeros(1, 1, 64, 64)
    mask[0, 0, 20:40, 10:50] = 1
    targets = level_targets(mask, torch.tensor([[2, 16, 32]]), num_latent_tokens=32)
    assert targets.shape == (1, 3, 64, 64)
    assert torch.equal(targets[0, 2], mask[0, 0])
    assert torch.allclose(targets[0, 0], blur_and_renormalize(mask, level_sigma(2))[0, 0])
    assert targets[0, :2].amax(dim=(1, 2)).tolist() == pytest.approx([1.0, 1.0])


def test_targets_approach_the_mask_monotonically_with_the_level():
    mask = torch.zeros(1, 1, 128, 128)
    mask[0, 0, 30:90, 40:100] = 1
    levels = torch.arange(1, 33).view(1, -1)
    targets = level_targets(mask, levels, num_latent_tokens=32)
    distance = (targets - mask[:, 0:1]).abs().mean(dim=(2, 3))[0]
    assert distance[-1] == 0
    assert torch.all(distance[1:] < distance[:-1])


def test_sampled_levels_follow_inverse_power_law():
    generator = torch.Generator().manual_seed(0)
    lengths = sample_prefix_lengths(40000, 32, num_partial=1, generator=generator)
    assert lengths.shape == (40000, 2) and (lengths[:, 1] == 32).all()
    levels = torch.arange(1, 32, dtype=torch.float64)
    expected = (1 / (levels + 8)) / (1 / (levels + 8)).sum()
    observed = torch.bincount(lengths[:, 0], minlength=32)[1:].double() / 40000
    assert torch.allclose(observed, expected, atol=0.006)


def test_multiple_sampled_levels_are_distinct_and_sorted():
    lengths = sample_prefix_lengths(500, 32, num_partial=3, generator=torch.Generator().manual_seed(1))
    partial = lengths[:, :3]
    assert ((partial >= 1) & (partial < 32)).all()
    assert (partial[:, 1:] > partial[:, :-1]).all()
    with pytest.raises(ValueError, match="num_partial"):
        sample_prefix_lengths(2, 3, num_partial=3)


def test_bce_plus_dice_on_a_hand_computed_case():
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere
    masks = torch.ones(1, 1, 2, 2)
    out = HierarchicalMaskLoss(32)(logits, masks, torch.tensor([[32]]))
    # BCE = ln 2; Dice = 1 − 2·(0.5·4) / (0.5·4 + 4) = 1/3
    assert out["bce"].item() == pytest.approx(math.log(2), rel=1e-6)
    assert out["dice"].item() == pytest.approx(1 / 3, rel=1e-5)
    assert out["loss"].item() == pytest.approx(math.log(2) + 1 / 3, rel=1e-5)


def test_every_sampled_level_counts():
    logits = torch.zeros(2, 3, 8, 8)
    masks = torch.zeros(2, 1, 8, 8)  # blurred targets of an empty mask are empty too
    lengths = torch.tensor([[1, 5, 32], [3, 7, 32]])
    loss = HierarchicalMaskLoss(32, bce_weight=2.0, dice_weight=0.5)(logits, masks, lengths)
    per_level = 2.0 * math.log(2) + 0.5 * (1 - 1e-6 / (32 + 1e-6))
    assert loss["per_level"].tolist() == pytest.approx([per_level] * 3, rel=1e-5)
    assert loss["loss"].item() == pytest.approx(3 * per_level, rel=1e-5)


def test_perfect_prediction_has_low_loss():
    masks = torch.zeros(1, 1, 8, 8)
    masks[0, 0, 2:6, 2:6] = 1
    logits = (masks * 2 - 1) * 30
    out = HierarchicalMaskLoss(32)(logits, masks, torch.tensor([[32]]))
    assert out["loss"].item() < 1e-6
    assert dice_loss(logits, masks).item() < 1e-6


def test_shape_errors():
    loss = HierarchicalMaskLoss(32)
    with pytest.raises(ValueError, match="prefix_lengths"):
        loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4), torch.tensor([[32]]))
    with pytest.raises(ValueError, match="masks"):
        loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 5, 4), torch.tensor([[32]]))
    with pytest.raises(ValueError, match=r"\[1, 32\]"):
        loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), torch.tensor([[33]]))


def test_loss_runs_under_bf16_autocast():
    masks = torch.zeros(2, 1, 32, 32)
    masks[:, :, 8:20, 4:30] = 1
    logits = torch.randn(2, 3, 32, 32)
    lengths = torch.tensor([[1, 9, 32], [2, 30, 32]])
    reference = HierarchicalMaskLoss(32)(logits, masks, lengths)["loss"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = HierarchicalMaskLoss(32)(logits.bfloat16(), masks, lengths)["loss"]
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(reference.item(), rel=2e-2)


def test_batched_level_targets_equal_per_level_convolutions():
    """Every level of a mixed batch equals a direct 2-D convolution with its own kernel."""
    generator = torch.Generator().manual_seed(0)
    masks = (torch.rand(3, 1, 40, 40, generator=generator) > 0.7).float()
    masks[2] = 0
    levels = torch.tensor([[1, 9, 32], [5, 31, 32], [3, 12, 32]])
    targets = level_targets(masks, levels, num_latent_tokens=32)
    for b in range(3):
        for c in range(3):
            level = int(levels[b, c])
            if level == 32:
                assert torch.equal(targets[b, c], masks[b, 0])
                continue
            kernel = gaussian_kernel1d(level_sigma(level))
            k2 = torch.outer(kernel, kernel)[None, None]
            ref = F.conv2d(masks[b:b + 1], k2, padding=kernel.numel() // 2)[0, 0]
            ref = ref / ref.max().clamp(min=1e-6)
            assert torch.allclose(targets[b, c], ref, atol=1e-5), (b, level)


def test_sigma_scale_shrinks_every_partial_blur():
    mask = torch.zeros(1, 1, 48, 48)
    mask[0, 0, 10:30, 5:20] = 1
    lengths = torch.tensor([[3, 12, 32]])
    targets = level_targets(mask, lengths, num_latent_tokens=32, sigma_scale=0.5)
    for column, level in enumerate((3, 12)):
        expected = blur_and_renormalize(mask, 0.5 * level_sigma(level))[0, 0]
        assert torch.allclose(targets[0, column], expected, atol=1e-6)
    assert torch.equal(targets[0, 2], mask[0, 0])
    sharper = (targets[0, 0] - mask[0, 0]).abs().sum()
    assert sharper < (level_targets(mask, lengths, 32)[0, 0] - mask[0, 0]).abs().sum()
    with pytest.raises(ValueError, match="sigma_scale"):
        level_targets(mask, lengths, 32, sigma_scale=0.0)

"""Batched mask augmentation: identity stretch, ALTo crop windows, flips, dilate/erode."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from masktok.masks.augment import (
    AugmentParams,
    MaskAugmentConfig,
    apply_augment,
    identity_params,
    sample_augment_params,
    sample_crop_windows,
)


def _canvas():
    masks = torch.zeros(3, 60, 80, dtype=torch.uint8)
    masks[0, 10:30, 20:50] = 1
    masks[1, :40, :30][5:25, 3:9] = 1          # a 40×30 mask in the corner of the canvas
    masks[2, 50:58, 70:78] = 1
    sizes = torch.tensor([[60, 80], [40, 30], [60, 80]])
    boxes = torch.tensor([[20, 10, 49, 29], [3, 5, 8, 24], [70, 50, 77, 57]])
    return masks, sizes, boxes


def test_identity_matches_bilinear_stretch():
    masks, sizes, _ = _canvas()
    out = apply_augment(masks, identity_params(sizes), (32, 48))
    for i in range(3):
        h, w = sizes[i].tolist()
        ref = F.interpolate(masks[i, :h, :w][None, None].float(), size=(32, 48), mode="bilinear", align_corners=False)
        assert torch.allclose(out[i:i + 1], ref, atol=1e-5)


def test_crop_windows_contain_the_box_and_scale_the_area():
    masks, sizes, boxes = _canvas()
    cfg = MaskAugmentConfig(crop_prob=1.0, crop_area_scale=(4.0, 50.0))
    gen = torch.Generator().manual_seed(0)
    big_boxes = boxes.repeat(200, 1)
    big_sizes = sizes.repeat(200, 1)
    windows = sample_crop_windows(big_boxes, big_sizes, cfg, generator=gen)
    bw = (big_boxes[:, 2] - big_boxes[:, 0] + 1).float()
    bh = (big_boxes[:, 3] - big_boxes[:, 1] + 1).float()
    assert bool((windows[:, 0] <= big_boxes[:, 0] + 1e-4).all() and (windows[:, 2] >= big_boxes[:, 2] + 1 - 1e-4).all())
    assert bool((windows[:, 1] <= big_boxes[:, 1] + 1e-4).all() and (windows[:, 3] >= big_boxes[:, 3] + 1 - 1e-4).all())
    ratio = (windows[:, 2] - windows[:, 0]) * (windows[:, 3] - windows[:, 1]) / (bw * bh)
    assert float(ratio.min()) >= 4.0 - 1e-3
    assert float(ratio.median()) < 50.0
    assert float(ratio.max()) > 20.0  # the range is really explored
    # Windows that fit inside the image stay inside it.
    fits = ((windows[:, 2] - windows[:, 0]) <= big_sizes[:, 1]) & ((windows[:, 3] - windows[:, 1]) <= big_sizes[:, 0])
    assert bool((windows[fits, 0] >= -1e-4).all() and (windows[fits, 2] <= big_sizes[fits, 1] + 1e-4).all())


def test_crop_keeps_the_whole_mask_and_enlarges_it():
    masks, sizes, boxes = _canvas()
    params = sample_augment_params(boxes, sizes, MaskAugmentConfig(crop_prob=1.0, hflip_prob=0, vflip_prob=0,
                                                                   rotation_prob=0, morph_prob=0),
                                   generator=torch.Generator().manual_seed(1))
    out = apply_augment(masks, params, 64)
    whole = apply_augment(masks, identity_params(sizes), 64)
    for i in range(3):
        frame = out[i, 0] > 0.5
        assert frame.any()
        # Nothing touches the border unless the window was centred outside the image.
        assert not (frame[0].any() and frame[-1].any() and frame[:, 0].any() and frame[:, -1].any())
    assert float((out > 0.5).sum()) > float((whole > 0.5).sum())


def test_flips_mirror_the_output():
    masks, sizes, _ = _canvas()
    base = identity_params(sizes)
    flipped = AugmentParams(window=base.window, hflip=torch.ones(3, dtype=torch.bool),
                            vflip=torch.ones(3, dtype=torch.bool), angle=base.angle, morph=base.morph)
    a = apply_augment(masks, base, 32)
    b = apply_augment(masks, flipped, 32)
    assert torch.allclose(b, a.flip(-1).flip(-2), atol=1e-5)


def test_rotation_and_morphology():
    masks, sizes, _ = _canvas()
    base = identity_params(sizes)
    rotated = AugmentParams(window=base.window, hflip=base.hflip, vflip=base.vflip,
                            angle=torch.full((3,), math.radians(10)), morph=base.morph)
    assert not torch.allclose(apply_augment(masks, rotated, 32), apply_augment(masks, base, 32))
    grow = AugmentParams(base.window, base.hflip, base.vflip, base.angle, torch.tensor([2, 2, 2]))
    shrink = AugmentParams(base.window, base.hflip, base.vflip, base.angle, torch.tensor([-1, -1, -1]))
    plain = (apply_augment(masks, base, 32) > 0.5).sum()
    assert (apply_augment(masks, grow, 32) > 0.5).sum() > plain > (apply_augment(masks, shrink, 32) > 0.5).sum()


def test_bad_config_and_shapes_raise():
    with pytest.raises(ValueError, match="crop_prob"):
        MaskAugmentConfig(crop_prob=1.5)
    with pytest.raises(ValueError, match="crop_area_scale"):
        MaskAugmentConfig(crop_area_scale=(0.5, 4.0))
    with pytest.raises(ValueError, match="boxes"):
        sample_augment_params(torch.zeros(2, 3), torch.zeros(2, 2), MaskAugmentConfig())
    with pytest.raises(ValueError, match="masks"):
        apply_augment(torch.zeros(4, 4), identity_params(torch.tensor([[4, 4]])))

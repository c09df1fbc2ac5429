"""SAMTok preprocessing: exact PIL bicubic as tensor ops, normalisation, boxes, prompts, masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from masktok.tokenizers.samtok import SAMTok, tiny_test_config
from masktok.tokenizers.samtok.pil_resize import pil_bicubic_resize, pil_bicubic_weights
from masktok.tokenizers.samtok.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    as_mask_batch,
    box_prompts,
    normalize_pixels,
    resize_rgb,
    soft_mask_prompts,
)


@pytest.mark.parametrize("shape, out", [((48, 64), (128, 128)), ((37, 53), (96, 80)), ((300, 200), (64, 64)),
                                        ((129, 257), (128, 128)), ((5, 3), (40, 40)), ((64, 64), (64, 64))])
def test_tensor_resize_equals_pillow_bicubic_bit_for_bit(shape, out):
    rng = np.random.default_rng(sum(shape))
    noise = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)  # noise drives bicubic overshoot → clipping
    smooth = np.asarray(Image.fromarray(noise).resize((max(shape[1] // 4, 1), max(shape[0] // 4, 1)))
                        .resize(shape[::-1]))
    for image in (noise, smooth):
        expected = np.asarray(Image.fromarray(image).resize(out[::-1], Image.Resampling.BICUBIC))
        got = pil_bicubic_resize(torch.from_numpy(image), *out).numpy()
        assert np.array_equal(got, expected)


def test_resize_weights_are_22_bit_fixed_point_rows_summing_to_one():
    weights = pil_bicubic_weights(53, 128)
    assert weights.shape == (128, 53)
    assert np.all(np.abs(weights.sum(1) - (1 << 22)) <= 3)


def test_stretch_ignores_aspect_ratio_and_uses_pil_bicubic():
    image = np.random.default_rng(0).integers(0, 256, (30, 90, 3), dtype=np.uint8)
    out = resize_rgb(image, 64)
    assert out.shape == (64, 64, 3)
    assert np.array_equal(out, np.asarray(Image.fromarray(image).resize((64, 64), Image.BICUBIC)))


def test_normalisation_matches_the_reference_order():
    batch = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    expected = batch.permute(0, 3, 1, 2).float() / 255.0
    expected -= torch.tensor(IMAGENET_MEAN)[:, None, None]
    expected /= torch.tensor(IMAGENET_STD)[:, None, None]
    assert torch.equal(normalize_pixels(batch), expected)


def test_box_prompt_scaling_is_bitwise_the_reference_division():
    boxes = torch.randint(0, 4000, (500, 4))
    for h, w in ((480, 640), (333, 517), (3000, 4000)):
        expected = boxes.float() / torch.tensor([w, h, w, h], dtype=torch.float32) * 1024
        assert torch.equal(box_prompts(boxes, h, w, 1024), expected)


def test_soft_mask_prompt_is_antialiased_bilinear():
    masks = torch.zeros(20, 40, 60, dtype=torch.bool)
    masks[:, 5:30, 10:50] = True
    expected = F.interpolate(masks[:, None].float(), size=(16, 16), mode="bilinear", align_corners=False,
                             antialias=True)
    assert torch.equal(soft_mask_prompts(masks, 16), expected)
    assert expected.min() >= 0 and expected.max() <= 1 and ((expected > 0) & (expected < 1)).any()


def test_mask_batch_validation():
    ok = np.zeros((2, 4, 5), dtype=np.uint8)
    ok[:, 1, 1] = 1
    assert as_mask_batch(ok, (4, 5)).dtype == torch.bool
    assert as_mask_batch([], (4, 5)).shape == (0, 4, 5)
    with pytest.raises(ValueError, match="empty"):
        as_mask_batch(np.zeros((1, 4, 5)), (4, 5))
    assert as_mask_batch(np.zeros((1, 4, 5)), (4, 5), require_foreground=False).shape == (1, 4, 5)
    with pytest.raises(ValueError, match="object"):
        as_mask_batch(np.array([[["a"]]], dtype=object), (1, 1))


def test_device_resize_path_gives_the_same_codes():
    """The GPU path (tensor resize of the original image) equals the CPU path (PIL)."""
    tok = SAMTok.from_config(tiny_test_config(), seed=0)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    masks = np.zeros((3, 45, 70), dtype=bool)
    masks[0, 3:30, 5:40] = masks[1, 20:44, 30:69] = masks[2, 0:2, 0:2] = True
    codes = tok.encode(image, masks)
    logits = tok.decode(image, codes, return_logits=True)
    tok._resize_on_device = True
    assert torch.equal(tok.encode(image, masks), codes)
    assert torch.equal(tok.decode(image, codes, return_logits=True), logits)

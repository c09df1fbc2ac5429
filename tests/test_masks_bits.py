"""``BitMasks``: packing, unpacking, validation, and SAMTok reading packed masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from masktok.masks import BitMasks
from masktok.tokenizers.samtok import SAMTok, tiny_test_config


@pytest.mark.parametrize("width", [1, 7, 8, 13, 64])
def test_pack_and_unpack_round_trip(width):
    masks = np.random.default_rng(width).random((3, 5, width)) < 0.4
    masks[1] = False
    packed = BitMasks.pack(masks)
    assert packed.shape == (3, 5, width) and len(packed) == 3
    assert packed.bits.shape == (3, 5, -(-width // 8)) and packed.bits.dtype == torch.uint8
    assert torch.equal(packed.unpack(), torch.from_numpy(masks))
    assert packed.unpack().is_contiguous()
    assert packed.any().tolist() == [bool(m.any()) for m in masks]
    assert torch.equal(BitMasks.pack(torch.from_numpy(masks)).bits, packed.bits)


def test_no_masks_pack():
    packed = BitMasks.pack(np.zeros((0, 4, 9), dtype=bool))
    assert packed.shape == (0, 4, 9) and packed.unpack().shape == (0, 4, 9)


@pytest.mark.parametrize("bad, message", [
    (lambda: BitMasks.pack(np.zeros((2, 3), dtype=bool)), "N, H, W"),
    (lambda: BitMasks.pack(np.zeros((1, 2, 3), dtype=np.uint8)), "bool"),
    (lambda: BitMasks(torch.zeros(1, 2, 2, dtype=torch.uint8), 17), "does not match"),
    (lambda: BitMasks(torch.zeros(1, 2, 2, dtype=torch.int64), 9), "uint8"),
])
def test_malformed_bit_masks_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        bad()


def test_samtok_encodes_packed_masks_like_bool_masks():
    tok = SAMTok.from_config(tiny_test_config(), seed=0)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 45, 3), dtype=np.uint8)
    masks = np.zeros((3, 30, 45), dtype=bool)
    masks[0, 2:9, 3:40] = masks[1, 20:, :5] = masks[2, 11, 44] = True
    assert torch.equal(tok.encode(image, BitMasks.pack(masks)), tok.encode(image, masks))
    with pytest.raises(ValueError, match="image is"):
        tok.encode(image, BitMasks.pack(masks[:, :, :40]))
    masks[2] = False
    with pytest.raises(ValueError, match=r"masks\[2\] is empty"):
        tok.encode(image, BitMasks.pack(masks))


def test_himtok_encodes_packed_masks_like_bool_masks():
    from mllm_fixtures import build_tiny_himtok

    tok = build_tiny_himtok(seed=0)
    masks = np.zeros((2, 30, 45), dtype=bool)
    masks[0, 2:9, 3:40] = masks[1, 20:, :5] = True
    assert torch.equal(tok.encode(None, BitMasks.pack(masks)), tok.encode(None, masks))

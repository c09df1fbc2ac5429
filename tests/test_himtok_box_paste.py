"""Box-first decoding outputs (device / host / RLE), the tile paste and tile RLE, outward box codes,
chunked encoding, and the memory of a large RLE decode."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from pycocotools import mask as coco_mask

from masktok.masks import compress_counts, masks_to_rles, rles_to_masks, tiles_to_rles_torch
from masktok.masks.augment import apply_augment, identity_params
from masktok.tokenizers.himtok import HiMTok, HiMTokConfig, PixelDecoderConfig, get_config
from masktok.tokenizers.himtok.box_frame import (
    box_to_codes,
    codes_to_box,
    crop_box_frames,
    paste_box_frames,
    tight_boxes,
)
from masktok.tokenizers.himtok.box_paste import iter_tiles, paste_dense, paste_host, paste_rles, tile_side


def tiny_config(rounding: str) -> HiMTokConfig:
    return replace(get_config("masktok-box-v2"), name="tiny-box", image_size=32, patch_size=8, num_latent_tokens=6,
                   encoder_width=32, encoder_depth=1, encoder_heads=2, decoder_width=32, decoder_depth=1,
                   decoder_heads=2, codebook_size=64, box_rounding=rounding,
                   pixel_decoder=PixelDecoderConfig(z_channels=16, hidden_channels=8, channel_mult=(1, 1),
                                                    num_res_blocks=1, out_channels=1, norm_groups=4,
                                                    legacy_shortcut=False, pixel_shuffle=4))


@pytest.fixture(scope="module")
def tok() -> HiMTok:
    return HiMTok.from_config(tiny_config("outward"), seed=0)


def random_boxes(gen: torch.Generator, n: int, height: int, width: int) -> torch.Tensor:
    """Boxes partly outside the image, some thinner than a pixel."""
    x0 = torch.rand(n, generator=gen) * width * 0.9 - 4
    y0 = torch.rand(n, generator=gen) * height * 0.9 - 3
    w = 0.3 + torch.rand(n, generator=gen) * width * 0.5
    h = 0.3 + torch.rand(n, generator=gen) * height * 0.5
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


def test_tile_paste_equals_the_full_frame_paste():
    gen = torch.Generator().manual_seed(1)
    frames = torch.rand(70, 16, 16, generator=gen)
    boxes = random_boxes(gen, 70, 97, 131)
    reference = paste_box_frames(frames, boxes, (97, 131))
    for per_octave in (1, 2):
        pasted = torch.zeros_like(reference)
        for chunk in iter_tiles(frames, boxes, (97, 131), max_pixels=2500, per_octave=per_octave):
            th, tw = chunk.values.shape[1:]
            for tile, row, (top, left) in zip(chunk.values, chunk.rows, chunk.origins):
                assert 0 <= top <= 97 - th and 0 <= left <= 131 - tw
                pasted[row, top:top + th, left:left + tw] = tile
        assert torch.allclose(pasted, reference, atol=1e-5)
    dense = paste_dense(frames, boxes, (97, 131), None, max_pixels=2500)
    assert torch.allclose(dense, reference, atol=1e-5)


def test_dense_host_and_rle_pastes_agree():
    gen = torch.Generator().manual_seed(2)
    frames = torch.rand(40, 16, 16, generator=gen)
    boxes = random_boxes(gen, 40, 60, 90)
    dense = paste_dense(frames, boxes, (60, 90), 0.5)
    host = paste_host(frames, boxes, (60, 90), 0.5, max_pixels=900)
    rles = paste_rles(frames, boxes, (60, 90), 0.5, max_pixels=900)
    assert dense.dtype == torch.bool and torch.equal(dense, host)
    assert [r["counts"] for r in rles] == [r["counts"] for r in masks_to_rles(dense.numpy())]
    reference = paste_box_frames(frames, boxes, (60, 90))
    undecided = (reference - 0.5).abs() < 1e-5
    assert torch.equal(dense[~undecided], (reference > 0.5)[~undecided])


def test_tile_sides_cover_their_windows():
    extent = np.arange(1, 700)
    for per_octave in (1, 2):
        side = tile_side(extent, 10_000, per_octave)
        assert (side >= extent).all() and (side >= 4).all() and (side <= 2 * np.maximum(extent, 2)).all()
        assert len(np.unique(side)) <= 2 * per_octave * 10 + 2  # a few sizes per octave
    assert tile_side(np.array([300]), 256, 1)[0] == 256  # never beyond the image


def test_tile_rles_equal_the_full_mask_rles():
    gen = torch.Generator().manual_seed(3)
    for _ in range(150):
        height, width = (int(v) for v in torch.randint(1, 10, (2,), generator=gen))
        th = int(torch.randint(1, height + 1, (1,), generator=gen))
        tw = int(torch.randint(1, width + 1, (1,), generator=gen))
        tiles = torch.rand(4, th, tw, generator=gen) > 0.5
        origins = torch.stack([torch.randint(0, height - th + 1, (4,), generator=gen),
                               torch.randint(0, width - tw + 1, (4,), generator=gen)], dim=1)
        full = np.zeros((4, height, width), dtype=bool)
        for i in range(4):
            full[i, origins[i, 0]:origins[i, 0] + th, origins[i, 1]:origins[i, 1] + tw] = tiles[i].numpy()
        got = tiles_to_rles_torch(tiles, origins, (height, width))
        assert [r["counts"] for r in got] == [r["counts"] for r in masks_to_rles(full)]
        counts = tiles_to_rles_torch(tiles, origins, (height, width), compressed=False)
        assert np.array_equal(rles_to_masks(counts), full)


def test_compressed_counts_match_pycocotools():
    gen = torch.Generator().manual_seed(4)
    lengths = torch.randint(1, 12, (30,), generator=gen)
    counts = torch.randint(0, 20_000_000, (int(lengths.sum()),), generator=gen)
    counts[::7] = torch.randint(0, 3, counts[::7].shape, generator=gen)
    strings = compress_counts(counts, lengths)
    start = 0
    for length, string in zip(lengths.tolist(), strings):
        part = counts[start:start + length].tolist()
        start += length
        expected = coco_mask.frPyObjects([{"size": [1, sum(part)], "counts": part}], 1, sum(part))[0]["counts"]
        assert string == expected.decode("ascii")


def test_tiles_outside_the_image_are_refused():
    tiles = torch.ones(1, 3, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="reaches outside"):
        tiles_to_rles_torch(tiles, torch.tensor([[8, 0]]), (10, 10))
    with pytest.raises(ValueError, match="do not fit"):
        tiles_to_rles_torch(torch.ones(1, 11, 3, dtype=torch.bool), torch.tensor([[0, 0]]), (10, 10))


def test_decode_outputs_are_the_same_masks(tok):
    gen = torch.Generator().manual_seed(5)
    codes = torch.randint(0, 64, (24, tok.max_codes), generator=gen)
    codes[:, :2] = torch.randint(0, 50, (24, 2), generator=gen)
    codes[:, 2:4] = codes[:, :2] + torch.randint(1, 14, (24, 2), generator=gen)
    lengths = torch.randint(1, tok.max_codes + 1, (24,), generator=gen)
    host = tok.decode(None, codes, size=(70, 110), lengths=lengths)
    device = tok.decode(None, codes, size=(70, 110), lengths=lengths, output="device")
    rles = tok.decode(None, codes, size=(70, 110), lengths=lengths, output="rle")
    assert host.dtype == torch.bool and host.device.type == "cpu" and host.shape == (24, 70, 110)
    assert torch.equal(host, device) and np.array_equal(rles_to_masks(rles), host.numpy())
    logits = tok.decode(None, codes, size=(70, 110), lengths=lengths, return_logits=True)
    assert torch.equal(logits > 0, host)
    # The reference: the frames pasted over the whole image.
    frames = torch.sigmoid(tok.decode_logits(codes, lengths=lengths))
    boxes = codes_to_box(codes[:, :4], torch.tensor([[70, 110]] * 24), 64, counts=lengths)
    reference = paste_box_frames(frames, boxes, (70, 110))
    decided = (reference - 0.5).abs() > 1e-5
    assert torch.equal(host[decided], (reference > 0.5)[decided])


def test_bad_decode_options_are_named(tok):
    codes = torch.zeros(1, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="output must be one of"):
        tok.decode(None, codes, output="gpu")
    with pytest.raises(ValueError, match="cannot be combined with return_logits"):
        tok.decode(None, codes, output="rle", return_logits=True)
    with pytest.raises(ValueError, match="batch_size"):
        tok.decode(None, codes, batch_size=0)


def test_outward_boxes_hold_the_mask_at_any_image_size():
    masks = torch.zeros(3, 2988, 3984, dtype=torch.bool)
    masks[0, 1000:1006, 2000:2006] = True  # a 6-pixel square: 1.5 levels of the side
    masks[1, 5, 7] = True
    masks[2, 2980:, 3970:] = True
    tight = tight_boxes(masks)
    sizes = torch.tensor([[2988, 3984]] * 3)
    outward = codes_to_box(box_to_codes(tight, sizes, 1024, "outward"), sizes, 1024)
    assert (outward[:, :2] <= tight[:, :2]).all() and (outward[:, 2:] >= tight[:, 2:]).all()
    assert ((outward - tight).abs() <= torch.tensor([3984, 2988, 3984, 2988]) / 1023 + 1e-3).all()
    nearest = codes_to_box(box_to_codes(tight, sizes, 1024, "nearest"), sizes, 1024)
    assert not ((nearest[:, :2] <= tight[:, :2]).all() and (nearest[:, 2:] >= tight[:, 2:]).all())
    with pytest.raises(ValueError, match="box rounding"):
        box_to_codes(tight, sizes, 1024, "up")


def test_an_outward_tokenizer_frames_the_decoded_box(tok):
    masks = torch.zeros(2, 300, 400, dtype=torch.bool)
    masks[0, 100:104, 200:203] = True
    masks[1, 10:200, 30:390] = True
    codes = tok.encode(None, masks)
    sizes = torch.tensor([[300, 400]] * 2)
    assert torch.equal(codes[:, :4], box_to_codes(tight_boxes(masks), sizes, 64, "outward"))
    box_only = tok.decode(None, codes[:, :4], size=(300, 400))
    assert not (masks & ~box_only).any()  # the filled box holds the whole mask


def test_crop_reads_only_the_box_and_matches_the_affine_crop():
    gen = torch.Generator().manual_seed(6)
    masks = torch.rand(12, 50, 70, generator=gen) > 0.6
    boxes = random_boxes(gen, 12, 50, 70)
    params = identity_params(torch.tensor([[50, 70]] * 12))
    params.window = boxes
    assert torch.allclose(crop_box_frames(masks, boxes, 16), apply_augment(masks, params, 16), atol=1e-4)


def test_encoding_in_chunks_gives_the_same_codes_and_names_every_empty_mask(tok):
    masks = torch.zeros(7, 40, 50, dtype=torch.bool)
    for i in range(7):
        masks[i, 2 + i:10 + 3 * i, 5:20 + 2 * i] = True
    whole = tok.encode(None, masks)
    small = HiMTok(model=tok.model, mask_batch_size=2)  # two masks per model pass
    assert torch.equal(small.encode(None, masks.numpy()), whole)
    masks[[1, 6]] = False
    with pytest.raises(ValueError, match=r"masks\[1\] is empty \(no foreground pixel; so are rows \[6\]\)"):
        small.encode(None, masks)


def test_large_rle_decode_keeps_host_memory_small(tmp_path):
    """30 masks of a 4000 × 3000 image decoded to RLE: dense bool masks would take 343 MiB; the
    decode's own peak (the process's peak resident memory after minus before) stays far below."""
    tok = HiMTok.from_config(tiny_config("outward"), seed=0)
    tok.save_pretrained(tmp_path / "tok")
    code = f"""
import json, torch
from masktok.tokenizers.himtok import HiMTok
def peak():
    return int([l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]) // 1024
tok = HiMTok.from_pretrained({str(tmp_path / 'tok')!r})
gen = torch.Generator().manual_seed(0)
codes = torch.randint(0, 64, (30, tok.max_codes), generator=gen)
codes[:, :2] = torch.randint(0, 40, (30, 2), generator=gen)
codes[:, 2:4] = codes[:, :2] + torch.randint(1, 24, (30, 2), generator=gen)
tok.decode(None, codes[:2], size=(3000, 4000), output="rle")
before = peak()
rles = tok.decode(None, codes, size=(3000, 4000), output="rle")
print(json.dumps({{"before": before, "after": peak(), "count": len(rles)}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["count"] == 30
    assert result["after"] - result["before"] < 120, result  # MiB; the dense masks alone: 343 MiB

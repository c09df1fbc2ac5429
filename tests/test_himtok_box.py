"""Box-first HiMTok models: box codes, box frames, tokenizer round trips, training frames."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from masktok.tokenizers.himtok import HiMTok, HiMTokConfig, PixelDecoderConfig, get_config
from masktok.tokenizers.himtok.box_frame import (
    box_to_codes,
    codes_to_box,
    crop_box_frames,
    paste_box_frames,
    soft_codes_to_box,
    tight_boxes,
)


def tiny_box_config() -> HiMTokConfig:
    return replace(get_config("masktok-box"), name="tiny-box", image_size=32, patch_size=8, num_latent_tokens=6,
                   encoder_width=32, encoder_depth=1, encoder_heads=2, decoder_width=32, decoder_depth=1,
                   decoder_heads=2, codebook_size=64,
                   pixel_decoder=PixelDecoderConfig(z_channels=16, hidden_channels=8, channel_mult=(1, 1),
                                                    num_res_blocks=1, out_channels=1, norm_groups=4,
                                                    legacy_shortcut=False, pixel_shuffle=4))


def ellipse(height: int, width: int, cy: float, cx: float, ry: float, rx: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a & b).sum() / (a | b).sum()).item()


@pytest.fixture(scope="module")
def tok() -> HiMTok:
    return HiMTok.from_config(tiny_box_config(), seed=0)


def test_config_counts_box_codes_and_round_trips():
    cfg = get_config("masktok-box")
    assert cfg.box_prefix and cfg.box_codes == 4 and cfg.latent_codes == 28 and cfg.max_codes == 32
    assert HiMTokConfig.from_dict(cfg.to_dict()) == cfg
    legacy = get_config("masktok-s").to_dict()
    del legacy["box_prefix"]  # config.json files written before box-first models existed
    assert HiMTokConfig.from_dict(legacy).box_prefix is False


def test_tight_boxes_and_box_codes():
    masks = torch.zeros(3, 40, 60, dtype=torch.bool)
    masks[0, 5:9, 10:30] = True
    masks[1, 39, 59] = True
    boxes = tight_boxes(masks)
    assert boxes[0].tolist() == [10, 5, 30, 9] and boxes[1].tolist() == [59, 39, 60, 40]
    assert boxes[2].tolist() == [0, 0, 60, 40]  # empty: the whole frame
    sizes = torch.tensor([[40, 60]] * 3)
    codes = box_to_codes(boxes, sizes, 1024)
    assert codes.dtype == torch.int64 and int(codes.min()) >= 0 and int(codes.max()) == 1023
    back = codes_to_box(codes, sizes, 1024)
    assert (back - boxes).abs().max() <= 0.5 * 60 / 1023 + 1e-4


def test_missing_box_codes_take_the_full_extent():
    sizes = torch.tensor([[100, 200]])
    codes = torch.tensor([[512, 256, 800, 900]])
    assert codes_to_box(codes[:, :0], sizes, 1024).tolist() == [[0, 0, 200, 100]]
    two = codes_to_box(codes[:, :2], sizes, 1024)[0]
    assert two[2:].tolist() == [200, 100] and two[0] == pytest.approx(512 / 1023 * 200)
    ragged = codes_to_box(codes.repeat(2, 1), sizes.repeat(2, 1), 1024, counts=torch.tensor([1, 4]))
    assert ragged[0, 1:].tolist() == [0, 200, 100] and ragged[1, 3] == pytest.approx(900 / 1023 * 100)
    degenerate = codes_to_box(torch.tensor([[10, 10, 5, 10]]), torch.tensor([[1023, 1023]]), 1024)[0]
    assert degenerate[2] > degenerate[0] and degenerate[3] > degenerate[1]


def test_soft_box_of_one_hot_codes_is_the_hard_box():
    codes = torch.tensor([[3, 7, 40, 63]])
    sizes = torch.tensor([[50, 70]])
    soft = soft_codes_to_box(torch.nn.functional.one_hot(codes, 64).float(), sizes)
    assert torch.allclose(soft, codes_to_box(codes, sizes, 64))


def test_box_frames_crop_and_paste_back_nearly_losslessly():
    masks = torch.stack([ellipse(120, 160, 30, 40, 8, 25), ellipse(120, 160, 80, 100, 30, 12)])
    boxes = tight_boxes(masks)
    frames = crop_box_frames(masks, boxes, 64)
    assert frames.shape == (2, 1, 64, 64)
    for frame in frames[:, 0] > 0:  # the box touches all four frame edges
        assert frame[0].any() and frame[-1].any() and frame[:, 0].any() and frame[:, -1].any()
    pasted = paste_box_frames(frames[:, 0], boxes, (120, 160)) > 0.5
    assert all(iou(p, m) > 0.97 for p, m in zip(pasted, masks))
    outside = ~torch.zeros(120, 160, dtype=torch.bool).index_fill_(0, torch.arange(22, 39), True)
    assert not pasted[0][outside].any()


def test_tokenizer_codes_start_with_the_box(tok):
    masks = torch.stack([ellipse(90, 120, 30, 40, 10, 20), ellipse(90, 120, 60, 90, 25, 15)])
    codes = tok.encode(None, masks)
    assert codes.shape == (2, 4 + 6)
    expected = box_to_codes(tight_boxes(masks), torch.tensor([[90, 120]] * 2), 64)
    assert torch.equal(codes[:, :4], expected)
    assert torch.equal(tok.encode(None, masks, num_codes=3), codes[:, :3])


def test_box_only_prefixes_decode_to_filled_boxes(tok):
    masks = torch.zeros(1, 50, 80, dtype=torch.bool)
    masks[0, 10:30, 20:60] = True
    codes = tok.encode(None, masks)
    box = tok.decode(None, codes[:, :4], size=(50, 80))
    assert iou(box[0], masks[0]) > 0.9  # the rectangle is its own box (up to code rounding)
    assert tok.decode(None, codes[:, :1], size=(50, 80))[0, :, 40:].all()  # x0 known, the rest full extent
    full = tok.decode(None, codes, size=(50, 80))
    assert not full[0, :5].any() and not full[0, :, :15].any()  # nothing is drawn outside the box


def test_ragged_soft_and_probability_decoding_agree(tok):
    masks = torch.stack([ellipse(64, 64, 20, 20, 10, 12), ellipse(64, 64, 40, 30, 15, 20)])
    codes = tok.encode(None, masks)
    lengths = torch.tensor([3, 10])
    ragged = tok.decode(None, codes, size=(64, 64), lengths=lengths)
    for row, length in enumerate(lengths.tolist()):
        alone = tok.decode(None, codes[row:row + 1, :length], size=(64, 64))
        assert torch.equal(ragged[row], alone[0])
    one_hot = torch.nn.functional.one_hot(codes, 64).float()
    assert torch.equal(tok.decode_soft(one_hot, size=(64, 64)), tok.decode(None, codes, size=(64, 64)))
    probs = tok.decode_probabilities(codes)
    assert probs.shape == (2, 32, 32) and 0 <= float(probs.min()) and float(probs.max()) <= 1
    logits = tok.decode(None, codes, size=(64, 64), return_logits=True)
    assert torch.equal(logits > 0, tok.decode(None, codes, size=(64, 64)))


def test_empty_masks_follow_the_policy(tok):
    masks = torch.zeros(3, 20, 20, dtype=torch.bool)
    masks[1, 5:9, 5:12] = True
    with pytest.raises(ValueError, match=r"masks\[0\] is empty"):
        tok.encode(None, masks)
    skipped = tok.encode(None, masks, empty_masks="skip")
    kept = tok.encode(None, masks, empty_masks="keep")
    assert torch.equal(skipped, tok.encode(None, masks[1:2])) and torch.equal(kept[1], skipped[0])
    assert (kept[[0, 2]] == -1).all()
    decoded = tok.decode(None, kept, size=(20, 20))
    assert not decoded[[0, 2]].any() and decoded[1].any()


def test_save_and_load_keep_the_box_prefix(tok, tmp_path):
    tok.save_pretrained(tmp_path / "box")
    loaded = HiMTok.from_pretrained(tmp_path / "box")
    assert loaded.config.box_prefix and loaded.max_codes == 10
    masks = ellipse(40, 40, 20, 20, 10, 15)[None]
    assert torch.equal(loaded.encode(None, masks), tok.encode(None, masks))


def test_training_frames_and_validation_of_a_box_model(tmp_path):
    from masktok.data.mask_pools.sources import MaskPool
    from masktok.tokenizers.himtok import HiMTokModel
    from masktok.train.tokenizer.mask_sampler import MaskMixConfig, MixedMaskSampler
    from masktok.train.tokenizer.validation import himtok_reconstruction_miou, tokenizer_reconstruction_miou

    arrays = [ellipse(60, 80, 20, 30, 8, 20).numpy(), ellipse(100, 50, 60, 25, 30, 10).numpy()]
    pool = MaskPool.from_arrays(arrays, ["a", "b"], "cpu")
    sampler = MixedMaskSampler(pool, MaskMixConfig(synthetic_fraction=0.5, out_size=32, box_frames=True,
                                                   synthetic_size=64), batch_size=4, seed=0)
    frames = sampler.batch(0)[:, 0] > 0
    assert frames.shape == (4, 32, 32)
    for frame in frames:
        assert frame[0].any() and frame[-1].any() and frame[:, 0].any() and frame[:, -1].any()
    torch.manual_seed(0)
    model = HiMTokModel(tiny_box_config())
    scores = himtok_reconstruction_miou(model, pool, [2, 4, 10])
    assert model.training  # restored
    tok = HiMTok(model=model)
    reference, count = tokenizer_reconstruction_miou(
        tok, [(None, torch.from_numpy(a)[None]) for a in arrays], [2, 4, 10])
    assert count == 2 and scores == pytest.approx(reference)


def test_outward_training_frames_are_the_tokenizers_frames():
    from masktok.data.mask_pools.sources import MaskPool
    from masktok.train.tokenizer.mask_sampler import MaskMixConfig, MixedMaskSampler, grid_windows

    arrays = [ellipse(60, 80, 20, 30, 8, 20).numpy(), ellipse(100, 50, 60, 25, 30, 10).numpy()]
    pool = MaskPool.from_arrays(arrays, ["a", "b"], "cpu")
    mix = dict(synthetic_fraction=0.0, out_size=32, box_frames=True, box_rounding="outward", box_bins=64)
    config = replace(tiny_box_config(), box_rounding="outward")
    tok = HiMTok.from_config(config, seed=0)
    frames = MixedMaskSampler(pool, MaskMixConfig(**mix), batch_size=2, seed=0).batch(0)
    expected = [tok.prepare_box_frames(torch.from_numpy(array)[None])[1][0] for array in arrays]
    for frame in frames:  # flips aside, each frame is one that encode() crops
        flips = [f for e in expected for f in (e, e.flip(-1), e.flip(-2), e.flip(-1).flip(-2))]
        assert any(torch.allclose(frame, f, atol=1e-4) for f in flips)
    # A grid 8 times coarser leaves margins round the mask; scale 1, phase 0 is the tokenizer's own box.
    boxes = torch.tensor([[10.0, 20.0, 30.0, 41.0]])
    sizes = torch.tensor([[100, 200]])
    own = grid_windows(boxes, sizes, 64, torch.ones(1), torch.zeros(1, 2))
    assert torch.allclose(own, codes_to_box(box_to_codes(boxes, sizes, 64, "outward"), sizes, 64), atol=1e-4)
    coarse = grid_windows(boxes, sizes, 64, torch.tensor([8.0]), torch.tensor([[0.3, 0.7]]))
    assert (coarse[:, :2] <= boxes[:, :2]).all() and (coarse[:, 2:] >= boxes[:, 2:]).all()
    assert (coarse[:, 2:] - coarse[:, :2] >= boxes[:, 2:] - boxes[:, :2]).all()
    wide = MixedMaskSampler(pool, MaskMixConfig(**mix, box_scale_prob=1.0, box_scale_max=8.0), batch_size=2,
                            seed=0).batch(0)
    assert wide.sum() < frames.sum()  # the masks fill less of their frames
    with pytest.raises(ValueError, match="box_rounding"):
        MaskMixConfig(box_rounding="up")

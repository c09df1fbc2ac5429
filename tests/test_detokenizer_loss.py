"""The differentiable de-tokenizer loss of HiMTok's stage 2 on its own (no LMM): levels, box-first
tokenizers (box codes left to the cross-entropy, the shape compared in the box frame), code
writing, and the refusal of quantizers with several codes per slot."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from masktok.tokenizers.himtok import HiMTok
from masktok.train.vlm.detokenizer_loss import MaskBatch, detokenizer_loss, sample_levels, write_codes
from masktok.train.vlm.mask_targets import mask_frame
from mllm_fixtures import box_mask, build_tiny_himtok


def tiny_box_first() -> HiMTok:
    """The tiny HiMTok of the fixtures, box-first (4 box codes + 8 shape codes)."""
    tiny = build_tiny_himtok()
    return HiMTok.from_config(replace(tiny.config, box_prefix=True), seed=0)


def test_every_mask_gets_its_full_level_and_distinct_lower_ones():
    torch.manual_seed(0)
    counts = torch.tensor([8, 1, 3, 8, 2])
    index, levels = sample_levels(counts, num_partial=3)
    for i, count in enumerate(counts.tolist()):
        mine = sorted(levels[index == i].tolist())
        assert mine[-1] == count and len(mine) == min(3, count - 1) + 1
        assert len(set(mine)) == len(mine) and all(1 <= level <= count for level in mine)


def test_box_first_masks_are_framed_by_their_box_as_the_tokenizer_does():
    tokenizer = tiny_box_first()
    mask = box_mask(40, 70, (10, 5, 50, 30))
    mask[12:20, 20:30] = False
    frame, codes = mask_frame(mask, tokenizer.config.image_size, box_first=True,
                              codebook_size=tokenizer.config.codebook_size)
    expected_codes, expected_frames = tokenizer.prepare_box_frames(mask[None])
    assert torch.equal(codes, expected_codes[0])
    assert torch.allclose(frame, expected_frames[0, :1].float())
    with pytest.raises(ValueError, match="empty mask"):
        mask_frame(np.zeros((8, 8), bool), 64, box_first=True, codebook_size=1024)


def test_box_first_loss_trains_the_shape_codes_only():
    tokenizer = tiny_box_first()
    model = tokenizer.model
    frames = torch.rand(3, 1, 64, 64).round()
    counts = torch.tensor([12, 7, 4])  # full, a shorter prefix, box codes only
    logits = torch.randn(3, 12, 1024, requires_grad=True)
    result = detokenizer_loss(model, logits, counts, frames)
    result.loss.backward()
    assert result.num_masks == 2 and torch.isfinite(result.loss) and 0 <= float(result.iou) <= 1
    grad = logits.grad.abs().sum(dim=-1)  # (3, 12)
    assert (grad[:, :4] == 0).all()  # box codes: cross-entropy only
    assert (grad[0, 4:] > 0).all() and (grad[1, 4:7] > 0).all() and (grad[1, 7:] == 0).all()
    assert (grad[2] == 0).all()
    only_boxes = detokenizer_loss(model, torch.randn(1, 4, 1024, requires_grad=True), torch.tensor([4]),
                                  frames[:1])
    assert only_boxes.num_masks == 0 and only_boxes.loss.item() == 0.0 and only_boxes.loss.requires_grad


def test_the_loss_decodes_as_the_tokenizers_official_soft_decoding():
    """The mixture fed to the de-tokenizer is the official LMM's (probabilities times the
    projected codebook, not renormalised): the loss's full-level masks are exactly what
    ``decode_soft(..., renormalize=False)`` gives for the same distributions."""
    tokenizer = build_tiny_himtok()
    codes = torch.randint(0, 1024, (2, 8), generator=torch.Generator().manual_seed(0))
    logits = torch.full((2, 8, 1024), -1e4)
    logits.scatter_(2, codes.unsqueeze(-1), 1e4)  # one-hot after the softmax
    probs = tokenizer.code_probs_from_logits(logits)
    decoded = tokenizer.decode_soft(probs, renormalize=False)
    result = detokenizer_loss(tokenizer.model, logits, torch.tensor([8, 8]), decoded[:, None].float(),
                              num_partial=0)
    assert float(result.iou) == 1.0


def test_write_codes_keeps_unlabelled_positions_out_of_the_loss():
    input_ids = torch.arange(20).view(2, 10)
    labels = input_ids.clone()
    labels[1, :6] = -100  # row 1's first span sits in the prompt
    batch = MaskBatch(torch.tensor([[0, 2, 3], [1, 3, 2]]), torch.zeros(2, 1, 4, 4), torch.zeros(2, 0).long())
    codes = torch.tensor([[5, 6, 7], [8, 9, 0]])
    code_ids = torch.arange(100, 110)
    ids, new_labels = write_codes(input_ids, labels, batch, codes, code_ids)
    assert ids[0, 2:5].tolist() == [105, 106, 107] and ids[1, 3:5].tolist() == [108, 109]
    assert new_labels[0, 2:5].tolist() == [105, 106, 107] and new_labels[1, 3:5].tolist() == [-100, -100]
    assert ids[0, 5] == 5 and torch.equal(input_ids, torch.arange(20).view(2, 10))  # copies


def test_quantizers_with_several_codes_per_slot_are_refused():
    tiny = build_tiny_himtok()
    rvq = HiMTok.from_config(replace(tiny.config, quantizer="rvq", rvq_depth=2, codebook_size=256), seed=0)
    with pytest.raises(ValueError, match="one code per slot"):
        detokenizer_loss(rvq.model, torch.zeros(1, 4, 256), torch.tensor([4]), torch.zeros(1, 1, 64, 64))

"""The hierarchical mask loss on masks de-tokenized from an LMM's own code predictions (HiMTok
paper §3.3, Fig. 3b), differentiable end to end.

For a mask span with ground truth, under teacher forcing:

1. the LMM's logits that predict each code token (the hidden state one position earlier times
   the LM head's rows of the code tokens) → p_t = softmax(scale · logits) over the V codes;
2. the expected code embedding under p_t: p_t @ (the codebook after the SimVQ projection), the
   same mixture the official LMM feeds its de-tokenizer at inference;
3. the HiMTok de-tokenizer decodes the first l expected embeddings, for the span's full level and
   a few sampled prefix levels (p(l) ∝ 1 / (l + 8));
4. each level's map meets the ground truth (blurred for l < K, as in stage 1:
   :func:`masktok.tokenizers.himtok.loss.level_targets`) through BCE + Dice; a mask's levels
   are summed and the masks averaged.

Gradients reach the LMM through the logits and the de-tokenizer through its weights. Box-first
tokenizers: the 4 box codes are trained by the cross-entropy only; the loss covers the shape
codes and compares with the ground truth's box frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from masktok.tokenizers.himtok.loss import dice_loss, level_targets, sample_prefix_lengths


@dataclass
class MaskBatch:
    """The mask spans of a batch (what :class:`~masktok.train.vlm.mask_targets.MaskTargetCollator`
    adds).

    Attributes:
        spans: (N, 3) int64: batch row, position of the first code token, code count.
        frames: (N, 1, S, S) float32 ground truth in the tokenizer's frame.
        box_codes: (N, 4) int64 box codes (box-first tokenizers) or (N, 0).
    """

    spans: torch.Tensor
    frames: torch.Tensor
    box_codes: torch.Tensor

    @classmethod
    def pop(cls, inputs: dict) -> "MaskBatch | None":
        """Take the mask keys out of a model batch (None when it has none)."""
        if "mask_spans" not in inputs:
            return None
        return cls(inputs.pop("mask_spans"), inputs.pop("mask_frames"), inputs.pop("mask_box_codes"))

    def __len__(self) -> int:
        return int(self.spans.shape[0])

    def select(self, keep: torch.Tensor) -> "MaskBatch":
        return MaskBatch(self.spans[keep], self.frames[keep], self.box_codes[keep])

    def positions(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rows (N, L), columns (N, L), valid (N, L)) of every code token, L the longest span;
        invalid slots point at the span's first code."""
        rows, firsts, counts = self.spans.unbind(dim=1)
        width = int(counts.max()) if len(self) else 0
        offsets = torch.arange(width, device=self.spans.device).view(1, -1)
        valid = offsets < counts.view(-1, 1)
        columns = firsts.view(-1, 1) + torch.where(valid, offsets, 0)
        return rows.view(-1, 1).expand_as(columns), columns, valid


@torch.no_grad()
def encode_ground_truth(mask_model: torch.nn.Module, batch: MaskBatch) -> torch.Tensor:
    """The codes the frozen encoder gives each ground truth: (N, max_codes) int64 (box codes
    first for box-first tokenizers)."""
    config = mask_model.config
    weight = mask_model.encoder.patch_embed.weight
    pixels = batch.frames.to(device=weight.device, dtype=weight.dtype)
    codes = mask_model.encode(pixels.expand(-1, config.in_channels, -1, -1)).codes
    return torch.cat([batch.box_codes.to(codes.device), codes], dim=1)


def write_codes(input_ids: torch.Tensor, labels: torch.Tensor, batch: MaskBatch, codes: torch.Tensor,
                code_token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Copies of ``input_ids`` / ``labels`` (B, T) whose span code tokens are ``codes`` (N, ≥ L)
    spelt with ``code_token_ids`` (V,); labels change only where they are in the loss."""
    rows, columns, valid = batch.positions()
    tokens = code_token_ids.to(input_ids.device)[codes[:, :columns.shape[1]].to(input_ids.device)]
    input_ids, labels = input_ids.clone(), labels.clone()
    r, c, t = rows[valid], columns[valid], tokens[valid]
    input_ids[r, c] = t
    labels[r, c] = torch.where(labels[r, c] == -100, labels[r, c], t)
    return input_ids, labels


def code_logits(hidden: torch.Tensor, head_weight: torch.Tensor, head_bias: torch.Tensor | None,
                batch: MaskBatch, code_token_ids: torch.Tensor) -> torch.Tensor:
    """hidden (B, T, H) final hidden states → (N, L, V) float32 logits of the code tokens that
    predict each span position (from the hidden state one position earlier)."""
    rows, columns, _ = batch.positions()
    ids = code_token_ids.to(head_weight.device)
    states = hidden[rows.to(hidden.device), (columns - 1).to(hidden.device)].float()
    weight = head_weight[ids].float()
    bias = None if head_bias is None else head_bias[ids].float()
    return F.linear(states, weight, bias)


def sample_levels(counts: torch.Tensor, num_partial: int) -> tuple[torch.Tensor, torch.Tensor]:
    """counts (N,) codes per mask → (mask index (M,), level (M,)): every mask's full level plus
    min(num_partial, count − 1) distinct lower levels drawn with p(l) ∝ 1 / (l + 8)."""
    counts = counts.cpu()
    indices, levels = [], []
    for count in sorted(set(counts.tolist())):
        members = torch.nonzero(counts == count).flatten()
        drawn = sample_prefix_lengths(len(members), count, min(num_partial, count - 1))
        indices.append(members.view(-1, 1).expand_as(drawn).reshape(-1))
        levels.append(drawn.reshape(-1))
    if not indices:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.cat(indices), torch.cat(levels)


@dataclass
class DetokenizerLoss:
    """The mask loss of one batch.

    Attributes:
        loss: mean over masks of the summed (weighted BCE + Dice) of its levels (scalar).
        bce, dice: their means over masks of the per-level sums (detached).
        iou: mean IoU of the full-level decoded masks with the ground truth (detached).
        num_masks: masks in the loss.
        code_logits: (N, L, V) the logits the loss was computed from (as given).
    """

    loss: torch.Tensor
    bce: torch.Tensor
    dice: torch.Tensor
    iou: torch.Tensor
    num_masks: int
    code_logits: torch.Tensor


def detokenizer_loss(mask_model: torch.nn.Module, logits: torch.Tensor, counts: torch.Tensor,
                     frames: torch.Tensor, *, scale: float = 2.0, num_partial: int = 3,
                     bce_weight: float = 1.0, dice_weight: float = 1.0) -> DetokenizerLoss:
    """The hierarchical mask loss of masks decoded from predicted code distributions.

    Args:
        mask_model: a :class:`~masktok.tokenizers.himtok.model.HiMTokModel` (one code per slot).
        logits: (N, L, V) code logits per span position (positions ≥ counts[i] are ignored).
        counts: (N,) codes per span, box codes included for box-first models.
        frames: (N, 1, S, S) ground truth in [0, 1] (box frames for box-first models).
        scale: p = softmax(scale · logits).
        num_partial, bce_weight, dice_weight: see :class:`HiMTokStage2Recipe`.

    Raises:
        ValueError: a quantizer with several codes per slot, spans longer than the tokenizer
            takes, or shapes that disagree.
    """
    config = mask_model.config
    if config.codes_per_position != 1:
        raise ValueError(f"mask tokenizer: {config.quantizer} puts {config.codes_per_position} codes "
                         f"in a slot; the stage-2 loss needs one code per slot (vq or fsq)")
    if logits.ndim != 3 or logits.shape[0] != counts.shape[0] or frames.shape[0] != counts.shape[0]:
        raise ValueError(f"logits (N, L, V), counts (N,) and frames (N, 1, S, S) must agree; got "
                         f"{tuple(logits.shape)}, {tuple(counts.shape)}, {tuple(frames.shape)}")
    given, skip = logits, config.box_codes
    shape_counts = counts.to(logits.device) - skip
    keep = shape_counts > 0  # box-only prefixes decode to filled boxes: no shape to learn
    logits, shape_counts, frames = logits[keep][:, skip:], shape_counts[keep], frames[keep.to(frames.device)]
    num_masks = int(shape_counts.shape[0])
    if num_masks == 0:
        zero = logits.sum() * 0.0
        return DetokenizerLoss(zero, zero.detach(), zero.detach(), zero.detach(), 0, given)
    if int(shape_counts.max()) > config.num_latent_tokens:
        raise ValueError(f"a span holds {int(shape_counts.max())} shape codes; the tokenizer "
                         f"decodes at most {config.num_latent_tokens}")
    width = int(shape_counts.max())
    probs = torch.softmax(scale * logits[:, :width].float(), dim=-1)
    tokens = mask_model.quantize.soft_lookup(probs, renormalize=False)  # (n, width, D)
    index, levels = sample_levels(shape_counts, num_partial)
    index, levels = index.to(tokens.device), levels.to(tokens.device)
    maps = mask_model.decode_tokens(tokens[index], levels)[:, 0].float()  # (M, S, S)
    truth = frames.to(maps.device).float()
    targets = level_targets(truth[index], levels.view(-1, 1).cpu(), config.num_latent_tokens)[:, 0]
    bce = F.binary_cross_entropy_with_logits(maps, targets, reduction="none").mean(dim=(1, 2))
    dice = dice_loss(maps, targets)
    per_level = bce_weight * bce + dice_weight * dice
    full = levels == shape_counts[index]
    predicted, wanted = maps[full] > 0, truth[index[full], 0] > 0.5
    union = (predicted | wanted).sum(dim=(1, 2))
    iou = torch.where(union > 0, (predicted & wanted).sum(dim=(1, 2)) / union.clamp(min=1), 1.0)
    return DetokenizerLoss(loss=per_level.sum() / num_masks, bce=bce.detach().sum() / num_masks,
                           dice=dice.detach().sum() / num_masks, iou=iou.float().mean().detach(),
                           num_masks=num_masks, code_logits=given)

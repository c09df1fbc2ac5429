"""Ground-truth masks for HiMTok's stage 2: the data and the batches.

A stage-2 record is an SFT record (:mod:`masktok.train.vlm.data`) whose ``masks`` list holds the
ground truth of each mask span of its text, in reading order (user and assistant turns alike)::

    {"id": "res/7", "images": ["coco/a.jpg"],
     "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Segment <ref>road</ref>."}]},
                  {"role": "assistant", "content": "The mask appears at <|mt_start|><|mt_0|>…<|mt_0|><|mt_end|>."}],
     "masks": [{"image": 0, "png": "masks/7.png"}]}

(``masktok build-sft`` writes the masks as RLEs; PNGs count pixels above 127 as foreground, as
the official HiMTok data does). With ``encode_masks`` the codes in the text may be placeholders:
the frozen encoder writes the real ones while training. A record without masks adds
cross-entropy only.

:class:`MaskTargetCollator` wraps the conversation collator and adds, for every span of the batch
that has a ground truth (``N`` spans, frames of side ``S``):

* ``mask_spans`` (N, 3) int64: batch row, position of the span's first code token, code count;
* ``mask_frames`` (N, 1, S, S) float32 in [0, 1]: the mask in the tokenizer's frame (the whole
  mask stretched to S×S, or for box-first tokenizers its tight box stretched to S×S);
* ``mask_box_codes`` (N, 4) int64 (box-first: the tight box's codes) or (N, 0).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from masktok.words import MaskVocabulary

PNG_THRESHOLD = 127
BATCH_KEYS = ("mask_spans", "mask_frames", "mask_box_codes")


def count_mask_spans(conversation: dict[str, Any], vocabulary: MaskVocabulary) -> int:
    """How many mask spans the conversation's texts hold (strictly parsed).

    Raises:
        masktok.words.MaskWordsError: a malformed span (e.g. more codes than the tokenizer takes).
    """
    from masktok.train.vlm.data import message_text
    from masktok.words import parse_mask_words

    return sum(len(parse_mask_words(message_text(m), vocabulary)) for m in conversation["messages"])


def check_mask_counts(conversations: Iterable[dict[str, Any]], vocabulary: MaskVocabulary) -> int:
    """Check that every conversation with masks lists one per mask span; → how many have masks.

    Raises:
        ConversationFormatError: a count that differs, or a malformed span, naming the record.
    """
    from masktok.train.vlm.data import ConversationFormatError
    from masktok.words import MaskWordsError

    with_masks = 0
    for conversation in conversations:
        if not conversation["masks"]:
            continue
        try:
            spans = count_mask_spans(conversation, vocabulary)
        except MaskWordsError as error:
            raise ConversationFormatError(f"{conversation['id']}: {error}") from None
        if spans != len(conversation["masks"]):
            raise ConversationFormatError(
                f"{conversation['id']}: {len(conversation['masks'])} masks for {spans} mask spans; "
                f"'masks' needs one entry per span, in reading order")
        with_masks += 1
    return with_masks


def load_mask_sft_dataset(paths: Iterable[str | Path], *, vocabulary: MaskVocabulary,
                          image_root: str | Path | None = None, max_samples: int | None = None):
    """SFT JSONL with ``masks`` → ``datasets.Dataset`` (``id``, ``messages``, ``images`` as PIL,
    ``masks``).

    Raises:
        ConversationFormatError: see :func:`check_mask_counts` and
            :func:`masktok.train.vlm.data.normalise_conversation`.
        ValueError: no record holds masks (nothing for the mask loss).
    """
    import datasets

    from masktok.train.vlm.data import read_conversations

    paths = [str(p) for p in paths]
    conversations = read_conversations(paths, image_root=image_root, max_samples=max_samples)
    if not check_mask_counts(conversations, vocabulary):
        raise ValueError(f"{paths}: no record lists ground-truth 'masks'; HiMTok's stage 2 needs "
                         f"them (see masktok.train.vlm.mask_targets)")
    dataset = datasets.Dataset.from_list(conversations)
    return dataset.cast_column("images", datasets.List(datasets.Image()))


def read_mask(entry: dict[str, Any]) -> np.ndarray:
    """A normalised ``masks`` entry → (H, W) bool."""
    from masktok.masks import read_mask_png, rle_to_mask

    if entry.get("rle") is not None:
        return rle_to_mask(entry["rle"])
    return read_mask_png(entry["png"], threshold=PNG_THRESHOLD)


def mask_frame(mask: np.ndarray, frame_size: int, *, box_first: bool, codebook_size: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W) bool → (frame (1, S, S) float32 in [0, 1], box codes (4,) or (0,) int64), as the
    tokenizer frames masks: whole-image models stretch the mask (bilinear), box-first models its
    tight box.

    Raises:
        ValueError: an empty mask for a box-first tokenizer (no box).
    """
    binary = torch.from_numpy(np.ascontiguousarray(mask)).bool()
    if not box_first:
        x = binary.float()[None, None]
        if x.shape[-2:] != (frame_size, frame_size):
            x = F.interpolate(x, size=(frame_size, frame_size), mode="bilinear", align_corners=False)
        return x[0], torch.zeros(0, dtype=torch.long)
    from masktok.tokenizers.himtok.box_frame import box_to_codes, crop_box_frames, tight_boxes

    if not binary.any():
        raise ValueError("an empty mask has no box for a box-first tokenizer")
    boxes = tight_boxes(binary[None])
    sizes = torch.tensor([binary.shape]).long()
    codes = box_to_codes(boxes, sizes, codebook_size)[0]
    return crop_box_frames(binary[None], boxes, frame_size)[0], codes


@dataclass
class MaskTargetCollator:
    """A conversation collator plus the ground truth of every mask span (see the module
    docstring for the added keys).

    Args:
        base: the conversation collator (TRL's or :class:`AssistantTurnCollator`); it gets the
            examples without their ``masks``.
        vocabulary: the mask tokenizer's vocabulary.
        token_ids: its tokens → ids in the model's tokenizer.
        frame_size: the tokenizer's frame side S.
        box_first: the tokenizer frames masks by their boxes.
    """

    base: Any
    vocabulary: MaskVocabulary
    token_ids: dict[str, int]
    frame_size: int
    box_first: bool = False

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        from masktok.train.vlm.data import ConversationFormatError

        batch = self.base([{k: v for k, v in ex.items() if k != "masks"} for ex in examples])
        spans, frames, box_codes = [], [], []
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        for row, example in enumerate(examples):
            masks = example.get("masks") or []
            if not masks:
                continue
            found = self._spans(batch["input_ids"][row, :lengths[row]], example)
            if len(found) != len(masks):
                raise ConversationFormatError(
                    f"{example.get('id', row)}: the batch holds {len(found)} of its "
                    f"{len(masks)} mask spans: max_length cuts the conversation "
                    f"({lengths[row]} tokens kept); raise max_length")
            for (first, count), entry in zip(found, masks):
                try:
                    frame, box = mask_frame(read_mask(entry), self.frame_size, box_first=self.box_first,
                                            codebook_size=self.vocabulary.codebook_size)
                except ValueError as error:
                    raise ConversationFormatError(f"{example.get('id', row)}: mask {len(spans)}: "
                                                  f"{error}") from None
                spans.append((row, first, count))
                frames.append(frame)
                box_codes.append(box)
        size = self.frame_size
        batch["mask_spans"] = torch.tensor(spans, dtype=torch.long).reshape(-1, 3)
        batch["mask_frames"] = torch.stack(frames) if frames else torch.zeros(0, 1, size, size)
        width = 4 if self.box_first else 0
        batch["mask_box_codes"] = torch.stack(box_codes) if box_codes else torch.zeros(0, width, dtype=torch.long)
        return batch

    def _spans(self, ids: torch.Tensor, example: dict[str, Any]) -> list[tuple[int, int]]:
        """(position of the first code token, code count) of every mask span in ``ids``."""
        from masktok.train.vlm.data import ConversationFormatError
        from masktok.words import MaskWordsError, parse_mask_token_ids

        try:
            parsed = parse_mask_token_ids(ids, self.vocabulary, self.token_ids)
        except MaskWordsError as error:
            raise ConversationFormatError(f"{example.get('id', '?')}: a mask span of the batch is "
                                          f"malformed ({error}); max_length may cut it") from None
        return [(span.start + 1, len(span.codes)) for span in parsed]

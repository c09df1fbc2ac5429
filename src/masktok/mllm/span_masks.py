"""Decoding the mask spans of an answer into masks on the conversation's image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from masktok.mllm.conversation import Conversation
from masktok.words import MaskSpan


def should_decode(span: MaskSpan, *, decode_repaired: bool) -> bool:
    """Whether ``span`` is decoded: well formed, or repaired into decodable codes when asked."""
    return span.ok or (decode_repaired and span.decodable)


def decode_span_masks(mask_tokenizer: Any, conversation: Conversation, spans: Sequence[MaskSpan],
                      *, threshold: float | None = None, decode_repaired: bool = True,
                      decoded: dict[tuple[int, tuple[int, ...]], np.ndarray] | None = None,
                      partial: str | None = None) -> list[np.ndarray | None]:
    """Masks (H, W) bool of ``spans`` on the conversation's image (None: not decoded).

    Spans are grouped by code length and each group is decoded in one tokenizer call; the
    image is encoded once per conversation when the tokenizer offers reusable embeddings
    (SAMTok's ``embed_image``), so later rounds and streamed masks skip the image encoder.
    ``decoded`` holds masks already decoded, keyed by (span start, codes). ``partial``: how a
    SAMTok word with a level left out decodes (see ``SAMTok.decode``; None: the tokenizer's default).
    """
    decoded = decoded or {}
    out: list[np.ndarray | None] = [None] * len(spans)
    groups: dict[int, list[int]] = {}
    for i, span in enumerate(spans):
        key = (span.start, tuple(span.codes))
        if key in decoded:
            out[i] = decoded[key]
        elif should_decode(span, decode_repaired=decode_repaired) and len(span.codes) > 0:
            groups.setdefault(len(span.codes), []).append(i)
    for members in groups.values():
        codes = torch.tensor([list(spans[i].codes) for i in members], dtype=torch.long)
        extra = {} if partial is None else {"partial": partial}
        masks = mask_tokenizer.decode(conversation.tokenizer_image(mask_tokenizer), codes,
                                      size=conversation.size, threshold=threshold, **extra)
        masks = masks.detach().to("cpu").numpy().astype(bool)
        for i, mask in zip(members, masks):
            out[i] = mask
    return out

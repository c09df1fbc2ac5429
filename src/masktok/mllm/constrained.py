"""Grammar-constrained decoding of mask words: a ``LogitsProcessor`` for ``model.generate``.

Inside a mask span only grammatical continuations keep their scores, everything else gets −inf:

* SAMTok (depth 2): ``<|mt_start|>`` → a level-0 id → a level-1 id → ``<|mt_end|>``;
* HiMTok: ``<|mt_start|>`` → 1…32 code ids (exactly ``num_codes`` when asked) → ``<|mt_end|>``.

Outside a span, code tokens and ``<|mt_end|>`` are forbidden (a stray code is malformed output)
and ``<|mt_start|>`` stays allowed. Given ``max_length`` (the ``generate`` length limit), a span
is only opened when it can still be closed before the limit, and an open HiMTok span is closed
in time, so no span is ever cut off. The grammar has the last word: when earlier processors
left no grammatical token a finite score, the grammatical tokens get equal scores. The state of
every row is read off ``input_ids`` (the last start/end marker), so the processor holds no
per-call state and works for any batch size, beam search and left padding.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from transformers import LogitsProcessor

from masktok.words import MaskVocabulary


def span_length_range(vocab: MaskVocabulary, num_codes: int | None = None) -> tuple[int, int]:
    """(fewest, most) code tokens a well-formed span of ``vocab`` holds.

    SAMTok needs one code per level; HiMTok takes 1…``max_codes``. ``num_codes`` asks for exactly
    that many (HiMTok's fixed-length prompts; for SAMTok, 1 keeps level-0-only words).
    """
    if num_codes is not None:
        if not 1 <= num_codes <= vocab.max_codes:
            raise ValueError(f"num_codes: expected 1..{vocab.max_codes} for {vocab.name}, "
                             f"got {num_codes}")
        return num_codes, num_codes
    return vocab.min_codes, vocab.max_codes


class MaskGrammarLogitsProcessor(LogitsProcessor):
    """Keep generated mask spans well formed.

    Args:
        vocab: the mask vocabulary.
        token_ids: mask token → id (:func:`masktok.mllm.vocabulary.mask_token_ids`).
        num_codes: force exactly this many codes per span (default: the vocabulary's grammar).
        max_length: ``generate``'s total length limit (prompt + new tokens); enables closing
            spans in time. Leave None when generation has no fixed limit.
        allow_masks: when False, ``<|mt_start|>`` is forbidden too (text-only answers).

    Call: ``input_ids`` (B, L) int64, ``scores`` (B, V) float → scores (B, V) with −inf on every
    token the grammar forbids at the next position.
    """

    def __init__(self, vocab: MaskVocabulary, token_ids: Mapping[str, int], *,
                 num_codes: int | None = None, max_length: int | None = None,
                 allow_masks: bool = True) -> None:
        self.vocab = vocab
        self.min_codes, self.max_codes = span_length_range(vocab, num_codes)
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length: expected a positive length, got {max_length}")
        self.max_length = max_length
        self.allow_masks = allow_masks
        missing = [t for t in (vocab.start_token, vocab.end_token) if t not in token_ids]
        if missing:
            raise ValueError(f"token_ids: missing {missing}")
        self.start_id = int(token_ids[vocab.start_token])
        self.end_id = int(token_ids[vocab.end_token])
        positions = []
        for position in range(self.max_codes):
            ids = []
            for code in range(vocab.codebook_size):
                token = vocab.code_token(position, code)
                if token not in token_ids:
                    raise ValueError(f"token_ids: missing the code token {token!r}")
                ids.append(int(token_ids[token]))
            positions.append(ids)
        self._position_ids = torch.tensor(positions, dtype=torch.long)  # (P, codebook)
        every_code = sorted({int(i) for t, i in token_ids.items()
                             if t not in (vocab.start_token, vocab.end_token)})
        self._code_ids = torch.tensor(every_code, dtype=torch.long)
        self._tables: dict[tuple[int, torch.device], torch.Tensor] = {}

    def _allowed_table(self, vocab_size: int, device: torch.device) -> torch.Tensor:
        """(P + 2, V) bool: rows 0…P−1 = codes allowed at that position; row P = the end token
        only; row P + 1 = what is allowed outside a span."""
        key = (vocab_size, device)
        if key not in self._tables:
            top = int(max(self._position_ids.max(), self.start_id, self.end_id))
            if top >= vocab_size:
                raise ValueError(f"scores: vocabulary of {vocab_size} entries has no room for "
                                 f"mask token id {top}")
            table = torch.zeros((self.max_codes + 2, vocab_size), dtype=torch.bool)
            for position in range(self.max_codes):
                table[position, self._position_ids[position]] = True
            table[self.max_codes, self.end_id] = True
            table[self.max_codes + 1] = True
            table[self.max_codes + 1, self._code_ids] = False
            table[self.max_codes + 1, self.end_id] = False
            self._tables[key] = table.to(device)
        return self._tables[key]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        batch, length = input_ids.shape
        device = scores.device
        table = self._allowed_table(scores.shape[1], device)
        positions = torch.arange(length, device=input_ids.device).expand(batch, length)
        none = torch.full_like(positions, -1)
        last_start = torch.where(input_ids == self.start_id, positions, none).max(dim=1).values
        last_end = torch.where(input_ids == self.end_id, positions, none).max(dim=1).values
        inside = last_start > last_end
        num_codes = torch.where(inside, length - 1 - last_start, torch.zeros_like(last_start))

        outside_row = self.max_codes + 1
        end_row = self.max_codes
        # Inside: the next code position while fewer than min codes, then code-or-end up to max.
        position = num_codes.clamp(max=self.max_codes - 1)
        rows = torch.where(inside, position, torch.full_like(position, outside_row))
        allowed = table[rows.to(device)].clone()
        can_end = inside & (num_codes >= self.min_codes)
        must_end = inside & (num_codes >= self.max_codes)
        allowed[can_end.to(device), self.end_id] = True
        if must_end.any():
            allowed[must_end.to(device)] = table[end_row]
        remaining = None if self.max_length is None else self.max_length - length
        if remaining is not None:
            # Close an open span when only the end token still fits.
            close_now = can_end & (remaining <= 1)
            if close_now.any():
                allowed[close_now.to(device)] = table[end_row]
        outside = ~inside
        if not self.allow_masks or (remaining is not None and remaining < self.min_codes + 2):
            allowed[outside.to(device), self.start_id] = False
        out = scores.masked_fill(~allowed, float("-inf"))
        # An earlier processor may have ruled out every grammatical token (e.g. a forced token
        # the grammar forbids): the grammar wins, and the allowed tokens compete evenly.
        stuck = torch.isneginf(out).all(dim=1)
        if stuck.any():
            out[stuck] = torch.where(allowed[stuck], torch.zeros_like(out[stuck]),
                                     torch.full_like(out[stuck], float("-inf")))
        return out

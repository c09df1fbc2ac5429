"""The mask-word grammar for a serving engine: one request's span state, updated token by token,
and a table of allowed tokens per state.

The rules are those of :class:`masktok.mllm.constrained.MaskGrammarLogitsProcessor` (what
``MaskChat`` uses with ``transformers``):

* outside a span, code tokens and ``<|mt_end|>`` are forbidden and ``<|mt_start|>`` is allowed
  (unless the span could no longer be closed before the request's token limit);
* inside a span, only the codes of the next position may follow (SAMTok: level 0, then level 1;
  HiMTok: any code) until the span holds its fewest codes, then those codes or ``<|mt_end|>``,
  and at its most codes only ``<|mt_end|>``; nothing else, so text or end-of-sequence never cuts
  a span;
* when one token is left before the limit, an open span that may end must end now.

An engine sees one request's tokens a step at a time, so the state is kept per request and
advanced over the new tokens only (:class:`SpanState`), instead of rescanning the sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from masktok.words import MaskVocabulary


@dataclass
class SpanState:
    """Where one request stands in the grammar.

    Attributes:
        inside: a span is open.
        num_codes: code tokens read since its start token.
        seen: output tokens consumed so far (the engine hands over the whole list each step).
    """

    inside: bool = False
    num_codes: int = 0
    seen: int = 0


class SpanGrammar:
    """Allowed-token rows for the mask grammar over a vocabulary of ``vocab_size`` ids.

    Args:
        vocab: the mask vocabulary.
        token_ids: every mask token → its id (``masktok.mllm.vocabulary.mask_token_ids``).

    The table (built per vocabulary size and device by :meth:`table`) has these rows, ``P`` =
    ``vocab.max_codes``:

    * ``p`` in [0, P): only the codes of position ``p``;
    * ``P + p``: the codes of position ``p`` or the end token;
    * ``2P``: the end token only;
    * ``2P + 1``: outside a span, start allowed; ``2P + 2``: outside, start forbidden;
    * ``2P + 3``: everything (the grammar is off for this request).
    """

    def __init__(self, vocab: MaskVocabulary, token_ids: Mapping[str, int]) -> None:
        self.vocab = vocab
        missing = [t for t in vocab.tokens() if t not in token_ids]
        if missing:
            raise ValueError(f"token_ids: {len(missing)} {vocab.name} mask tokens missing "
                             f"(first: {missing[:3]})")
        self.start_id = int(token_ids[vocab.start_token])
        self.end_id = int(token_ids[vocab.end_token])
        self.position_ids = [[int(token_ids[vocab.code_token(p, c)])
                              for c in range(vocab.codebook_size)]
                             for p in range(vocab.max_codes)]
        self.code_ids = sorted({i for ids in self.position_ids for i in ids})
        self.max_id = max(self.start_id, self.end_id, self.code_ids[-1])
        self._tables: dict[tuple[int, str], torch.Tensor] = {}

    # ---- rows ------------------------------------------------------------------------------
    @property
    def end_row(self) -> int:
        return 2 * self.vocab.max_codes

    @property
    def outside_row(self) -> int:
        return self.end_row + 1

    @property
    def outside_no_start_row(self) -> int:
        return self.end_row + 2

    @property
    def free_row(self) -> int:
        return self.end_row + 3

    def table(self, vocab_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """(2P + 4, vocab_size) bool: the allowed tokens of every row (see the class docstring)."""
        key = (int(vocab_size), str(device))
        if key not in self._tables:
            if self.max_id >= vocab_size:
                raise ValueError(f"vocab_size: {vocab_size} logits cannot hold mask token id "
                                 f"{self.max_id}")
            max_codes = self.vocab.max_codes
            table = torch.zeros((2 * max_codes + 4, vocab_size), dtype=torch.bool)
            for position, ids in enumerate(self.position_ids):
                index = torch.tensor(ids, dtype=torch.long)
                table[position, index] = True
                table[max_codes + position, index] = True
                table[max_codes + position, self.end_id] = True
            table[self.end_row, self.end_id] = True
            table[self.outside_row] = True
            table[self.outside_row, torch.tensor(self.code_ids, dtype=torch.long)] = False
            table[self.outside_row, self.end_id] = False
            table[self.outside_no_start_row] = table[self.outside_row]
            table[self.outside_no_start_row, self.start_id] = False
            table[self.free_row] = True
            self._tables[key] = table.to(device)
        return self._tables[key]

    # ---- state -----------------------------------------------------------------------------
    def initial_state(self, prompt_ids: Iterable[int] | None) -> SpanState:
        """The state after the prompt: inside a span when the prompt ends in an open one (a
        continued answer), else outside."""
        state = SpanState()
        if prompt_ids is None:
            return state
        ids = list(prompt_ids)
        for back, token in enumerate(reversed(ids)):
            if token == self.end_id:
                break
            if token == self.start_id:
                state.inside = True
                state.num_codes = back
                break
        return state

    def advance(self, state: SpanState, output_ids: list[int]) -> SpanState:
        """Consume the tokens of ``output_ids`` not seen yet (the list only grows; a negative id
        is a placeholder not sampled yet and stops the scan)."""
        for token in output_ids[state.seen:]:
            if token < 0:
                break
            if token == self.start_id:
                state.inside, state.num_codes = True, 0
            elif token == self.end_id:
                state.inside, state.num_codes = False, 0
            elif state.inside:
                state.num_codes += 1
            state.seen += 1
        return state

    def row(self, state: SpanState, *, min_codes: int, max_codes: int,
            remaining: int | None) -> int:
        """The table row for the next token of a request in ``state``; ``remaining`` is how
        many tokens it may still generate (None: no limit)."""
        if not state.inside:
            if remaining is not None and remaining < min_codes + 2:
                return self.outside_no_start_row
            return self.outside_row
        count = state.num_codes
        if count >= max_codes:
            return self.end_row
        if count >= min_codes:
            if remaining is not None and remaining <= 1:
                return self.end_row
            return self.vocab.max_codes + count
        return count

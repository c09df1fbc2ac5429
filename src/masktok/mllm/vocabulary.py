"""Vocabulary surgery: teach a Hugging Face language or vision-language model the mask words.

The mask words (``<|mt_start|>``, ``<|mt_end|>`` and one token per code id) are added as
**non-special** ``AddedToken``s: trainers and servers decode with ``skip_special_tokens=True``,
which would otherwise delete them. They are added in the order of the released checkpoints
(start, every code token, end), so a base model extended here gets the same token ids as the
official SAMTok models built from the same base.

New embedding rows are initialised either with the SAMTok recipe (``init="samtok"``: the old
rows' per-dimension mean plus 0.02 · std · N(0, 1)) or with the old rows' mean (``init="mean"``,
what Hugging Face's ``mean_resizing`` amounts to). An untied output head gets the same rule from
its own rows; a tied head shares the input rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tokenizers import AddedToken

from masktok.words import MaskVocabulary



@dataclass(frozen=True)
class VocabularySurgery:
    """What :func:`add_mask_vocabulary` did.

    Attributes:
        token_ids: every mask token → its id in the tokenizer.
        num_added: tokens newly added to the tokenizer (0 when they were all present already).
        old_num_embeddings: input embedding rows before the surgery.
        new_num_embeddings: input embedding rows after it.
        tied: whether the output head shares the input embedding matrix.
        init: the row initialisation used (``"samtok"``, ``"mean"``, or ``"none"`` when nothing
            was added).
    """

    token_ids: Mapping[str, int]
    num_added: int
    old_num_embeddings: int
    new_num_embeddings: int
    tied: bool
    init: str


def text_tokenizer(tokenizer_or_processor: Any) -> Any:
    """The text tokenizer of a processor (its ``.tokenizer``), or the object itself."""
    tokenizer = getattr(tokenizer_or_processor, "tokenizer", None)
    tokenizer = tokenizer if tokenizer is not None else tokenizer_or_processor
    if not (hasattr(tokenizer, "add_tokens") and hasattr(tokenizer, "convert_tokens_to_ids")):
        raise ValueError(
            f"tokenizer_or_processor: expected a Hugging Face tokenizer or a processor holding one, "
            f"got {type(tokenizer_or_processor).__name__}"
        )
    return tokenizer


def mask_token_order(vocab: MaskVocabulary) -> list[str]:
    """The mask tokens in the order they are added: start, every code token, end."""
    tokens = list(vocab.tokens())
    return [vocab.start_token] + [t for t in tokens if t not in (vocab.start_token, vocab.end_token)] \
        + [vocab.end_token]


def _special_token_strings(tokenizer: Any) -> set[str]:
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for added in getattr(tokenizer, "added_tokens_decoder", {}).values():
        if getattr(added, "special", False):
            special.add(str(added.content))
    return special


def mask_token_ids(tokenizer_or_processor: Any, vocab: MaskVocabulary) -> dict[str, int]:
    """Every mask token of ``vocab`` → its id, checking that the tokenizer knows them properly.

    Raises:
        ValueError: a mask token is missing, is a *special* token (it would vanish under
            ``skip_special_tokens=True``), or does not encode to exactly its own id.
    """
    tokenizer = text_tokenizer(tokenizer_or_processor)
    vocabulary = tokenizer.get_vocab()
    tokens = mask_token_order(vocab)
    missing = [t for t in tokens if t not in vocabulary]
    if missing:
        raise ValueError(
            f"tokenizer: {len(missing)} of the {len(tokens)} {vocab.name} mask tokens are missing "
            f"(first: {missing[:3]}); run add_mask_vocabulary (or `masktok vlm add-vocab`) first"
        )
    special = sorted(set(tokens) & _special_token_strings(tokenizer))
    if special:
        raise ValueError(
            f"tokenizer: {len(special)} mask tokens are special tokens (first: {special[:3]}); "
            f"decoding with skip_special_tokens=True would delete them"
        )
    ids = {t: int(vocabulary[t]) for t in tokens}
    probe = vocab.start_token + vocab.code_token(0, 0) + vocab.end_token
    encoded = tokenizer(probe, add_special_tokens=False)["input_ids"]
    expected = [ids[vocab.start_token], ids[vocab.code_token(0, 0)], ids[vocab.end_token]]
    if list(encoded) != expected:
        raise ValueError(
            f"tokenizer: {probe!r} encodes to {list(encoded)}, expected one id per mask token "
            f"{expected}; the mask tokens must be AddedTokens"
        )
    return ids


def _output_is_tied(model: torch.nn.Module) -> bool:
    output = model.get_output_embeddings()
    if output is None:
        return True
    return output.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


@torch.no_grad()
def _init_rows(weight: torch.Tensor, rows: torch.Tensor, num_old: int, init: str,
               generator: torch.Generator) -> None:
    """Fill ``weight[rows]`` (weight: (V, D)) from the statistics of ``weight[:num_old]``."""
    old = weight[:num_old].float()
    values = _ROW_INITS[init](old, rows.numel(), generator)
    weight[rows.to(weight.device)] = values.to(weight.dtype)


def _noisy_mean_rows(old: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """SAMTok's recipe: mean + 0.02 · std · N(0, 1) of the old rows (std floored at 1e-3, as the
    reference does, so constant columns still get some spread) → (count, D)."""
    mean = old.mean(dim=0, keepdim=True)
    std = old.std(dim=0, keepdim=True).clamp_min(1e-3)
    noise = torch.randn((count, old.shape[1]), generator=generator)
    return mean + 0.02 * noise.to(mean.device) * std


def _mean_rows(old: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """The old rows' mean → (count, D)."""
    return old.mean(dim=0, keepdim=True).expand(count, -1)


_ROW_INITS = {"samtok": _noisy_mean_rows, "mean": _mean_rows}
INIT_METHODS = tuple(_ROW_INITS)


def add_mask_vocabulary(model: Any, tokenizer_or_processor: Any, vocab: MaskVocabulary, *,
                        init: str = "samtok", seed: int = 0,
                        pad_to_multiple_of: int | None = None) -> VocabularySurgery:
    """Add ``vocab``'s mask tokens to a tokenizer (or processor) and its model, in place.

    Args:
        model: any Hugging Face ``PreTrainedModel`` with input (and maybe output) embeddings,
            e.g. ``Qwen2_5_VLForConditionalGeneration`` or ``Qwen3VLForConditionalGeneration``.
        tokenizer_or_processor: the model's tokenizer or a processor holding it.
        vocab: ``SAMTOK_VOCABULARY`` (514 tokens) or ``HIMTOK_VOCABULARY`` (1026 tokens).
        init: ``"samtok"`` (mean + 0.02·std·N(0,1) of the old rows) or ``"mean"`` (the old mean).
        seed: seed of the initialisation noise.
        pad_to_multiple_of: round the embedding rows up to a multiple of this (tensor cores).

    Running it twice is a no-op. Unused padding rows of the embedding matrix (Qwen models carry
    more rows than tokens) are reused before the matrix grows.

    Raises:
        ValueError: unknown ``init``; some but not all mask tokens already present; a mask
            token already present as a special token; a model without input embeddings.
    """
    if init not in INIT_METHODS:
        raise ValueError(f"init: expected one of {INIT_METHODS}, got {init!r}")
    tokenizer = text_tokenizer(tokenizer_or_processor)
    if not hasattr(model, "get_input_embeddings") or model.get_input_embeddings() is None:
        raise ValueError(f"model: {type(model).__name__} has no input embeddings to extend")
    tokens = mask_token_order(vocab)
    present = [t for t in tokens if t in tokenizer.get_vocab()]
    if present and len(present) != len(tokens):
        raise ValueError(
            f"tokenizer: {len(present)} of the {len(tokens)} {vocab.name} mask tokens are already "
            f"present (first: {present[:3]}); a tokenizer must hold all of them or none"
        )
    old_rows = model.get_input_embeddings().weight.shape[0]
    tied = _output_is_tied(model)
    num_old_tokens = len(tokenizer)
    num_added = 0
    if not present:
        num_added = tokenizer.add_tokens(
            [AddedToken(t, lstrip=False, rstrip=False, single_word=False, normalized=False,
                        special=False) for t in tokens],
            special_tokens=False,
        )
    ids = mask_token_ids(tokenizer, vocab)
    needed = max(old_rows, max(ids.values()) + 1)
    if pad_to_multiple_of:
        needed = -(-needed // pad_to_multiple_of) * pad_to_multiple_of
    if needed != old_rows:
        model.resize_token_embeddings(needed, mean_resizing=False)
    new_rows = model.get_input_embeddings().weight.shape[0]
    if num_added == 0:
        return VocabularySurgery(ids, 0, old_rows, new_rows, tied, "none")

    added_rows = torch.tensor(sorted(ids.values()), dtype=torch.long)
    num_stat_rows = min(num_old_tokens, old_rows)
    generator = torch.Generator().manual_seed(seed)
    _init_rows(model.get_input_embeddings().weight.data, added_rows, num_stat_rows, init, generator)
    if not tied:
        _init_rows(model.get_output_embeddings().weight.data, added_rows, num_stat_rows, init,
                   generator)
    return VocabularySurgery(ids, num_added, old_rows, new_rows, tied, init)

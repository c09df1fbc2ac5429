"""How a chat's answers are generated and decoded (:class:`GenerationSettings`): the one source of
the settings' defaults, also of ``masktok chat``'s options (:mod:`masktok.cli.dataclass_options`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from transformers import LogitsProcessor


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are generated and decoded.

    Attributes:
        max_new_tokens: generation budget per answer.
        do_sample: sample the answer (default: greedy).
        temperature: sampling temperature (None: the model's generation config).
        top_p: nucleus sampling mass (None: the model's generation config).
        constrained: apply the mask-word grammar while generating.
        num_codes: exact number of codes per span (HiMTok's fixed token-length prompts).
        lenient: repair what the parser can (always reported); False raises ``MaskWordsError``
            on a malformed span.
        decode_repaired: also decode spans the lenient parser repaired (status not ``ok``).
        threshold: mask threshold handed to the tokenizer (None: its default).
        logits_processors: extra ``LogitsProcessor``s, applied before the grammar.
        soft_decoding: decode each span from the model's code probabilities (softmax(2 · logits)
            over the code ids, HiMTok's LMM path) instead of its sampled codes; needs a tokenizer
            with soft decoding (``soft_decoding``). Official InternVL-HiMTok folders turn it on.
        soft_renormalize: with ``soft_decoding``, L2-normalise the probability-weighted code
            vector (True: a one-hot distribution decodes exactly like its hard code; False: the
            official LMM's raw mixture); None: the tokenizer's default (its config's
            ``soft_renormalize``, False for the official HiMTok).
        partial_codes: how a SAMTok word with a level left out decodes (``"level0_only"``, the
            default, or ``"reference"``: the official code's row 0 for the missing level); None:
            the tokenizer's default.
    """

    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    constrained: bool = True
    num_codes: int | None = None
    lenient: bool = True
    decode_repaired: bool = True
    threshold: float | None = None
    logits_processors: tuple[LogitsProcessor, ...] = ()
    soft_decoding: bool = False
    soft_renormalize: bool | None = None
    partial_codes: str | None = None

    def replace(self, **overrides: Any) -> "GenerationSettings":
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"settings: unknown generation settings {unknown}")
        return dataclasses.replace(self, **overrides)

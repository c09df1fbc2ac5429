"""The mask-word grammar as a vLLM (v1 engine) logits-processor plugin.

Start the server with it (``masktok serve`` does this)::

    vllm serve MODEL_DIR --logits-processors masktok.serving.vllm_grammar:MaskGrammarLogitsProcessor

Every request then gets well-formed mask spans with free text around them (rules:
:mod:`masktok.serving.span_grammar`). A request tunes it through vLLM's ``vllm_xargs``:

* ``masktok_grammar``: 0 turns the grammar off for this request (default 1);
* ``masktok_num_codes``: exactly this many codes per span (HiMTok's fixed-length prompts).

The request's ``max_tokens`` is honoured: a span is only opened when it can be closed in time,
and an open span is closed before the limit. The vocabulary comes from
``MASKTOK_MASK_VOCABULARY`` (``samtok:256x2``, set by ``masktok serve``); a server started by
hand without it refuses to start and names the value to set, because the API process checks each
request's ``masktok_num_codes`` against it (HTTP 400) before the engine sees the request. This
module imports vLLM; the rest of :mod:`masktok.serving` does not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from vllm import SamplingParams
from vllm.logger import init_logger
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor
from vllm.v1.sample.logits_processor.builtin import process_dict_updates

from masktok.mllm.constrained import span_length_range
from masktok.serving.span_grammar import SpanGrammar, SpanState
from masktok.serving.vllm_protocol import NUM_CODES_ARG, grammar_request_args
from masktok.serving.vocabulary_spec import (VOCABULARY_ENV, infer_vocabulary,
                                             parse_vocabulary_spec, vocabulary_spec)
from masktok.words import MaskVocabulary

if TYPE_CHECKING:
    from vllm.config import VllmConfig

logger = init_logger("vllm.masktok")  # vLLM's log handlers sit on the "vllm" logger


@dataclass
class _Request:
    """One request of the batch under the grammar."""

    state: SpanState
    prompt_state: SpanState  # the state after the prompt, to read the answer again from
    output_ids: list[int]  # vLLM's live list of the request's generated ids
    min_codes: int
    max_codes: int
    max_tokens: int | None


def _environment_vocabulary() -> MaskVocabulary | None:
    spec = os.environ.get(VOCABULARY_ENV)
    return parse_vocabulary_spec(spec) if spec else None


class MaskGrammarLogitsProcessor(LogitsProcessor):
    """vLLM logits processor keeping every answer's mask spans well formed (module docstring).

    ``apply`` takes logits (B, V) float32 and sets −inf on every token the grammar forbids for
    each row; rows whose earlier processors left no grammatical token a finite score get the
    grammatical tokens with equal scores (the grammar has the last word).
    """

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        grammar, num_codes = grammar_request_args(sampling_params.extra_args)
        if not grammar or num_codes is None:
            return
        vocab = _environment_vocabulary()
        if vocab is None:
            raise ValueError(f"vllm_xargs.{NUM_CODES_ARG}: the server was started without "
                             f"{VOCABULARY_ENV}, so the number of codes cannot be checked")
        if num_codes > vocab.max_codes:
            raise ValueError(f"vllm_xargs.{NUM_CODES_ARG}: at most {vocab.max_codes} codes per span "
                             f"for {vocab.name}, got {num_codes}")

    def __init__(self, vllm_config: "VllmConfig", device: torch.device,
                 is_pin_memory: bool) -> None:
        from transformers import AutoTokenizer

        from masktok.mllm.vocabulary import mask_token_ids

        model_config = vllm_config.model_config
        tokenizer = AutoTokenizer.from_pretrained(
            model_config.tokenizer, revision=model_config.tokenizer_revision,
            trust_remote_code=model_config.trust_remote_code)
        vocab = _environment_vocabulary()
        if vocab is None:
            found = infer_vocabulary(tokenizer.get_vocab())
            raise RuntimeError(f"masktok grammar: {VOCABULARY_ENV} is not set; this model's tokenizer "
                               f"holds the {found.name} words: start the server with "
                               f"{VOCABULARY_ENV}={vocabulary_spec(found)} (masktok serve sets it)")
        self.grammar = SpanGrammar(vocab, mask_token_ids(tokenizer, vocab))
        self.device = device
        self.requests: dict[int, _Request] = {}
        logger.info("masktok mask-word grammar on for %s (%d mask tokens)", vocab.name,
                    len(vocab.tokens()))

    def is_argmax_invariant(self) -> bool:
        """The grammar changes which token is most likely."""
        return False

    def _new_request(self, params: SamplingParams, prompt_ids: list[int] | None,
                     output_ids: list[int]) -> _Request | None:
        grammar, num_codes = grammar_request_args(params.extra_args)
        if not grammar:
            return None
        # validate_params refused any num_codes above the vocabulary's (same environment).
        min_codes, max_codes = span_length_range(self.grammar.vocab, num_codes)
        state = self.grammar.initial_state(prompt_ids)
        return _Request(replace(state), state, output_ids, min_codes, max_codes,
                        params.max_tokens)

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        process_dict_updates(self.requests, batch_update, self._new_request)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.requests:
            return logits
        grammar = self.grammar
        rows = [grammar.free_row] * logits.shape[0]
        for index, request in self.requests.items():
            if len(request.output_ids) < request.state.seen:
                # The request lost tokens (preempted and rescheduled): read it again.
                request.state = replace(request.prompt_state)
            grammar.advance(request.state, request.output_ids)
            remaining = (None if request.max_tokens is None
                         else request.max_tokens - len(request.output_ids))
            rows[index] = grammar.row(request.state, min_codes=request.min_codes,
                                      max_codes=request.max_codes, remaining=remaining)
        table = grammar.table(logits.shape[1], logits.device)
        allowed = table[torch.tensor(rows, dtype=torch.long, device=logits.device)]
        logits.masked_fill_(~allowed, float("-inf"))
        stuck = torch.isneginf(logits).all(dim=1)
        if bool(stuck.any()):
            logits[stuck] = torch.where(allowed[stuck], 0.0, float("-inf"))
        return logits

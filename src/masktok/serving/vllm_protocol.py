"""What the masktok vLLM plugin reads from a request, shared by the plugin and the client
(this module does not import vLLM).

A request tunes the grammar through vLLM's ``vllm_xargs`` (``SamplingParams.extra_args``):
``masktok_grammar`` (0 turns it off; default 1) and ``masktok_num_codes`` (exact codes per span).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PLUGIN_CLASS = "masktok.serving.vllm_grammar:MaskGrammarLogitsProcessor"
GRAMMAR_ARG = "masktok_grammar"
NUM_CODES_ARG = "masktok_num_codes"


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false"):
        return value.strip().lower() in ("1", "true")
    raise ValueError(f"vllm_xargs.{GRAMMAR_ARG}: expected 0 or 1 (or true/false), got {value!r}")


def _num_codes(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"vllm_xargs.{NUM_CODES_ARG}: expected a positive int, got {value!r}")
    return value


def grammar_request_args(extra_args: Mapping[str, Any] | None) -> tuple[bool, int | None]:
    """(grammar on, exact codes per span or None) of a request's ``vllm_xargs``.

    Raises:
        ValueError: a value of the wrong type or range.
    """
    extra = extra_args or {}
    return _flag(extra.get(GRAMMAR_ARG, 1)), _num_codes(extra.get(NUM_CODES_ARG))

"""Serving mask-word VLMs: the grammar inside vLLM, and a client for any OpenAI-compatible server.

* :mod:`~masktok.serving.vllm_grammar`: the grammar as a vLLM logits-processor plugin
  (``vllm serve … --logits-processors masktok.serving.vllm_grammar:MaskGrammarLogitsProcessor``);
  it imports vLLM, nothing else here does.
* :mod:`~masktok.serving.client`: :class:`MaskClient`, masks in and out over the chat API.
* :mod:`~masktok.serving.launcher`: the ``vllm serve`` command behind ``masktok serve``.

Needs the ``[serve]`` extra (httpx) for the client; the server runs vLLM in its own environment.
"""

from masktok.serving.client import MaskClient, ServerError, ServingOptions
from masktok.serving.launcher import ServeCommand, vllm_serve_command
from masktok.serving.vocabulary_spec import (infer_vocabulary, parse_vocabulary_spec,
                                             vocabulary_spec)

__all__ = [
    "MaskClient", "ServeCommand", "ServerError", "ServingOptions", "infer_vocabulary",
    "parse_vocabulary_spec", "vllm_serve_command", "vocabulary_spec",
]

"""Against a real vLLM server on localhost (CPU, text-only): the grammar plugin and the client.

A tiny random Qwen2 whose tokenizer holds the mask words is served by ``masktok serve`` from the
vLLM environment (scripts/install_vllm.sh). A logit bias pushes the random model towards mask
tokens, so without the grammar its answers are full of malformed spans; with the grammar (on in
the engine) 200 sampled answers hold none. These tests run in their own CI step
(scripts/test_vllm.sh sets MASKTOK_VLLM_TESTS=1); under CI a missing vLLM environment fails.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch

from mllm_fixtures import box_mask, build_tiny_himtok, build_tiny_samtok, tiny_image
from serving_fixtures import VLLMServer, build_tiny_qwen2, vllm_available

if not os.environ.get("MASKTOK_VLLM_TESTS"):
    pytest.skip("the vLLM server tests run in their own step: bash scripts/test_vllm.sh",
                allow_module_level=True)

from masktok.serving import MaskClient, ServerError  # noqa: E402
from masktok.words import HIMTOK_VOCABULARY, SAMTOK_VOCABULARY, parse_mask_words  # noqa: E402

NUM_ANSWERS = 200
MAX_TOKENS = 24
CONCURRENCY = 32  # the server's --max-num-seqs: the engine batches them all
MASK_BIAS = 4.0  # added to every mask token's logit: the random model then writes many of them


@pytest.fixture(scope="module", params=["samtok", "himtok"])
def server(request, tmp_path_factory):
    """One server per vocabulary family, started once for the module and stopped by PID."""
    if not vllm_available():
        pytest.skip("no vLLM environment; run scripts/install_vllm.sh")
    vocab = SAMTOK_VOCABULARY if request.param == "samtok" else HIMTOK_VOCABULARY
    folder = tmp_path_factory.mktemp(f"tiny-qwen2-{request.param}")
    build_tiny_qwen2(folder / "model", vocab)
    running = VLLMServer(folder / "model", folder / "vllm.log", name=f"tiny-{request.param}")
    running.start()
    print(f"\nvLLM ({request.param}) started in {running.startup_s:.1f} s")
    yield running, vocab, folder / "model"
    running.stop()


def mask_token_bias(model_dir, vocab) -> dict[int, float]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return {int(tokenizer.convert_tokens_to_ids(t)): MASK_BIAS for t in vocab.tokens()}


def sample_answers(server, *, grammar: bool, **overrides):
    running, vocab, model_dir = server
    client = MaskClient(running.base_url, running.name, vocab, max_concurrency=CONCURRENCY)
    image = tiny_image()
    prompts = [f"Please segment the dog in this image. ({i})" for i in range(NUM_ANSWERS)]
    with client:
        return client.ask_batch([image] * NUM_ANSWERS, prompts, grammar=grammar, decode=False,
                                send_images=False, temperature=1.0, seed=None,
                                max_tokens=MAX_TOKENS,
                                logit_bias=mask_token_bias(model_dir, vocab), **overrides)


def span_counts(results) -> tuple[int, int]:
    spans = [m for result in results for m in result.masks]
    return len(spans), sum(not m.span.ok for m in spans)


def text_outside_spans(result) -> str:
    pieces, cursor = [], 0
    for mask in result.masks:
        pieces.append(result.text[cursor:mask.char_start])
        cursor = mask.char_end
    return "".join(pieces) + result.text[cursor:]


def test_grammar_in_the_engine_leaves_no_malformed_span(server):
    running, vocab, _ = server
    free = sample_answers(server, grammar=False)
    total_free, malformed_free = span_counts(free)
    constrained = sample_answers(server, grammar=True)
    total, malformed = span_counts(constrained)
    print(f"\n{vocab.name}: {NUM_ANSWERS} answers; without the grammar {malformed_free} of "
          f"{total_free} spans malformed, with it {malformed} of {total}")
    assert malformed_free > NUM_ANSWERS // 4  # the bias really produces broken spans
    assert total >= NUM_ANSWERS // 4  # … and the grammar still lets spans be written
    assert malformed == 0
    # Free text stays allowed around the spans.
    assert any(result.masks and text_outside_spans(result).strip() for result in constrained)
    # Every well-formed span has a length the vocabulary allows.
    for result in constrained:
        for mask in result.masks:
            assert vocab.min_codes <= len(mask.codes) <= vocab.max_codes


def test_fixed_code_count_per_request(server):
    running, vocab, _ = server
    if vocab.name != "himtok":
        pytest.skip("a fixed number of codes per word is HiMTok's")
    results = sample_answers(server, grammar=True, num_codes=4)
    total, malformed = span_counts(results)
    assert total > 0 and malformed == 0
    assert {len(m.codes) for r in results for m in r.masks} == {4}


def test_client_round_trips_masks_through_the_server(server):
    """Masks → words in the prompt → the server writes them back (forced by a regex through
    vLLM's structured outputs) → parsed and decoded here: the decoded masks are the tokenizer's
    own decoding of the prompt's codes."""
    running, vocab, _ = server
    tokenizer = build_tiny_samtok() if vocab.name == "samtok" else build_tiny_himtok()
    image = tiny_image(48, 64, seed=3)
    masks = np.stack([box_mask(48, 64, (4, 6, 30, 40)), box_mask(48, 64, (34, 10, 60, 44))])
    words = tokenizer.encode_words(image, masks)
    answer = f"The dog is {words[0]} and the cat is {words[1]}."
    with MaskClient(running.base_url, running.name, tokenizer, zoom=None) as client:
        result = client.ask(image, "Segment <mask> and <mask>.", masks, send_images=False,
                            max_tokens=200, extra_body={
                                "structured_outputs": {"regex": re.escape(answer)}})
    assert result.text == answer
    assert [m.status for m in result.masks] == ["ok", "ok"]
    codes = [tuple(span.codes) for span in parse_mask_words("".join(words), tokenizer.vocabulary)]
    assert [m.codes for m in result.masks] == codes
    expected = tokenizer.decode(image, torch.tensor(codes), size=(48, 64)).cpu().numpy()
    np.testing.assert_array_equal(result.decoded_masks, expected.astype(bool))
    assert result.decoded_masks.shape == (2, 48, 64)


def test_served_models_and_server_errors(server):
    running, vocab, _ = server
    with MaskClient(running.base_url, running.name, vocab) as client:
        assert client.served_models() == [running.name]
    with MaskClient(running.base_url, "no-such-model", vocab) as client:
        with pytest.raises(ServerError, match="HTTP 404"):
            client.ask(tiny_image(), "hello", decode=False, send_images=False)
    with MaskClient(running.base_url, running.name, vocab) as client:
        with pytest.raises(ServerError, match="masktok_num_codes"):
            client.ask(tiny_image(), "hello", decode=False, send_images=False, num_codes=99)


def test_plugin_started_by_hand_without_the_vocabulary_refuses_to_start(tmp_path):
    """`vllm serve --logits-processors …` without MASKTOK_MASK_VOCABULARY: the API process could
    not check a request's code count, so the engine refuses to start and names the value."""
    import subprocess
    import sys

    from serving_fixtures import REPO_ROOT, VLLM_EXECUTABLE, free_port

    if not vllm_available():
        pytest.skip("no vLLM environment; run scripts/install_vllm.sh")
    build_tiny_qwen2(tmp_path / "model", HIMTOK_VOCABULARY)
    env = {k: v for k, v in os.environ.items() if k != "MASKTOK_MASK_VOCABULARY"}
    env.update(VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               VLLM_NO_USAGE_STATS="1", VLLM_CPU_OMP_THREADS_BIND="nobind",
               VLLM_ENABLE_V1_MULTIPROCESSING="0", PYTHONPATH=str(REPO_ROOT / "src"))
    argv = [str(VLLM_EXECUTABLE), "serve", str(tmp_path / "model"), "--port", str(free_port()),
            "--logits-processors", "masktok.serving.vllm_grammar:MaskGrammarLogitsProcessor",
            "--dtype", "float32", "--max-model-len", "512", "--enforce-eager",
            "--gpu-memory-utilization", "0.05"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode != 0, sys.executable
    log = done.stdout + done.stderr
    assert "MASKTOK_MASK_VOCABULARY is not set" in log
    assert "MASKTOK_MASK_VOCABULARY=himtok:" in log

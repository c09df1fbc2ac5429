"""masktok.serving without vLLM: the engine grammar's states, vocabulary specs, answer layout,
the client against a small local OpenAI-style server, and the ``masktok serve`` command line."""

from __future__ import annotations

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from masktok.cli import app
from masktok.mllm.constrained import MaskGrammarLogitsProcessor, span_length_range
from masktok.mllm.vocabulary import mask_token_order
from masktok.serving import (MaskClient, ServerError, infer_vocabulary, parse_vocabulary_spec,
                             vllm_serve_command, vocabulary_spec)
from masktok.serving.answer_text import layout_text_answer, strip_phrase_markers
from masktok.serving.span_grammar import SpanGrammar
from masktok.words import (HIMTOK_VOCABULARY, SAMTOK_VOCABULARY, format_mask_words,
                           himtok_vocabulary, samtok_vocabulary)
from mllm_fixtures import single_thread_torch  # noqa: F401 (autouse)
from mllm_fixtures import box_mask, build_tiny_himtok, tiny_image
from serving_fixtures import build_tiny_qwen2, free_port

runner = CliRunner()
BASE = 50  # first mask token id in the synthetic vocabularies


def synthetic_ids(vocab):
    return {token: BASE + i for i, token in enumerate(mask_token_order(vocab))}


# ---------------------------------------------------------------------------------------------
# The engine grammar
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("vocab, num_codes, max_length", [
    (samtok_vocabulary(codebook_size=8), None, None),
    (samtok_vocabulary(codebook_size=8), None, 14),
    (himtok_vocabulary(codebook_size=8, max_codes=5), None, None),
    (himtok_vocabulary(codebook_size=8, max_codes=5), 3, 18),
])
def test_engine_grammar_allows_what_the_transformers_processor_allows(vocab, num_codes,
                                                                      max_length):
    """Token by token over random sequences, the incremental engine state and its table give
    exactly the allowed set of the (already tested) transformers logits processor."""
    ids = synthetic_ids(vocab)
    size = BASE + len(ids) + 10
    reference = MaskGrammarLogitsProcessor(vocab, ids, num_codes=num_codes, max_length=max_length)
    grammar = SpanGrammar(vocab, ids)
    table = grammar.table(size)
    min_codes, max_codes = span_length_range(vocab, num_codes)
    rng = random.Random(0)
    prompt = [1, 2, 3]
    for _ in range(30):
        state = grammar.initial_state(prompt)
        output: list[int] = []
        limit = (max_length or 24) - len(prompt)
        for _ in range(limit):
            grammar.advance(state, output)
            remaining = None if max_length is None else max_length - len(prompt) - len(output)
            row = grammar.row(state, min_codes=min_codes, max_codes=max_codes,
                              remaining=remaining)
            allowed = set(torch.nonzero(table[row]).flatten().tolist())
            scores = reference(torch.tensor([prompt + output]), torch.zeros(1, size))
            assert allowed == set(torch.nonzero(torch.isfinite(scores[0])).flatten().tolist())
            output.append(rng.choice(sorted(allowed)))


def test_engine_grammar_state_after_a_prompt_and_placeholders():
    vocab = SAMTOK_VOCABULARY
    ids = synthetic_ids(vocab)
    grammar = SpanGrammar(vocab, ids)
    start, end = ids[vocab.start_token], ids[vocab.end_token]
    level0 = ids[vocab.code_token(0, 3)]
    state = grammar.initial_state([7, start, level0])  # the prompt opens a span
    assert (state.inside, state.num_codes) == (True, 1)
    closed = [start, level0, ids[vocab.code_token(1, 0)], end, 9]
    assert grammar.initial_state(closed).inside is False
    state = grammar.advance(grammar.initial_state(None), [4, start, -1])  # -1: not sampled yet
    assert (state.inside, state.num_codes, state.seen) == (True, 0, 2)
    with pytest.raises(ValueError, match="mask tokens missing"):
        SpanGrammar(vocab, {vocab.start_token: 1})
    with pytest.raises(ValueError, match="cannot hold mask token id"):
        grammar.table(BASE + 10)


# ---------------------------------------------------------------------------------------------
# Vocabulary specs
# ---------------------------------------------------------------------------------------------
def test_vocabulary_specs_round_trip_and_inference():
    for vocab in (SAMTOK_VOCABULARY, HIMTOK_VOCABULARY, samtok_vocabulary(64, 3)):
        assert parse_vocabulary_spec(vocabulary_spec(vocab)) == vocab
    assert vocabulary_spec(SAMTOK_VOCABULARY) == "samtok:256x2"
    assert infer_vocabulary(set(SAMTOK_VOCABULARY.tokens()) | {"hello"}) == SAMTOK_VOCABULARY
    assert infer_vocabulary(dict.fromkeys(HIMTOK_VOCABULARY.tokens(), 0)) == HIMTOK_VOCABULARY
    for bad in ("samtok", "samtok:256", "sam:256x2", "himtok:x32", 7):
        with pytest.raises(ValueError, match="mask vocabulary spec"):
            parse_vocabulary_spec(bad)
    with pytest.raises(ValueError, match="no mask code tokens"):
        infer_vocabulary({"hello": 1})
    with pytest.raises(ValueError, match="missing"):
        infer_vocabulary(set(SAMTOK_VOCABULARY.tokens()) - {SAMTOK_VOCABULARY.end_token})


# ---------------------------------------------------------------------------------------------
# Answer text
# ---------------------------------------------------------------------------------------------
def test_text_answer_layout_keeps_phrases_and_character_offsets():
    vocab = SAMTOK_VOCABULARY
    dog, cat = format_mask_words((1, 2), vocab), format_mask_words((3, 4), vocab)
    text = (f"A <|object_ref_start|>dog<|object_ref_end|>{dog} sits by a "
            f"<|object_ref_start|>cat<|object_ref_end|>{cat} and <|mt_start|><|mt_0001|>.")
    clean, phrases = strip_phrase_markers(text)
    assert "<|object_ref" not in clean
    assert [(p.text, clean[p.char_start:p.char_end]) for p in phrases] == [("dog", "dog"),
                                                                           ("cat", "cat")]
    layout = layout_text_answer(text, vocab)
    assert [clean[s.char_start:s.char_end] for s in layout.spans[:2]] == [dog, cat]
    assert [s.span.codes for s in layout.spans[:2]] == [(1, 2), (3, 4)]
    assert layout.spans[2].span.status.value != "ok"
    assert strip_phrase_markers("a <|object_ref_start|>dog")[1][0].closed is False


# ---------------------------------------------------------------------------------------------
# The client against a local OpenAI-style server
# ---------------------------------------------------------------------------------------------
class ChatServer:
    """A chat-completions endpoint on localhost; ``reply(body)`` gives (status, payload)."""

    def __init__(self, reply):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                status, payload = reply(body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                data = json.dumps({"data": [{"id": "tiny"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(text):
    return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


def last_user_text(body) -> str:
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else content[-1]["text"]


def test_client_sends_words_and_images_and_decodes_the_answer_locally():
    tokenizer = build_tiny_himtok()
    image = tiny_image(48, 64, seed=1)
    masks = box_mask(48, 64, (5, 5, 40, 30))[None]
    words = tokenizer.encode_words(image, masks)[0]
    with ChatServer(lambda body: completion(f"It is {words} there.")) as server:
        with MaskClient(server.url, "tiny", tokenizer, zoom=None) as client:
            assert client.served_models() == ["tiny"]
            result = client.ask(image, "What is <mask>?", masks, logit_bias={7: 1.5}, seed=3)
    body = server.requests[0]
    assert body["model"] == "tiny" and body["seed"] == 3 and body["logit_bias"] == {"7": 1.5}
    assert body["vllm_xargs"] == {"masktok_grammar": 1} and body["skip_special_tokens"] is False
    content = body["messages"][0]["content"]
    assert content[0]["type"] == "image_url"
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert content[1] == {"type": "text", "text": f"What is {words}?"}
    assert result.text == f"It is {words} there."
    assert [m.status for m in result.masks] == ["ok"]
    codes = torch.tensor([result.masks[0].codes])
    expected = tokenizer.decode(image, codes, size=(48, 64)).cpu().numpy().astype(bool)
    np.testing.assert_array_equal(result.decoded_masks, expected)


def test_client_batches_concurrently_in_order_and_reads_words_only():
    vocab = HIMTOK_VOCABULARY

    def reply(body):
        number = int(last_user_text(body).split()[-1])
        return completion(f"mask {format_mask_words([number], vocab)}")

    with ChatServer(reply) as server:
        with MaskClient(server.url, "tiny", vocab, max_concurrency=4) as client:
            results = client.ask_batch([tiny_image()] * 12, [f"segment {i}" for i in range(12)],
                                       decode=False, send_images=False, grammar=False,
                                       vllm_extensions=True, num_codes=1)
            with pytest.raises(ValueError, match="needs a mask tokenizer"):
                client.ask(tiny_image(), "segment 1")
            with pytest.raises(ValueError, match="needs a mask tokenizer"):
                client.ask(tiny_image(), "segment <mask>", box_mask(48, 64, (1, 1, 5, 5))[None],
                           decode=False)
    assert [r.masks[0].codes for r in results] == [(i,) for i in range(12)]
    assert all(r.masks[0].mask is None for r in results)
    assert isinstance(server.requests[0]["messages"][0]["content"], str)  # no image sent
    assert server.requests[0]["vllm_xargs"] == {"masktok_grammar": 0, "masktok_num_codes": 1}


@pytest.mark.parametrize("status, payload, message", [
    (500, {"error": {"message": "engine died"}}, "HTTP 500: engine died"),
    (200, b"<html>not json</html>", "not JSON"),
    (200, {"choices": []}, "no choices"),
    (200, {"choices": [{"message": {"content": ["x"]}}]}, "not text"),
    (200, {"choices": [{"message": {"content": None}}]}, "not text"),
])
def test_client_reports_a_failing_or_malformed_reply(status, payload, message):
    with ChatServer(lambda body: (status, payload)) as server:
        with MaskClient(server.url, "tiny", SAMTOK_VOCABULARY) as client:
            with pytest.raises(ServerError, match=message):
                client.ask(tiny_image(), "hello", decode=False)


def test_client_reports_an_unreachable_server_and_bad_arguments():
    url = f"http://127.0.0.1:{free_port()}"
    with MaskClient(url, "tiny", SAMTOK_VOCABULARY, timeout=5) as client:
        with pytest.raises(ServerError, match="cannot reach the server"):
            client.ask(tiny_image(), "hello", decode=False)
        with pytest.raises(ServerError, match="cannot reach the server"):
            client.served_models()
        with pytest.raises(ValueError, match="unknown serving options"):
            client.ask(tiny_image(), "hello", max_new_tokens=3)
    with pytest.raises(ValueError, match="base_url"):
        MaskClient("localhost:8000", "tiny", SAMTOK_VOCABULARY)
    with pytest.raises(ValueError, match="tokenizer"):
        MaskClient(url, "tiny", "samtok")
    with pytest.raises(ValueError, match="max_concurrency"):
        MaskClient(url, "tiny", SAMTOK_VOCABULARY, max_concurrency=0)


# ---------------------------------------------------------------------------------------------
# `masktok serve`
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_qwen2(tmp_path_factory.mktemp("qwen2") / "model", HIMTOK_VOCABULARY)


@pytest.fixture()
def fake_vllm(tmp_path) -> Path:
    executable = tmp_path / "vllm"
    executable.write_text("#!/bin/sh\nexit 0\n")
    executable.chmod(0o755)
    return executable


def test_serve_command_has_the_plugin_and_the_vocabulary(tiny_model, fake_vllm):
    command = vllm_serve_command(tiny_model, port=8123, vllm=fake_vllm,
                                 extra_args=["--max-model-len", "4096"])
    assert command.argv[:3] == [str(fake_vllm), "serve", str(tiny_model)]
    assert command.argv[command.argv.index("--logits-processors") + 1] == \
        "masktok.serving.vllm_grammar:MaskGrammarLogitsProcessor"
    assert command.argv[-2:] == ["--max-model-len", "4096"]
    assert command.env == {"MASKTOK_MASK_VOCABULARY": "himtok:1024x32"}
    assert command.served_model_name == "model"
    plain = vllm_serve_command(tiny_model, grammar=False, vllm=fake_vllm,
                               mask_vocabulary="himtok:1024x16", served_model_name="m")
    assert "--logits-processors" not in plain.argv
    assert plain.env["MASKTOK_MASK_VOCABULARY"] == "himtok:1024x16"


def test_serve_cli_dry_run_and_clear_errors(tiny_model, fake_vllm, tmp_path):
    result = runner.invoke(app, ["serve", str(tiny_model), "--vllm", str(fake_vllm), "--dry-run",
                                 "--", "--dtype", "float32"])
    assert result.exit_code == 0, result.output
    assert "MASKTOK_MASK_VOCABULARY=himtok:1024x32" in result.output
    assert "--logits-processors masktok.serving.vllm_grammar:MaskGrammarLogitsProcessor" in \
        result.output and result.output.rstrip().endswith("--dtype float32")
    for args, message in [
        ([str(tmp_path)], "no config.json"),
        ([str(tiny_model), "--vllm", str(tmp_path / "nope")], "is not an executable"),
        ([str(tiny_model), "--vllm", str(fake_vllm), "--mask-vocabulary", "samtok:256x2"],
         "missing"),
        ([str(tiny_model), "--vllm", str(fake_vllm), "--mask-vocabulary", "bad"],
         "mask vocabulary spec"),
    ]:
        bad = runner.invoke(app, ["serve", *args, "--dry-run"])
        assert bad.exit_code == 2, bad.output
        flat = " ".join(bad.output.replace("│", " ").split())  # rich wraps the message in a box
        assert message in flat and "Traceback" not in bad.output

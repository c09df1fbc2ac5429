"""Streaming answers: text as it is generated, each mask as soon as its end token arrives.

``model.generate`` runs in a worker thread and hands every new token to a queue (a transformers
streamer). The caller's thread feeds the tokens to the incremental mask-word parser; when a span
closes, its mask is decoded right away and yielded, before the rest of the answer exists. The
last event holds the full :class:`~masktok.mllm.results.ChatResult` (masks already decoded are
reused, not decoded again).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from queue import Queue
from typing import TYPE_CHECKING

import numpy as np
import torch
from transformers.generation.streamers import BaseStreamer

from masktok.mllm.results import ChatResult
from masktok.words import MaskSpan, StreamingMaskParser

if TYPE_CHECKING:  # pragma: no cover
    from masktok.mllm.chat import GenerationSettings, MaskChat
    from masktok.mllm.conversation import Conversation


@dataclass(frozen=True)
class TextChunk:
    """New answer text (special tokens dropped, mask words kept)."""

    text: str


@dataclass(frozen=True)
class MaskReady:
    """A mask span just closed. ``mask`` is (H, W) bool, or None when the span is not decodable
    (see ``span.status``). ``index`` counts spans from 0 in answer order."""

    index: int
    span: MaskSpan
    mask: np.ndarray | None


@dataclass(frozen=True)
class AnswerDone:
    """The finished answer."""

    result: ChatResult


StreamEvent = TextChunk | MaskReady | AnswerDone


class TokenQueue(BaseStreamer):
    """A transformers streamer that queues every generated token id (batch size 1)."""

    def __init__(self) -> None:
        self.queue: Queue[list[int] | None] = Queue()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # generate first hands over the prompt
            self._prompt_seen = True
            return
        if value.dim() > 1 and value.shape[0] > 1:
            raise ValueError("streaming: only one conversation at a time can be streamed")
        self.queue.put([int(v) for v in value.reshape(-1).tolist()])

    def end(self) -> None:
        self.queue.put(None)


def stream_answer(chat: "MaskChat", conversation: "Conversation",
                  settings: "GenerationSettings") -> Iterator[StreamEvent]:
    """Generate the answer to ``conversation``'s last user turn, yielding events as they come."""
    inputs = chat.model_inputs([conversation])
    streamer = TokenQueue()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with torch.no_grad():
                chat.model.generate(**chat.generation_kwargs(inputs, settings), streamer=streamer)
        except BaseException as error:  # handed to the caller's thread below
            failure.append(error)
            streamer.end()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    parser = StreamingMaskParser(chat.vocab, token_ids=chat.mask_ids, lenient=settings.lenient)
    stop = set(chat.eos_ids)
    generated: list[int] = []
    decoded: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}
    printed = 0
    finished = False
    count = 0

    def ready(span: MaskSpan) -> MaskReady:
        nonlocal count
        mask = chat.decode_spans(conversation, [span], settings)[0]
        if mask is not None:
            decoded[(span.start, tuple(span.codes))] = mask
        count += 1
        return MaskReady(count - 1, span, mask)
    while True:
        tokens = streamer.queue.get()
        if tokens is None:
            break
        for token in tokens:
            if finished or token in stop or token == chat.pad_id:
                finished = finished or token in stop
                continue
            generated.append(token)
            for span in parser.feed([token]):
                yield ready(span)
        text = chat.tokenizer.decode(generated, skip_special_tokens=True,
                                     clean_up_tokenization_spaces=False)
        if len(text) > printed and not text.endswith("\ufffd"):
            yield TextChunk(text[printed:])
            printed = len(text)
    worker.join()
    if failure:
        raise failure[0]
    for span in parser.close():  # a span still open when the answer ended
        yield ready(span)
    yield AnswerDone(chat.finish(conversation, generated, settings, decoded))

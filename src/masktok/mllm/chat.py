"""``MaskChat``: a Qwen2.5-VL / Qwen3-VL model plus a mask tokenizer, masks in and out.

    chat = MaskChat(model, processor, mask_tokenizer)
    result = chat.ask(image, "Please segment the dog in this image.")
    result.text, result.decoded_masks, result.rles, result.boxes

Generation is batched (left padding); mask words are parsed from the generated token ids and
decoded with the mask tokenizer once per image for all of its masks (the tokenizer encodes the
image once per call). Grammar-constrained decoding (:mod:`masktok.mllm.constrained`) is on by
default, so spans come out well formed; malformed spans (unconstrained or forced) are parsed
leniently, reported through their status and never raise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from masktok.mllm.answer import AnswerLayout, layout_answer, trim_generated
from masktok.mllm.constrained import MaskGrammarLogitsProcessor
from masktok.mllm.conversation import Conversation, add_user_turn
from masktok.mllm.grounding import align_phrases, parse_scene_graph
from masktok.words.prompts import PHRASE_END, PHRASE_START
from masktok.mllm.results import ChatResult, MaskPrediction
from masktok.mllm.vocabulary import mask_token_ids, text_tokenizer
from masktok.masks.zoom import ZoomConfig
from masktok.words import MaskSpan


@dataclass(frozen=True)
class GenerationSettings:
    """How answers are generated and decoded.

    Attributes:
        max_new_tokens: generation budget per answer.
        do_sample, temperature, top_p: sampling (greedy by default).
        constrained: apply the mask-word grammar while generating.
        num_codes: exact number of codes per span (HiMTok's fixed token-length prompts).
        lenient: repair what the parser can (always reported); False raises ``MaskWordsError``
            on a malformed span.
        decode_repaired: also decode spans the lenient parser repaired (status not ``ok``).
        threshold: mask threshold handed to the tokenizer (None: its default).
        logits_processors: extra ``LogitsProcessor``s, applied before the grammar.
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

    def replace(self, **overrides: Any) -> "GenerationSettings":
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"settings: unknown generation settings {unknown}")
        return dataclasses.replace(self, **overrides)


def history_text(layout: AnswerLayout) -> str:
    """The answer as it re-enters the conversation: its text (mask words included) with the
    phrase markers put back; every other special token stays out (a stray image placeholder
    would break the next turn's image count)."""
    inserts = []  # (offset, order in the text, marker)
    for phrase in layout.phrases:
        inserts.append((phrase.char_start, len(inserts), PHRASE_START))
        if phrase.closed:
            inserts.append((phrase.char_end, len(inserts), PHRASE_END))
    text = layout.text
    for offset, _, marker in sorted(inserts, reverse=True):
        text = text[:offset] + marker + text[offset:]
    return text


class MaskChat:
    """Chat with a vision-language model that reads and writes mask words.

    Args:
        model: a ``Qwen2_5_VLForConditionalGeneration`` / ``Qwen3VLForConditionalGeneration``
            (or any image-text-to-text model whose processor follows the same API) whose
            tokenizer holds the mask vocabulary.
        processor: its processor.
        mask_tokenizer: a :class:`~masktok.tokenizers.base.MaskTokenizer` (SAMTok or HiMTok).
        settings: default generation settings (each call may override them).
        zoom: the zoom-in rule for small user regions; None disables crops.
    """

    def __init__(self, model: Any, processor: Any, mask_tokenizer: Any, *,
                 settings: GenerationSettings = GenerationSettings(),
                 zoom: ZoomConfig | None = ZoomConfig()) -> None:
        self.model = model
        self.processor = processor
        self.mask_tokenizer = mask_tokenizer
        self.vocab = mask_tokenizer.vocabulary
        self.tokenizer = text_tokenizer(processor)
        self.mask_ids = mask_token_ids(self.tokenizer, self.vocab)
        rows = model.get_input_embeddings().weight.shape[0]
        if max(self.mask_ids.values()) >= rows:
            raise ValueError(f"model: {rows} embedding rows but mask token ids reach "
                             f"{max(self.mask_ids.values())}; resize the model's embeddings")
        self.settings = settings
        self.zoom = zoom

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, path: str | Path, *, mask_tokenizer: Any = None,
                        device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                        mask_tokenizer_kwargs: dict[str, Any] | None = None,
                        **kwargs: Any) -> "MaskChat":
        """Load an official SAMTok VLM folder or a folder written by :meth:`save_pretrained`
        (see :func:`masktok.mllm.loading.load_chat_components`); ``kwargs`` go to the
        constructor (``settings``, ``zoom``)."""
        from masktok.mllm.loading import load_chat_components

        model, processor, tokenizer = load_chat_components(
            path, mask_tokenizer=mask_tokenizer, device=device, dtype=dtype,
            mask_tokenizer_kwargs=mask_tokenizer_kwargs)
        return cls(model, processor, tokenizer, **kwargs)

    def save_pretrained(self, path: str | Path) -> None:
        """Write the model, processor and mask tokenizer as one folder."""
        from masktok.mllm.loading import save_chat_components

        save_chat_components(path, self.model, self.processor, self.mask_tokenizer)

    # ------------------------------------------------------------------ conversations
    def start(self, image: Any, system: str | None = None) -> Conversation:
        """A new conversation about ``image``."""
        return Conversation.start(image, system)

    def add_user_turn(self, conversation: Conversation, prompt: str, masks: Any = None) -> None:
        """Append a user turn; ``masks`` (N, H, W) become words (plus zoom crops)."""
        add_user_turn(conversation, prompt, masks, mask_tokenizer=self.mask_tokenizer,
                      zoom=self.zoom)

    def ask(self, image: Any, prompt: str, masks: Any = None, **overrides: Any) -> ChatResult:
        """One question about one image → one answer."""
        conversation = self.start(image)
        self.add_user_turn(conversation, prompt, masks)
        return self.generate([conversation], **overrides)[0]

    def ask_batch(self, images: Sequence[Any], prompts: Sequence[str],
                  masks: Sequence[Any] | None = None, **overrides: Any) -> list[ChatResult]:
        """One question per image, answered in one batched ``generate``."""
        if len(images) != len(prompts) or (masks is not None and len(masks) != len(images)):
            raise ValueError(f"images / prompts / masks: lengths differ ({len(images)}, "
                             f"{len(prompts)}, {None if masks is None else len(masks)})")
        conversations = []
        for i, (image, prompt) in enumerate(zip(images, prompts)):
            conversation = self.start(image)
            self.add_user_turn(conversation, prompt, None if masks is None else masks[i])
            conversations.append(conversation)
        return self.generate(conversations, **overrides)

    def send(self, conversation: Conversation, prompt: str, masks: Any = None,
             **overrides: Any) -> ChatResult:
        """Multi-round: add a user turn to ``conversation`` and answer it."""
        self.add_user_turn(conversation, prompt, masks)
        return self.generate([conversation], **overrides)[0]

    # ------------------------------------------------------------------ generation
    def model_inputs(self, conversations: Sequence[Conversation]) -> dict[str, torch.Tensor]:
        """Chat-template texts and images of ``conversations`` → left-padded model inputs."""
        for i, conversation in enumerate(conversations):
            if not conversation.awaiting_answer:
                raise ValueError(f"conversations[{i}]: the last message is not a user turn")
        texts = [self.processor.apply_chat_template(c.messages, tokenize=False,
                                                    add_generation_prompt=True)
                 for c in conversations]
        images = [image for c in conversations for image in c.images]
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            inputs = self.processor(text=texts, images=images or None, padding=True,
                                    return_tensors="pt")
        finally:
            self.tokenizer.padding_side = side
        device = self.model.device
        inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return inputs

    def grammar(self, settings: GenerationSettings, max_length: int | None) -> LogitsProcessorList:
        """The logits processors for ``settings``: its extra ones, then the grammar (if on)."""
        processors = LogitsProcessorList(settings.logits_processors)
        if settings.constrained:
            processors.append(MaskGrammarLogitsProcessor(
                self.vocab, self.mask_ids, num_codes=settings.num_codes, max_length=max_length))
        return processors

    def generation_kwargs(self, inputs: dict[str, torch.Tensor],
                          settings: GenerationSettings) -> dict[str, Any]:
        """Keyword arguments for ``model.generate``."""
        max_length = inputs["input_ids"].shape[1] + settings.max_new_tokens
        kwargs: dict[str, Any] = dict(inputs, max_new_tokens=settings.max_new_tokens,
                                      do_sample=settings.do_sample,
                                      logits_processor=self.grammar(settings, max_length),
                                      pad_token_id=self.pad_id)
        if settings.do_sample:
            if settings.temperature is not None:
                kwargs["temperature"] = settings.temperature
            if settings.top_p is not None:
                kwargs["top_p"] = settings.top_p
        return kwargs

    @property
    def pad_id(self) -> int | None:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.model.generation_config.pad_token_id

    @property
    def eos_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
        if self.tokenizer.eos_token_id is not None:
            eos.append(self.tokenizer.eos_token_id)
        return eos

    @torch.no_grad()
    def generate(self, conversations: Sequence[Conversation], **overrides: Any) -> list[ChatResult]:
        """Answer every conversation's last user turn in one batched ``generate``; each answer is
        appended to its conversation."""
        if not conversations:
            return []
        settings = self.settings.replace(**overrides)
        inputs = self.model_inputs(conversations)
        output = self.model.generate(**self.generation_kwargs(inputs, settings))
        generated = output[:, inputs["input_ids"].shape[1]:].tolist()
        return [self.finish(c, ids, settings) for c, ids in zip(conversations, generated)]

    def stream(self, conversation: Conversation, **overrides: Any) -> Iterator[Any]:
        """Answer ``conversation``'s last user turn, yielding text pieces and each mask as soon
        as its end token is generated (see :mod:`masktok.mllm.streaming`)."""
        from masktok.mllm.streaming import stream_answer

        yield from stream_answer(self, conversation, self.settings.replace(**overrides))

    # ------------------------------------------------------------------ answers
    def finish(self, conversation: Conversation, generated: Sequence[int],
               settings: GenerationSettings,
               decoded: dict[tuple[int, tuple[int, ...]], np.ndarray] | None = None) -> ChatResult:
        """Generated ids of one answer → :class:`ChatResult`; the answer joins the history.

        ``decoded`` holds masks already decoded (keyed by span start and codes), e.g. while
        streaming, so they are not decoded twice.
        """
        ids = trim_generated(generated, eos_ids=self.eos_ids, pad_id=self.pad_id)
        layout = layout_answer(ids, self.tokenizer, self.vocab, self.mask_ids,
                               lenient=settings.lenient)
        masks = self.decode_spans(conversation, [s.span for s in layout.spans], settings, decoded)
        result = self.build_result(conversation, layout, masks)
        conversation.add_answer(history_text(layout))
        return result

    def should_decode(self, span: MaskSpan, settings: GenerationSettings) -> bool:
        return span.ok or (settings.decode_repaired and span.decodable)

    def decode_spans(self, conversation: Conversation, spans: Sequence[MaskSpan],
                     settings: GenerationSettings,
                     decoded: dict[tuple[int, tuple[int, ...]], np.ndarray] | None = None,
                     ) -> list[np.ndarray | None]:
        """Masks (H, W) bool of ``spans`` on the conversation's image (None: not decoded).

        Spans are grouped by code length and each group is decoded in one tokenizer call; the
        image is encoded once per conversation when the tokenizer offers reusable embeddings
        (SAMTok's ``embed_image``), so later rounds and streamed masks skip the image encoder.
        """
        decoded = decoded or {}
        out: list[np.ndarray | None] = [None] * len(spans)
        groups: dict[int, list[int]] = {}
        for i, span in enumerate(spans):
            key = (span.start, tuple(span.codes))
            if key in decoded:
                out[i] = decoded[key]
            elif self.should_decode(span, settings) and len(span.codes) > 0:
                groups.setdefault(len(span.codes), []).append(i)
        for length, members in groups.items():
            codes = torch.tensor([list(spans[i].codes) for i in members], dtype=torch.long)
            masks = self.mask_tokenizer.decode(conversation.tokenizer_image(self.mask_tokenizer),
                                               codes, size=conversation.size,
                                               threshold=settings.threshold)
            masks = masks.detach().to("cpu").numpy().astype(bool)
            for i, mask in zip(members, masks):
                out[i] = mask
        return out

    def build_result(self, conversation: Conversation, layout: AnswerLayout,
                     masks: Sequence[np.ndarray | None]) -> ChatResult:
        phrases = align_phrases(layout)
        owner = {i: p.phrase for p in phrases for i in p.span_indices}
        predictions = [MaskPrediction(span=located.span,
                                      words=layout.text[located.char_start:located.char_end],
                                      char_start=located.char_start, char_end=located.char_end,
                                      mask=mask, phrase=owner.get(i))
                       for i, (located, mask) in enumerate(zip(layout.spans, masks))]
        return ChatResult(text=layout.text, token_ids=layout.token_ids, masks=predictions,
                          phrases=phrases, relations=parse_scene_graph(layout),
                          image_size=conversation.size)

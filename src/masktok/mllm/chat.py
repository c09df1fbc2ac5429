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

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessorList

from masktok.mllm.answer import AnswerLayout, layout_answer, trim_generated
from masktok.mllm.constrained import MaskGrammarLogitsProcessor
from masktok.mllm.generation_settings import GenerationSettings  # noqa: F401  (re-exported)
from masktok.mllm.conversation import Conversation, add_user_turn
from masktok.mllm.results import ChatResult, build_chat_result
from masktok.mllm.span_masks import decode_span_masks, should_decode
from masktok.words.prompts import PHRASE_END, PHRASE_START
from masktok.mllm.vocabulary import mask_token_ids, text_tokenizer
from masktok.masks.zoom import ZoomConfig
from masktok.tokenizers.refine.refined import RefinedTokenizer, with_refinement
from masktok.words import MaskSpan


REFINER_DIR = "refiner"  # a chat folder's SAM 2 refiner (masktok format), used with refine="sam2"
# Processors whose model flattens (images, tiles) before its vision tower (see _ragged_tile_inputs).
TILE_FLATTENING_PROCESSORS = ("PerceptionLMProcessor",)


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
                        refine: str | None = None, refiner: Any = None,
                        **kwargs: Any) -> "MaskChat":
        """Load any chat folder: an official SAMTok VLM folder (Qwen2.5-VL, Qwen3-VL,
        PerceptionLM), the official InternVL2.5-HiMTok folder, or a folder written by
        :meth:`save_pretrained` or the training recipes (see
        :func:`masktok.mllm.loading.load_chat_components`).

        ``mask_tokenizer``: a tokenizer object or path that replaces the folder's own (pairs any
        VLM with any tokenizer whose words it holds). The folder's recorded chat settings (e.g.
        the official soft decoding) become the defaults unless ``settings`` is given; ``kwargs``
        go to the constructor (``settings``, ``zoom``).

        ``refine="sam2"`` refines every decoded mask with a SAM 2 refiner (HiMTok's optional
        post-refinement): ``refiner`` (a :class:`~masktok.tokenizers.refine.SAMRefiner` or a
        path), by default the folder's ``refiner/``. ``refine=None`` (default): no refinement.
        """
        from masktok.mllm.loading import chat_settings, load_chat_components

        model, processor, tokenizer = load_chat_components(
            path, mask_tokenizer=mask_tokenizer, device=device, dtype=dtype,
            mask_tokenizer_kwargs=mask_tokenizer_kwargs)
        if refine is not None and refiner is None and (Path(path) / REFINER_DIR).is_dir():
            refiner = Path(path) / REFINER_DIR
        tokenizer = with_refinement(tokenizer, refine, refiner, device=device)
        if "settings" not in kwargs:
            recorded = chat_settings(path)
            if mask_tokenizer is None and recorded:
                kwargs["settings"] = GenerationSettings().replace(**recorded)
        return cls(model, processor, tokenizer, **kwargs)

    def save_pretrained(self, path: str | Path) -> None:
        """Write the model, processor and mask tokenizer as one folder."""
        from masktok.mllm.loading import save_chat_components

        recorded = {k: getattr(self.settings, k) for k in ("soft_decoding", "soft_renormalize")
                    if getattr(self.settings, k) != getattr(GenerationSettings(), k)}
        save_chat_components(path, self.model, self.processor, self.mask_tokenizer, settings=recorded)
        if isinstance(self.mask_tokenizer, RefinedTokenizer):
            self.mask_tokenizer.refiner.save_pretrained(Path(path) / REFINER_DIR)

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
            # The rendered template holds every special token (a BOS included where the model
            # has one): the tokenizer must not add its own again.
            if type(self.processor).__name__ in TILE_FLATTENING_PROCESSORS and len(images) > 1:
                inputs = self._ragged_tile_inputs(texts, images)
            else:
                inputs = self.processor(text=texts, images=images or None, padding=True,
                                        return_tensors="pt", add_special_tokens=False)
        finally:
            self.tokenizer.padding_side = side
        device = self.model.device
        inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return inputs

    def _ragged_tile_inputs(self, texts: list[str], images: list[Any]) -> dict[str, Any]:
        """Inputs when images may have different tile counts (a zoom crop beside its image):
        PerceptionLM's processor cannot stack those, but its model flattens images × tiles
        before the vision tower, so every tile goes into one row (1, Σ tiles, 3, H, W), in the
        order of the image placeholders."""
        inputs = self.processor(text=texts, images=images, padding=True, return_tensors=None,
                                add_special_tokens=False)
        tiles = [torch.as_tensor(np.asarray(t)) for t in inputs["pixel_values"]]
        out = {k: torch.as_tensor(v) for k, v in inputs.items() if k != "pixel_values"}
        out["pixel_values"] = torch.cat(tiles).unsqueeze(0)
        return out

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
        kwargs = self.generation_kwargs(inputs, settings)
        if settings.soft_decoding:
            self._check_soft_decoding()
            kwargs.update(output_logits=True, return_dict_in_generate=True)
        output = self.model.generate(**kwargs)
        sequences = output.sequences if settings.soft_decoding else output
        generated = sequences[:, inputs["input_ids"].shape[1]:].tolist()
        step_logits = torch.stack(output.logits, dim=1) if settings.soft_decoding else None
        return [self.finish(c, ids, settings, step_logits=None if step_logits is None else step_logits[i])
                for i, (c, ids) in enumerate(zip(conversations, generated))]

    def _check_soft_decoding(self) -> None:
        if not self.mask_tokenizer.soft_decoding:
            raise ValueError(f"settings.soft_decoding: {self.mask_tokenizer.display_name} has no soft decoding "
                             "(HiMTok has); turn it off")

    def stream(self, conversation: Conversation, **overrides: Any) -> Iterator[Any]:
        """Answer ``conversation``'s last user turn, yielding text pieces and each mask as soon
        as its end token is generated (see :mod:`masktok.mllm.streaming`). Masks are decoded
        from their codes: streaming with ``soft_decoding`` on is refused."""
        from masktok.mllm.streaming import stream_answer

        settings = self.settings.replace(**overrides)
        if settings.soft_decoding:
            raise ValueError("stream: masks are decoded as their codes arrive, without the logits soft "
                             "decoding needs; pass soft_decoding=False to stream, or use generate")
        yield from stream_answer(self, conversation, settings)

    # ------------------------------------------------------------------ answers
    def finish(self, conversation: Conversation, generated: Sequence[int],
               settings: GenerationSettings,
               decoded: dict[tuple[int, tuple[int, ...]], np.ndarray] | None = None, *,
               step_logits: torch.Tensor | None = None) -> ChatResult:
        """Generated ids of one answer → :class:`ChatResult`; the answer joins the history.

        ``decoded`` holds masks already decoded (keyed by span start and codes), e.g. while
        streaming, so they are not decoded twice. ``step_logits`` (steps, V): the raw logits of
        every generated position, for soft decoding.
        """
        ids = trim_generated(generated, eos_ids=self.eos_ids, pad_id=self.pad_id)
        layout = layout_answer(ids, self.tokenizer, self.vocab, self.mask_ids,
                               lenient=settings.lenient)
        spans = [s.span for s in layout.spans]
        if settings.soft_decoding:
            if step_logits is None:
                raise ValueError("settings.soft_decoding: the generation logits are needed")
            masks = self.decode_spans_soft(conversation, spans, settings, step_logits)
        else:
            masks = self.decode_spans(conversation, spans, settings, decoded)
        result = self.build_result(conversation, layout, masks)
        conversation.add_answer(history_text(layout))
        return result

    def should_decode(self, span: MaskSpan, settings: GenerationSettings) -> bool:
        return should_decode(span, decode_repaired=settings.decode_repaired)

    def decode_spans(self, conversation: Conversation, spans: Sequence[MaskSpan],
                     settings: GenerationSettings,
                     decoded: dict[tuple[int, tuple[int, ...]], np.ndarray] | None = None,
                     ) -> list[np.ndarray | None]:
        """Masks (H, W) bool of ``spans`` on the conversation's image (None: not decoded); see
        :func:`masktok.mllm.span_masks.decode_span_masks`."""
        return decode_span_masks(self.mask_tokenizer, conversation, spans,
                                 threshold=settings.threshold,
                                 decode_repaired=settings.decode_repaired, decoded=decoded,
                                 partial=settings.partial_codes)

    def code_token_ids(self) -> torch.Tensor:
        """(V_codes,) token id of every code, in code order (a single-level vocabulary)."""
        size = self.vocab.codebook_size
        return torch.tensor([self.mask_ids[self.vocab.code_token(0, c)] for c in range(size)], dtype=torch.long)

    def decode_spans_soft(self, conversation: Conversation, spans: Sequence[MaskSpan],
                          settings: GenerationSettings, step_logits: torch.Tensor) -> list[np.ndarray | None]:
        """Masks of ``spans`` from the code probabilities at their code positions:
        softmax(2 · logits) over the code ids only (HiMTok's LMM decoding, ``decode_prob``)."""
        code_ids = self.code_token_ids().to(step_logits.device)
        out: list[np.ndarray | None] = [None] * len(spans)
        for i, span in enumerate(spans):
            if not (self.should_decode(span, settings) and len(span.codes) > 0):
                continue
            positions = torch.arange(span.start + 1, span.start + 1 + len(span.codes))
            logits = step_logits[positions.to(step_logits.device)][:, code_ids]
            probs = self.mask_tokenizer.code_probs_from_logits(logits)[None]
            mask = self.mask_tokenizer.decode_soft(probs, image=conversation.image, size=conversation.size,
                                                   threshold=settings.threshold,
                                                   renormalize=settings.soft_renormalize)
            out[i] = mask[0].detach().to("cpu").numpy().astype(bool)
        return out

    def build_result(self, conversation: Conversation, layout: AnswerLayout,
                     masks: Sequence[np.ndarray | None]) -> ChatResult:
        return build_chat_result(layout, masks, image_size=conversation.size)

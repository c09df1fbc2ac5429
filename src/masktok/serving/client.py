"""``MaskClient``: masks in and out of a VLM served behind an OpenAI-compatible chat API.

    client = MaskClient("http://localhost:8000", "Qwen3-VL-8B-SAMTok", mask_tokenizer)
    result = client.ask(image, "Please segment the dog in this image.")
    result.text, result.decoded_masks, result.rles

The conversation is built as in ``MaskChat`` (the user's masks become words in the prompt, small
regions bring zoom-in crops), images travel as PNG data URLs, the answer's mask spans are parsed
from its text and decoded here with the local mask tokenizer (or, with ``decode=False``, only
their words and codes are returned). Many questions go out concurrently
(:meth:`MaskClient.ask_batch`). Against vLLM the mask-word grammar runs inside the engine
(:mod:`masktok.serving.vllm_grammar`); the client turns it on or off per request.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from masktok.masks.zoom import ZoomConfig
from masktok.mllm.chat import history_text
from masktok.mllm.conversation import Conversation, add_user_turn
from masktok.mllm.results import ChatResult, build_chat_result
from masktok.mllm.span_masks import decode_span_masks
from masktok.serving.answer_text import layout_text_answer
from masktok.serving.vllm_protocol import GRAMMAR_ARG, NUM_CODES_ARG
from masktok.tokenizers.base import MaskTokenizer
from masktok.words import MaskVocabulary


class ServerError(RuntimeError):
    """The server could not be reached, refused the request, or sent an answer that is not a
    chat completion."""


@dataclass(frozen=True)
class ServingOptions:
    """How questions are asked and answers read.

    Attributes:
        max_tokens: generation budget per answer.
        temperature, top_p, seed: sampling (greedy by default).
        grammar: ask the engine's mask-word grammar to keep spans well formed (vLLM with the
            masktok plugin: ``vllm_xargs.masktok_grammar``).
        num_codes: exactly this many codes per span (HiMTok's fixed-length prompts).
        vllm_extensions: send vLLM's request fields (``vllm_xargs`` for the grammar,
            ``skip_special_tokens=false`` so grounded phrases keep their markers); False sends
            the plain OpenAI request (the grammar options are then not sent).
        send_images: send the images; False asks a text-only model about the mask words alone
            (the image stays here for encoding and decoding masks).
        decode: decode masks locally; False returns words and codes only.
        lenient: repair malformed spans where possible (reported per span); False raises
            ``MaskWordsError``.
        decode_repaired: decode repaired spans too.
        threshold: mask threshold handed to the mask tokenizer (None: its default).
        logit_bias: token id → bias added by the server (OpenAI ``logit_bias``).
        extra_body: more request fields, merged in last.
    """

    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float | None = None
    seed: int | None = None
    grammar: bool = True
    num_codes: int | None = None
    vllm_extensions: bool = True
    send_images: bool = True
    decode: bool = True
    lenient: bool = True
    decode_repaired: bool = True
    threshold: float | None = None
    logit_bias: dict[int, float] | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)

    def replace(self, **overrides: Any) -> "ServingOptions":
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"options: unknown serving options {unknown}")
        return dataclasses.replace(self, **overrides)


def image_data_url(image: Any) -> str:
    """A PIL image as a ``data:image/png;base64,…`` URL."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def openai_messages(conversation: Conversation, *, send_images: bool) -> list[dict]:
    """The conversation's messages in the OpenAI chat format: image items become ``image_url``
    items (data URLs, in order) or are left out; text items stay."""
    images = iter(conversation.images)
    messages = []
    for message in conversation.messages:
        content = []
        for item in message["content"]:
            if item["type"] == "image":
                image = next(images)
                if send_images:
                    content.append({"type": "image_url",
                                    "image_url": {"url": image_data_url(image)}})
            else:
                content.append({"type": "text", "text": item["text"]})
        if not send_images and all(c["type"] == "text" for c in content):
            content = "".join(c["text"] for c in content)
        messages.append({"role": message["role"], "content": content})
    return messages


class MaskClient:
    """Ask a served mask-word VLM about images; masks in and out.

    Args:
        base_url: the server, e.g. ``http://localhost:8000`` (``/v1`` is added when missing).
        model: the served model name.
        tokenizer: the mask tokenizer (SAMTok / HiMTok) that turns masks into words and back,
            or just its :class:`~masktok.words.MaskVocabulary` to read words and codes without
            decoding (``decode=False``; user masks must then already be words in the prompt).
        options: default :class:`ServingOptions` (each call may override them).
        zoom: the zoom-in rule for small user regions (None: no crops; crops are images, so
            they are left out with ``send_images=False``).
        api_key: sent as a bearer token when given.
        timeout: seconds for one request.
        max_concurrency: requests in flight at once in :meth:`ask_batch`.
    """

    def __init__(self, base_url: str, model: str, tokenizer: Any, *,
                 options: ServingOptions = ServingOptions(), zoom: ZoomConfig | None = ZoomConfig(),
                 api_key: str | None = None, timeout: float = 600.0,
                 max_concurrency: int = 8) -> None:
        try:
            import httpx
        except ImportError:
            raise ImportError("MaskClient needs httpx: pip install 'masktok[serve]'") from None

        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url: expected an http(s) URL, got {base_url!r}")
        if not isinstance(model, str) or not model:
            raise ValueError(f"model: expected the served model's name, got {model!r}")
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) \
                or max_concurrency < 1:
            raise ValueError(f"max_concurrency: expected a positive int, got {max_concurrency!r}")
        if isinstance(tokenizer, MaskVocabulary):
            self.vocab, self.mask_tokenizer = tokenizer, None
        elif isinstance(tokenizer, MaskTokenizer):
            self.vocab, self.mask_tokenizer = tokenizer.vocabulary, tokenizer
        else:
            raise ValueError(f"tokenizer: expected a mask tokenizer (SAMTok / HiMTok) or a "
                             f"MaskVocabulary, got {type(tokenizer).__name__}")
        root = base_url.rstrip("/")
        self.base_url = root if root.endswith("/v1") else root + "/v1"
        self.model = model
        self.options = options
        self.zoom = zoom
        self.max_concurrency = max_concurrency
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout,
                                  limits=httpx.Limits(max_connections=max_concurrency))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "MaskClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ conversations
    def start(self, image: Any, system: str | None = None) -> Conversation:
        """A new conversation about ``image`` (PIL or (H, W, 3) uint8)."""
        return Conversation.start(image, system)

    def add_user_turn(self, conversation: Conversation, prompt: str, masks: Any = None, *,
                      send_images: bool = True) -> None:
        """Append a user turn; ``masks`` (N, H, W) become words (plus zoom crops when images
        are sent)."""
        if masks is not None and self.mask_tokenizer is None:
            raise ValueError("masks: turning masks into words needs a mask tokenizer; this client "
                             "was given only a vocabulary")
        add_user_turn(conversation, prompt, masks, mask_tokenizer=self.mask_tokenizer,
                      zoom=self.zoom if send_images else None)

    def ask(self, image: Any, prompt: str, masks: Any = None, **overrides: Any) -> ChatResult:
        """One question about one image → one answer."""
        return self.ask_batch([image], [prompt], None if masks is None else [masks],
                              **overrides)[0]

    def ask_batch(self, images: Sequence[Any], prompts: Sequence[str],
                  masks: Sequence[Any] | None = None, **overrides: Any) -> list[ChatResult]:
        """One question per image, sent ``max_concurrency`` at a time; answers in order."""
        if len(images) != len(prompts) or (masks is not None and len(masks) != len(images)):
            raise ValueError(f"images / prompts / masks: lengths differ ({len(images)}, "
                             f"{len(prompts)}, {None if masks is None else len(masks)})")
        options = self.options.replace(**overrides)
        conversations = []
        for i, (image, prompt) in enumerate(zip(images, prompts)):
            conversation = self.start(image)
            self.add_user_turn(conversation, prompt, None if masks is None else masks[i],
                               send_images=options.send_images)
            conversations.append(conversation)
        return self.generate(conversations, **overrides)

    def send(self, conversation: Conversation, prompt: str, masks: Any = None,
             **overrides: Any) -> ChatResult:
        """Multi-round: add a user turn to ``conversation`` and answer it."""
        options = self.options.replace(**overrides)
        self.add_user_turn(conversation, prompt, masks, send_images=options.send_images)
        return self.generate([conversation], **overrides)[0]

    # ------------------------------------------------------------------ requests
    def request_body(self, conversation: Conversation, options: ServingOptions) -> dict:
        """The chat-completion request for the conversation's last user turn."""
        if not conversation.awaiting_answer:
            raise ValueError("conversation: the last message is not a user turn")
        body: dict[str, Any] = {
            "model": self.model,
            "messages": openai_messages(conversation, send_images=options.send_images),
            "max_tokens": options.max_tokens, "temperature": options.temperature,
        }
        if options.top_p is not None:
            body["top_p"] = options.top_p
        if options.seed is not None:
            body["seed"] = options.seed
        if options.logit_bias:
            body["logit_bias"] = {str(int(k)): float(v) for k, v in options.logit_bias.items()}
        if options.vllm_extensions:
            xargs: dict[str, Any] = {GRAMMAR_ARG: int(options.grammar)}
            if options.num_codes is not None:
                xargs[NUM_CODES_ARG] = int(options.num_codes)
            body["vllm_xargs"] = xargs
            body["skip_special_tokens"] = False
        body.update(options.extra_body)
        return body

    def complete(self, body: dict) -> str:
        """POST one chat completion; the answer's text.

        Raises:
            ServerError: unreachable server, an error status, or a reply that is not a chat
                completion with one text answer.
        """
        import httpx

        url = f"{self.base_url}/chat/completions"
        try:
            response = self._http.post("/chat/completions", json=body)
        except httpx.TimeoutException as error:
            raise ServerError(f"{url}: no answer within the timeout ({error})") from None
        except httpx.TransportError as error:
            raise ServerError(f"cannot reach the server at {self.base_url} ({error}); is it "
                              f"running? (`masktok serve MODEL_DIR` starts one)") from None
        if response.status_code != 200:
            raise ServerError(f"{url}: HTTP {response.status_code}: {_error_message(response)}")
        try:
            payload = response.json()
        except ValueError:
            raise ServerError(f"{url}: the reply is not JSON: {response.text[:200]!r}") from None
        choices = payload.get("choices") if isinstance(payload, dict) else None
        if not isinstance(choices, list) or not choices:
            raise ServerError(f"{url}: the reply has no choices: {str(payload)[:200]}")
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise ServerError(f"{url}: the answer's content is not text: {str(content)[:200]}")
        return content

    def generate(self, conversations: Sequence[Conversation], **overrides: Any) -> list[ChatResult]:
        """Answer every conversation's last user turn (requests run concurrently); each answer
        is appended to its conversation."""
        options = self.options.replace(**overrides)
        if options.decode and self.mask_tokenizer is None:
            raise ValueError("decode: decoding masks needs a mask tokenizer; pass decode=False "
                             "to get words and codes only")
        bodies = [self.request_body(c, options) for c in conversations]
        if len(bodies) == 1:
            texts = [self.complete(bodies[0])]
        else:
            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(bodies))) as pool:
                texts = list(pool.map(self.complete, bodies))
        return [self.finish(c, text, options) for c, text in zip(conversations, texts)]

    def finish(self, conversation: Conversation, text: str, options: ServingOptions) -> ChatResult:
        """One answer's text → :class:`ChatResult` (span offsets count characters of the text);
        the answer joins the conversation."""
        layout = layout_text_answer(text, self.vocab, lenient=options.lenient)
        spans = [located.span for located in layout.spans]
        if options.decode:
            masks = decode_span_masks(self.mask_tokenizer, conversation, spans,
                                      threshold=options.threshold,
                                      decode_repaired=options.decode_repaired)
        else:
            masks = [None] * len(spans)
        result = build_chat_result(layout, masks, image_size=conversation.size)
        conversation.add_answer(history_text(layout))
        return result

    def served_models(self) -> list[str]:
        """The model names the server offers (``GET /v1/models``)."""
        import httpx

        try:
            response = self._http.get("/models")
        except httpx.TransportError as error:
            raise ServerError(f"cannot reach the server at {self.base_url} ({error}); is it "
                              f"running?") from None
        if response.status_code != 200:
            raise ServerError(f"{self.base_url}/models: HTTP {response.status_code}: "
                              f"{_error_message(response)}")
        try:
            return [entry["id"] for entry in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise ServerError(f"{self.base_url}/models: not a model list: "
                              f"{response.text[:200]!r}") from None


def _error_message(response: Any) -> str:
    """The server's error message (OpenAI ``{"error": {"message": …}}``) or the reply's text."""
    try:
        payload = response.json()
    except ValueError:
        return response.text[:300]
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(payload, dict) and payload.get("message"):
        return str(payload["message"])
    return str(payload)[:300]

"""SFT JSONL → training data for vision-language models (Qwen2.5-VL, Qwen3-VL, …).

The input is what ``masktok build-sft`` writes (:mod:`masktok.data.sft.writers`), one JSON object
per line::

    {"id": "res/123", "images": ["a.jpg"],
     "messages": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "…"}]},
                  {"role": "assistant", "content": [{"type": "text", "text": "<|mt_start|>…"}]}]}

String contents are accepted too; a conversation with images but no ``{"type": "image"}``
placeholder gets them before its first user text (TRL's convention). Relative image paths start
from ``image_root`` (default: the working directory, where the builders write paths "as built").

* :func:`load_sft_dataset` → a ``datasets.Dataset`` (``id``, ``messages``, ``images`` decoded to
  PIL on access) for :class:`AssistantTurnCollator` and TRL's ``SFTTrainer``;
* :func:`load_grpo_dataset` → ``prompt`` (every message before the last assistant turn),
  ``images`` and ``solution`` (the last assistant text: the ground truth of the rewards), the
  columns TRL's ``GRPOTrainer`` and :class:`masktok.train.vlm.rewards.TRLReward` read;
* :class:`AssistantTurnCollator` → batches whose labels cover every assistant turn (its
  end-of-turn token included) and nothing else, for any chat template whose rendering of a
  conversation prefix is a prefix of the whole rendering (Qwen's are).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

ROLES = ("system", "user", "assistant")
IGNORE_INDEX = -100
# Per-token tensors a processor may return beside input_ids (cut together when truncating).
PER_TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")


class ConversationFormatError(ValueError):
    """A JSONL line that is not a valid conversation; the message names the file and line."""


# ---------------------------------------------------------------------------------------------
# Reading and normalising


def _normalise_content(content: Any, where: str) -> list[dict[str, Any]]:
    """Content → a list of ``{"type": "image"|"text", "text": str|None}`` parts."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise ConversationFormatError(f"{where}: content must be a string or a list of parts, "
                                      f"got {type(content).__name__}")
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "image":
            parts.append({"type": "image", "text": None})
        elif kind == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        else:
            raise ConversationFormatError(f"{where}: content part {part!r} is neither "
                                          f"{{'type': 'image'}} nor {{'type': 'text', 'text': str}}")
    return parts


def message_text(message: dict[str, Any]) -> str:
    """The text of a (normalised or raw) message, its text parts joined."""
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(p["text"] for p in content if p.get("type") == "text" and p.get("text"))


def _resolve_image(path: Any, image_root: Path | None, where: str) -> str:
    if not isinstance(path, str) or not path:
        raise ConversationFormatError(f"{where}: image paths must be non-empty strings, got {path!r}")
    resolved = Path(path)
    if not resolved.is_absolute():
        resolved = (image_root or Path.cwd()) / resolved
    if not resolved.is_file():
        raise ConversationFormatError(
            f"{where}: image {path!r} not found at {resolved}"
            + ("" if Path(path).is_absolute() else " (relative paths start from image_root, "
               "else the working directory)"))
    return str(resolved.resolve())


def normalise_conversation(record: Any, where: str, image_root: str | Path | None = None
                           ) -> dict[str, Any]:
    """One JSONL object → ``{"id", "messages", "images"}`` with normalised parts and absolute,
    existing image paths.

    Raises:
        ConversationFormatError: missing keys, unknown roles, no assistant turn, placeholder
            count ≠ image count, or a missing image file.
    """
    if not isinstance(record, dict) or "messages" not in record:
        raise ConversationFormatError(f"{where}: expected an object with 'messages' (and 'images')")
    raw_images = record.get("images", [])
    if not isinstance(raw_images, list):
        raise ConversationFormatError(f"{where}: 'images' must be a list of paths")
    root = Path(image_root) if image_root is not None else None
    images = [_resolve_image(p, root, where) for p in raw_images]
    messages = []
    for i, message in enumerate(record["messages"]):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ConversationFormatError(f"{where}: message {i} needs a role in {ROLES}, got "
                                          f"{message!r:.80}")
        if "content" not in message:
            raise ConversationFormatError(f"{where}: message {i} has no content")
        messages.append({"role": message["role"],
                         "content": _normalise_content(message["content"], f"{where} message {i}")})
    if not any(m["role"] == "user" for m in messages):
        raise ConversationFormatError(f"{where}: the conversation has no user message")
    if not any(m["role"] == "assistant" for m in messages):
        raise ConversationFormatError(f"{where}: the conversation has no assistant message")
    placeholders = sum(p["type"] == "image" for m in messages for p in m["content"])
    if placeholders == 0 and images:
        first_user = next(m for m in messages if m["role"] == "user")
        first_user["content"] = [{"type": "image", "text": None} for _ in images] + first_user["content"]
    elif placeholders != len(images):
        raise ConversationFormatError(f"{where}: {placeholders} image placeholders but "
                                      f"{len(images)} images")
    sample_id = str(record.get("id", where))
    return {"id": sample_id, "messages": messages, "images": images}


def read_conversations(paths: Iterable[str | Path], *, image_root: str | Path | None = None,
                       max_samples: int | None = None) -> list[dict[str, Any]]:
    """Every conversation of the JSONL files, normalised (see :func:`normalise_conversation`)."""
    records: list[dict[str, Any]] = []
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("paths: expected at least one JSONL file")
    for path in paths:
        if not path.is_file():
            raise ValueError(f"{path}: SFT JSONL file not found")
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if max_samples is not None and len(records) >= max_samples:
                    return records
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ConversationFormatError(f"{where}: not JSON ({exc.msg})") from exc
                records.append(normalise_conversation(record, where, image_root))
    if not records:
        raise ValueError(f"{[str(p) for p in paths]}: no conversations")
    return records


def grpo_record(conversation: dict[str, Any]) -> dict[str, Any]:
    """A normalised conversation → ``{"id", "prompt", "images", "solution"}``: the last assistant
    turn is the ground truth, every message before it the prompt.

    Raises:
        ConversationFormatError: the conversation does not end with an assistant turn, or its
            prompt shows no image placeholder for some of its images.
    """
    messages = conversation["messages"]
    if messages[-1]["role"] != "assistant":
        raise ConversationFormatError(f"{conversation['id']}: the last message must be the "
                                      f"assistant's answer for GRPO")
    prompt = messages[:-1]
    shown = sum(p["type"] == "image" for m in prompt for p in m["content"])
    if shown != len(conversation["images"]):
        raise ConversationFormatError(f"{conversation['id']}: the prompt shows {shown} of "
                                      f"{len(conversation['images'])} images")
    return {"id": conversation["id"], "prompt": prompt, "images": conversation["images"],
            "solution": message_text(messages[-1])}


def _image_dataset(rows: list[dict[str, Any]]):
    import datasets

    dataset = datasets.Dataset.from_list(rows)
    return dataset.cast_column("images", datasets.List(datasets.Image()))


def load_sft_dataset(paths: Iterable[str | Path], *, image_root: str | Path | None = None,
                     max_samples: int | None = None):
    """SFT JSONL files → ``datasets.Dataset`` with ``id``, ``messages``, ``images`` (PIL)."""
    return _image_dataset(read_conversations(paths, image_root=image_root, max_samples=max_samples))


def load_grpo_dataset(paths: Iterable[str | Path], *, image_root: str | Path | None = None,
                      max_samples: int | None = None):
    """SFT JSONL files → ``datasets.Dataset`` with ``id``, ``prompt``, ``images`` (PIL),
    ``solution``."""
    conversations = read_conversations(paths, image_root=image_root, max_samples=max_samples)
    return _image_dataset([grpo_record(c) for c in conversations])


# ---------------------------------------------------------------------------------------------
# Collation


def with_images(messages: Sequence[dict[str, Any]], images: Sequence[Any]) -> list[dict[str, Any]]:
    """Messages whose image placeholders carry the images, in order (for the chat template and
    the processor)."""
    images = list(images)
    filled, used = [], 0
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            filled.append({"role": message["role"], "content": content})
            continue
        parts = []
        for part in content:
            if part["type"] == "image":
                if used >= len(images):
                    raise ValueError(f"messages: more image placeholders than the {len(images)} images")
                parts.append({"type": "image", "image": images[used]})
                used += 1
            else:
                parts.append({"type": "text", "text": part["text"]})
        filled.append({"role": message["role"], "content": parts})
    if used != len(images):
        raise ValueError(f"messages: {used} image placeholders but {len(images)} images")
    return filled


def assistant_char_spans(render, messages: Sequence[dict[str, Any]], text: str) -> list[tuple[int, int]]:
    """Character spans of the assistant turns in ``text`` (the rendered conversation), each from
    the first character after the assistant header to its end-of-turn marker inclusive.

    ``render(messages, add_generation_prompt)`` renders a conversation prefix with the chat
    template. Raises ValueError when the template does not render prefixes as prefixes.
    """
    spans = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(messages[:k], True)
        through = render(messages[: k + 1], False).rstrip()
        if not (text.startswith(before) and text.startswith(through) and len(through) > len(before)):
            raise ValueError(
                f"chat template: rendering the first {k} messages (+ generation prompt) and the "
                f"first {k + 1} messages do not give prefixes of the whole conversation; the "
                f"assistant turns cannot be located (use loss_on='all')")
        spans.append((len(before), len(through)))
    return spans


def _token_flags(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[bool]:
    flags = []
    for start, end in offsets:
        inside = any(s <= start and end <= e for s, e in spans)
        straddles = any(start < s < end or start < e < end for s, e in spans)
        if straddles:
            raise ValueError(f"tokenizer: a token (characters {start}–{end}) straddles an assistant "
                             f"turn boundary")
        flags.append(inside)
    return flags


def expand_flags(text_ids: Sequence[int], flags: Sequence[bool], model_ids: Sequence[int],
                 expanding_ids: set[int], wrapper_ids: frozenset[int] = frozenset()) -> list[bool]:
    """Carry per-token ``flags`` of the plain tokenization (``text_ids``) over to the processor's
    ids (``model_ids``), where each run of image/video placeholder ids (``expanding_ids``) has
    grown to the image's token count, possibly wrapped in ``wrapper_ids`` (InternVL's ``<img>``
    … ``</img>``). Placeholder and wrapper positions get False.

    Raises ValueError when the two tokenizations disagree anywhere else.
    """
    out: list[bool] = []
    i = j = 0
    while i < len(text_ids):
        token = text_ids[i]
        if token in expanding_ids:
            while i < len(text_ids) and text_ids[i] == token:
                i += 1
            start = j
            while j < len(model_ids) and model_ids[j] in wrapper_ids and model_ids[j] != token:
                j += 1
            if j >= len(model_ids) or model_ids[j] != token:
                raise ValueError("processor: image placeholders of the text were not found in its ids")
            while j < len(model_ids) and model_ids[j] == token:
                j += 1
            while j < len(model_ids) and model_ids[j] in wrapper_ids and model_ids[j] not in expanding_ids:
                j += 1
            out.extend([False] * (j - start))
            continue
        if j >= len(model_ids) or model_ids[j] != token:
            raise ValueError(f"processor: its ids differ from the tokenizer's at position {j}")
        out.append(bool(flags[i]))
        i += 1
        j += 1
    if j != len(model_ids):
        raise ValueError(f"processor: {len(model_ids) - j} ids more than the tokenized text")
    return out


@dataclass
class AssistantTurnCollator:
    """Examples ``{"messages", "images"}`` → a padded batch with labels.

    Call: a list of B examples → ``input_ids`` (B, L), ``attention_mask`` (B, L), ``labels``
    (B, L) (−100 outside the loss), plus the processor's image tensors (``pixel_values``
    (N_patches, D), ``image_grid_thw`` (N_images, 3), ``mm_token_type_ids`` (B, L), …).

    Args:
        processor: the model's processor (tokenizer + image processor + chat template).
        max_length: cut longer sequences at their end; a cut through image tokens raises.
        loss_on: ``"assistant"`` (every assistant turn with its end-of-turn token) or ``"all"``
            (every real token but image placeholders).
        pad_to_multiple_of: pad L up to a multiple of this.
    """

    processor: Any
    max_length: int | None = None
    loss_on: str = "assistant"
    pad_to_multiple_of: int | None = None

    def __post_init__(self) -> None:
        if self.loss_on not in ("assistant", "all"):
            raise ValueError(f"loss_on: expected 'assistant' or 'all', got {self.loss_on!r}")
        self.tokenizer = getattr(self.processor, "tokenizer", None)
        if self.tokenizer is None or not getattr(self.tokenizer, "is_fast", False):
            raise ValueError("processor: expected a processor holding a fast tokenizer (offsets "
                             "are needed to place the labels)")
        if self.tokenizer.pad_token_id is None:
            raise ValueError("processor: its tokenizer has no pad token")
        self.expanding_ids = set()
        for name in ("image_token", "video_token"):
            token = getattr(self.processor, name, None)
            if token is not None:
                self.expanding_ids.add(int(self.tokenizer.convert_tokens_to_ids(token)))
        # Tokens a processor puts around an expanded placeholder (InternVL: <img> … </img>).
        self.wrapper_ids = frozenset(int(getattr(self.processor, name)) for name in
                                     ("start_image_token_id", "end_image_token_id")
                                     if getattr(self.processor, name, None) is not None)

    def _render(self, messages: Sequence[dict[str, Any]], add_generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(list(messages), tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def _flags(self, messages: list[dict[str, Any]], text: str) -> tuple[list[int], list[bool]]:
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(encoded["input_ids"])
        if self.loss_on == "all":
            return ids, [t not in self.expanding_ids for t in ids]
        spans = assistant_char_spans(self._render, messages, text)
        return ids, _token_flags(encoded["offset_mapping"], spans)

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("examples: empty batch")
        texts, flat_images, plain = [], [], []
        for example in examples:
            images = list(example.get("images") or [])
            messages = with_images(example["messages"], images)
            text = self._render(messages, False)
            texts.append(text)
            flat_images.extend(images)
            plain.append(self._flags(messages, text))
        batch = self.processor(text=texts, images=flat_images or None, padding=True,
                               padding_side="right", return_tensors="pt", add_special_tokens=False,
                               pad_to_multiple_of=self.pad_to_multiple_of)
        input_ids = batch["input_ids"]
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for row, (text_ids, flags) in enumerate(plain):
            length = int(batch["attention_mask"][row].sum())
            row_ids = input_ids[row, :length].tolist()
            expanded = expand_flags(text_ids, flags, row_ids, self.expanding_ids, self.wrapper_ids)
            keep = torch.tensor(expanded, dtype=torch.bool)
            labels[row, :length][keep] = input_ids[row, :length][keep]
        batch["labels"] = labels
        return self._truncate(batch)

    def _truncate(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        length = batch["input_ids"].shape[1]
        if self.max_length is None or length <= self.max_length:
            return batch
        cut = batch["input_ids"][:, self.max_length:]
        if self.expanding_ids and torch.isin(cut, torch.tensor(sorted(self.expanding_ids))).any():
            raise ValueError(f"max_length {self.max_length} would cut image tokens of a "
                             f"conversation ({length} tokens); raise max_length")
        shape = batch["input_ids"].shape
        for key in (*PER_TOKEN_KEYS, "labels"):
            value = batch.get(key)
            if isinstance(value, torch.Tensor) and value.shape == shape:
                batch[key] = value[:, : self.max_length]
        return batch

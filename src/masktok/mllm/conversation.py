"""A multi-round conversation about one image, in the chat-template message format.

User masks enter a turn as mask words: each ``<mask>`` placeholder of the prompt takes the next
mask's words (without placeholders, the words of every mask open the prompt, one line for all,
as in SAMTok's region prompts). A small region (box area / image area < 0.3) also brings its
zoom-in crop as an extra image, with a note giving the region's words on the crop. Answers are
kept verbatim, so masks of earlier rounds come back to the model as words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from masktok.masks import as_mask_stack
from masktok.words.prompts import MASK_PLACEHOLDER, MASK_SEPARATOR, ZOOM_IN_NOTE
from masktok.masks.zoom import ZoomConfig, needs_zoom, zoom_in


@dataclass
class Conversation:
    """Messages about ``image``; every mask in answers belongs to ``image``.

    Attributes:
        image: the image (RGB) the masks are drawn on.
        messages: chat-template messages (``role`` + ``content`` list of image/text items).
        images: every image in the order its placeholder appears in ``messages``.
        mask_words: words of every user mask given so far, in order.
        tokenizer_inputs: per mask tokenizer (keyed by ``id``), what it takes as the image, e.g.
            SAMTok's image embedding, computed once and reused by every encode and decode.
    """

    image: Image.Image
    messages: list[dict] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)
    mask_words: list[str] = field(default_factory=list)
    tokenizer_inputs: dict[int, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def start(cls, image: Image.Image | np.ndarray, system: str | None = None) -> "Conversation":
        """A new conversation about ``image`` (PIL or (H, W, 3) uint8), optionally with a system
        message."""
        image = as_rgb_image(image)
        conversation = cls(image=image)
        if system is not None:
            conversation.messages.append({"role": "system",
                                          "content": [{"type": "text", "text": system}]})
        return conversation

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the image."""
        return self.image.height, self.image.width

    @property
    def awaiting_answer(self) -> bool:
        return bool(self.messages) and self.messages[-1]["role"] == "user"

    def tokenizer_image(self, mask_tokenizer: Any) -> Any:
        """The image as ``mask_tokenizer`` takes it (its ``embed_image``: SAMTok's reusable
        embedding, the image itself for image-free tokenizers), computed on first use."""
        key = id(mask_tokenizer)
        if key not in self.tokenizer_inputs:
            self.tokenizer_inputs[key] = mask_tokenizer.embed_image(self.image)
        return self.tokenizer_inputs[key]

    def add_answer(self, text: str) -> None:
        """Append the assistant's answer (mask words included) to the history."""
        if not self.awaiting_answer:
            raise ValueError("conversation: an answer needs a user turn before it")
        self.messages.append({"role": "assistant", "content": [{"type": "text", "text": text}]})

    @property
    def is_new(self) -> bool:
        """True before the first user turn."""
        return not any(m["role"] == "user" for m in self.messages)


def as_rgb_image(image: Any) -> Image.Image:
    """A PIL RGB image from PIL or an (H, W, 3) uint8 array."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"image: expected a PIL image or an (H, W, 3) uint8 array, got "
                         f"{array.dtype} {array.shape}")
    return Image.fromarray(array)


def fill_mask_placeholders(prompt: str, words: list[str]) -> str:
    """Put each mask's words at the next ``<mask>`` of ``prompt`` (or in front, see module).

    Raises:
        ValueError: the number of placeholders is neither 0 nor ``len(words)``.
    """
    count = prompt.count(MASK_PLACEHOLDER)
    if count == 0:
        return (MASK_SEPARATOR.join(words) + "\n" + prompt) if words else prompt
    if count != len(words):
        raise ValueError(f"prompt: {count} {MASK_PLACEHOLDER!r} placeholders for {len(words)} "
                         f"masks; give one placeholder per mask or none")
    parts = prompt.split(MASK_PLACEHOLDER)
    return "".join(part + (words[i] if i < len(words) else "") for i, part in enumerate(parts))


def add_user_turn(conversation: Conversation, prompt: str, masks: Any = None, *,
                  mask_tokenizer: Any = None, zoom: ZoomConfig | None = ZoomConfig()) -> list[str]:
    """Append a user turn, encoding ``masks`` (N, H, W) into words with ``mask_tokenizer``.

    Args:
        zoom: the zoom-in rule; None never adds crops.

    Returns the words of the given masks (also appended to ``conversation.mask_words``).

    Raises:
        ValueError: a user turn is already waiting for its answer; masks whose size differs from
            the image; masks without a tokenizer; a placeholder count that does not match.
    """
    if conversation.awaiting_answer:
        raise ValueError("conversation: the last user turn has no answer yet")
    content: list[dict] = []
    if conversation.is_new:
        content.append({"type": "image"})
        conversation.images.append(conversation.image)
    words: list[str] = []
    notes: list[str] = []
    if masks is not None:
        stack = as_mask_stack(masks)
        if stack.shape[0] and stack.shape[1:] != conversation.size:
            raise ValueError(f"masks: size {stack.shape[1:]} differs from the image's "
                             f"(H, W) = {conversation.size}")
        if stack.shape[0]:
            if mask_tokenizer is None:
                raise ValueError("mask_tokenizer: needed to turn the user's masks into words")
            words = list(mask_tokenizer.encode_words(conversation.tokenizer_image(mask_tokenizer),
                                                     stack))
            for mask, mask_words in zip(stack, words):
                if zoom is None or not needs_zoom(mask, zoom):
                    continue
                crop = zoom_in(conversation.image, mask, zoom)
                crop_words = mask_tokenizer.encode_words(crop.image, crop.mask[None])[0]
                content.append({"type": "image"})
                conversation.images.append(crop.image)
                notes.append(ZOOM_IN_NOTE.format(image_number=len(conversation.images),
                                                 mask=mask_words, zoom_mask=crop_words))
    text = fill_mask_placeholders(prompt, words)
    if notes:
        if prompt.count(MASK_PLACEHOLDER) == 0:
            head, _, question = text.partition("\n")
            text = "\n".join([head, *notes, question])
        else:
            text = "\n".join([*notes, text])
    content.append({"type": "text", "text": text})
    conversation.messages.append({"role": "user", "content": content})
    conversation.mask_words.extend(words)
    return words

"""Image embeddings computed once and reused by every mask of the image, across calls.

The image encoder is about 99 % of SAMTok's cost per mask, so an image should go through it once
whatever the number of masks or of encode/decode calls. Two ways to reuse it:

- explicitly: ``emb = tok.embed_image(image)`` and pass ``emb`` wherever an image is expected;
- automatically: an :class:`ImageEmbeddingCache` passed as ``cache=`` to ``encode`` / ``decode``
  (and their batched forms) keeps the embeddings of recently seen images, keyed by a digest of
  their RGB pixels, so a later call with the same image skips the encoder.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from masktok.tokenizers.samtok.model import ImageFeatures


@dataclass
class ImageEmbedding:
    """One image's encoder output plus its original size.

    Attributes:
        features: :class:`ImageFeatures` with batch size 1 (on the tokenizer's device).
        size: (H, W) of the original image (decoded masks come back at this size).
        owner: ``id`` of the tokenizer that computed it (an embedding is only valid for its model).
    """

    features: ImageFeatures
    size: tuple[int, int]
    owner: int


def image_digest(rgb: np.ndarray) -> str:
    """Content key of an (H, W, 3) uint8 image: BLAKE2b of its shape and pixels."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(repr(rgb.shape).encode())
    digest.update(np.ascontiguousarray(rgb).data)
    return digest.hexdigest()


class ImageEmbeddingCache:
    """Least-recently-used store of :class:`ImageEmbedding`, keyed by :func:`image_digest`.

    Args:
        capacity: how many images to keep (each holds ~8 MB of bf16 features for a 1024² model).
    """

    def __init__(self, capacity: int = 16) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be ≥ 1, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[str, ImageEmbedding] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str, owner: int) -> ImageEmbedding | None:
        """The embedding stored under ``key`` for tokenizer ``owner``, or None (counted as a miss)."""
        item = self._items.get(key)
        if item is None or item.owner != owner:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item

    def put(self, key: str, embedding: ImageEmbedding) -> None:
        self._items[key] = embedding
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()

"""``RefinedTokenizer``: any mask tokenizer whose decoded masks pass through a :class:`SAMRefiner`.

    tokenizer = with_refinement(load_tokenizer("himtok.pth"), "sam2", "refiner/")
    masks = tokenizer.decode(image, codes)            # de-tokenized, then refined with the image

Encoding and the vocabulary are the wrapped tokenizer's; every decode path (``decode``,
``decode_words``, and soft decoding through :meth:`RefinedTokenizer.refine_probabilities`) first
decodes as the wrapped tokenizer does, as probabilities, then refines them with the image. The
wrapper is what ``refine="sam2"`` / ``--refine sam2`` add to chat, decode and eval; without it
nothing is refined.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from masktok.tokenizers.base import DecodedWords
from masktok.tokenizers.refine.refiner import REFINER_KINDS, SAMRefiner


class RefinedTokenizer:
    """A mask tokenizer + a refiner (see the module docstring); a
    :class:`~masktok.tokenizers.base.MaskTokenizer` itself, which reads the image (the refiner
    does) whatever the wrapped family.

    Attributes:
        base: the wrapped tokenizer (SAMTok, HiMTok, …).
        refiner: the :class:`SAMRefiner`.
    """

    needs_image = True  # the refiner reads the image

    def __init__(self, base: Any, refiner: SAMRefiner) -> None:
        if isinstance(base, RefinedTokenizer):
            raise ValueError("tokenizer: already refined")
        self.base = base
        self.refiner = refiner

    # The wrapped tokenizer's family, words, encoding and files ---------------------------------
    @property
    def family(self) -> str:
        return self.base.family

    @property
    def display_name(self) -> str:
        return f"{self.base.display_name} + SAM 2 refiner"

    @property
    def soft_decoding(self) -> bool:
        return self.base.soft_decoding

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    @property
    def vocabulary(self) -> Any:
        return self.base.vocabulary

    def save_pretrained(self, path: str | Path, *, layout: str = "masktok") -> None:
        """The wrapped tokenizer's files (the refiner is saved on its own)."""
        self.base.save_pretrained(path, layout=layout)

    def embed_image(self, image: Any, **options: Any) -> Any:
        """The image itself: the refiner needs the pixels, never a cached embedding."""
        return image

    def capture_image_encoder(self, batch_sizes: Sequence[int] = (1,)) -> None:
        self.base.capture_image_encoder(batch_sizes)

    def encode(self, image: Any, masks: Any, **kwargs: Any) -> torch.Tensor:
        return self.base.encode(image, masks, **kwargs)

    def encode_batch(self, images: Sequence[Any], masks: Sequence[Any], **kwargs: Any) -> list[torch.Tensor]:
        return self.base.encode_batch(images, masks, **kwargs)

    def encode_stream(self, pairs: Iterable[tuple[Any, Any]], **kwargs: Any) -> Iterator[torch.Tensor]:
        return self.base.encode_stream(pairs, **kwargs)

    def encode_words(self, image: Any, masks: Any, **kwargs: Any) -> list[str | None]:
        return self.base.encode_words(image, masks, **kwargs)

    def code_probs_from_logits(self, logits: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
        return self.base.code_probs_from_logits(logits, scale)

    # Refined decoding --------------------------------------------------------------------------
    @staticmethod
    def _check_image(image: Any) -> None:
        if image is None:
            raise ValueError("image: refinement needs the image the masks belong to")

    def refine_probabilities(self, image: Any, probs: torch.Tensor, size: tuple[int, int] | None = None,
                             return_logits: bool = False) -> torch.Tensor:
        """Probabilities (N, h, w) of ``image``'s masks → refined masks (N, H, W)."""
        self._check_image(image)
        return self.refiner.refine(image, probs, size=size, return_logits=return_logits)

    def decode(self, image: Any, codes: Any, *, size: tuple[int, int] | None = None,
               threshold: float | None = None, return_logits: bool = False, **kwargs: Any) -> torch.Tensor:
        """codes → the wrapped tokenizer's mask probabilities → refined masks (N, H, W) (logit > 0,
        or the refined logits). ``threshold`` is not used: the refiner decides."""
        del threshold
        self._check_image(image)
        logits = self.base.decode(image, codes, size=size, return_logits=True, **kwargs)
        return self.refine_probabilities(image, torch.sigmoid(logits.float()), tuple(logits.shape[-2:]),
                                         return_logits=return_logits)

    def decode_batch(self, images: Sequence[Any], codes: Sequence[Any], *,
                     sizes: Sequence[tuple[int, int] | None] | None = None, threshold: float | None = None,
                     return_logits: bool = False, lengths: Sequence[Any] | None = None, batch_size: int = 8,
                     **kwargs: Any) -> list[torch.Tensor]:
        """:meth:`decode` per image (each image is refined on its own)."""
        del batch_size
        if len(images) != len(codes):
            raise ValueError(f"got {len(images)} images but {len(codes)} code tensors")
        return [self.decode(image, c, size=None if sizes is None else sizes[i], threshold=threshold,
                            return_logits=return_logits, lengths=None if lengths is None else lengths[i], **kwargs)
                for i, (image, c) in enumerate(zip(images, codes))]

    def decode_soft(self, code_probs: torch.Tensor, *, image: Any = None, size: tuple[int, int] | None = None,
                    threshold: float | None = None, return_logits: bool = False, **kwargs: Any) -> torch.Tensor:
        """Soft decoding (as the wrapped tokenizer's) of ``image``'s masks, then refinement."""
        del threshold
        self._check_image(image)
        logits = self.base.decode_soft(code_probs, image=image, size=size, return_logits=True, **kwargs)
        return self.refine_probabilities(image, torch.sigmoid(logits.float()), tuple(logits.shape[-2:]),
                                         return_logits=return_logits)

    def decode_words(self, image: Any, text: str, *, size: tuple[int, int] | None = None,
                     lenient: bool = False, **kwargs: Any) -> DecodedWords:
        """Every decodable span of ``text`` → refined masks, with the wrapped tokenizer's report."""
        self._check_image(image)
        plain = self.base.decode_words(image, text, size=size, lenient=lenient, **kwargs)
        if not plain.decoded_span_indices:
            return plain
        decode_options = {k: v for k, v in kwargs.items() if k not in ("chunk_size", "max_spans")}
        out_size = tuple(plain.masks.shape[-2:])
        masks = torch.zeros_like(plain.masks)
        groups: dict[int, list[int]] = {}
        for row, index in enumerate(plain.decoded_span_indices):
            groups.setdefault(len(plain.spans[index].codes), []).append(row)
        for _, rows in groups.items():
            codes = torch.tensor([list(plain.spans[plain.decoded_span_indices[r]].codes) for r in rows])
            masks[rows] = self.decode(image, codes, size=out_size, **decode_options).to(masks.device)
        return DecodedWords(masks=masks, spans=plain.spans, decoded_span_indices=plain.decoded_span_indices)


def with_refinement(tokenizer: Any, refine: str | None, refiner: Any = None, *,
                    device: str | torch.device = "cpu") -> Any:
    """``tokenizer`` refined by ``refiner`` (a :class:`SAMRefiner` or a path) when ``refine`` names
    a refiner kind; ``refine=None`` returns ``tokenizer`` unchanged (refinement off).

    Raises:
        ValueError: an unknown kind, or ``refine`` without a refiner.
    """
    if refine is None:
        return tokenizer
    if refine not in REFINER_KINDS:
        raise ValueError(f"refine: expected one of {REFINER_KINDS} or None, got {refine!r}")
    if refiner is None:
        raise ValueError(f"refine={refine!r} needs a refiner: pass refiner=PATH (a masktok refiner folder from "
                         "masktok.train.refiner, or a Meta sam2.1_hiera_*.pt)")
    if not isinstance(refiner, SAMRefiner):
        refiner = SAMRefiner.from_pretrained(refiner, device=device)
    return RefinedTokenizer(tokenizer, refiner)

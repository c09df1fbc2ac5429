"""The bundled sample images and masks as the demo's sample pickers see them.

Dropdown values are strings: ``"i"`` picks image i, ``"i/j"`` picks mask j of image i.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from masktok.demo.inputs import DemoInputError
from masktok.masks import write_mask_png
from masktok.samples import load_samples


class SampleCatalog:
    """The bundled samples (:func:`masktok.samples.load_samples`) with labels for pickers.

    Args:
        samples: ``(image, masks (N, H, W), metadata)`` triples; default: the bundled ones.
        folder: where mask PNGs for the mask picker are written (default: a new temporary
            folder, so the app can hand them to its file inputs).
    """

    def __init__(self, samples: list[tuple[Image.Image, np.ndarray, dict]] | None = None,
                 folder: str | Path | None = None) -> None:
        self.samples = load_samples() if samples is None else list(samples)
        if not self.samples:
            raise ValueError("samples: the catalog needs at least one sample")
        self.folder = Path(folder) if folder is not None else Path(
            tempfile.mkdtemp(prefix="masktok-demo-samples-"))
        self.folder.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.samples)

    def categories(self, index: int) -> list[str]:
        return list(self.samples[index][2].get("categories", []))

    def file(self, index: int) -> str:
        return str(self.samples[index][2].get("file", f"sample {index}"))

    def image_choices(self) -> list[tuple[str, str]]:
        """(label, value) per image, e.g. ("1 · person, motorcycle", "1")."""
        return [(f"{i} · {', '.join(self.categories(i)) or self.file(i)}", str(i))
                for i in range(len(self))]

    def mask_choices(self) -> list[tuple[str, str]]:
        """(label, value) per mask, e.g. ("1/0 · person", "1/0")."""
        choices = []
        for i, (_, masks, _) in enumerate(self.samples):
            names = self.categories(i)
            for j in range(masks.shape[0]):
                name = names[j] if j < len(names) else f"mask {j}"
                choices.append((f"{i}/{j} · {name}", f"{i}/{j}"))
        return choices

    def _index(self, value: Any) -> int:
        try:
            index = int(str(value))
        except ValueError:
            raise DemoInputError(f"sample: {value!r} is not a sample number") from None
        if not 0 <= index < len(self):
            raise DemoInputError(f"sample: {index} is not one of the {len(self)} samples")
        return index

    def parse_mask_value(self, value: Any) -> tuple[int, int]:
        """``"i/j"`` → (image i, mask j), checked."""
        image_part, sep, mask_part = str(value).partition("/")
        if not sep:
            raise DemoInputError(f"sample mask: {value!r} is not of the form image/mask")
        index = self._index(image_part)
        count = self.samples[index][1].shape[0]
        try:
            mask_index = int(mask_part)
        except ValueError:
            raise DemoInputError(f"sample mask: {value!r} is not of the form image/mask") from None
        if not 0 <= mask_index < count:
            raise DemoInputError(f"sample mask: image {index} has {count} masks, not {mask_index + 1}")
        return index, mask_index

    def image(self, value: Any) -> Image.Image:
        """The RGB image picked by ``value`` (``"i"``)."""
        return self.samples[self._index(value)][0]

    def masks(self, value: Any) -> np.ndarray:
        """Every mask (N, H, W) bool of the image picked by ``value``."""
        return self.samples[self._index(value)][1]

    def mask_png(self, value: Any) -> Path:
        """A binary PNG of mask ``"i/j"`` (written once into :attr:`folder`)."""
        index, mask_index = self.parse_mask_value(value)
        path = self.folder / f"{Path(self.file(index)).stem}_mask{mask_index}.png"
        if not path.is_file():
            write_mask_png(path, self.samples[index][1][mask_index])
        return path

    def example_answer(self, tokenizer: Any, value: Any) -> str:
        """A model-style answer naming each mask of image ``value`` with its words."""
        index = self._index(value)
        image, masks, _ = self.samples[index]
        words = tokenizer.encode_words(tokenizer.embed_image(image), masks)
        names = self.categories(index)
        parts = [f"the {names[j] if j < len(names) else 'object'} {w}" for j, w in enumerate(words)]
        return "I can see " + ", ".join(parts) + "."

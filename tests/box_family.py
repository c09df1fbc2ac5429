"""A third tokenizer family, for tests only: a mask becomes the 4 codes of its box on a grid.

It is written the way docs/architecture.md says a family is added: a subclass of
:class:`~masktok.tokenizers.tokenizer_base.MaskTokenizerBase` with its model, vocabulary, encode
and decode hooks and its file layout, registered with
:func:`~masktok.tokenizers.register_tokenizer_family`. Nothing in masktok knows about it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from safetensors.torch import load_file, save_file

from masktok.masks.tensors import as_mask_tensor
from masktok.tokenizers.tokenizer_base import MaskTokenizerBase
from masktok.words import MaskVocabulary

FAMILY = "boxtok"


class BoxModel(torch.nn.Module):
    """Holds the grid size (a buffer, so the weights file is not empty)."""

    def __init__(self, grid: int) -> None:
        super().__init__()
        self.register_buffer("grid", torch.tensor(grid))


class BoxTok(MaskTokenizerBase):
    """Masks (N, H, W) → codes (N, 4): the tight box's x1, y1, x2, y2 on a ``grid`` × ``grid`` lattice."""

    family = FAMILY
    display_name = "BoxTok"
    needs_image = False

    def __init__(self, *, model: BoxModel, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 mask_batch_size: int = 256) -> None:
        super().__init__(model=model, device=device, dtype=dtype, mask_batch_size=mask_batch_size)
        self.grid = int(model.grid)

    @classmethod
    def _build_model(cls, config: int) -> BoxModel:
        return BoxModel(config)

    @classmethod
    def _load(cls, path: Path, *, device: Any, dtype: Any, **init_options: Any) -> "BoxTok":
        folder = path if path.is_dir() else path.parent
        grid = json.loads((folder / "config.json").read_text())["grid"]
        model = BoxModel(grid)
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return cls(model=model, device=device, dtype=dtype, **init_options)

    def _save(self, folder: Path, layout: str) -> None:
        (folder / "config.json").write_text(json.dumps({"tokenizer_type": FAMILY, "grid": self.grid}))
        save_file({"grid": self.model.grid}, str(folder / "model.safetensors"))

    def _make_vocabulary(self) -> MaskVocabulary:
        return MaskVocabulary(FAMILY, codebook_size=self.grid, num_levels=1, max_codes=4, min_codes=4,
                              pad_digits=2)

    def _encode_pairs(self, pairs: Iterable[tuple[Any, Any]], *,
                      batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index, (_, masks) in enumerate(pairs):
            masks = as_mask_tensor(masks, f"masks[{index}]")
            present = masks.flatten(1).any(dim=1)
            height, width = masks.shape[1:]
            codes = torch.zeros(masks.shape[0], 4, dtype=torch.long)
            for row in torch.nonzero(present).flatten().tolist():
                ys, xs = torch.nonzero(masks[row], as_tuple=True)
                box = torch.stack([xs.min() / width, ys.min() / height, xs.max() / width, ys.max() / height])
                codes[row] = (box * self.grid).long().clamp(0, self.grid - 1)
            yield codes, present

    def _decode_pairs(self, images: Sequence[Any], codes: list[torch.Tensor], *, lengths: list[torch.Tensor],
                      sizes: Sequence[tuple[int, int] | None], threshold: float | None, return_logits: bool,
                      batch_size: int) -> list[torch.Tensor]:
        out = []
        for rows, size in zip(codes, sizes):
            if rows.shape[1] != 4 or ((rows < 0) | (rows >= self.grid)).any():
                raise ValueError(f"codes: a box needs 4 codes in [0, {self.grid})")
            height, width = size if size is not None else (self.grid, self.grid)
            ys = torch.arange(height)[None, :, None] * self.grid // height
            xs = torch.arange(width)[None, None, :] * self.grid // width
            x1, y1, x2, y2 = (rows[:, i, None, None] for i in range(4))
            masks = (xs >= x1) & (xs <= x2) & (ys >= y1) & (ys <= y2)
            out.append(torch.where(masks, 10.0, -10.0) if return_logits else masks)
        return out

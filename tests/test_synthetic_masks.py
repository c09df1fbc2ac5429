"""Procedural synthetic masks: shapes, determinism, kinds, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from masktok.data.mask_pools.synthetic import KINDS, SyntheticMaskConfig, generate_synthetic_masks


def test_shapes_dtype_and_never_empty():
    masks = generate_synthetic_masks(48, (40, 56), generator=torch.Generator().manual_seed(1))
    assert masks.shape == (48, 40, 56) and masks.dtype == torch.bool
    assert bool(masks.flatten(1).any(dim=1).all())
    # Not all the same shape, and not all full frames.
    assert len({m.sum().item() for m in masks}) > 30
    assert bool((masks.flatten(1).float().mean(1) < 0.9).all())


def test_same_generator_state_same_masks():
    a = generate_synthetic_masks(12, 32, generator=torch.Generator().manual_seed(7))
    b = generate_synthetic_masks(12, 32, generator=torch.Generator().manual_seed(7))
    c = generate_synthetic_masks(12, 32, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_alone(kind):
    cfg = SyntheticMaskConfig(kinds=(kind,), weights=(1.0,))
    masks, kinds = generate_synthetic_masks(16, 64, generator=torch.Generator().manual_seed(3), config=cfg,
                                            return_kinds=True)
    assert set(kinds) <= {kind, "ellipse"}
    assert bool(masks.flatten(1).any(dim=1).all())
    fill = masks.flatten(1).float().mean(1)
    if kind == "thin":  # strokes of a few pixels cover little of the frame
        assert float(fill.max()) < 0.25
    if kind == "holes":  # most masks have an interior hole: filling holes adds pixels
        grown = [ndimage.binary_fill_holes(m.numpy()).sum() > m.sum().item() for m in masks]
        assert sum(grown) >= len(grown) // 3
    if kind == "union":  # unions of independent shapes are often several components
        parts = [ndimage.label(m.numpy())[1] for m in masks]
        assert max(parts) >= 2


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="n must be"):
        generate_synthetic_masks(-1, 32)
    with pytest.raises(ValueError, match="size"):
        generate_synthetic_masks(2, (0, 32))
    with pytest.raises(ValueError, match="kinds"):
        SyntheticMaskConfig(kinds=("star",), weights=(1.0,))
    with pytest.raises(ValueError, match="weights"):
        SyntheticMaskConfig(kinds=("polygon",), weights=(1.0, 2.0))
    assert generate_synthetic_masks(0, 16).shape == (0, 16, 16)
    assert np.all(np.asarray(generate_synthetic_masks(3, 16).shape) == (3, 16, 16))

"""Training: the tokenizer trainer (both families), and recipes for the VLM stages.

``from masktok.train import HiMTokTrainConfig, SAMTokTrainConfig, TrainConfig, train_tokenizer`` —
imported lazily, so lightweight
modules of this package (e.g. ``masktok.train.vlm.rewards``) do not pull in the trainer.
"""

from __future__ import annotations

from typing import Any

_LAZY = {"TrainConfig": "tokenizer.config", "HiMTokTrainConfig": "tokenizer.config",
         "SAMTokTrainConfig": "tokenizer.config", "TrainResult": "tokenizer.trainer",
         "train_tokenizer": "tokenizer.trainer"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"masktok.train.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'masktok.train' has no attribute {name!r}")

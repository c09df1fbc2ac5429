"""What the demo runs: a mask tokenizer, optionally a chat model, and the sample catalog."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masktok.demo.sample_catalog import SampleCatalog


@dataclass
class DemoModels:
    """Everything the tabs need.

    Attributes:
        tokenizer: a :class:`~masktok.tokenizers.base.MaskTokenizer` (Tokenize and Decode tabs).
        chat: a :class:`~masktok.mllm.chat.MaskChat` for the Chat tab, or None (no VLM).
        samples: the sample pickers' catalog.
        tokenizer_source: where the tokenizer came from, for the header ("" to leave it out).
        chat_source: where the chat model came from, for the header.
    """

    tokenizer: Any
    chat: Any = None
    samples: SampleCatalog = field(default_factory=SampleCatalog)
    tokenizer_source: str = ""
    chat_source: str | None = None

    def __post_init__(self) -> None:
        if self.chat is not None and self.chat.vocab != self.tokenizer.vocabulary:
            raise ValueError(f"chat: its mask vocabulary ({self.chat.vocab.name}) differs from the "
                             f"demo tokenizer's ({self.tokenizer.vocabulary.name})")


def family_name(vocab: Any) -> str:
    """The display name of the tokenizer family whose words ``vocab`` spells ("SAMTok"), or the
    vocabulary's own name for a family that is not registered."""
    from masktok.tokenizers import tokenizer_families

    family = tokenizer_families().get(vocab.name)
    return family.load_class().display_name if family is not None else vocab.name


def describe_tokenizer(tokenizer: Any) -> str:
    """One line naming the tokenizer family and its words, e.g. "HiMTok · up to 32 codes per mask,
    coarse to fine (codebook 1024)"."""
    vocab = tokenizer.vocabulary
    if vocab.prefixes_are_words:
        count = f"up to {vocab.max_codes} codes per mask, coarse to fine"
    else:
        count = f"{vocab.max_codes} codes per mask"
    levels = f"{vocab.num_levels} residual levels, " if vocab.num_levels > 1 else ""
    return f"{tokenizer.display_name} · {count} ({levels}codebook {vocab.codebook_size})"


def load_default_tokenizer(device: str = "cpu") -> Any:
    """masktok's bundled default tokenizer (:func:`masktok.load_default`).

    Raises:
        ValueError: this installation does not ship it.
    """
    try:
        from masktok import load_default
    except ImportError as err:
        raise ValueError("this masktok installation has no bundled default tokenizer; pass "
                         "--tokenizer PATH (a tokenizer file or folder)") from err
    return load_default(device=device)


def load_demo_models(tokenizer: str | Path | None = None, model: str | Path | None = None,
                     device: str = "cpu", samples: SampleCatalog | None = None) -> DemoModels:
    """Load what ``masktok demo`` runs.

    Args:
        tokenizer: a tokenizer file or folder (:func:`masktok.tokenizers.load_tokenizer`); None:
            the chat folder's own tokenizer when ``model`` is given, else the bundled default.
        model: a chat folder (official SAMTok VLM or masktok-saved) for the Chat tab, or None.
        device: torch device for both.
        samples: the sample catalog (default: the bundled samples).

    Raises:
        ValueError / FileNotFoundError: a path that holds no tokenizer or chat model.
    """
    mask_tokenizer = None
    source = "bundled default"
    if tokenizer is not None:
        from masktok.tokenizers import load_tokenizer

        mask_tokenizer = load_tokenizer(tokenizer, device=device)
        source = str(tokenizer)
    chat = None
    if model is not None:
        from masktok.mllm.chat import MaskChat

        if not Path(model).is_dir():
            raise FileNotFoundError(f"--model: {model} is not a folder")
        chat = MaskChat.from_pretrained(model, mask_tokenizer=mask_tokenizer, device=device)
        if mask_tokenizer is None:
            mask_tokenizer = chat.mask_tokenizer
            source = f"{model} (the chat model's)"
    if mask_tokenizer is None:
        mask_tokenizer = load_default_tokenizer(device)
    return DemoModels(tokenizer=mask_tokenizer, chat=chat,
                      samples=samples if samples is not None else SampleCatalog(),
                      tokenizer_source=source, chat_source=None if model is None else str(model))

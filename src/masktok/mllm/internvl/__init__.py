"""The published InternVL2.5-HiMTok model (remote-code InternVL + InternLM2 + HiMTok in one
checkpoint) on transformers' native InternVL classes.

- :mod:`.keys`: the official state-dict names → native ``InternVLForConditionalGeneration`` names
  and the HiMTok tensors (``mask_decoder.*``);
- :mod:`.config`: the official ``config.json`` → ``InternVLConfig``;
- :mod:`.tokenizer`: InternLM2's SentencePiece tokenizer → a fast tokenizer with the same ids,
  mask words as non-special tokens, and the ``InternVLProcessor``;
- :mod:`.convert`: the whole folder, in memory (:func:`load_official_internvl`) or written to disk
  (:func:`convert_internvl_himtok`, ``masktok convert internvl-himtok SRC DST``).
"""

from masktok.mllm.internvl.convert import (
    ConversionError,
    convert_internvl_himtok,
    is_official_internvl,
    load_official_internvl,
)

__all__ = ["ConversionError", "convert_internvl_himtok", "is_official_internvl", "load_official_internvl"]

"""Mask tokenizers: SAMTok (image-conditioned, 2 words) and HiMTok (image-free, up to 32 words)."""

from masktok.tokenizers.registry import load_tokenizer, tokenizer_type  # noqa: E402,F401

"""Mask tokenizers: SAMTok (image-conditioned, 2 words) and HiMTok (image-free, up to 32 words)."""

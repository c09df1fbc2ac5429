"""Vector quantizers shared by the tokenizers: one algorithm per file.

- ``residual_vq``: residual VQ with EMA codebooks (SAMTok: 2 levels × 256 codes)
- ``vq``: L2-normalised (cosine) VQ with a SimVQ linear codebook projection (HiMTok)
- ``fsq``: finite scalar quantization (ablations)
"""

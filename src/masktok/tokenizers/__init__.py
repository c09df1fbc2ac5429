"""Mask tokenizers: SAMTok (image-conditioned, 2 words) and HiMTok (image-free, up to 32 words).

Every family follows :class:`~masktok.tokenizers.base.MaskTokenizer`; the shared part is
:class:`~masktok.tokenizers.tokenizer_base.MaskTokenizerBase`; :func:`load_tokenizer` opens any
registered family from a file, a folder or a hub repository id.
"""

from masktok.tokenizers.base import (  # noqa: F401
    ABSENT_CODE,
    EMPTY_MASK_POLICIES,
    DecodedWords,
    MaskTokenizer,
    check_empty_masks,
)
from masktok.tokenizers.registry import (  # noqa: F401
    load_tokenizer,
    register_tokenizer_family,
    tokenizer_class,
    tokenizer_families,
    tokenizer_type,
    unregister_tokenizer_family,
)

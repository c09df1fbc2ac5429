"""Mask vocabularies: which tokens spell a mask, and how a (position, code) pair becomes a token.

Two families share the start/end tokens and differ in how codes are spelt:

* **SAMTok** (residual VQ, ``depth`` levels × ``codebook_size`` codes): position ``p`` holds the
  level-``p`` code ``c`` and is written ``<|mt_{p * codebook_size + c:04d}|>`` (the official
  256 × 2 model: level 0 → ``<|mt_0000|>``…``<|mt_0255|>``, level 1 → ``<|mt_0256|>``…
  ``<|mt_0511|>``). A word holds exactly one code per level.
* **HiMTok** (1D, coarse to fine): every position draws from one codebook and code ``c`` is
  written ``<|mt_{c}|>`` without padding; a word holds 1…``max_codes`` (32) codes.

The integer inside a code token is its *token number*; :meth:`MaskVocabulary.split_number` maps
it back to (level, code).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

FAMILIES = ("samtok", "himtok")
CODE_TOKEN_PREFIX = "<|mt_"
CODE_TOKEN_SUFFIX = "|>"
MAX_NUMBER_DIGITS = 9  # longest digit run read as a code token (bounds the streaming look-ahead)


@dataclass(frozen=True)
class MaskVocabulary:
    """The mask words of one tokenizer.

    Attributes:
        name: ``"samtok"`` or ``"himtok"``; selects the spelling rule (see the module docstring).
        codebook_size: codes per level (SAMTok 256, HiMTok 1024).
        num_levels: SAMTok: the residual depth (2); HiMTok: 1.
        max_codes: most codes in one word (SAMTok: ``num_levels``; HiMTok: 32).
        start_token: opens a word.
        end_token: closes a word.
    """

    name: str
    codebook_size: int
    num_levels: int
    max_codes: int
    start_token: str = "<|mt_start|>"
    end_token: str = "<|mt_end|>"

    def __post_init__(self) -> None:
        if self.name not in FAMILIES:
            raise ValueError(f"MaskVocabulary.name: expected one of {FAMILIES}, got {self.name!r}")
        for field_name in ("codebook_size", "num_levels", "max_codes"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MaskVocabulary.{field_name}: expected a positive int, got {value!r}")
        if self.name == "samtok" and self.max_codes != self.num_levels:
            raise ValueError(f"MaskVocabulary: a samtok word holds one code per level, so max_codes "
                             f"must equal num_levels ({self.num_levels}), got {self.max_codes}")
        if self.name == "himtok" and self.num_levels != 1:
            raise ValueError(f"MaskVocabulary: himtok has a single level, got num_levels={self.num_levels}")
        if self.num_code_tokens - 1 >= 10 ** MAX_NUMBER_DIGITS:
            raise ValueError(f"MaskVocabulary: {self.num_code_tokens} code tokens need more than "
                             f"{MAX_NUMBER_DIGITS} digits")
        for field_name in ("start_token", "end_token"):
            token = getattr(self, field_name)
            if (not isinstance(token, str) or len(token) < 2 or not token.startswith("<")
                    or not token.endswith(">") or "<" in token[1:] or ">" in token[:-1]):
                raise ValueError(f"MaskVocabulary.{field_name}: expected a token '<…>' with no other "
                                 f"'<' or '>', got {token!r}")
            digits = token[len(CODE_TOKEN_PREFIX):-len(CODE_TOKEN_SUFFIX)]
            if token.startswith(CODE_TOKEN_PREFIX) and token.endswith(CODE_TOKEN_SUFFIX) \
                    and digits.isascii() and digits.isdigit():
                raise ValueError(f"MaskVocabulary.{field_name}: {token!r} is spelt like a code token")
        if self.start_token == self.end_token:
            raise ValueError(f"MaskVocabulary: start and end tokens must differ, both are {self.start_token!r}")

    # ---- spelling ----------------------------------------------------------------------------
    @property
    def level_offset(self) -> int:
        """How far apart consecutive levels' token numbers are (SAMTok: codebook_size; HiMTok: 0)."""
        return self.codebook_size if self.name == "samtok" else 0

    @property
    def min_codes(self) -> int:
        """Fewest codes in a well-formed word (SAMTok: one per level; HiMTok: 1)."""
        return self.num_levels if self.name == "samtok" else 1

    @property
    def num_code_tokens(self) -> int:
        """How many distinct code tokens exist (SAMTok 256 × 2 = 512; HiMTok 1024)."""
        return self.codebook_size * self.num_levels

    @property
    def digits(self) -> int:
        """Zero-padded width of a token number (SAMTok: at least 4); 0 means unpadded (HiMTok)."""
        if self.name == "himtok":
            return 0
        return max(4, len(str(self.num_code_tokens - 1)))

    def expected_level(self, position: int) -> int:
        """The level a code at ``position`` must come from."""
        return position if self.name == "samtok" else 0

    def token_number(self, position: int, code: int) -> int:
        """The integer spelt inside the token of ``code`` at ``position``."""
        limit = self.max_codes
        if isinstance(position, bool) or not isinstance(position, int) or not 0 <= position < limit:
            raise ValueError(f"position: expected an int in [0, {limit}) for {self.name}, got {position!r}")
        if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code < self.codebook_size:
            raise ValueError(f"code: expected an int in [0, {self.codebook_size}) at position "
                             f"{position}, got {code!r}")
        return self.expected_level(position) * self.level_offset + code

    def number_token(self, number: int) -> str:
        """The code token spelling token number ``number``."""
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < self.num_code_tokens:
            raise ValueError(f"number: expected an int in [0, {self.num_code_tokens}), got {number!r}")
        return f"{CODE_TOKEN_PREFIX}{number:0{self.digits}d}{CODE_TOKEN_SUFFIX}"

    def code_token(self, position: int, code: int) -> str:
        """The token of ``code`` at ``position`` (SAMTok ``<|mt_{level*K+code:04d}|>``, HiMTok ``<|mt_{code}|>``)."""
        return self.number_token(self.token_number(position, code))

    def split_number(self, number: int) -> tuple[int, int]:
        """Token number → (level, code); ValueError when the number is outside the vocabulary."""
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < self.num_code_tokens:
            raise ValueError(f"token number {number!r} is outside {self.name}'s [0, {self.num_code_tokens})")
        return divmod(number, self.codebook_size)

    def is_canonical(self, digits: str) -> bool:
        """Whether ``digits`` (the text inside ``<|mt_…|>``) is spelt the way this vocabulary spells it."""
        if not (digits.isascii() and digits.isdigit()):
            return False
        if self.digits:
            return len(digits) == self.digits or (len(digits) > self.digits and digits[0] != "0")
        return digits == "0" or digits[0] != "0"

    def tokens(self) -> list[str]:
        """Every token: start, end, then each code token by token number (514 for SAMTok 256×2)."""
        return list(vocabulary_tokens(self))


@lru_cache(maxsize=32)
def vocabulary_tokens(vocab: MaskVocabulary) -> tuple[str, ...]:
    """:meth:`MaskVocabulary.tokens` as a tuple, computed once per vocabulary."""
    return (vocab.start_token, vocab.end_token) + tuple(vocab.number_token(n) for n in range(vocab.num_code_tokens))


def samtok_vocabulary(codebook_size: int = 256, depth: int = 2) -> MaskVocabulary:
    """SAMTok's words: ``depth`` levels of ``codebook_size`` codes (official: 256 × 2)."""
    return MaskVocabulary("samtok", codebook_size=codebook_size, num_levels=depth, max_codes=depth)


def himtok_vocabulary(codebook_size: int = 1024, max_codes: int = 32) -> MaskVocabulary:
    """HiMTok's words: 1…``max_codes`` codes from one codebook of ``codebook_size`` (official: 1024, 32)."""
    return MaskVocabulary("himtok", codebook_size=codebook_size, num_levels=1, max_codes=max_codes)


SAMTOK_VOCABULARY = samtok_vocabulary()
HIMTOK_VOCABULARY = himtok_vocabulary()


def get_vocabulary(name: str) -> MaskVocabulary:
    """The official vocabulary called ``name`` (``"samtok"`` or ``"himtok"``)."""
    if name == "samtok":
        return SAMTOK_VOCABULARY
    if name == "himtok":
        return HIMTOK_VOCABULARY
    raise ValueError(f"vocabulary name: expected one of {FAMILIES}, got {name!r}")

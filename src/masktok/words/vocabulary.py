"""Mask vocabularies: which tokens spell a mask, and how a (position, code) pair becomes a token.

A vocabulary is described by its fields alone (no rule depends on its name), so a new tokenizer
family brings its own :class:`MaskVocabulary` without touching the grammar. The two built-in
families share the start/end tokens and differ in how codes are spelt:

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

from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from typing import Any

CODE_TOKEN_PREFIX = "<|mt_"
CODE_TOKEN_SUFFIX = "|>"
MAX_NUMBER_DIGITS = 9  # longest digit run read as a code token (bounds the streaming look-ahead)


def _positive_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


@dataclass(frozen=True)
class MaskVocabulary:
    """The mask words of one tokenizer.

    Attributes:
        name: a label naming the vocabulary in messages and manifests (``"samtok"``,
            ``"himtok"``, …); no spelling rule depends on it.
        codebook_size: codes per level (SAMTok 256, HiMTok 1024).
        num_levels: levels of a residual code (SAMTok: the depth, 2); 1 for a flat sequence.
            With several levels, position ``p`` holds a level-``p`` code and its token number is
            offset by ``p * codebook_size``, so a word holds at most one code per level.
        max_codes: most codes in one word (SAMTok: ``num_levels``; HiMTok: 32).
        min_codes: fewest codes in a well-formed word; None means ``num_levels`` (one code per
            level; 1 for a flat sequence, where every prefix is a word).
        pad_digits: token numbers are zero-padded to at least this many digits (SAMTok 4,
            ``<|mt_0011|>``); 0: written without padding (HiMTok, ``<|mt_11|>``).
        start_token: opens a word.
        end_token: closes a word.
    """

    name: str
    codebook_size: int
    num_levels: int
    max_codes: int
    min_codes: int | None = None
    pad_digits: int = 0
    start_token: str = "<|mt_start|>"
    end_token: str = "<|mt_end|>"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"MaskVocabulary.name: expected a non-empty str, got {self.name!r}")
        if self.min_codes is None:
            object.__setattr__(self, "min_codes", self.num_levels if _positive_int(self.num_levels) else None)
        for field_name in ("codebook_size", "num_levels", "max_codes", "min_codes"):
            value = getattr(self, field_name)
            if not _positive_int(value):
                raise ValueError(f"MaskVocabulary.{field_name}: expected a positive int, got {value!r}")
        if isinstance(self.pad_digits, bool) or not isinstance(self.pad_digits, int) or self.pad_digits < 0:
            raise ValueError(f"MaskVocabulary.pad_digits: expected an int >= 0, got {self.pad_digits!r}")
        if self.num_levels > 1 and self.max_codes != self.num_levels:
            raise ValueError(f"MaskVocabulary: a word with {self.num_levels} levels holds one code per "
                             f"level, so max_codes must equal num_levels ({self.num_levels}), got {self.max_codes}")
        if self.min_codes > self.max_codes:
            raise ValueError(f"MaskVocabulary: min_codes ({self.min_codes}) exceeds max_codes ({self.max_codes})")
        if self.num_code_tokens - 1 >= 10 ** MAX_NUMBER_DIGITS or self.pad_digits > MAX_NUMBER_DIGITS:
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

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (:meth:`from_dict` rebuilds the vocabulary)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MaskVocabulary":
        """The vocabulary :meth:`to_dict` wrote; ``ValueError`` naming unknown or bad fields."""
        if not isinstance(data, dict):
            raise ValueError(f"vocabulary: expected a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"vocabulary: unknown fields {unknown}")
        try:
            return cls(**data)
        except TypeError as err:
            raise ValueError(f"vocabulary: {err}") from None

    # ---- spelling ----------------------------------------------------------------------------
    @property
    def level_offset(self) -> int:
        """How far apart consecutive levels' token numbers are (codebook_size; unused with one level)."""
        return self.codebook_size

    @property
    def prefixes_are_words(self) -> bool:
        """Whether a shorter prefix of a word is still a word (HiMTok's coarse-to-fine codes: True;
        SAMTok's one code per level: False)."""
        return self.min_codes < self.max_codes

    @property
    def num_code_tokens(self) -> int:
        """How many distinct code tokens exist (SAMTok 256 × 2 = 512; HiMTok 1024)."""
        return self.codebook_size * self.num_levels

    @property
    def digits(self) -> int:
        """Zero-padded width of a token number (SAMTok: at least 4); 0 means unpadded (HiMTok)."""
        if not self.pad_digits:
            return 0
        return max(self.pad_digits, len(str(self.num_code_tokens - 1)))

    def expected_level(self, position: int) -> int:
        """The level a code at ``position`` must come from (position ``p`` → level ``p`` with
        several levels; always 0 with one)."""
        return position if self.num_levels > 1 else 0

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
    return MaskVocabulary("samtok", codebook_size=codebook_size, num_levels=depth, max_codes=depth,
                          min_codes=depth, pad_digits=4)


def himtok_vocabulary(codebook_size: int = 1024, max_codes: int = 32) -> MaskVocabulary:
    """HiMTok's words: 1…``max_codes`` codes from one codebook of ``codebook_size`` (official: 1024, 32)."""
    return MaskVocabulary("himtok", codebook_size=codebook_size, num_levels=1, max_codes=max_codes,
                          min_codes=1, pad_digits=0)


SAMTOK_VOCABULARY = samtok_vocabulary()
HIMTOK_VOCABULARY = himtok_vocabulary()


OFFICIAL_VOCABULARIES = {"samtok": SAMTOK_VOCABULARY, "himtok": HIMTOK_VOCABULARY}


def get_vocabulary(name: str) -> MaskVocabulary:
    """The official vocabulary called ``name`` (``"samtok"`` or ``"himtok"``)."""
    if name not in OFFICIAL_VOCABULARIES:
        raise ValueError(f"vocabulary name: expected one of {tuple(OFFICIAL_VOCABULARIES)}, got {name!r}")
    return OFFICIAL_VOCABULARIES[name]



def resized_vocabulary(vocab: MaskVocabulary, *, codebook_size: int, max_codes: int) -> MaskVocabulary:
    """``vocab``'s spelling rules (one code per level or one flat codebook, fixed or prefix word
    lengths, padding) with another codebook size and word length: SAMTok 256 × 2 → 64 × 3,
    HiMTok 1024 × 32 → 1024 × 16. ``ValueError`` when the sizes are not positive ints."""
    per_level = vocab.num_levels == vocab.max_codes  # one code per level
    fixed_length = vocab.min_codes == vocab.max_codes
    return replace(vocab, codebook_size=codebook_size, max_codes=max_codes,
                   num_levels=max_codes if per_level else vocab.num_levels,
                   min_codes=max_codes if fixed_length else vocab.min_codes)

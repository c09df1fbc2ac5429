"""Phrase similarity for GCG's phrase–mask recall, pluggable.

A *text similarity* is any callable ``(phrases_a, phrases_b) -> (M, N) float array`` of
similarities in [-1, 1] (1 = same meaning). GCG recall counts a ground-truth phrase as found when
some predicted phrase has mask IoU ≥ 0.5 **and** similarity ≥ 0.5 with it.

* :func:`glamm_similarity` — what ``masktok eval gcg`` uses: GLaMM's exact score with
  ``bert-base-uncased`` when that model is in the local Hugging Face cache (or a folder is
  given), else :func:`lexical_similarity` — and then every report says loudly that the recall is
  lexical and not comparable with published numbers. Nothing is ever downloaded.
* :func:`lexical_similarity` — needs no model. Cosine similarity of bag-of-words
  vectors after light normalisation (lower case, punctuation dropped, articles "a/an/the"
  dropped, plural "-s"/"-es" stripped). "the two dogs" vs "two dog" → 1.0, "a red car" vs "a
  car" → 0.71, "a man" vs "a horse" → 0.0. It is stricter than GLaMM's BERT score for
  paraphrases ("a kid" vs "a child" → 0.0).
* :func:`embedding_similarity` — cosine of any sentence-embedding callable (e.g. a
  sentence-transformers model's ``encode``).
* :func:`mean_pooled_transformer_similarity` — GLaMM's exact score (``eval/gcg/evaluate.py``):
  a transformers encoder (GLaMM: ``bert-base-uncased``), sentence embedding = mean of the last
  hidden states over all tokens of the phrase encoded alone, cosine similarity. Loads from a
  local folder or the local Hugging Face cache only (``local_files_only``). GLaMM's cosine runs
  on float32 embeddings (scikit-learn); masktok's in float64 — the two can only disagree on a
  pair within ~1e-7 of the 0.5 threshold.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TextSimilarity = Callable[[Sequence[str], Sequence[str]], np.ndarray]

_ARTICLES = frozenset({"a", "an", "the"})
_WORD = re.compile(r"[a-z0-9]+")


def phrase_tokens(text: str) -> list[str]:
    """The normalised words :func:`lexical_similarity` compares."""
    out = []
    for word in _WORD.findall(text.lower()):
        if word in _ARTICLES:
            continue
        if len(word) > 4 and word.endswith(("ses", "xes", "ches", "shes")):
            word = word[:-2]
        elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        out.append(word)
    return out


def _check_phrases(phrases: Sequence[str], name: str) -> list[str]:
    if isinstance(phrases, str):
        raise ValueError(f"{name} must be a sequence of phrases, not one string")
    out = list(phrases)
    for i, p in enumerate(out):
        if not isinstance(p, str):
            raise ValueError(f"{name}[{i}] must be a string, got {type(p).__name__}")
    return out


def lexical_similarity(phrases_a: Sequence[str], phrases_b: Sequence[str]) -> np.ndarray:
    """Bag-of-words cosine similarity → (M, N) float64 in [0, 1].

    Two phrases with no words left after normalisation score 1.0 with each other and 0.0 with
    any phrase that has words.
    """
    a = [Counter(phrase_tokens(p)) for p in _check_phrases(phrases_a, "phrases_a")]
    b = [Counter(phrase_tokens(p)) for p in _check_phrases(phrases_b, "phrases_b")]
    vocab = {w: i for i, w in enumerate(sorted({w for c in a + b for w in c}))}

    def matrix(bags: list[Counter]) -> np.ndarray:
        m = np.zeros((len(bags), len(vocab)), dtype=np.float64)
        for row, bag in enumerate(bags):
            for word, count in bag.items():
                m[row, vocab[word]] = count
        return m

    ma, mb = matrix(a), matrix(b)
    na, nb = np.linalg.norm(ma, axis=1), np.linalg.norm(mb, axis=1)
    sim = np.zeros((len(a), len(b)), dtype=np.float64)
    denom = na[:, None] * nb[None, :]
    np.divide(ma @ mb.T, denom, out=sim, where=denom > 0)
    sim[(na == 0)[:, None] & (nb == 0)[None, :]] = 1.0
    return sim


def cosine_matrix(emb_a: np.ndarray, emb_b: np.ndarray) -> np.ndarray:
    """Cosine similarity of rows: (M, D) × (N, D) → (M, N) float64 (0 for a zero vector)."""
    emb_a = np.asarray(emb_a, dtype=np.float64)
    emb_b = np.asarray(emb_b, dtype=np.float64)
    if emb_a.ndim != 2 or emb_b.ndim != 2 or emb_a.shape[1] != emb_b.shape[1]:
        raise ValueError(f"embeddings must be (M, D) and (N, D), got {emb_a.shape} and {emb_b.shape}")
    na = np.linalg.norm(emb_a, axis=1)
    nb = np.linalg.norm(emb_b, axis=1)
    out = np.zeros((emb_a.shape[0], emb_b.shape[0]), dtype=np.float64)
    denom = na[:, None] * nb[None, :]
    np.divide(emb_a @ emb_b.T, denom, out=out, where=denom > 0)
    return out


def embedding_similarity(encode: Callable[[list[str]], np.ndarray]) -> TextSimilarity:
    """Wrap a sentence-embedding callable (``list[str] -> (N, D)`` array or tensor) into a
    :data:`TextSimilarity` (cosine of the embeddings)."""

    def similarity(phrases_a: Sequence[str], phrases_b: Sequence[str]) -> np.ndarray:
        a = _check_phrases(phrases_a, "phrases_a")
        b = _check_phrases(phrases_b, "phrases_b")
        if not a or not b:
            return np.zeros((len(a), len(b)), dtype=np.float64)
        emb = encode(a + b)
        emb = np.asarray(emb.detach().cpu().float() if hasattr(emb, "detach") else emb)
        if emb.ndim != 2 or emb.shape[0] != len(a) + len(b):
            raise ValueError(f"the embedding callable returned shape {emb.shape} for "
                             f"{len(a) + len(b)} phrases; expected (N, D)")
        return cosine_matrix(emb[: len(a)], emb[len(a):])

    return similarity


def local_model_folder(model: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A model folder: ``model`` itself when it is a folder, else the snapshot of the model name
    ``model`` in the local Hugging Face cache. Nothing is downloaded and no server is asked
    (``OSError`` when it is not on this machine)."""
    path = Path(model)
    if path.is_dir():
        return path
    if isinstance(model, Path) or path.is_absolute() or str(model).startswith("."):
        raise FileNotFoundError(f"text model: {model} is not a local model folder")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(model), cache_dir=None if cache_dir is None else str(cache_dir),
                                  local_files_only=True))


def mean_pooled_transformer_similarity(model: str | Path, device: str = "cpu",
                                       cache_dir: str | Path | None = None) -> TextSimilarity:
    """GLaMM's phrase similarity with a transformers encoder: a local folder, or a model name
    found in the local Hugging Face cache (``cache_dir``, default the standard cache). Never
    downloads: a model that is not on this machine is an ``OSError`` naming it.

    Each phrase is tokenised alone (truncation at 512 tokens, special tokens kept), run through
    ``AutoModel``, and its embedding is the mean of the last hidden states over all its tokens.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = local_model_folder(model, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    encoder = AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval()

    @torch.no_grad()
    def encode(phrases: list[str]) -> np.ndarray:
        rows = []
        for phrase in phrases:
            inputs = tokenizer(phrase, return_tensors="pt", max_length=512, truncation=True).to(device)
            hidden = encoder(**inputs).last_hidden_state[0]
            rows.append(hidden.mean(dim=0).float().cpu().numpy())
        return np.stack(rows)

    return embedding_similarity(encode)


GLAMM_TEXT_MODEL = "bert-base-uncased"
LEXICAL = "lexical"


@dataclass(frozen=True)
class PhraseSimilarity:
    """A text similarity and what it is.

    Attributes:
        similarity: the callable (see :data:`TextSimilarity`).
        name: ``"bert-base-uncased"``, a model folder, or ``"lexical"``.
        warning: ``None`` when the similarity is a transformers encoder as GLaMM uses; otherwise
            the sentence every report opens with (the recall is lexical and not comparable
            with published numbers, and why).
    """

    similarity: TextSimilarity
    name: str
    warning: str | None = None


def lexical_warning(reason: str) -> str:
    """The headline of a GCG report whose recall used :func:`lexical_similarity`."""
    return (f"GCG recall uses the LEXICAL phrase similarity ({reason}); it is NOT comparable with "
            f"published GCG recall, which GLaMM computes with {GLAMM_TEXT_MODEL} embeddings")


def glamm_similarity(model: str | Path | None = None, device: str = "cpu",
                     cache_dir: str | Path | None = None) -> PhraseSimilarity:
    """The phrase similarity for GCG recall.

    Args:
        model: ``None`` — GLaMM's ``bert-base-uncased`` from the local Hugging Face cache, or the
            lexical similarity (with a warning) when it is not there; ``"lexical"`` — the lexical
            similarity (with a warning); a folder or a model name — that encoder, which must
            load (an explicit choice never falls back: ``ValueError`` naming it).
        cache_dir: the Hugging Face cache to look in (default: the standard one).
    """
    if model is None:
        try:
            folder = local_model_folder(GLAMM_TEXT_MODEL, cache_dir)
        except OSError:
            reason = f"{GLAMM_TEXT_MODEL} is not in the local Hugging Face cache"
            return PhraseSimilarity(lexical_similarity, LEXICAL, lexical_warning(reason))
        try:
            found = mean_pooled_transformer_similarity(folder, device)
        except (OSError, ValueError) as exc:
            reason = f"{GLAMM_TEXT_MODEL} in the cache did not load: {str(exc).splitlines()[0]}"
            return PhraseSimilarity(lexical_similarity, LEXICAL, lexical_warning(reason))
        return PhraseSimilarity(found, GLAMM_TEXT_MODEL)
    if str(model) == LEXICAL:
        return PhraseSimilarity(lexical_similarity, LEXICAL, lexical_warning("chosen explicitly"))
    try:
        chosen = mean_pooled_transformer_similarity(model, device, cache_dir)
    except OSError as exc:
        raise ValueError(f"text model {str(model)!r}: neither a model folder nor in the local "
                                f"Hugging Face cache ({str(exc).splitlines()[0]})") from None
    return PhraseSimilarity(chosen, str(model))


DEFAULT_TEXT_SIMILARITY: TextSimilarity = lexical_similarity

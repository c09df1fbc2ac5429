"""Phrase similarity for GCG's phrase–mask recall, pluggable.

A *text similarity* is any callable ``(phrases_a, phrases_b) -> (M, N) float array`` of
similarities in [-1, 1] (1 = same meaning). GCG recall counts a ground-truth phrase as found when
some predicted phrase has mask IoU ≥ 0.5 **and** similarity ≥ 0.5 with it.

* :func:`lexical_similarity` — the default; needs no model. Cosine similarity of bag-of-words
  vectors after light normalisation (lower case, punctuation dropped, articles "a/an/the"
  dropped, plural "-s"/"-es" stripped). "the two dogs" vs "two dog" → 1.0, "a red car" vs "a
  car" → 0.71, "a man" vs "a horse" → 0.0. It is stricter than GLaMM's BERT score for
  paraphrases ("a kid" vs "a child" → 0.0).
* :func:`embedding_similarity` — cosine of any sentence-embedding callable (e.g. a
  sentence-transformers model's ``encode``).
* :func:`mean_pooled_transformer_similarity` — GLaMM's exact score: a local transformers
  encoder (GLaMM uses ``bert-base-uncased``), sentence embedding = mean of the last hidden states
  over all tokens of the phrase encoded alone, cosine similarity. Only loads from a local folder.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
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


def mean_pooled_transformer_similarity(model_dir: str | Path, device: str = "cpu") -> TextSimilarity:
    """GLaMM's phrase similarity with a local transformers encoder folder (no download).

    Each phrase is tokenised alone (truncation at 512 tokens, special tokens kept), run through
    ``AutoModel``, and its embedding is the mean of the last hidden states over all its tokens.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = Path(model_dir)
    if not path.is_dir():
        raise ValueError(f"model_dir: {path} is not a local model folder")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()

    @torch.no_grad()
    def encode(phrases: list[str]) -> np.ndarray:
        rows = []
        for phrase in phrases:
            inputs = tokenizer(phrase, return_tensors="pt", max_length=512, truncation=True).to(device)
            hidden = model(**inputs).last_hidden_state[0]
            rows.append(hidden.mean(dim=0).float().cpu().numpy())
        return np.stack(rows)

    return embedding_similarity(encode)


DEFAULT_TEXT_SIMILARITY: TextSimilarity = lexical_similarity

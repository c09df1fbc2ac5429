"""Caption metrics (METEOR, CIDEr) through pycocoevalcap, as GLaMM's GCG evaluation uses them.

Both captions and references go through pycocoevalcap's PTB tokenizer (Stanford CoreNLP, Java),
then METEOR 1.5 (Java) and CIDEr-D's python scorer run on the tokenised text. CIDEr's document
frequencies come from the references of the evaluated set, as in COCOEvalCap.

Needs the ``eval`` extra (``pip install masktok[eval]``) and a Java runtime on ``PATH`` (Debian:
``apt-get install default-jre-headless``). When either is missing,
:func:`caption_metrics_unavailable` says why and :func:`caption_scores` raises
:class:`CaptionMetricsUnavailable` with that message, so callers can skip these two numbers
loudly instead of failing the whole evaluation.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

CAPTION_METRICS: tuple[str, ...] = ("METEOR", "CIDEr")


class CaptionMetricsUnavailable(RuntimeError):
    """pycocoevalcap or Java is missing; the message says which and how to install it."""


def caption_metrics_unavailable() -> str | None:
    """``None`` when METEOR/CIDEr can run here, else the reason they cannot."""
    if importlib.util.find_spec("pycocoevalcap") is None:
        return ("pycocoevalcap is not installed; install the eval extra "
                "(pip install 'masktok[eval]') to compute METEOR and CIDEr")
    if shutil.which("java") is None:
        return ("no 'java' on PATH; pycocoevalcap's PTB tokenizer and METEOR need a Java runtime "
                "(e.g. apt-get install default-jre-headless)")
    return None


def caption_scores(references: Mapping[Any, Sequence[str]], candidates: Mapping[Any, str],
                   metrics: Sequence[str] = CAPTION_METRICS) -> dict[str, float]:
    """Corpus-level caption scores.

    Args:
        references: image id → one or more reference captions.
        candidates: image id → the predicted caption (same ids as ``references``).
        metrics: any of ``"METEOR"``, ``"CIDEr"``.
    Returns:
        metric name → score (METEOR in [0, 1]; CIDEr is unbounded, ~0–10).
    """
    unknown = set(metrics) - set(CAPTION_METRICS)
    if unknown:
        raise ValueError(f"unknown caption metrics {sorted(unknown)}; choose from {CAPTION_METRICS}")
    if set(references) != set(candidates):
        raise ValueError("references and candidates must cover the same image ids "
                         f"({len(set(references) ^ set(candidates))} differ)")
    if not references:
        raise ValueError("caption metrics need at least one image")
    for key, refs in references.items():
        if isinstance(refs, str) or len(refs) == 0:
            raise ValueError(f"image {key!r}: references must be a non-empty list of captions")
    reason = caption_metrics_unavailable()
    if reason is not None:
        raise CaptionMetricsUnavailable(reason)

    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # pycocoevalcap keys must be hashable and sortable consistently; index by position.
    keys = list(references)
    # one tokenizer run (one Java start) for references and candidates together
    both = {("ref", i): [{"caption": c} for c in references[k]] for i, k in enumerate(keys)}
    both.update({("cand", i): [{"caption": candidates[k]}] for i, k in enumerate(keys)})
    tokens = PTBTokenizer().tokenize(both)
    gts = {i: tokens[("ref", i)] for i in range(len(keys))}
    res = {i: tokens[("cand", i)] for i in range(len(keys))}
    out: dict[str, float] = {}
    if "METEOR" in metrics:
        meteor = Meteor()  # a Java subprocess, stopped when the object is collected
        out["METEOR"] = float(meteor.compute_score(gts, res)[0])
        del meteor
    if "CIDEr" in metrics:
        out["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    return out

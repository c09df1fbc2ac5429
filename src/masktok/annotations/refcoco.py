"""The refer API's refs files (RefCOCO / RefCOCO+ / RefCOCOg ``refs(*).p``, gRefCOCO ``grefs(*).json``).

A refs file is a pickle of plain containers (read with a loader that refuses any class or
function) or the same list as JSON; both give the list of ref dicts, which
:func:`parse_ref_sentences` checks against the instances they point into and turns into one
:class:`RefSentence` per sentence (the SFT builders and the evaluation read refs through it).
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Container, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles lists, dicts, strings and numbers only; any class or function is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise ValueError(f"refusing to unpickle {module}.{name}: refs files hold plain data only")


def load_refs(path: str | Path) -> list[dict]:
    """A refer-API refs file (pickle or JSON list) → its list of ref dicts."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"refs file not found: {path}")
    if path.suffix in (".p", ".pkl", ".pickle"):
        with path.open("rb") as f:
            refs = _PlainUnpickler(f, encoding="utf-8").load()
    else:
        with path.open() as f:
            refs = json.load(f)
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise ValueError(f"{path}: expected a list of ref records")
    return refs


@dataclass(frozen=True)
class RefSentence:
    """One sentence of a ref and what it refers to.

    Attributes:
        key: the sentence id (``sent_id``), else ``"{ref_id}-{j}"``.
        ref_id: the ref's id (None when the file has none).
        image_id: the image it is about.
        sentence: its text (``sent``, else ``raw``), as the file spells it.
        ann_ids: the referred annotation ids, in file order; () for a no-target sentence.
    """

    key: str
    ref_id: Any
    image_id: Any
    sentence: str
    ann_ids: tuple[Any, ...]

    @property
    def no_target(self) -> bool:
        return not self.ann_ids


def parse_ref_sentences(refs: list[dict], source: str | Path, image_of: Mapping[Any, Any],
                        images: Container[Any], split: str | None = None,
                        generalized: bool | None = None) -> list[RefSentence]:
    """Ref records (:func:`load_refs`) → one :class:`RefSentence` per sentence, in file order.

    Args:
        source: the refs file, named in messages.
        image_of: annotation id → its image id (the instances the refs point into).
        images: the image ids the instances hold.
        split: keep refs of this split only (None: all).
        generalized: gRefCOCO semantics (``ann_id`` lists, ``no_target``, ``-1`` = none); None
            detects it from the records.

    Raises:
        ValueError: a ref without ``image_id``/``ann_id``/``sentences``, an unknown image or
            annotation id, an annotation of another image, a sentence without text, a
            no-target ref in a non-generalized file (or one that lists annotations), or no
            sentence at all.
    """
    if generalized is None:
        generalized = any(isinstance(r.get("ann_id"), list) or "no_target" in r for r in refs)
    out: list[RefSentence] = []
    for k, ref in enumerate(refs):
        where = f"{source}: ref #{k} (ref_id={ref.get('ref_id')})"
        if split is not None and ref.get("split") != split:
            continue
        for key in ("image_id", "ann_id", "sentences"):
            if key not in ref:
                raise ValueError(f"{where}: no {key!r}")
        if ref["image_id"] not in images:
            raise ValueError(f"{where}: image_id {ref['image_id']} is not in the instances")
        ann_ids = ref["ann_id"] if isinstance(ref["ann_id"], list) else [ref["ann_id"]]
        ann_ids = [a for a in ann_ids if a != -1]
        if generalized and ref.get("no_target", False):
            if ann_ids:
                raise ValueError(f"{where}: marked no_target but lists annotations {ann_ids}")
        elif not ann_ids:
            raise ValueError(f"{where}: refers to no annotation" + ("" if generalized else " (not a gRefCOCO file)"))
        for ann_id in ann_ids:
            if ann_id not in image_of:
                raise ValueError(f"{where}: ann_id {ann_id} is not in the instances")
            if image_of[ann_id] != ref["image_id"]:
                raise ValueError(f"{where}: ann_id {ann_id} belongs to image {image_of[ann_id]}")
        if not isinstance(ref["sentences"], list):
            raise ValueError(f"{where}: 'sentences' must be a list")
        for j, sent in enumerate(ref["sentences"]):
            text = sent.get("sent", sent.get("raw")) if isinstance(sent, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{where}: sentence #{j} has no text")
            key = str(sent.get("sent_id", f"{ref.get('ref_id', k)}-{j}"))
            out.append(RefSentence(key, ref.get("ref_id"), ref["image_id"], text, tuple(ann_ids)))
    if not out:
        raise ValueError(f"{source}: no sentence" + (f" in split {split!r}" if split else ""))
    return out

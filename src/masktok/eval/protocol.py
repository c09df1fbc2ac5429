"""The two scoring protocols every ``masktok eval`` benchmark offers.

* ``"reference"`` (the default) reproduces the published evaluation code of the benchmark
  exactly, including its edge cases (e.g. OpenPSG leaving images without a predicted triplet out
  of R@K, GLaMM's 0/0 IoU for two empty masks, InternVL's box regex that reads a box anywhere in
  the answer). Numbers are comparable with published tables.
* ``"strict"`` is masktok's variant where the reference resolves an edge case by accident: every
  sample counts, answers must follow the model's documented output grammar, duplicated masks
  cannot hit several ground-truth objects, one degenerate mask pair does not void an image's
  matching. Numbers can move either way and are *not* comparable with published tables.

``docs/eval.md`` lists, per benchmark, the reference file each protocol follows and every
deliberate difference.
"""

from __future__ import annotations

REFERENCE = "reference"
STRICT = "strict"
PROTOCOLS: tuple[str, ...] = (REFERENCE, STRICT)


def check_protocol(protocol: str) -> str:
    """``protocol`` when it is one of :data:`PROTOCOLS`, else ``ValueError``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    return protocol

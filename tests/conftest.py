"""Shared fixtures: the real data the tests read.

- ``test_data``: ``tests/data`` in the repository (COCO val2014 annotations and 11 redistributable
  photos, the panopticapi sample, the LMM-HiMTok refseg examples, the official checkpoints' key
  lists); always present.
- ``coco128_seg`` / ``voc_labelme``: GPL-3.0 datasets that cannot live in the repository, fetched by
  ``python scripts/fetch_test_data.py`` into ``tests/data/external``; also found in
  ``MASKTOK_SHARED_DATA`` or ``../shared/data``. The few tests that read them skip, naming the
  script, when neither holds them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = REPO_ROOT / "tests" / "data"
EXTERNAL_DATA = TEST_DATA / "external"
SHARED_DATA = Path(os.environ.get("MASKTOK_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
FETCH_HINT = "python scripts/fetch_test_data.py"


@pytest.fixture(scope="session")
def test_data() -> Path:
    """``tests/data``: the real data kept in the repository (see its README)."""
    return TEST_DATA


@pytest.fixture(scope="session")
def shared_specs() -> Path:
    """The official checkpoints' key lists."""
    return TEST_DATA / "specs"


def _external(name: str) -> Path:
    for root in (EXTERNAL_DATA, SHARED_DATA):
        if (root / name).is_dir():
            return root / name
    pytest.skip(f"{name} (GPL-3.0, not in the repository) not found in {EXTERNAL_DATA} or {SHARED_DATA}: "
                f"run `{FETCH_HINT}`")


@pytest.fixture(scope="session")
def coco128_seg() -> Path:
    """Ultralytics coco128-seg (128 COCO train2017 JPEGs + YOLO-seg labels), fetched."""
    return _external("coco128_seg")


@pytest.fixture(scope="session")
def voc_labelme() -> Path:
    """labelme's instance-segmentation example (3 VOC images, labelme JSON, VOC export), fetched."""
    return _external("voc_labelme")

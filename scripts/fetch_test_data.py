"""Download the GPL-3.0 test data that cannot live in the repository, from its public sources.

    python scripts/fetch_test_data.py            # → tests/data/external/{coco128_seg,voc_labelme}

Two small datasets are read by a few tests (the README's "Tests" section lists them) but are
licensed GPL-3.0, which does not fit masktok's Apache-2.0, so they are fetched instead of shipped:

- ``coco128_seg``: Ultralytics' coco128-seg (128 COCO train2017 JPEGs, YOLO-seg labels), from the
  Ultralytics assets release;
- ``voc_labelme``: the labelme instance-segmentation example (3 PASCAL VOC images, labelme JSON,
  and its VOC-format export), from the labelme v7.1.0 source archive.

Each download is checked against the SHA-256 of the files the tests were written against; a
mismatch stops with an error and leaves nothing behind. ``--coco128-archive`` /
``--labelme-archive`` take already downloaded archives instead (offline machines).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "data" / "external"

COCO128_URL = "https://github.com/ultralytics/assets/releases/download/v0.0.0/coco128-seg.zip"
LABELME_URL = "https://github.com/wkentaro/labelme/archive/refs/tags/v7.1.0.tar.gz"
# SHA-256 over the sorted (relative path, NUL, bytes) of the files the tests read.
COCO128_DIGEST = (256, "e4c4fc0d7c76c5e9547348267aebc6e75af416796c8a4142412db828522e39d6")
COCO128_FILES = ("images/train2017/*.jpg", "labels/train2017/*.txt")
LABELME_DIGEST = (17, "ae743e83343eea2c5fb21a6de2921be5f828b1293085d480c8656f579801a4df")
LABELME_FILES = ("data_annotated/*", "labels.txt", "voc/*.txt", "voc/*/*")
# labelme archive member (below examples/instance_segmentation/) → place in voc_labelme/
LABELME_LAYOUT = {"data_annotated": "data_annotated", "labels.txt": "labels.txt",
                  "data_dataset_voc/JPEGImages": "voc/JPEGImages",
                  "data_dataset_voc/SegmentationClass": "voc/SegmentationClass",
                  "data_dataset_voc/SegmentationObject": "voc/SegmentationObject",
                  "data_dataset_voc/class_names.txt": "voc/class_names.txt"}
LICENSE_NOTE = ("GPL-3.0: downloaded by scripts/fetch_test_data.py from {url}; not part of masktok's "
                "source and not redistributed with it.\n")


def digest(root: Path, patterns: tuple[str, ...]) -> tuple[int, str]:
    """(file count, SHA-256 over the sorted relative paths and contents) of ``root``'s files."""
    sha = hashlib.sha256()
    files = sorted({p for pattern in patterns for p in root.glob(pattern) if p.is_file()})
    for path in files:
        sha.update(str(path.relative_to(root)).encode())
        sha.update(b"\0")
        sha.update(path.read_bytes())
    return len(files), sha.hexdigest()


def download(url: str, dest: Path) -> Path:
    print(f"downloading {url}", file=sys.stderr)
    with urllib.request.urlopen(url, timeout=120) as response, dest.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        while chunk := response.read(1 << 20):
            out.write(chunk)
            done += len(chunk)
            print(f"\r  {done / 2**20:.1f} MiB" + (f" of {total / 2**20:.1f}" if total else ""),
                  end="", file=sys.stderr)
    print(file=sys.stderr)
    return dest


def unpack_coco128(archive: Path, work: Path) -> Path:
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(work)
    found = [p.parent.parent for p in work.rglob("images/train2017") if p.is_dir()]
    if len(found) != 1:
        raise SystemExit(f"error: {archive}: expected one coco128-seg folder (images/train2017), found {len(found)}")
    return found[0]


def unpack_labelme(archive: Path, work: Path) -> Path:
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")
    examples = [p for p in work.glob("*/examples/instance_segmentation") if p.is_dir()]
    if len(examples) != 1:
        raise SystemExit(f"error: {archive}: expected a labelme source archive with "
                         "examples/instance_segmentation")
    staged = work / "voc_labelme"
    for source, target in LABELME_LAYOUT.items():
        origin, place = examples[0] / source, staged / target
        place.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, place)
        elif origin.is_file():
            shutil.copy2(origin, place)
        else:
            raise SystemExit(f"error: {archive}: {source} is missing from examples/instance_segmentation")
    return staged


def install(name: str, staged: Path, patterns: tuple[str, ...], expected: tuple[int, str], url: str,
            out: Path) -> None:
    found = digest(staged, patterns)
    if found != expected:
        raise SystemExit(f"error: {name}: the download does not match the files the tests expect "
                         f"({found[0]} files, sha256 {found[1]}; expected {expected[0]} files, "
                         f"sha256 {expected[1]}); nothing was installed")
    target = out / name
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(staged, target)
    (target / "SOURCE.txt").write_text(LICENSE_NOTE.format(url=url))
    print(f"{name}: {expected[0]} files → {target}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the datasets go")
    parser.add_argument("--coco128-archive", type=Path, help="a downloaded coco128-seg.zip")
    parser.add_argument("--labelme-archive", type=Path, help="a downloaded labelme v7.1.0 source .tar.gz")
    parser.add_argument("--only", choices=("coco128_seg", "voc_labelme"), help="fetch one dataset")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.only in (None, "coco128_seg"):
            archive = args.coco128_archive or download(COCO128_URL, work / "coco128-seg.zip")
            install("coco128_seg", unpack_coco128(archive, work / "coco128"), COCO128_FILES, COCO128_DIGEST,
                    COCO128_URL, args.out)
        if args.only in (None, "voc_labelme"):
            archive = args.labelme_archive or download(LABELME_URL, work / "labelme.tar.gz")
            install("voc_labelme", unpack_labelme(archive, work / "labelme"), LABELME_FILES, LABELME_DIGEST,
                    LABELME_URL, args.out)


if __name__ == "__main__":
    main()

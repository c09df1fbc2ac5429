"""``tokenize-dataset``: every input layout, the Parquet contents, sharding and resumability."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from masktok.data.tokenize.shards import DatasetSource, MissingImageError, source_images
from masktok.data.tokenize.pipeline import (
    MANIFEST,
    SUCCESS,
    USAGE,
    TokenizeConfig,
    codebook_usage,
    tokenize_dataset,
)
from masktok.masks import mask_to_box, rle_to_mask
from masktok.output_lock import lock_path, read_holder
from masktok.tokenizers.himtok import HiMTok
from mllm_fixtures import build_tiny_himtok
from masktok.words import format_mask_words

COLUMNS = ["image_id", "annotation_id", "file_name", "height", "width", "category_id",
           "category_name", "iscrowd", "codes", "words", "box", "area"]


def tiny_himtok() -> HiMTok:
    return build_tiny_himtok(seed=0, codebook_size=64)


def yolo_subset(dest: Path, count: int) -> DatasetSource:
    """A YOLO-seg folder of ``count`` real COCO images and their polygons (tests/data) in ``dest``."""
    from real_data import yolo_from_coco

    images, labels, _ = yolo_from_coco(dest, count)
    return DatasetSource("yolo", images=images, labels=labels)


def read_output(folder: Path) -> dict[str, list]:
    manifest = json.loads((folder / MANIFEST).read_text())
    tables = [pq.read_table(folder / f"{s['name']}.parquet").to_pydict()
              for s in manifest["plan"]["shards"]]
    return {c: [v for t in tables for v in t[c]] for c in COLUMNS}


@pytest.fixture(scope="module")
def himtok() -> HiMTok:
    return tiny_himtok()


def _config(out: Path, **kw) -> TokenizeConfig:
    return TokenizeConfig(output_dir=out, progress=False, **{"num_workers": 0, **kw})


def test_yolo_rows_match_the_annotations(tmp_path, himtok):
    source = yolo_subset(tmp_path / "yolo", 10)
    report = tokenize_dataset(source, himtok, _config(tmp_path / "out", images_per_shard=4,
                                                      prefetch_images=3))
    out = tmp_path / "out"
    assert report.complete and (out / SUCCESS).is_file() and (out / USAGE).is_file()
    assert sorted(p.name for p in out.glob("*.parquet")) == [f"part-0000{i}.parquet" for i in range(3)]
    assert pq.read_schema(out / "part-00000.parquet").names == COLUMNS
    rows = read_output(out)
    images = {img.annotations.image_id: img.annotations for img in source_images(source)}
    expected = [(str(img.image_id), str(inst.id)) for img in images.values() for inst in img.instances]
    assert list(zip(rows["image_id"], rows["annotation_id"])) == expected
    assert report.masks == len(expected) > 20
    # codes are the tokenizer's, words their formatting, boxes the masks' tight boxes
    first = images[rows["image_id"][0]]
    codes = himtok.encode(None, first.masks())
    n = len(first.instances)
    assert rows["codes"][:n] == codes.tolist()
    for k in range(n):
        assert rows["words"][k] == format_mask_words(rows["codes"][k], himtok.vocabulary)
        assert tuple(rows["box"][k]) == mask_to_box(rle_to_mask(first.instances[k].mask_rle))
    usage = json.loads((out / USAGE).read_text())
    hist = np.zeros(64, dtype=int)
    np.add.at(hist, [c[0] for c in rows["codes"]], 1)
    assert usage["masks"] == len(expected)
    assert usage["positions"][0]["used"] == int((hist > 0).sum())
    assert usage["num_images"] == 10


def _filtered_coco(shared: Path, dest: Path, keep_present: int, keep_missing: int) -> DatasetSource:
    root = shared / "coco_val2014_100"
    data = json.loads((root / "instances_val2014_100.json").read_text())
    present = {p.name for p in (root / "images").iterdir()}
    with_anns = {a["image_id"] for a in data["annotations"]}
    imgs = [i for i in data["images"] if i["id"] in with_anns]
    chosen = ([i for i in imgs if i["file_name"] in present][:keep_present]
              + [i for i in imgs if i["file_name"] not in present][:keep_missing])
    ids = {i["id"] for i in chosen}
    data["images"] = chosen
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    path = dest / "instances.json"
    path.write_text(json.dumps(data))
    return DatasetSource("coco", annotations=path, images=root / "images")


def test_coco_missing_images_fail_or_are_counted_with_samtok(test_data, tmp_path):
    from masktok.tokenizers.samtok import SAMTok, tiny_test_config

    samtok = SAMTok.from_config(tiny_test_config(), seed=0)
    source = _filtered_coco(test_data, tmp_path, keep_present=1, keep_missing=1)
    with pytest.raises(MissingImageError, match="not found"):
        tokenize_dataset(source, samtok, _config(tmp_path / "strict"))
    report = tokenize_dataset(source, samtok, _config(tmp_path / "lenient", missing_images="skip"))
    assert report.skipped_missing_images == 1 and report.complete
    rows = read_output(tmp_path / "lenient")
    assert len(set(rows["image_id"])) == 1
    assert all(len(c) == 2 and 0 <= min(c) and max(c) < 16 for c in rows["codes"])
    meta = pq.read_schema(tmp_path / "lenient" / "part-00000.parquet").metadata
    assert meta[b"masktok.skipped_missing_images"] == b"1"
    # HiMTok encodes masks alone: the missing image does not matter
    report = tokenize_dataset(source, tiny_himtok(), _config(tmp_path / "himtok"))
    assert report.skipped_missing_images == 0 and len(set(read_output(tmp_path / "himtok")["image_id"])) == 2


def test_samtok_streams_the_loaded_images_in_order(test_data, tmp_path):
    """SAMTok reads the loader as a stream (batches of 2 images, 2 workers, a skipped missing
    image in the middle): every row's codes are those of encoding its image alone."""
    from masktok.tokenizers.samtok import SAMTok, tiny_test_config

    samtok = SAMTok.from_config(tiny_test_config(), seed=0)
    source = _filtered_coco(test_data, tmp_path, keep_present=4, keep_missing=1)
    data = json.loads(source.annotations.read_text())
    data["images"].insert(1, data["images"].pop())  # the missing image second
    source.annotations.write_text(json.dumps(data))
    report = tokenize_dataset(source, samtok, _config(tmp_path / "out", missing_images="skip", num_workers=2,
                                                      images_per_batch=2, images_per_shard=3))
    assert report.complete and report.skipped_missing_images == 1
    rows = read_output(tmp_path / "out")
    expected_ids, expected_codes = [], []
    for image in source_images(source):
        if not (source.images / image.annotations.file_name).is_file():
            continue
        expected_ids += [str(image.annotations.image_id)] * len(image.annotations.instances)
        expected_codes += samtok.encode(image.pixels(), image.annotations.masks()).tolist()
    assert rows["image_id"] == expected_ids and rows["codes"] == expected_codes


def test_a_loaded_group_travels_as_one_buffer_and_comes_back_equal():
    from masktok.data.tokenize.loader import LoadedGroup, LoadedImageItem
    from masktok.masks import BitMasks

    rng = np.random.default_rng(0)
    masks = [rng.random((n, 5, 11)) < 0.5 for n in (3, 0, 2)]
    pixels = [torch.from_numpy(rng.integers(0, 256, (5, 11, 3), dtype=np.uint8)), None,
              torch.from_numpy(rng.integers(0, 256, (5, 11, 3), dtype=np.uint8))]
    for packed in (True, False):
        items = [LoadedImageItem(0, {"image_id": str(i)}, [], BitMasks.pack(m) if packed else torch.from_numpy(m),
                                 p, 0, p is None) for i, (m, p) in enumerate(zip(masks, pixels))]
        group = LoadedGroup.of(items)
        assert group.flat.dtype == torch.uint8 and all(i.masks is None for i in group.items)
        for item, back in zip(items, group.unpack()):
            assert back.meta == item.meta and back.missing_image == item.missing_image
            got = back.masks.unpack() if packed else back.masks
            want = item.masks.unpack() if packed else item.masks
            assert got.dtype == torch.bool and torch.equal(got, want)
            assert (back.pixels is None) == (item.pixels is None)
            if item.pixels is not None:
                assert torch.equal(back.pixels, item.pixels)


def test_panoptic_segments_keep_their_ids(test_data, tmp_path, himtok):
    """HiMTok reads no image: the panoptic JSON and PNGs alone (no image folder) are enough."""
    root = test_data / "coco_panoptic_sample"
    source = DatasetSource("panoptic", annotations=root / "panoptic_examples.json",
                           panoptic_pngs=root / "panoptic_examples")
    tokenize_dataset(source, himtok, _config(tmp_path / "out", num_workers=2))
    rows = read_output(tmp_path / "out")
    data = json.loads((root / "panoptic_examples.json").read_text())
    segments = [(str(a["image_id"]), str(s["id"]), s["category_id"], bool(s["iscrowd"]))
                for a in data["annotations"] for s in a["segments_info"]]
    assert list(zip(rows["image_id"], rows["annotation_id"], rows["category_id"], rows["iscrowd"])) == segments
    assert len(segments) == 50


def test_refs_tokenize_only_referred_instances(test_data, tmp_path, himtok):
    coco = test_data / "coco_val2014_100" / "instances_val2014_100.json"
    anns = json.loads(coco.read_text())["annotations"]
    picked = [anns[3], anns[40], anns[41], anns[200]]
    refs = [{"ref_id": k, "image_id": a["image_id"], "ann_id": a["id"], "split": "val",
             "sentences": [{"sent_id": k, "sent": f"thing {k}"}]} for k, a in enumerate(picked)]
    refs[-1]["split"] = "train"
    path = tmp_path / "refs.json"
    path.write_text(json.dumps(refs))
    source = DatasetSource("refs", annotations=path, instances=coco,
                           images=test_data / "coco_val2014_100" / "images", split="val")
    tokenize_dataset(source, himtok, _config(tmp_path / "out"))
    rows = read_output(tmp_path / "out")
    assert sorted(rows["annotation_id"]) == sorted(str(a["id"]) for a in picked[:3])


def _sa1b_records(shared: Path, dest: Path, count: int) -> list[Path]:
    """SA-1B style per-image JSON + JPEG pairs made from real COCO images and masks."""
    from masktok.annotations import read_coco_instances

    root = shared / "coco_val2014_100"
    present = {p.name for p in (root / "images").iterdir()}
    images = [i for i in read_coco_instances(root / "instances_val2014_100.json")
              if i.file_name in present and i.instances][:count]
    dest.mkdir(parents=True)
    paths = []
    for n, img in enumerate(images, 1):
        record = {"image": {"image_id": n, "width": img.width, "height": img.height,
                            "file_name": f"sa_{n}.jpg"},
                  "annotations": [{"id": int(i.id), "segmentation": i.mask_rle, "area": i.area,
                                   "bbox": [0, 0, 1, 1]} for i in img.instances]}
        (dest / f"sa_{n}.json").write_text(json.dumps(record))
        (dest / f"sa_{n}.jpg").symlink_to(root / "images" / img.file_name)
        paths.append(dest / f"sa_{n}.json")
    return paths


def test_sa1b_json_folder_and_tar_shards_agree(test_data, tmp_path, himtok):
    paths = _sa1b_records(test_data, tmp_path / "sa1b", 4)
    tokenize_dataset(DatasetSource("sa1b", images=tmp_path / "sa1b"), himtok,
                     _config(tmp_path / "loose", images_per_shard=2))
    tars = []
    for t, group in enumerate((paths[:3], paths[3:])):
        tars.append(tmp_path / f"sa_00000{t}.tar")
        with tarfile.open(tars[-1], "w") as tar:
            for p in group:
                tar.add(p.with_suffix(".jpg").resolve(), arcname=p.with_suffix(".jpg").name)
                tar.add(p, arcname=p.name)
    report = tokenize_dataset(DatasetSource("sa1b-tar", tars=tars), himtok,
                              _config(tmp_path / "tars", num_workers=2))
    assert report.shards_written == ["sa_000000", "sa_000001"]
    loose, packed = read_output(tmp_path / "loose"), read_output(tmp_path / "tars")
    assert loose == packed and len(loose["codes"]) > 10


def test_ranks_and_workers_do_not_change_the_output(tmp_path, himtok):
    source = yolo_subset(tmp_path / "yolo", 9)
    single = tokenize_dataset(source, himtok, _config(tmp_path / "one", images_per_shard=2,
                                                      num_workers=2, images_per_batch=3))
    assert single.complete
    out = tmp_path / "two"
    late = tokenize_dataset(source, himtok, _config(out, images_per_shard=2), rank=1, world_size=2)
    assert late.shards_written == ["part-00001", "part-00003"] and not late.complete
    assert not (out / SUCCESS).exists()
    first = tokenize_dataset(source, himtok, _config(out, images_per_shard=2), rank=0, world_size=2)
    assert first.shards_written == ["part-00000", "part-00002", "part-00004"] and first.complete
    assert read_output(out) == read_output(tmp_path / "one")
    assert json.loads((out / USAGE).read_text()) == json.loads((tmp_path / "one" / USAGE).read_text())


def test_a_rerun_with_other_settings_is_refused(tmp_path, himtok):
    source = yolo_subset(tmp_path / "yolo", 2)
    tokenize_dataset(source, himtok, _config(tmp_path / "out"))
    again = tokenize_dataset(source, himtok, _config(tmp_path / "out"))
    assert again.shards_written == [] and again.shards_skipped == ["part-00000"]
    with pytest.raises(ValueError, match="different run.*options"):
        tokenize_dataset(source, himtok, _config(tmp_path / "out", num_codes=4))


def test_empty_masks_fail_are_counted_or_kept_absent(test_data, tmp_path, himtok):
    source = _filtered_coco(test_data, tmp_path, keep_present=1, keep_missing=0)
    data = json.loads(source.annotations.read_text())
    img = data["images"][0]
    empty = {"size": [img["height"], img["width"]], "counts": [img["height"] * img["width"]]}
    data["annotations"].append({"id": 999999, "image_id": img["id"], "category_id": 1,
                                "segmentation": empty, "area": 0, "iscrowd": 0, "bbox": [0, 0, 0, 0]})
    source.annotations.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="999999.*empty mask"):
        tokenize_dataset(source, himtok, _config(tmp_path / "a"))
    report = tokenize_dataset(source, himtok, _config(tmp_path / "b", empty_masks="skip",
                                                      num_codes=3))
    assert report.skipped_empty_masks == 1
    rows = read_output(tmp_path / "b")
    assert "999999" not in rows["annotation_id"] and {len(c) for c in rows["codes"]} == {3}
    report = tokenize_dataset(source, himtok, _config(tmp_path / "c", empty_masks="keep", num_codes=3))
    kept = read_output(tmp_path / "c")
    absent = kept["annotation_id"].index("999999")
    assert report.skipped_empty_masks == 0 and kept["codes"][absent] is None and kept["words"][absent] is None
    others = [c for i, c in enumerate(kept["codes"]) if i != absent]
    assert others == rows["codes"]
    from masktok.data.sft import ParquetWords
    from masktok.data.sft.mask_words import ImageEntry, MaskRef

    words = ParquetWords(tmp_path / "c")
    entry = ImageEntry(kept["image_id"][absent], tmp_path / "x.jpg", kept["height"][absent], kept["width"][absent])
    with pytest.raises(ValueError, match="absent entry"):
        words.codes(entry, [MaskRef({}, "999999")])


def test_codebook_usage_counts():
    from masktok.words import samtok_vocabulary

    usage = codebook_usage([[[1, 2], [1, 3]], [[4, 2]]], samtok_vocabulary(8, 2))
    assert usage.masks == 3 and usage.distinct_words == 3
    assert [p.used for p in usage.positions] == [2, 2]
    assert usage.positions[0].top == [(1, 2), (4, 1)]
    assert usage.positions[1].perplexity == pytest.approx(np.exp(-(2 / 3 * np.log(2 / 3) + 1 / 3 * np.log(1 / 3))))
    with pytest.raises(ValueError, match="do not fit"):
        codebook_usage([[[8, 0]]], samtok_vocabulary(8, 2))


# ---------------------------------------------------------------------------------------------
# Resumability: a run killed mid-way, resumed, equals an uninterrupted run
# ---------------------------------------------------------------------------------------------
class _KillingTokenizer:
    """Delegates to a tokenizer and SIGKILLs its own process when its stream reads image ``kill_at``."""

    def __init__(self, inner, kill_at: int):
        self.inner, self.kill_at = inner, kill_at
        self.vocabulary, self.needs_image, self.device = inner.vocabulary, inner.needs_image, inner.device

    def encode_stream(self, pairs, **kw):
        def counted():
            for k, pair in enumerate(pairs, 1):
                if k == self.kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield pair

        return self.inner.encode_stream(counted(), **kw)


def _child(yolo_dir: str, out: str, kill_at: int) -> None:
    source = DatasetSource("yolo", images=Path(yolo_dir) / "images", labels=Path(yolo_dir) / "labels")
    tokenize_dataset(source, _KillingTokenizer(tiny_himtok(), kill_at),
                     _config(Path(out), images_per_shard=3, images_per_batch=1, prefetch_images=1),
                     tokenizer_id="tiny-himtok")


def test_killed_run_resumes_to_the_same_output(tmp_path, caplog):
    source = yolo_subset(tmp_path / "yolo", 12)
    out = tmp_path / "resumed"
    # every image here has masks and is read one at a time: die when reading the second shard
    child = subprocess.Popen([sys.executable, __file__, str(tmp_path / "yolo"), str(out), "5"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, stderr = child.communicate()
    assert child.returncode == -signal.SIGKILL, stderr[-2000:]
    assert sorted(p.name for p in out.glob("*.parquet")) == ["part-00000.parquet"]
    left = read_holder(lock_path(out, "rank0"))
    assert left is not None and left.pid == child.pid  # the killed run's lock stays behind
    assert not (out / SUCCESS).exists()
    done = (out / "part-00000.parquet").stat()
    # also a damaged shard file and a stale partial write, as a crash elsewhere could leave
    (out / "part-00002.parquet").write_bytes(b"PAR1 truncated")
    (out / "part-00003.parquet.tmp").write_bytes(b"partial")
    tok = tiny_himtok()
    report = tokenize_dataset(source, tok, _config(out, images_per_shard=3, prefetch_images=1),
                              tokenizer_id="tiny-himtok")
    assert report.shards_skipped == ["part-00000"] and report.shards_redone == ["part-00002"]
    assert "stale lock" in caplog.text and f"pid {child.pid}" in caplog.text  # taken over, said so
    assert not lock_path(out, "rank0").exists()  # and given back at the end
    assert report.shards_written == ["part-00001", "part-00002", "part-00003"] and report.complete
    assert (out / "part-00000.parquet").stat().st_mtime_ns == done.st_mtime_ns
    assert not list(out.glob("*.tmp"))
    fresh = tmp_path / "fresh"
    tokenize_dataset(source, tok, _config(fresh, images_per_shard=3, prefetch_images=1),
                     tokenizer_id="tiny-himtok")
    assert read_output(out) == read_output(fresh)
    for name in (MANIFEST, USAGE):
        assert (out / name).read_text() == (fresh / name).read_text()


if __name__ == "__main__":  # the child process of the resumability test
    torch.set_num_threads(1)
    _child(sys.argv[1], sys.argv[2], int(sys.argv[3]))

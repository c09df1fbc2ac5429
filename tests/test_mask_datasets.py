"""Mask datasets: every source kind, SA-1B files and shards, packing, clear errors."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from masktok.annotations.records import AnnotationError
from masktok.data.mask_pools.sources import (
    MaskPool,
    load_source,
    load_sources,
    pack_masks,
    parse_source,
    read_image_bytes,
    sa1b_records,
)
from masktok.masks import mask_to_rle


def _sa1b_doc(masks: np.ndarray, image_id: int = 1, file_name: str = "sa_1.jpg") -> dict:
    h, w = masks.shape[1:]
    anns = []
    for k, m in enumerate(masks):
        rle = mask_to_rle(m)
        anns.append({"id": 100 + k, "segmentation": rle, "area": int(m.sum()), "bbox": [0, 0, 1, 1]})
    return {"image": {"image_id": image_id, "width": w, "height": h, "file_name": file_name}, "annotations": anns}


def _masks(n: int = 3, h: int = 20, w: int = 30) -> np.ndarray:
    masks = np.zeros((n, h, w), dtype=bool)
    for k in range(n):
        masks[k, 2 + k:10 + 2 * k, 3:12 + 3 * k] = True
    return masks


def test_real_sources(test_data, tmp_path):
    from real_data import yolo_from_coco

    d = test_data
    pan = load_source(f"panoptic:{d}/coco_panoptic_sample/panoptic_examples.json,"
                      f"{d}/coco_panoptic_sample/panoptic_examples,crowd=include")
    assert len(pan) == 50
    assert len(load_source(f"panoptic:{d}/coco_panoptic_sample/panoptic_examples.json,"
                           f"{d}/coco_panoptic_sample/panoptic_examples")) == 47
    coco = load_source(f"coco:{d}/coco_val2014_100/instances_val2014_100.json,crowd=include")
    assert len(coco) == 839
    refseg = load_source(f"mask_png:{d}/refseg_examples/masks")
    assert len(refseg) == 4 and all(r.mask().any() for r in refseg)
    images, labels, _ = yolo_from_coco(tmp_path / "yolo", 11)
    yolo = load_source(f"yolo:{images},{labels}")
    assert len(yolo) > 50 and all(r.image_path and Path(r.image_path).is_file() for r in yolo[:5])
    (labels / "no_such_image.txt").write_text("0 0.1 0.1 0.5 0.1 0.5 0.5\n")
    with pytest.raises(AnnotationError, match="no image"):  # orphan label files are named, not dropped
        load_source(f"yolo:{images},{labels}")
    assert len(load_source(f"yolo:{images},{labels},orphans=ignore")) == len(yolo)


def test_fetched_sources(coco128_seg, voc_labelme):
    root = coco128_seg
    yolo = load_source(f"yolo:{root}/images/train2017,{root}/labels/train2017,orphans=ignore")
    assert len(yolo) > 900 and all(r.image_path and Path(r.image_path).is_file() for r in yolo[:5])
    with pytest.raises(AnnotationError, match="no image"):
        load_source(f"yolo:{root}/images/train2017,{root}/labels/train2017")
    assert load_source(f"labelme:{voc_labelme}/data_annotated")[0].mask().any()


def test_sa1b_json_folder_and_tar_shard(tmp_path):
    masks = _masks()
    (tmp_path / "loose").mkdir()
    (tmp_path / "loose" / "sa_1.json").write_text(json.dumps(_sa1b_doc(masks)))
    loose = sa1b_records(tmp_path / "loose")
    assert len(loose) == 3 and np.array_equal(loose[1].mask(), masks[1])
    assert loose[0].image_path.endswith("sa_1.jpg")
    shard = tmp_path / "shard.tar"
    with tarfile.open(shard, "w") as tar:
        for name, data in (("sa_1.json", json.dumps(_sa1b_doc(masks)).encode()), ("sa_1.jpg", b"jpeg-bytes"),
                           ("sa_2.json", json.dumps(_sa1b_doc(masks[:1], 2, "sa_2.jpg")).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    recs = load_source(f"sa1b:{shard}")
    assert len(recs) == 4 and recs[0].source == f"{shard}:sa_1.json"
    assert read_image_bytes(recs[0].image_path) == b"jpeg-bytes"
    assert recs[-1].image_path is None  # sa_2.jpg is not in the shard
    assert np.array_equal(recs[2].mask(), masks[2])


def test_malformed_sa1b_names_file_and_record(tmp_path):
    doc = _sa1b_doc(_masks())
    doc["annotations"][1]["segmentation"] = {"size": [5, 5], "counts": "abc"}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(AnnotationError, match=r"bad\.json: annotation #1 id=101: segmentation: RLE size"):
        sa1b_records(path)
    doc = _sa1b_doc(_masks())
    doc["annotations"][2]["segmentation"]["counts"] = "!!!!"
    path.write_text(json.dumps(doc))
    with pytest.raises(AnnotationError, match=r"bad\.json: annotation #2 id=102: .*outside the RLE alphabet"):
        sa1b_records(path)  # caught when the file is read, not when the mask is first used
    path.write_text("{not json")
    with pytest.raises(AnnotationError, match="bad.json"):
        sa1b_records(path)
    empty = _sa1b_doc(np.zeros((1, 8, 8), dtype=bool))
    path.write_text(json.dumps(empty))
    with pytest.raises(AnnotationError, match="annotation #0 id=100.*empty mask"):
        pack_masks(sa1b_records(path), tmp_path / "p.npz")


def test_pack_and_pool_roundtrip(tmp_path):
    masks = _masks()
    big = np.zeros((1, 100, 300), dtype=bool)
    big[0, 20:80, 50:250] = True
    (tmp_path / "a.json").write_text(json.dumps(_sa1b_doc(masks)))
    (tmp_path / "b.json").write_text(json.dumps(_sa1b_doc(big, 2)))
    records = load_sources([f"sa1b:{tmp_path / 'a.json'}", f"sa1b:{tmp_path / 'b.json'}"])
    counts = pack_masks(records, tmp_path / "pack.npz", max_side=150)
    assert counts["masks"] == 4
    pool = MaskPool.load(tmp_path / "pack.npz")
    assert len(pool) == 4 and pool.masks.dtype == torch.uint8
    for k in range(3):
        assert np.array_equal(pool.full_masks(k), masks[k])
    assert tuple(pool.sizes[3].tolist()) == (50, 150)  # downscaled: long side ≤ 150
    assert pool.boxes[0].tolist() == [3, 2, 11, 9]
    assert pool.names[0].endswith("annotation #0 id=100")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a packed mask file"):
        MaskPool.load(tmp_path / "bad.npz")


def test_source_spec_errors(tmp_path):
    with pytest.raises(ValueError, match="KIND:PATH"):
        parse_source("nope:/x")
    with pytest.raises(ValueError, match="takes 2"):
        load_source(f"yolo:{tmp_path}")
    with pytest.raises(ValueError, match="unknown option"):
        load_source(f"coco:{tmp_path},crowd=maybe")
    with pytest.raises(FileNotFoundError):
        load_source(f"labelme:{tmp_path / 'missing'}")

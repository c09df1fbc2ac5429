"""SFT builders: every task from the real data (synthetic refs / gRefCOCO / GCG / PSG / region
files made here over real images and masks), checked against the grammar and decoded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from masktok.data import sft
from masktok.data.tokenize.shards import DatasetSource
from masktok.data.tokenize.pipeline import TokenizeConfig, tokenize_dataset
from masktok.masks import mask_to_rle, rle_to_box, rle_to_mask
from masktok.words.prompts import NO_TARGET_ANSWER, PHRASE_END, PHRASE_START, prompt_templates
from masktok.tokenizers.himtok import HiMTok
from mllm_fixtures import build_tiny_himtok
from masktok.words import parse_mask_words


@pytest.fixture(scope="module")
def himtok() -> HiMTok:
    return build_tiny_himtok(seed=0, codebook_size=64)


@pytest.fixture(scope="module")
def words(himtok):
    return sft.TokenizerWords(himtok)


@pytest.fixture(scope="module")
def coco(test_data):
    root = test_data / "coco_val2014_100"
    return DatasetSource("coco", annotations=root / "instances_val2014_100.json", images=root / "images")


@pytest.fixture(scope="module")
def coco_images(coco):
    """Real COCO images on disk, with their instances."""
    return [i for i in sft.instance_images(coco) if i.entry.exists()]


def config(tmp_path: Path, **kw) -> sft.BuildConfig:
    return sft.BuildConfig(crops_dir=tmp_path / "crops", **{"missing_images": "skip", **kw})


def decode_all(sample: sft.SFTSample, tokenizer, image_loader=None) -> list[np.ndarray]:
    """Decode every mask span of ``sample`` on the image it belongs to."""
    vocab = tokenizer.vocabulary
    spans = [s for text in sample.texts() for s in parse_mask_words(text, vocab)]
    assert len(spans) == len(sample.masks)
    out: list = [None] * len(spans)
    for index in sorted({m.image_index for m in sample.masks}):
        rows = [k for k, m in enumerate(sample.masks) if m.image_index == index]
        image = image_loader(sample.images[index]) if image_loader else None
        width = max(len(spans[k].codes) for k in rows)
        codes = np.zeros((len(rows), width), dtype=np.int64)
        for r, k in enumerate(rows):
            codes[r, :len(spans[k].codes)] = spans[k].codes
        kwargs = {}
        if width != min(len(spans[k].codes) for k in rows):
            kwargs["lengths"] = np.asarray([len(spans[k].codes) for k in rows])
        decoded = np.asarray(tokenizer.decode(image, codes, size=sample.image_sizes[index], **kwargs))
        for r, k in enumerate(rows):
            out[k] = decoded[r]
    return out


def check_written(written: sft.WrittenBuild, result: sft.BuildResult, tokenizer) -> None:
    """Files parse, image placeholders match, every answer parses, every mask decodes to its
    image's shape."""
    llava = json.loads(written.files["llava"].read_text())
    trl = [json.loads(line) for line in written.files["trl"].read_text().splitlines()]
    assert len(llava) == len(trl) == len(result.samples) > 0
    for sample, rec, row in zip(result.samples, llava, trl):
        images = rec["image"] if isinstance(rec["image"], list) else [rec["image"]]
        assert images == row["images"] == sample.images and all(Path(p).is_file() for p in images)
        assert sum(t["value"].count("<image>") for t in rec["conversations"]) == len(images)
        placeholders = sum(1 for m in row["messages"] for c in m["content"] if c["type"] == "image")
        assert placeholders == len(images)
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"] * len(sample.turns)
        for turn in sample.turns:
            parse_mask_words(turn.assistant, tokenizer.vocabulary)  # strict: raises if malformed
        for mask, decoded in zip(sample.masks, decode_all(sample, tokenizer)):
            assert decoded.dtype == bool
            assert decoded.shape == tuple(sample.image_sizes[mask.image_index])
            assert tuple(mask.rle["size"]) == decoded.shape
    assert written.rendered and all(p.is_file() for p in written.rendered)
    assert (written.files["llava"].parent / "card" / result.task / "card.md").is_file()


def build_and_check(result, tokenizer, out: Path) -> sft.WrittenBuild:
    written = sft.write_build(result, tokenizer.vocabulary, out, render=2)
    check_written(written, result, tokenizer)
    return written


# ---------------------------------------------------------------------------------------------
# Synthetic annotation files over the real COCO images
# ---------------------------------------------------------------------------------------------
def write_refs(coco_images, coco, path: Path, generalized: bool) -> Path:
    refs, sent = [], 0
    for k, image in enumerate(coco_images[:4]):
        targets = image.targets()
        if generalized:
            groups = [[], [targets[0].id], [t.id for t in targets[:3]]]
        else:
            groups = [[t.id] for t in targets[:2]]
        for g, ids in enumerate(groups):
            sentences = [{"sent_id": (sent := sent + 1), "sent": f"the {g}-th thing of image {k}"}]
            ref = {"ref_id": len(refs), "image_id": image.annotations.image_id, "split": "train",
                   "sentences": sentences}
            if generalized:
                ref.update(ann_id=ids or [-1], no_target=not ids)
            else:
                ref["ann_id"] = ids[0]
            refs.append(ref)
    path.write_text(json.dumps(refs))
    return path


def test_res(coco_images, coco, words, himtok, tmp_path):
    images = sft.read_refs(write_refs(coco_images, coco, tmp_path / "refs.json", False),
                           coco.annotations, coco.images)
    result = sft.build_res(images, words, config(tmp_path))
    assert len(result.samples) == 8
    build_and_check(result, himtok, tmp_path / "out")
    sample = result.samples[0]
    assert sample.turns[0].user in [t.format(phrase="the 0-th thing of image 0")
                                    for t in prompt_templates("res")]
    assert len(sample.masks) == 1


def test_gres_orders_masks_and_answers_no_target(coco_images, coco, words, himtok, tmp_path):
    images = sft.read_refs(write_refs(coco_images, coco, tmp_path / "grefs.json", True),
                           coco.annotations, coco.images)
    result = sft.build_gres(images, words, config(tmp_path))
    build_and_check(result, himtok, tmp_path / "out")
    answers = [s.turns[0].assistant for s in result.samples]
    assert answers.count(NO_TARGET_ANSWER) == 4
    multi = [s for s in result.samples if len(s.masks) >= 2]
    assert multi
    for sample in multi:
        centres = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in (rle_to_box(m.rle) for m in sample.masks)]
        assert centres == sorted(centres)
        codes = [s.codes for s in parse_mask_words(sample.turns[0].assistant, himtok.vocabulary)]
        assert codes == [tuple(c) for c in himtok.encode(None, np.stack(
            [rle_to_mask(m.rle) for m in sample.masks])).tolist()]


def test_gcg_wraps_phrases_then_masks(coco_images, words, himtok, tmp_path, coco):
    records = []
    for image in coco_images[:3]:
        names = sorted({i.category_name for i in image.targets()})[:2]
        caption = "A photo with " + " and ".join(f"some {n}" for n in names) + "."
        groundings = {}
        for n in names:
            start = caption.index(f"some {n}")
            groundings[f"some {n}"] = {
                "token_positives": [start, start + len(f"some {n}")],
                "rle_masks": [i.mask_rle for i in image.targets() if i.category_name == n]}
        records.append({"file_name": image.annotations.file_name, "caption": f'"{caption}"',
                        "groundings": groundings})
    path = tmp_path / "GranDf_HA_GCG_train.json"
    path.write_text(json.dumps(records))
    from masktok.annotations.grandf import read_grandf

    result = sft.build_gcg(read_grandf(path), coco.images, words, config(tmp_path))
    build_and_check(result, himtok, tmp_path / "out")
    answer = result.samples[0].turns[0].assistant
    phrase = re.escape(PHRASE_START) + r"some [a-z ]+" + re.escape(PHRASE_END) + re.escape("<|mt_start|>")
    assert len(re.findall(phrase, answer)) == len(result.samples[0].masks)
    assert answer.startswith("A photo with ") and answer.endswith(".")
    # the evaluation suite's GCG JSONL (phrases without offsets) gives the same answer
    jsonl = tmp_path / "gcg.jsonl"
    item = read_grandf(path)[0]
    jsonl.write_text(json.dumps({"image_id": item.image_id, "height": item.height,
                                 "width": item.width, "caption": item.caption,
                                 "phrases": list(item.phrases), "masks": list(item.masks),
                                 "file_name": item.file_name}) + "\n")
    from masktok.eval.datasets import read_gcg_jsonl

    again = sft.build_gcg(sft.grounded_from_gcg_samples(read_gcg_jsonl(jsonl)), coco.images, words,
                          config(tmp_path))
    assert again.samples[0].turns == result.samples[0].turns


def test_psg_lines(test_data, words, himtok, tmp_path):
    from real_data import stand_in_images

    root = test_data / "coco_panoptic_sample"
    photos = stand_in_images(root / "panoptic_examples.json", tmp_path / "photos")  # CC BY-NC originals
    pan = json.loads((root / "panoptic_examples.json").read_text())
    cats = sorted(pan["categories"], key=lambda c: c["id"])
    things = [c for c in cats if c["isthing"]]
    stuff = [c for c in cats if not c["isthing"]]
    index = {c["id"]: k for k, c in enumerate(things + stuff)}
    data = []
    for ann in pan["annotations"]:
        img = next(i for i in pan["images"] if i["id"] == ann["image_id"])
        segs = [{"id": s["id"], "category_id": index[s["category_id"]], "iscrowd": s["iscrowd"]}
                for s in ann["segments_info"]]
        data.append({"file_name": img["file_name"], "height": img["height"], "width": img["width"],
                     "image_id": str(img["id"]), "pan_seg_file_name": ann["file_name"],
                     "segments_info": segs, "relations": [[0, 1, 0], [2, 0, 1], [0, 1, 0]]})
    psg = {"data": data, "thing_classes": [c["name"] for c in things],
           "stuff_classes": [c["name"] for c in stuff], "predicate_classes": ["on", "beside"],
           "test_image_ids": [d["image_id"] for d in data]}
    (tmp_path / "psg.json").write_text(json.dumps(psg))
    from masktok.eval.scene_datasets import read_openpsg

    dataset = read_openpsg(tmp_path / "psg.json", root / "panoptic_examples")
    result = sft.build_psg(dataset, photos, words, config(tmp_path))
    build_and_check(result, himtok, tmp_path / "out")
    lines = result.samples[0].turns[0].assistant.split("\n")
    assert len(lines) == 2  # the repeated triplet once
    assert re.fullmatch(r"[a-z ]+<\|mt_start\|>.*<\|mt_end\|> on [a-z ]+<\|mt_start\|>.*<\|mt_end\|>", lines[0])


def test_instance_from_coco_panoptic_and_yolo(test_data, coco, coco_images, words, himtok, tmp_path):
    from real_data import stand_in_images, yolo_from_coco

    result = sft.build_instance(coco_images[:5], words, config(tmp_path), negatives=2)
    build_and_check(result, himtok, tmp_path / "coco")
    sample = result.samples[0]
    listed = sample.meta["categories"]
    lines = sample.turns[0].assistant.split("\n")
    assert [line.split(": ")[0] for line in lines] == listed
    assert sum(line.endswith(": " + NO_TARGET_ANSWER) for line in lines) == 2
    root = test_data / "coco_panoptic_sample"
    panoptic = sft.instance_images(DatasetSource(
        "panoptic", annotations=root / "panoptic_examples.json", panoptic_pngs=root / "panoptic_examples",
        images=stand_in_images(root / "panoptic_examples.json", tmp_path / "photos")))
    build_and_check(sft.build_instance(panoptic, words, config(tmp_path)), himtok, tmp_path / "pan")
    names = [c["name"] for c in sorted(json.loads(coco.annotations.read_text())["categories"],
                                       key=lambda c: c["id"])]
    images, labels, yolo_names = yolo_from_coco(tmp_path / "yolo", 6)
    assert yolo_names == names
    yolo = sft.instance_images(DatasetSource("yolo", images=images, labels=labels, class_names=names))
    build_and_check(sft.build_instance(yolo, words, config(tmp_path)), himtok, tmp_path / "yolo_out")


def test_builds_are_deterministic_given_a_seed(coco_images, words, tmp_path):
    images = coco_images[:8]
    a = sft.build_instance(images, words, config(tmp_path, seed=3), negatives=3)
    b = sft.build_instance(images, words, config(tmp_path, seed=3), negatives=3)
    c = sft.build_instance(images, words, config(tmp_path, seed=4), negatives=3)
    assert [s.turns for s in a.samples] == [s.turns for s in b.samples]
    assert [s.turns for s in a.samples] != [s.turns for s in c.samples]
    # a sample depends on the seed and its own key, not on its position in the build
    backwards = sft.build_instance(images[::-1], words, config(tmp_path, seed=3), negatives=3)
    assert {s.sample_id: s.turns for s in backwards.samples} == {s.sample_id: s.turns for s in a.samples}


def test_region_caption_with_zoom_in_crops(coco_images, coco, words, himtok, tmp_path):
    images = sft.read_refs(write_refs(coco_images, coco, tmp_path / "refs.json", False),
                           coco.annotations, coco.images)
    result = sft.build_region_caption(sft.regions_from_refs(images), words, config(tmp_path))
    build_and_check(result, himtok, tmp_path / "out")
    zoomed = [s for s in result.samples if s.meta["zoom"]]
    plain = [s for s in result.samples if not s.meta["zoom"]]
    assert zoomed and plain
    z = zoomed[0]
    assert len(z.images) == 2 and z.turns[0].images == (0, 1)
    assert [m.image_index for m in z.masks] == [0, 0, 1]
    assert "Image 2 zooms in on" in z.turns[0].user
    h, w = z.image_sizes[1]
    assert min(h, w) >= 280
    crop_words = parse_mask_words(z.turns[0].user, himtok.vocabulary)[2]
    assert list(crop_words.codes) == himtok.encode(None, rle_to_mask(z.masks[2].rle)[None]).tolist()[0]
    off = sft.build_region_caption(sft.regions_from_refs(images), words,
                                   config(tmp_path, zoom=None))
    assert all(len(s.images) == 1 for s in off.samples)


def test_region_vqa_placeholders_and_first_line(coco_images, words, himtok, tmp_path, coco):
    lines = []
    for k, image in enumerate(coco_images[:3]):
        targets = image.targets()[:2]
        masks = [i.mask_rle for i in targets]
        qa = ([{"question": "What is <mask> doing?", "answer": "Standing."},
               {"question": "And <mask>?", "answer": "Nothing."}] if k % 2 == 0 and len(masks) == 2
              else [{"question": "What are these?", "answer": "Things."},
                    {"question": "How many?", "answer": str(len(masks))}])
        lines.append(json.dumps({"id": f"q{k}", "image_id": image.annotations.image_id,
                                 "file_name": image.annotations.file_name,
                                 "height": image.entry.height, "width": image.entry.width,
                                 "masks": masks, "annotation_ids": [str(i.id) for i in targets],
                                 "qa": qa}))
    path = tmp_path / "regions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    regions = sft.read_region_jsonl(path, coco.images)
    result = sft.build_region_vqa(regions, words, config(tmp_path))
    build_and_check(result, himtok, tmp_path / "out")
    for sample, region in zip(result.samples, regions):
        assert len(sample.turns) == 2
        spans = [parse_mask_words(t.user, himtok.vocabulary) for t in sample.turns]
        if "<mask>" in region.qa[0][0]:
            assert len(spans[1]) >= 1  # the second mask comes in the second turn
        else:
            assert spans[1] == []
            head = sample.turns[0].user.split("\n")[0]
            assert len(parse_mask_words(head, himtok.vocabulary)) == len(region.masks)


def test_multi_round_brings_earlier_masks_back(coco_images, words, himtok, tmp_path):
    result = sft.build_multi_round(coco_images[:12], words, config(tmp_path, seed=1), rounds=4)
    build_and_check(result, himtok, tmp_path / "out")
    answered_then_asked = 0
    for sample in result.samples:
        assert len(sample.turns) >= 2
        answered: set = set()
        for turn in sample.turns:
            asked = {s.codes for s in parse_mask_words(turn.user, himtok.vocabulary)}
            assert asked <= answered  # a mask in a question was answered earlier
            answered_then_asked += len(asked)
            answered |= {s.codes for s in parse_mask_words(turn.assistant, himtok.vocabulary)}
    assert answered_then_asked > 0


@pytest.mark.slow
def test_himtok_formats(coco_images, coco, words, himtok, tmp_path):
    targets = sft.targets_from_instances(coco_images[:6])
    result = sft.build_himtok(targets, words, config(tmp_path), mix=False, token_lengths=(2, 4))
    build_and_check(result, himtok, tmp_path / "out")
    by_format = {}
    for s in result.samples:
        by_format.setdefault(s.meta["format"], []).append(s)
    assert set(by_format) == set(sft.himtok_formats.FORMATS)
    seg = by_format["segment"][0].turns[0]
    assert re.fullmatch(r"Segment <ref>.+</ref>\.", seg.user)
    assert re.fullmatch(r"The mask appears at <\|mt_start\|>(<\|mt_\d+\|>){8}<\|mt_end\|>\.", seg.assistant)
    for s in by_format["token_length"]:
        n = int(re.search(r"by (\d+) tokens", s.turns[0].user).group(1))
        (span,) = parse_mask_words(s.turns[0].assistant, himtok.vocabulary)
        assert len(span.codes) == n in (2, 4)
    for s in by_format["mask_then_box"] + by_format["box"]:
        (box,) = re.findall(r"<box>\[\[(\d+), (\d+), (\d+), (\d+)\]\]</box>", s.turns[0].assistant)
        assert all(0 <= int(v) <= 999 for v in box)
    assert all(not s.masks for s in by_format["box"])
    refs = sft.read_refs(write_refs(coco_images, coco, tmp_path / "refs.json", False),
                         coco.annotations, coco.images)
    from_refs = sft.build_himtok(sft.targets_from_refs(refs), words, config(tmp_path),
                                 formats=("segment",))
    assert len(from_refs.samples) == 8
    with pytest.raises(ValueError, match="token_lengths"):
        sft.build_himtok(targets, words, config(tmp_path), token_lengths=(16,))


def test_parquet_words_equal_words_on_the_fly(coco, coco_images, words, himtok, tmp_path):
    present = tmp_path / "present.json"
    data = json.loads(coco.annotations.read_text())
    keep = {i.annotations.image_id for i in coco_images[:5]}
    data["images"] = [i for i in data["images"] if i["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    present.write_text(json.dumps(data))
    source = DatasetSource("coco", annotations=present, images=coco.images)
    tokenize_dataset(source, himtok, TokenizeConfig(output_dir=tmp_path / "pq", num_workers=0,
                                                    progress=False, images_per_shard=2))
    parquet = sft.ParquetWords(tmp_path / "pq")
    images = sft.instance_images(source)
    from_parquet = sft.build_instance(images, parquet, config(tmp_path))
    on_the_fly = sft.build_instance(images, words, config(tmp_path))
    assert [s.turns for s in from_parquet.samples] == [s.turns for s in on_the_fly.samples]
    # refs tokenized as their own source serve GRES the same way
    grefs = write_refs(coco_images, coco, tmp_path / "grefs.json", True)
    tokenize_dataset(DatasetSource("refs", annotations=grefs, instances=coco.annotations,
                                   images=coco.images), himtok,
                     TokenizeConfig(output_dir=tmp_path / "refs_pq", num_workers=0, progress=False))
    ref_images = sft.read_refs(grefs, coco.annotations, coco.images)
    assert [s.turns for s in sft.build_gres(ref_images, sft.ParquetWords(tmp_path / "refs_pq"),
                                            config(tmp_path)).samples] == \
        [s.turns for s in sft.build_gres(ref_images, words, config(tmp_path)).samples]
    with pytest.raises(ValueError, match="without an annotation id"):
        parquet.codes(images[0].entry, [sft.MaskRef(mask_to_rle(images[0].annotations.masks()[0]))])
    with pytest.raises(ValueError, match="zoom-in crops"):
        parquet.crop_codes(None, None)
    with pytest.raises(ValueError, match="not a finished"):
        sft.ParquetWords(tmp_path)


def test_missing_images_fail_by_default(coco, words, tmp_path):
    images = sft.instance_images(coco)
    from masktok.data.tokenize.shards import MissingImageError

    with pytest.raises(MissingImageError, match="not found"):
        sft.build_instance(images, words, sft.BuildConfig())
    result = sft.build_instance(images, words, config(tmp_path))
    assert result.skipped["image file missing"] > 0


def test_card_counts_mask_tokens_and_text_tokens(coco_images, words, himtok, tmp_path):
    from mllm_fixtures import build_tiny_tokenizer

    from masktok.data.sft.card import hf_token_counter, task_card

    result = sft.build_instance(coco_images[:3], words, config(tmp_path), negatives=1)
    counter = hf_token_counter(build_tiny_tokenizer(), himtok.vocabulary)
    word = sft.mask_words.format_words(list(range(8)), himtok.vocabulary)
    assert counter(word) == 10 and counter(word + word) == 20  # start + 8 codes + end, each one token
    card = task_card(result, himtok.vocabulary, counter)
    per_sample = [10 * len(s.masks) for s in result.samples]
    assert card.mask_tokens_per_sample.max == max(per_sample)
    assert card.mask_tokens_per_sample.mean == pytest.approx(np.mean(per_sample))
    assert card.masks_per_sample.mean == pytest.approx(np.mean([len(s.masks) for s in result.samples]))
    assert card.tokens_per_sample.min > card.mask_tokens_per_sample.min
    assert card.samples == 3 and card.turns.max == 1


def test_an_empty_instance_mask_fails_or_is_skipped_by_the_policy(tmp_path, himtok):
    from PIL import Image

    height, width = 20, 30
    Image.new("RGB", (width, height)).save(tmp_path / "a.jpg")
    full = np.zeros((height, width), dtype=bool)
    full[4:12, 5:20] = True
    rles = [mask_to_rle(full), mask_to_rle(np.zeros_like(full))]
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "height": height, "width": width}],
            "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": rle,
                             "bbox": [0, 0, 1, 1]} for i, rle in enumerate(rles)],
            "categories": [{"id": 1, "name": "thing"}]}
    refs = [{"ref_id": i, "image_id": 1, "ann_id": i, "split": "val",
             "sentences": [{"sent_id": 10 + i, "sent": f"thing {i}"}]} for i in (1, 2)]
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    (tmp_path / "refs.json").write_text(json.dumps(refs))
    images = sft.read_refs(tmp_path / "refs.json", tmp_path / "instances.json", tmp_path)
    words = sft.TokenizerWords(himtok)
    with pytest.raises(ValueError, match="annotation 2 .*empty mask.*empty_masks='skip'"):
        sft.build_res(images, words, sft.BuildConfig(zoom=None))
    result = sft.build_res(images, words, sft.BuildConfig(zoom=None, empty_masks="skip"))
    assert [s.meta["annotation_ids"] for s in result.samples] == [["1"]] and result.skipped == {"empty mask": 1}
    assert len(sft.regions_from_refs(images, "skip")) == 1
    with pytest.raises(ValueError, match="'keep' has no meaning for SFT answers"):
        sft.BuildConfig(empty_masks="keep")

"""Benchmark runners for whole-image tasks: GCG, PSG, open-vocabulary semantic segmentation,
tokenizer reconstruction and mask perception (see :mod:`masktok.eval.runner` for the shared
conventions: prediction JSONL in, ``metrics.json`` / ``metrics.md`` / ``per_sample.jsonl`` /
worst-case overlays out)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from masktok.eval.answers import split_gcg_answer, split_psg_answer
from masktok.eval.caption_metrics import CaptionMetricsUnavailable, caption_scores
from masktok.eval.datasets import read_gcg_jsonl, read_glamm_gcg, read_mcq_jsonl
from masktok.eval.gcg import GCGSample, evaluate_gcg
from masktok.masks.iou import decode_rles, union_rle
from masktok.eval.ovseg import SemSegConfusion, semantic_map_from_masks
from masktok.eval.perception import multiple_choice_accuracy, parse_choice
from masktok.eval.predictions import AnswerDecoder, check_coverage, index_records, record_masks
from masktok.eval.protocol import REFERENCE, check_protocol
from masktok.eval.psg import SceneGraph, evaluate_psg
from masktok.eval.recon import evaluate_reconstruction
from masktok.eval.report import Overlay
from masktok.eval.runner import RunResult, finish, load_rgb, worst_indices
from masktok.annotations.class_names import class_index, normalize_class_name
from masktok.eval.scene_datasets import (
    read_openpsg,
    read_semseg_dir,
    read_semseg_json,
)
from masktok.words.phrase_similarity import PhraseSimilarity, TextSimilarity


def _decoder(tokenizer: Any, image_root: str | Path | None, lenient: bool) -> AnswerDecoder:
    return AnswerDecoder(tokenizer, Path(image_root) if image_root else None, lenient)


def _gcg_prediction(rec: dict | None, ref: GCGSample, decoder: AnswerDecoder) -> tuple[GCGSample, dict]:
    size, where = (ref.height, ref.width), f"prediction image_id={ref.image_id}"
    if rec is None:
        return GCGSample(ref.image_id, ref.height, ref.width, [""], [], []), {"missing": True}
    if "answer" in rec:
        decoded = decoder.decode(rec["answer"], size, rec.get("file_name", ref.file_name))
        ans = split_gcg_answer(rec["answer"], decoded)
        info = {"phrases_without_mask": len(ans.phrases_without_mask), "stray_masks": ans.stray_masks,
                "undecoded_spans": ans.undecoded_spans}
        return GCGSample(ref.image_id, ref.height, ref.width, [ans.caption], ans.phrases, ans.masks), info
    masks_key = "masks" if "masks" in rec else "pred_masks"
    if masks_key not in rec or "phrases" not in rec or "caption" not in rec:
        raise ValueError(f"{where}: needs 'answer', or 'caption' + 'phrases' + 'masks'")
    try:
        pred = GCGSample(ref.image_id, ref.height, ref.width, [str(rec["caption"])], list(rec["phrases"]),
                         list(rec[masks_key]))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return pred, {}


def run_gcg(predictions: str | Path, annotations: str | Path, out_dir: str | Path | None = None, *,
            captions: str | Path | None = None, protocol: str = REFERENCE,
            similarity: TextSimilarity | PhraseSimilarity | None = None,
            caption_metrics: bool = True, tokenizer: Any = None, image_root: str | Path | None = None,
            lenient: bool = False, allow_missing: bool = False, worst: int = 5) -> RunResult:
    """GCG: AP50, mIoU, recall (and METEOR/CIDEr when pycocoevalcap and Java are present).

    ``annotations`` is masktok's GCG JSONL, or GLaMM's mask ground truth with ``captions`` its
    caption ground truth. ``similarity`` as in :func:`~masktok.eval.gcg.evaluate_gcg` (default:
    GLaMM's bert-base-uncased from the local cache, else lexical — and the report's headline
    then says the recall is not comparable with published numbers)."""
    check_protocol(protocol)
    refs = read_glamm_gcg(annotations, captions) if captions else read_gcg_jsonl(annotations)
    records = index_records(predictions, "image_id")
    check_coverage(set(records), [str(r.image_id) for r in refs], "images", allow_missing)
    decoder = _decoder(tokenizer, image_root, lenient)
    preds, infos = [], []
    for ref in refs:
        pred, info = _gcg_prediction(records.get(str(ref.image_id)), ref, decoder)
        preds.append(pred)
        infos.append(info)
    notes = []
    scores: dict[str, float] = {}
    if caption_metrics:
        try:
            scores = caption_scores({r.image_id: r.captions for r in refs},
                                    {p.image_id: p.captions[0] for p in preds})
        except CaptionMetricsUnavailable as exc:
            notes.append(f"METEOR and CIDEr skipped: {exc}")
    rows: list[dict] = []
    metrics = evaluate_gcg(refs, preds, protocol=protocol, similarity=similarity, caption_scores=scores,
                           per_image=rows)
    for row, info, pred in zip(rows, infos, preds):
        row.update(info)
        row["caption"] = pred.captions[0]
        row["matches"] = [list(m) for m in row["matches"]]
    for key, what in (("missing", "images had no prediction (scored empty)"),
                      ("stray_masks", "masks followed no phrase and were not scored"),
                      ("phrases_without_mask", "phrases had no mask and were not scored"),
                      ("undecoded_spans", "mask spans could not be decoded")):
        total = int(sum(int(i.get(key, 0)) for i in infos))
        if total:
            notes.append(f"{total} {what}")
    miou = np.array([r["mIoU"] for r in rows])
    overlays = []
    for i in worst_indices(miou, worst):
        ref, pred = refs[i], preds[i]
        size = (ref.height, ref.width)
        masks = decode_rles([union_rle(ref.masks, size), union_rle(pred.masks, size)], size)
        overlays.append(Overlay(name=str(ref.image_id), gt=masks[0], pred=masks[1], score=float(miou[i]),
                                image=load_rgb(Path(image_root) if image_root else None, ref.file_name, size)))
    return finish("gcg", metrics.as_dict(), rows, notes, out_dir, overlays,
                  {"predictions": predictions, "annotations": annotations, "captions": captions,
                   "protocol": protocol, "phrase_similarity": metrics.similarity_name},
                  headline=metrics.headline)


def _name_to_index(value: Any, names: dict[str, int], count: int, where: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{where}: a label must be a name or an index, got {value!r}")
    if isinstance(value, int):
        if not 0 <= value < count:
            raise ValueError(f"{where}: index {value} is outside 0..{count - 1}")
        return value
    if isinstance(value, str):
        return names.get(normalize_class_name(value), -1)
    raise ValueError(f"{where}: a label must be a name or an index, got {value!r}")


def _scene_graph(rec: dict | None, gt: SceneGraph, decoder: AnswerDecoder, objects: dict[str, int],
                 predicates: dict[str, int], n_obj: int, n_pred: int) -> tuple[SceneGraph, dict]:
    size, where = (gt.height, gt.width), f"prediction image_id={gt.image_id}"
    if rec is None:
        return SceneGraph(gt.image_id, gt.height, gt.width, [], [], np.zeros((0, 3))), {"missing": True}
    if "answer" in rec:
        decoded = decoder.decode(rec["answer"], size, rec.get("file_name", gt.extras.get("file_name")))
        ans = split_psg_answer(rec["answer"], decoded, objects, predicates)
        graph = SceneGraph(gt.image_id, gt.height, gt.width, ans.labels, ans.masks,
                           np.asarray(ans.relations, dtype=np.int64).reshape(-1, 3))
        return graph, {"malformed_lines": ans.malformed_lines, "unknown_names": ans.unknown_names,
                       "undecoded_spans": decoded.num_undecoded}
    if "instances" not in rec or "relations" not in rec:
        raise ValueError(f"{where}: needs 'answer', or 'instances' + 'relations'")
    labels = [_name_to_index(inst.get("label"), objects, n_obj, f"{where} instance {i}")
              for i, inst in enumerate(rec["instances"])]
    relations = []
    for i, rel in enumerate(rec["relations"]):
        if not isinstance(rel, list) or len(rel) != 3:
            raise ValueError(f"{where}: relations[{i}] must be [subject, object, predicate]")
        relations.append((rel[0], rel[1], _name_to_index(rel[2], predicates, n_pred, f"{where} relation {i}")))
    try:
        masks = [inst.get("mask") for inst in rec["instances"]]
        graph = SceneGraph(gt.image_id, gt.height, gt.width, labels, masks,
                           np.asarray(relations, dtype=np.int64).reshape(-1, 3), scores=rec.get("scores"))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return graph, {"unknown_names": sum(1 for v in labels if v < 0) + sum(1 for r in relations if r[2] < 0)}


def run_psg(predictions: str | Path, annotations: str | Path, out_dir: str | Path | None = None, *,
            panoptic_root: str | Path, protocol: str = REFERENCE, split: str | None = "test",
            tokenizer: Any = None, image_root: str | Path | None = None, lenient: bool = False,
            allow_missing: bool = False, ks: Sequence[int] = (20, 50, 100)) -> RunResult:
    """PSG R@K / mR@K on an OpenPSG file under ``protocol`` (``"reference"``: OpenPSG;
    ``"strict"``: every image counts, one-to-one instance matching; see :mod:`masktok.eval.psg`)."""
    check_protocol(protocol)
    ds = read_openpsg(annotations, panoptic_root, split)
    records = index_records(predictions, "image_id")
    check_coverage(set(records), [str(g.image_id) for g in ds.graphs], "images", allow_missing)
    decoder = _decoder(tokenizer, image_root, lenient)
    objects, predicates = class_index(ds.object_classes), class_index(ds.predicate_classes)
    preds, infos = [], []
    for gt in ds.graphs:
        graph, info = _scene_graph(records.get(str(gt.image_id)), gt, decoder, objects, predicates,
                                   len(ds.object_classes), len(ds.predicate_classes))
        preds.append(graph)
        infos.append(info)
    rows: list[dict] = []
    result = evaluate_psg(ds.graphs, preds, protocol=protocol, ks=ks,
                          num_predicates=len(ds.predicate_classes), per_image=rows)
    info_by_id = {gt.image_id: info for gt, info in zip(ds.graphs, infos)}
    for row in rows:
        row.update(info_by_id[row["image_id"]])
    problems = (("missing", "images had no prediction record (an empty prediction)"),
                ("malformed_lines", "answer lines were not triplets"),
                ("unknown_names", "labels or predicates are not in the class lists"))
    notes = [f"{total} {what}" for key, what in problems
             if (total := int(sum(int(i.get(key, 0)) for i in infos)))]
    if result.num_images_without_prediction:
        fate = ("left out of R@K and mR@K, as OpenPSG does" if protocol == REFERENCE
                else "scored 0")
        notes.append(f"{result.num_images_without_prediction} images with ground-truth relations "
                     f"had no predicted triplet: {fate}")
    if result.num_duplicate_gt_triplets:
        notes.append(f"{result.num_duplicate_gt_triplets} repeated ground-truth triplets were "
                     "counted once")
    return finish("psg", {"protocol": protocol, **result.as_dict()}, rows, notes, out_dir, (),
                  {"predictions": predictions, "annotations": annotations, "split": split,
                   "protocol": protocol})


def run_ovseg(predictions: str | Path, annotations: str | Path, out_dir: str | Path | None = None, *,
              classes: str | Path | None = None, reduce_zero_label: bool = False, tokenizer: Any = None,
              image_root: str | Path | None = None, lenient: bool = False, allow_missing: bool = False,
              worst: int = 5) -> RunResult:
    """Open-vocabulary semantic segmentation mIoU. ``annotations``: masktok's semantic JSON index,
    or a folder of label PNGs with ``classes`` (a names file). Prediction records: one per
    (image, class) question, ``{"image_id", "class", "masks" | "answer"}`` (no mask = absent), or
    ``{"image_id", "segments": [{"class", "mask"}]}``."""
    ds = (read_semseg_dir(annotations, classes, reduce_zero_label=reduce_zero_label)
          if Path(annotations).is_dir() else read_semseg_json(annotations))
    names = class_index(ds.classes)
    records = index_records(predictions, "image_id", multi=True)
    check_coverage(set(records), [im.image_id for im in ds.images], "images", allow_missing)
    decoder = _decoder(tokenizer, image_root, lenient)
    conf = SemSegConfusion(len(ds.classes), ds.ignore_index)
    rows, maps = [], []
    for im in ds.images:
        gt = ds.label_map(im)
        size = gt.shape
        masks, ids, unknown = [], [], 0
        for k, rec in enumerate(records.get(im.image_id, [])):
            where = f"prediction image_id={im.image_id} #{k}"
            items = rec["segments"] if "segments" in rec else [rec]
            for item in items:
                if "class" not in item:
                    raise ValueError(f"{where}: needs 'class'")
                cls = _name_to_index(item["class"], names, len(ds.classes), where)
                if "mask" in item:
                    item = {"masks": [item["mask"]]}
                p = record_masks(item, size, decoder, rec.get("file_name", im.file_name), where)
                if cls < 0:
                    unknown += 1
                elif p.masks:
                    masks.append(union_rle(p.masks, size))
                    ids.append(cls)
        pred_map = semantic_map_from_masks(masks, ids, *size)
        conf.update(pred_map, gt)
        labelled = gt != ds.ignore_index
        correct = labelled & (pred_map == gt)
        acc = float(correct.sum() / labelled.sum()) if labelled.any() else 1.0
        rows.append({"image_id": im.image_id, "pixel_accuracy": acc, "num_masks": len(masks),
                     "unknown_classes": unknown, **({"missing": True} if im.image_id not in records else {})})
        maps.append((labelled, correct))
    metrics = conf.compute()
    out = metrics.as_dict()
    out.update({f"IoU/{n}": v for n, v in zip(ds.classes, metrics.per_class_iou) if np.isfinite(v)})
    scores = np.array([r["pixel_accuracy"] for r in rows])
    overlays = [Overlay(name=ds.images[i].image_id, gt=maps[i][0], pred=maps[i][1], score=float(scores[i]),
                        image=load_rgb(Path(image_root) if image_root else None, ds.images[i].file_name,
                                       maps[i][0].shape)) for i in worst_indices(scores, worst)]
    notes = ["overlays: labelled pixels in green, correctly labelled pixels in yellow"]
    unknown = sum(r["unknown_classes"] for r in rows)
    if unknown:
        notes.append(f"{unknown} predicted class names are not in the class list (not scored)")
    return finish("ovseg", out, rows, notes, out_dir, overlays,
                  {"predictions": predictions, "annotations": annotations})


def run_recon(annotations: str | Path, tokenizer: Any, out_dir: str | Path | None = None, *,
              image_root: str | Path | None = None, prefix_lengths: Sequence[int] | None = None,
              max_images: int | None = None, include_crowd: bool = False, worst: int = 5) -> RunResult:
    """Tokenizer r-Acc on the instances of a COCO instances file (one batch per image)."""
    from masktok.annotations import read_coco_instances

    images = read_coco_instances(annotations)[:max_images]
    root = Path(image_root) if image_root else None
    samples, meta = [], []
    for img in images:
        keep = [k for k, inst in enumerate(img.instances) if include_crowd or not inst.iscrowd]
        if not keep:
            continue
        masks = img.masks()[keep]
        samples.append((img, masks))
        meta.append(img)
    if not samples:
        raise ValueError(f"{annotations}: no instance to reconstruct")

    def items():
        for img, masks in samples:
            image = AnswerDecoder(image_root=root).image(img.file_name) if root else None
            yield image, masks

    rows: list[dict] = []
    metrics = evaluate_reconstruction(tokenizer, items(), prefix_lengths, per_mask=rows)
    full = metrics.full_length
    for row in rows:
        img = meta[row["sample"]]
        row.update({"image_id": img.image_id, "annotation_id": img.instances[row["mask"]].id})
    scores = np.array([r[f"iou@{full}"] for r in rows])
    overlays = []
    for i in worst_indices(scores, worst):
        img, masks = samples[rows[i]["sample"]]
        gt = masks[rows[i]["mask"]:rows[i]["mask"] + 1]
        image = AnswerDecoder(image_root=root).image(img.file_name) if root else None
        decoded = tokenizer.decode(image, tokenizer.encode(image, gt), size=gt.shape[1:])
        decoded = np.asarray(decoded.cpu() if hasattr(decoded, "cpu") else decoded, dtype=bool)
        overlays.append(Overlay(name=f"{img.image_id}_{rows[i]['annotation_id']}", gt=gt[0], pred=decoded[0],
                                score=float(scores[i]), image=load_rgb(root, img.file_name, gt.shape[1:])))
    return finish("recon", metrics.as_dict(), rows, [], out_dir, overlays,
                  {"annotations": annotations, "prefix_lengths": list(prefix_lengths or [])})


def run_perception(predictions: str | Path, annotations: str | Path, out_dir: str | Path | None = None, *,
                   allow_missing: bool = False) -> RunResult:
    """Mask-perception multiple-choice accuracy (``{"id", "answer"}`` predictions)."""
    questions = read_mcq_jsonl(annotations)
    records = index_records(predictions, "id")
    check_coverage(set(records), [q.question_id for q in questions], "questions", allow_missing)
    choices, rows = [], []
    for q in questions:
        rec = records.get(q.question_id)
        if rec is not None and "answer" not in rec:
            raise ValueError(f"prediction id={q.question_id}: needs 'answer'")
        choice = None if rec is None else parse_choice(str(rec["answer"]), len(q.options), q.options)
        choices.append(choice)
        rows.append({"id": q.question_id, "choice": choice, "correct": q.answer, "hit": choice == q.answer,
                     **({"missing": True} if rec is None else {})})
    metrics = multiple_choice_accuracy(choices, [q.answer for q in questions])
    notes = [f"{metrics.num_unparsed} answers named no valid option"] if metrics.num_unparsed else []
    return finish("perception", metrics.as_dict(), rows, notes, out_dir, (),
                  {"predictions": predictions, "annotations": annotations})

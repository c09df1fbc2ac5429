"""Metrics and benchmark runners for every evaluation of the SAMTok and HiMTok papers.

Metrics (plain inputs: bool masks or COCO RLE, boxes, strings; values are fractions in [0, 1]):

* :mod:`~masktok.eval.res` — RES cIoU / gIoU / Pr@X (LISA, GLaMM);
* :mod:`~masktok.eval.gres` — gRefCOCO N-acc / T-acc / cIoU / gIoU / Pr@X (ReLA's evaluator);
* :mod:`~masktok.eval.gcg` — GCG AP50 / mIoU / recall (GLaMM), with
  :mod:`~masktok.words.phrase_similarity` and :mod:`~masktok.eval.caption_metrics` (METEOR, CIDEr);
* :mod:`~masktok.eval.coco` — the COCOeval wrapper behind every AP;
* :mod:`~masktok.eval.rec` — REC Acc@0.5/0.7/0.9, with :mod:`~masktok.eval.rec_answers` (the box
  forms each model family's published scorer reads);
* :mod:`~masktok.eval.psg` — PSG R@K / mR@K (OpenPSG's protocol and the strict one);
* :mod:`~masktok.eval.ovseg` — open-vocabulary semantic segmentation mIoU;
* :mod:`~masktok.eval.perception` — mask-perception multiple-choice accuracy;
* :mod:`~masktok.eval.recon` — tokenizer reconstruction r-Acc per prefix length;
* :mod:`~masktok.masks.iou` — the batched I/U kernels (numpy, torch on any device, RLE).

Every benchmark scores under a ``protocol`` (:mod:`~masktok.eval.protocol`): ``"reference"``
reproduces the published evaluation code exactly (the default), ``"strict"`` is masktok's variant.

Runners (:mod:`~masktok.eval.runner`, :mod:`~masktok.eval.scene_runner`) read ground truth
(:mod:`~masktok.eval.datasets`, :mod:`~masktok.eval.scene_datasets`) and prediction JSONL
(:mod:`~masktok.eval.predictions`, answers decoded by :mod:`~masktok.eval.answers`) and write
reports (:mod:`~masktok.eval.report`); ``masktok eval …`` is their command line.
"""

from masktok.eval.caption_metrics import CaptionMetricsUnavailable, caption_metrics_unavailable, caption_scores
from masktok.eval.coco import CocoEvalResult, coco_evaluate
from masktok.eval.gcg import GCGMetrics, GCGSample, evaluate_gcg, greedy_matched_ious, image_miou, phrase_matches
from masktok.eval.gres import GRESAccumulator, GRESMetrics, gres_metrics, gres_sample_scores
from masktok.masks.iou import intersection_union, rle_iou_matrix, dense_iou_matrix
from masktok.eval.ovseg import OVSegMetrics, SemSegConfusion, semantic_map_from_masks
from masktok.eval.perception import MCQMetrics, multiple_choice_accuracy, parse_choice
from masktok.eval.psg import PSGMetrics, SceneGraph, evaluate_psg, triplet_hits
from masktok.eval.protocol import PROTOCOLS, REFERENCE, STRICT
from masktok.eval.rec import RECMetrics, box_iou, rec_metrics
from masktok.eval.rec_answers import BOX_FORMATS, ParsedBox, answer_box, parse_boxes
from masktok.eval.recon import ReconMetrics, evaluate_reconstruction, reconstruction_ious
from masktok.eval.res import RESAccumulator, RESMetrics, res_metrics
from masktok.words.phrase_similarity import (
    DEFAULT_TEXT_SIMILARITY,
    PhraseSimilarity,
    embedding_similarity,
    glamm_similarity,
    lexical_similarity,
    mean_pooled_transformer_similarity,
)

__all__ = [
    "BOX_FORMATS",
    "CaptionMetricsUnavailable",
    "CocoEvalResult",
    "DEFAULT_TEXT_SIMILARITY",
    "GCGMetrics",
    "GCGSample",
    "GRESAccumulator",
    "GRESMetrics",
    "MCQMetrics",
    "OVSegMetrics",
    "PROTOCOLS",
    "PSGMetrics",
    "ParsedBox",
    "PhraseSimilarity",
    "RECMetrics",
    "REFERENCE",
    "RESAccumulator",
    "RESMetrics",
    "ReconMetrics",
    "STRICT",
    "SceneGraph",
    "SemSegConfusion",
    "answer_box",
    "box_iou",
    "caption_metrics_unavailable",
    "caption_scores",
    "coco_evaluate",
    "dense_iou_matrix",
    "embedding_similarity",
    "evaluate_gcg",
    "evaluate_psg",
    "evaluate_reconstruction",
    "glamm_similarity",
    "gres_metrics",
    "gres_sample_scores",
    "greedy_matched_ious",
    "image_miou",
    "intersection_union",
    "lexical_similarity",
    "mean_pooled_transformer_similarity",
    "multiple_choice_accuracy",
    "parse_boxes",
    "parse_choice",
    "phrase_matches",
    "rec_metrics",
    "reconstruction_ious",
    "res_metrics",
    "rle_iou_matrix",
    "semantic_map_from_masks",
    "triplet_hits",
]

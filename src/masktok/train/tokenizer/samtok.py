"""SAMTok training recipe: frozen SAM 2 parts, trained mask encoder / decoder, EMA codebooks.

Frozen: the image encoder (trunk and neck), the prompt encoder, the positional encodings, the IoU
head and the object-score head (with its token). Trained: the mask encoder and the rest of the
mask decoder (including ``conv_s0``/``conv_s1``). The residual codebooks follow their EMA updates
(all-reduced across ranks by the quantizer itself), not the optimizer.

A step takes ``batch_size`` images per rank, embeds each image once, and runs the mask encoder,
the quantizer and the mask decoder batched over up to ``masks_per_image`` masks of each image.
Loss: 2·BCE + 0.5·Dice at PointRend uncertainty points of the highest-IoU candidate's logits
(in the squashed S/4 frame) + the commitment loss.

Like the HiMTok sampler, the batch of step ``s`` on rank ``r`` is a pure function of (seed, s, r):
images in per-epoch permuted order, masks drawn from a generator seeded by the step.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from masktok.annotations.records import AnnotationError
from masktok.data.mask_pools.sources import MaskRecord, load_sources, read_image
from masktok.train.tokenizer.distributed import DistributedContext
from masktok.train.tokenizer.mask_sampler import step_seed
from masktok.train.tokenizer.objectives import point_sampled_mask_loss
from masktok.train.tokenizer.validation import mask_iou

FROZEN_PREFIXES = ("sam2.vision_encoder.", "sam2.prompt_encoder.", "sam2.shared_image_embedding.",
                   "sam2.no_memory_embedding", "sam2.mask_decoder.iou_prediction_head.",
                   "sam2.mask_decoder.pred_obj_score_head.", "sam2.mask_decoder.obj_score_token.", "quantizer.")


def freeze_for_training(model: nn.Module) -> list[str]:
    """Set ``requires_grad`` per the SAMTok recipe; returns the names of the trainable parameters."""
    trainable = []
    for name, param in model.named_parameters():
        param.requires_grad_(not name.startswith(FROZEN_PREFIXES))
        if param.requires_grad:
            trainable.append(name)
    return trainable


def group_by_image(records: list[MaskRecord]) -> list[list[MaskRecord]]:
    """Records grouped per image (first-seen order); every record needs an image path."""
    groups: dict[str, list[MaskRecord]] = defaultdict(list)
    for rec in records:
        if rec.image_path is None:
            raise AnnotationError(rec.source, rec.record, "SAMTok training needs the image of every mask, "
                                                          "but this source gives no image path")
        groups[rec.image_path].append(rec)
    return list(groups.values())


def perplexity(counts: torch.Tensor) -> float:
    """exp(entropy) of a non-negative count vector."""
    total = counts.float().sum()
    if total <= 0:
        return 0.0
    p = counts.float() / total
    return float(torch.exp(-(p * torch.log(p.clamp(min=1e-12))).sum()))


class SAMTokObjective(nn.Module):
    """``forward((pixels, image_index, boxes, prompts, targets), generator)`` → (loss, metrics)."""

    def __init__(self, model: nn.Module, commitment_weight: float = 1.0):
        super().__init__()
        self.model = model
        self.commitment_weight = commitment_weight

    def forward(self, batch, generator: torch.Generator | None = None):
        pixels, image_index, boxes, prompts, targets = batch
        model = self.model
        features = model.image_features(pixels)
        embeddings = model.mask_embeddings(features, image_index, boxes, prompts)
        quant = model.quantizer(embeddings)
        logits, iou = model.decode_logits(features, image_index, quant.quantized)
        chosen = model.best_mask(logits, iou).unsqueeze(1)
        gen = None
        if generator is not None:  # point sampling happens on the logits' device
            gen = torch.Generator(device=chosen.device).manual_seed(int(torch.randint(0, 2 ** 62, (1,),
                                                                                      generator=generator)))
        mask_loss = point_sampled_mask_loss(chosen, targets, generator=gen)
        total = mask_loss["loss"] + self.commitment_weight * quant.loss
        with torch.no_grad():
            pred, gt = chosen[:, 0] > 0, targets[:, 0] > 0.5
            inter = (pred & gt).flatten(1).sum(1).float()
            union = (pred | gt).flatten(1).sum(1).float()
            train_iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).mean()
        metrics = {"loss": total.detach(), "mask_loss": mask_loss["loss"].detach(), "bce": mask_loss["bce"].detach(),
                   "dice": mask_loss["dice"].detach(), "commitment": quant.loss.detach(), "train_iou": train_iou}
        for level, book in enumerate(model.quantizer.codebooks):
            metrics[f"ema_perplexity_l{level}"] = torch.tensor(perplexity(book.cluster_size_ema),
                                                               device=total.device)
            metrics[f"batch_perplexity_l{level}"] = torch.tensor(
                perplexity(torch.bincount(quant.codes[:, level].flatten(), minlength=book.codebook_size)),
                device=total.device)
        return total, metrics


class SAMTokRecipe:
    """Everything family-specific the trainer needs for SAMTok."""

    family = "samtok"

    def __init__(self, config, ctx: DistributedContext):
        from masktok.tokenizers.samtok import SAMTokModel, load_model, samtok_config, tiny_test_config

        self.config, self.ctx = config, ctx
        if config.tokenizer.init_from:
            self.model = load_model(config.tokenizer.init_from)
        elif Path(config.tokenizer.model).exists():
            self.model = load_model(config.tokenizer.model)
        elif config.tokenizer.model == "tiny-test":
            self.model = SAMTokModel(tiny_test_config())
        else:
            self.model = SAMTokModel(samtok_config(config.tokenizer.model))
        self.model.float().to(ctx.device).train()
        for book in self.model.quantizer.codebooks:
            book.dead_code_threshold = config.tokenizer.dead_code_threshold
        self.trainable = freeze_for_training(self.model)
        self.objective = SAMTokObjective(self.model)
        self.images = group_by_image(load_sources(tuple(config.tokenizer.data)))
        val_data = config.tokenizer.val_data
        self.val_images = group_by_image(load_sources(tuple(val_data))) if val_data else []
        if config.val_max_masks:
            self.val_images = self.val_images[:config.val_max_masks]
        self._pixels: dict[str, torch.Tensor] = {}
        self._perm_epoch, self._perm = -1, None

    # ---- data ---------------------------------------------------------------------------------
    def _image_pixels(self, path: str) -> torch.Tensor:
        """(3, S, S) float32 normalised pixels of an image (stretched), cached as uint8."""
        from masktok.tokenizers.samtok.preprocess import normalize_pixels, resize_rgb

        if path not in self._pixels:
            rgb = np.asarray(read_image(path))
            self._pixels[path] = torch.from_numpy(np.array(resize_rgb(rgb, self.model.config.image_size)))
        return normalize_pixels(self._pixels[path][None].to(self.ctx.device))[0]

    def _image_order(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(step_seed(self.config.seed, epoch, 0, stream=1))
            self._perm, self._perm_epoch = torch.randperm(len(self.images), generator=gen), epoch
        return self._perm

    def image_indices(self, step: int) -> list[int]:
        n, per = len(self.images), self.config.tokenizer.batch_size
        start = (step * self.ctx.world_size + self.ctx.rank) * per
        return [int(self._image_order(p // n)[p % n]) for p in range(start, start + per)]

    def _prepare(self, groups: list[list[MaskRecord]], gen: torch.Generator | None, limit: int):
        from masktok.tokenizers.samtok.preprocess import box_prompts, mask_boxes, soft_mask_prompts

        size, m = self.model.config.image_size, self.model.config.mask_size
        pixels, index, boxes, prompts, originals = [], [], [], [], []
        for row, group in enumerate(groups):
            picks = range(len(group)) if gen is None else \
                torch.randperm(len(group), generator=gen)[:limit].sort().values.tolist()
            chosen = [group[i] for i in picks]
            masks = []
            for rec in chosen:
                mask = rec.mask()
                if not mask.any():
                    raise AnnotationError(rec.source, rec.record, "empty mask")
                masks.append(mask)
            masks_t = torch.from_numpy(np.stack(masks)).to(self.ctx.device)
            h, w = masks_t.shape[1:]
            pixels.append(self._image_pixels(chosen[0].image_path))
            index.extend([row] * len(chosen))
            boxes.append(box_prompts(mask_boxes(masks_t), h, w, size))
            prompts.append(soft_mask_prompts(masks_t, m))
            originals.append(masks_t)
        device = self.ctx.device
        return (torch.stack(pixels), torch.tensor(index, device=device), torch.cat(boxes), torch.cat(prompts),
                originals)

    def batch(self, step: int):
        gen = torch.Generator().manual_seed(step_seed(self.config.seed, step, self.ctx.rank))
        groups = [self.images[i] for i in self.image_indices(step)]
        pixels, index, boxes, prompts, _ = self._prepare(groups, gen, self.config.tokenizer.masks_per_image)
        return pixels, index, boxes, prompts, prompts.clone()

    def data_state(self, next_step: int) -> dict:
        drawn = next_step * self.ctx.world_size * self.config.tokenizer.batch_size
        return {"seed": self.config.seed, "world_size": self.ctx.world_size,
                "batch_size": self.config.tokenizer.batch_size,
                "num_images": len(self.images), "epoch": drawn // len(self.images),
                "offset": drawn % len(self.images), "step": next_step}

    def check_data_state(self, state: dict) -> None:
        mine = self.data_state(int(state.get("step", 0)))
        for key in ("seed", "world_size", "batch_size", "num_images"):
            if state.get(key) != mine[key]:
                raise ValueError(f"cannot resume: the checkpoint's data stream has {key}={state.get(key)} "
                                 f"but this run has {key}={mine[key]}")

    # ---- validation and export ----------------------------------------------------------------
    @torch.no_grad()
    def validate(self, autocast_dtype: torch.dtype | None) -> dict[str, float]:
        """Reconstruction mIoU from level 0 alone (1 code) and both levels (2 codes)."""
        if not self.val_images:
            return {}
        from masktok.tokenizers.samtok.preprocess import resize_logits

        model = self.model
        was_training = model.training
        model.eval()
        scores: dict[int, list[float]] = {1: [], 2: []}
        threshold = model.config.mask_threshold
        try:
            for group in self.val_images:
                pixels, index, boxes, prompts, originals = self._prepare([group], None, 0)
                with torch.autocast(device_type=self.ctx.device.type, dtype=autocast_dtype,
                                    enabled=autocast_dtype is not None):
                    features = model.image_features(pixels)
                    codes = model.quantizer(model.mask_embeddings(features, index, boxes, prompts),
                                            update_codebooks=False).codes
                    for length in scores:
                        emb = model.quantizer.lookup(codes[:, :length])
                        logits, iou = model.decode_logits(features, index, emb)
                        best = resize_logits(model.best_mask(logits, iou).float(), tuple(originals[0].shape[1:]))
                        scores[length].extend(mask_iou(p > threshold, t) for p, t in zip(best, originals[0]))
        finally:
            model.train(was_training)
        return {f"val_miou@{l}": float(np.mean(v)) for l, v in scores.items()}

    def export(self, path: str | Path, dtype: torch.dtype) -> None:
        """Save a copy as a SAMTok folder (config.json + model.safetensors)."""
        from masktok.tokenizers.samtok import SAMTok

        SAMTok(model=copy.deepcopy(self.model).to("cpu"), device="cpu", dtype=torch.float32).save_pretrained(path)

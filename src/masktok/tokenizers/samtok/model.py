"""The SAMTok network: transformers' SAM 2 parts + :class:`MaskEncoder` + :class:`ResidualVQ`.

Submodules (these names are the keys of masktok's own checkpoint format):

- ``sam2``: a ``transformers`` ``Sam2Model`` (vision encoder, prompt encoder, mask decoder with its
  two-way transformer, positional encodings, no-memory embedding);
- ``mask_encoder``: :class:`~masktok.tokenizers.samtok.mask_encoder.MaskEncoder`;
- ``quantizer``: :class:`~masktok.tokenizers.quantizers.residual_vq.ResidualVQ`.

The pieces a tokenizer trainer calls with gradients are methods here, none wrapped in ``no_grad``:
:meth:`SAMTokModel.image_features`, :meth:`SAMTokModel.mask_embeddings` (before quantization),
``quantizer(...)`` (straight-through + commitment loss) and :meth:`SAMTokModel.decode_logits`
(the three candidate masks and their predicted IoU). Shapes use S = image size, C = hidden size,
e = S/16 (embedding side) and m = S/4 (mask side): 1024, 256, 64 and 256 for the official model.

Precision: the vision encoder, mask encoder and mask decoder run in the compute dtype (bf16 on
CUDA); the prompt encoder, the positional encodings and the codebooks stay in float32 — point
encodings take sines of large arguments and code assignment compares distances, both of which
bf16 would blur.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import Sam2Model

from masktok.tokenizers.quantizers.residual_vq import ResidualVQ
from masktok.tokenizers.samtok.config import SAMTokConfig
from masktok.tokenizers.samtok.hiera_attention import use_fused_attention
from masktok.tokenizers.samtok.mask_encoder import MaskEncoder

BOX_CORNER_LABELS = (2, 3)  # SAM's labels of a box's top-left and bottom-right corner points
NO_POINT_LABEL = -1


@dataclass
class ImageFeatures:
    """What the image encoder yields for a batch of B images.

    Attributes:
        embedding: (B, C, e, e) the stride-16 map with the no-memory embedding added.
        high_res: ((B, C/8, m, m), (B, C/4, m/2, m/2)) stride-4 and stride-8 maps, already through
            the mask decoder's ``conv_s0`` / ``conv_s1``.
    """

    embedding: torch.Tensor
    high_res: tuple[torch.Tensor, torch.Tensor]

    def __len__(self) -> int:
        return self.embedding.shape[0]

    def select(self, index: torch.Tensor) -> "ImageFeatures":
        """Rows ``index`` (K,) of the batch → features of K images (one per mask, typically)."""
        return ImageFeatures(self.embedding[index], (self.high_res[0][index], self.high_res[1][index]))

    @staticmethod
    def cat(parts: list["ImageFeatures"]) -> "ImageFeatures":
        return ImageFeatures(torch.cat([p.embedding for p in parts]),
                             (torch.cat([p.high_res[0] for p in parts]), torch.cat([p.high_res[1] for p in parts])))

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.embedding, self.high_res[0], self.high_res[1]


class SAMTokModel(nn.Module):
    """SAM 2 + mask encoder + residual quantizer, built from a :class:`SAMTokConfig`."""

    def __init__(self, config: SAMTokConfig) -> None:
        super().__init__()
        self.config = config
        self.sam2 = Sam2Model(config.to_sam2_config())
        use_fused_attention(self.sam2.vision_encoder.backbone)
        # SAM has one random-Fourier matrix for points and for the image grid; start them equal.
        with torch.no_grad():
            self.sam2.shared_image_embedding.positional_embedding.copy_(
                self.sam2.prompt_encoder.shared_embedding.positional_embedding)
        self.mask_encoder = MaskEncoder(config.mask_decoder_config())
        self.quantizer = ResidualVQ(config.hidden_size, config.codebook_size, config.codebook_depth,
                                    shared=config.shared_codebook)

    # Precision -----------------------------------------------------------------------------
    @property
    def compute_dtype(self) -> torch.dtype:
        return self.sam2.vision_encoder.backbone.patch_embed.projection.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.sam2.no_memory_embedding.device

    def _float32_parts(self) -> list[nn.Module]:
        return [self.sam2.prompt_encoder, self.sam2.shared_image_embedding, self.quantizer]

    def set_compute_dtype(self, dtype: torch.dtype) -> "SAMTokModel":
        """Cast the heavy networks to ``dtype``; prompt encoder, positional encodings and codebooks
        stay float32."""
        if not dtype.is_floating_point:
            raise ValueError(f"compute dtype must be a floating-point dtype, got {dtype}")
        self.to(dtype)
        for part in self._float32_parts():
            part.float()
        return self

    # Image side ----------------------------------------------------------------------------
    def image_features(self, pixel_values: torch.Tensor) -> ImageFeatures:
        """Normalised images (B, 3, S, S) → :class:`ImageFeatures` (compute dtype, with grad)."""
        size = self.config.image_size
        if pixel_values.dim() != 4 or tuple(pixel_values.shape[1:]) != (3, size, size):
            raise ValueError(f"pixel_values must have shape (B, 3, {size}, {size}), got {tuple(pixel_values.shape)}")
        vision = self.sam2.vision_encoder
        backbone = vision.backbone
        hidden = backbone.patch_embed(pixel_values.to(self.compute_dtype))
        hidden = hidden + backbone._get_pos_embed(hidden.shape[1:3])
        stage_outputs = []
        for index, block in enumerate(backbone.blocks):
            hidden = block(hidden)
            if index in backbone.stage_ends:
                stage_outputs.append(hidden)
        fpn, _ = vision.neck(stage_outputs)  # low → high resolution
        levels = fpn[-vision.num_feature_levels:][::-1]  # stride 4, 8, 16
        decoder = self.sam2.mask_decoder
        embedding = levels[2] + self.sam2.no_memory_embedding.reshape(1, -1, 1, 1).to(levels[2].dtype)
        return ImageFeatures(embedding, (decoder.conv_s0(levels[0]), decoder.conv_s1(levels[1])))

    def dense_positional_encoding(self) -> torch.Tensor:
        """(1, C, e, e) float32 positional encoding of the image embedding grid."""
        return self.sam2.get_image_wide_positional_embeddings()

    # Encode side ---------------------------------------------------------------------------
    def mask_prompt_embeddings(self, boxes: torch.Tensor, mask_inputs: torch.Tensor
                               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Box-as-two-points + soft-mask prompts → SAM prompt embeddings (float32).

        Args:
            boxes: (N, 4) x1, y1, x2, y2 in model-input pixels (already × S / (W, H)); SAM adds the
                +0.5 pixel-centre shift and appends one padding point.
            mask_inputs: (N, 1, m, m) soft masks in [0, 1].

        Returns:
            sparse (N, 3, C): corner 1 (label 2), corner 2 (label 3), padding point; dense (N, C, e, e).
        """
        count = boxes.shape[0]
        points = boxes.float().reshape(count, 1, 2, 2)
        labels = torch.full((count, 1, 2), BOX_CORNER_LABELS[0], device=boxes.device, dtype=torch.int32)
        labels[..., 1] = BOX_CORNER_LABELS[1]
        sparse, dense = self.sam2.prompt_encoder(input_points=points, input_labels=labels, input_boxes=None,
                                                 input_masks=mask_inputs.float())
        return sparse[:, 0], dense

    def mask_embeddings(self, features: ImageFeatures, image_index: torch.Tensor, boxes: torch.Tensor,
                        mask_inputs: torch.Tensor) -> torch.Tensor:
        """Continuous mask embeddings, before quantization (with grad).

        Args:
            features: :class:`ImageFeatures` of B images.
            image_index: (N,) int64, the image row of each mask.
            boxes: (N, 4) prompt boxes in model-input pixels (see :meth:`mask_prompt_embeddings`).
            mask_inputs: (N, 1, m, m) soft masks.

        Returns:
            (N, C) float32.
        """
        return self.mask_embeddings_of_rows(features.embedding[image_index], boxes, mask_inputs)

    def mask_embeddings_of_rows(self, image_rows: torch.Tensor, boxes: torch.Tensor,
                                mask_inputs: torch.Tensor) -> torch.Tensor:
        """:meth:`mask_embeddings` given each mask's image embedding row: image_rows (N, C, e, e)
        (compute dtype), boxes (N, 4), mask_inputs (N, 1, m, m) → (N, C) float32."""
        sparse, dense = self.mask_prompt_embeddings(boxes, mask_inputs)
        dtype = self.compute_dtype
        image = image_rows + dense.to(dtype)
        positional = self.dense_positional_encoding().to(dtype)
        return self.mask_encoder(image, positional, sparse.to(dtype)).float()

    # Decode side ---------------------------------------------------------------------------
    def decode_logits(self, features: ImageFeatures, image_index: torch.Tensor, embeddings: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask decoder prompted by (quantized) mask embeddings (with grad).

        The sparse prompt is SAM's "no prompt" (a dummy point of label −1 and the padding point)
        plus the embedding as a third token; the dense prompt is ``no_mask_embed``.

        Args:
            features: :class:`ImageFeatures` of B images.
            image_index: (N,) int64, the image row of each embedding.
            embeddings: (N, C) mask embeddings (e.g. ``quantizer(...).quantized``).

        Returns:
            logits (N, 3, m, m) float32, the multimask outputs; iou (N, 3) float32 predicted IoU.
        """
        count = embeddings.shape[0]
        device = embeddings.device
        points = torch.zeros(count, 1, 1, 2, device=device)
        labels = torch.full((count, 1, 1), NO_POINT_LABEL, device=device, dtype=torch.int32)
        sparse, dense = self.sam2.prompt_encoder(input_points=points, input_labels=labels, input_boxes=None,
                                                 input_masks=None)
        dtype = self.compute_dtype
        sparse = torch.cat([sparse, embeddings.reshape(count, 1, 1, -1).to(sparse.dtype)], dim=2).to(dtype)
        selected = features.select(image_index)
        positional = self.dense_positional_encoding().to(dtype).expand(count, -1, -1, -1)
        logits, iou, _, _ = self.sam2.mask_decoder(
            image_embeddings=selected.embedding, image_positional_embeddings=positional,
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense.to(dtype), multimask_output=True,
            high_resolution_features=list(selected.high_res))
        return logits[:, 0].float(), iou[:, 0].float()

    @staticmethod
    def best_mask(logits: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
        """(N, 3, m, m) candidates + (N, 3) IoU → (N, m, m) the candidate of highest predicted IoU."""
        best = iou.argmax(dim=-1)
        return logits[torch.arange(logits.shape[0], device=logits.device), best]

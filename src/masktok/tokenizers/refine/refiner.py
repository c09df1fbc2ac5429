"""``SAMRefiner``: refine de-tokenized masks with a SAM 2 mask decoder (transformers' ``Sam2Model``).

    refiner = SAMRefiner.from_pretrained("refiner/")            # masktok folder or Meta sam2.1_*.pt
    masks = refiner.refine(image, probs)                        # probs (N, H, W) in [0, 1]

The image is stretched to S×S (PIL bicubic, ImageNet normalisation, as SAMTok's SAM 2) and
encoded once per call; every mask becomes a dense prompt and a point prompt
(:func:`~masktok.tokenizers.refine.prompts.refine_prompts`); the decoder gives one mask
(multimask off) whose m×m logits are resized to the caller's size and thresholded at 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Sam2Model

from masktok.tokenizers.refine.checkpoint import infer_sam2_config, sam2_state_from_meta
from masktok.tokenizers.refine.prompts import refine_prompts
from masktok.tokenizers.samtok.checkpoint import CheckpointError, read_safetensors_state, read_torch_state
from masktok.tokenizers.samtok.config import SAMTokConfig
from masktok.tokenizers.samtok.preprocess import load_rgb, normalize_pixels, resize_rgb

REFINER_KINDS = ("sam2",)
REFINER_TYPE = "sam2-refiner"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
META_GLOB = "sam2*.pt"


class SAMRefiner:
    """A SAM 2 image encoder + prompt encoder + mask decoder used to refine masks.

    Attributes:
        model: the ``Sam2Model`` (eval mode; its mask decoder and mask-prompt convolutions are
            what :mod:`masktok.train.refine` fine-tunes).
        config: the SAM 2 size (a :class:`SAMTokConfig`; only its SAM 2 part is used).
        device, dtype: where it runs (fp32 on CPU; bf16 on CUDA by default).
    """

    def __init__(self, model: Sam2Model, config: SAMTokConfig, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype | None = None) -> None:
        self.device = torch.device(device)
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.config = config

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: SAMTokConfig, *, seed: int | None = None,
                    device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> "SAMRefiner":
        """A randomly initialised refiner of the SAM 2 size in ``config``."""
        if seed is not None:
            torch.manual_seed(seed)
        model = Sam2Model(config.to_sam2_config())
        with torch.no_grad():  # SAM has one random-Fourier matrix for points and the image grid
            model.shared_image_embedding.positional_embedding.copy_(
                model.prompt_encoder.shared_embedding.positional_embedding)
        return cls(model, config, device=device, dtype=dtype)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, config: SAMTokConfig | None = None,
                        device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> "SAMRefiner":
        """A masktok refiner folder (``config.json`` + ``model.safetensors``), a Meta
        ``sam2.1_hiera_*.pt`` file (its size read off the shapes unless ``config`` is given), or a
        folder holding exactly one of them.

        Raises:
            FileNotFoundError, CheckpointError: nothing usable at ``path``, or tensors that do
                not match (every difference named).
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"refiner: no file or folder at {path}")
        if path.is_dir():
            if (path / CONFIG_FILE).is_file():
                return cls._from_folder(path, device=device, dtype=dtype)
            files = sorted(path.glob(META_GLOB))
            if len(files) != 1:
                raise CheckpointError(f"{path}: expected a refiner folder ({CONFIG_FILE} + {WEIGHTS_FILE}) or "
                                      f"exactly one {META_GLOB} file, found {[p.name for p in files] or 'none'}")
            path = files[0]
        state = read_torch_state(path)
        config = config or infer_sam2_config(state, str(path))
        with torch.device("meta"):
            model = Sam2Model(config.to_sam2_config())
        model.load_state_dict(sam2_state_from_meta(model, config, state, str(path)), strict=True, assign=True)
        return cls(model.float(), config, device=device, dtype=dtype)

    @classmethod
    def _from_folder(cls, folder: Path, *, device: str | torch.device, dtype: torch.dtype | None) -> "SAMRefiner":
        data = json.loads((folder / CONFIG_FILE).read_text())
        if data.get("refiner_type") != REFINER_TYPE:
            raise CheckpointError(f"{folder / CONFIG_FILE}: refiner_type {data.get('refiner_type')!r}, expected "
                                  f"{REFINER_TYPE!r}")
        config = SAMTokConfig.from_dict(data["sam2"])
        with torch.device("meta"):
            model = Sam2Model(config.to_sam2_config())
        state = read_safetensors_state(folder / WEIGHTS_FILE)
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        problems = sorted(set(expected) ^ set(state)) + sorted(
            k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
        if problems:
            raise CheckpointError(f"{folder / WEIGHTS_FILE} does not match the refiner: {problems[:10]}")
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
        return cls(model, config, device=device, dtype=dtype)

    def save_pretrained(self, folder: str | Path) -> None:
        """Write ``config.json`` + ``model.safetensors`` (float32)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(json.dumps({"refiner_type": REFINER_TYPE,
                                                      "sam2": self.config.to_dict()}, indent=2) + "\n")
        state = {k: v.detach().float().cpu().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt", "refiner_type": REFINER_TYPE})

    # ---- refinement ----------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def mask_size(self) -> int:
        return self.config.mask_size

    def pixels(self, image: Any) -> torch.Tensor:
        """image → (1, 3, S, S) normalised pixels on the refiner's device."""
        rgb = resize_rgb(load_rgb(image), self.image_size)
        return normalize_pixels(torch.from_numpy(np.array(rgb))[None].to(self.device)).to(self.dtype)

    @torch.no_grad()
    def image_embeddings(self, image: Any) -> list[torch.Tensor]:
        """The image's SAM 2 feature maps (high-res ones first, no-memory embedding added)."""
        return self.model.get_image_embeddings(self.pixels(image))

    def mask_logits(self, embeddings: list[torch.Tensor], probs: torch.Tensor) -> torch.Tensor:
        """Refined m×m logits (N, m, m) for N soft masks of one image (gradients flow through the
        prompt encoder and the mask decoder; the image embeddings are fixed)."""
        prompts = refine_prompts(probs.to(self.device), mask_size=self.mask_size, image_size=self.image_size)
        n = prompts.points.shape[0]
        batch = [e.expand(n, -1, -1, -1) for e in embeddings]
        out = self.model(image_embeddings=batch, input_points=prompts.points.to(self.dtype),
                         input_labels=prompts.labels, input_masks=prompts.mask_logits.to(self.dtype),
                         multimask_output=False)
        return out.pred_masks[:, 0, 0].float()

    @torch.inference_mode()
    def refine(self, image: Any, probs: Any, *, size: tuple[int, int] | None = None,
               return_logits: bool = False) -> torch.Tensor:
        """Soft (or binary) masks (N, h, w) of ``image`` → refined masks (N, H, W) bool (logit > 0),
        or their logits; (H, W) = ``size`` or the image's size. ``probs`` are read in the
        stretched image frame, whatever their size."""
        masks = torch.as_tensor(np.asarray(probs) if not isinstance(probs, torch.Tensor) else probs)
        if masks.ndim != 3:
            raise ValueError(f"probs must have shape (N, H, W), got {tuple(masks.shape)}")
        masks = masks.float()
        rgb = load_rgb(image)
        height, width = size or rgb.shape[:2]
        if masks.shape[0] == 0:
            return torch.zeros(0, height, width, dtype=torch.float32 if return_logits else torch.bool)
        logits = self.mask_logits(self.image_embeddings(rgb), masks)
        logits = F.interpolate(logits.unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False)[:, 0]
        logits = logits.cpu()
        return logits if return_logits else logits > 0

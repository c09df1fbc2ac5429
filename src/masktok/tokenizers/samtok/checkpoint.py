"""SAMTok checkpoints: Meta-named official files ↔ masktok's transformers-named model.

Layouts read here (all strictly: errors list missing, unexpected and mis-shaped keys):

- the official tokenizer file ``mask_tokenizer_256x2.pth``: a flat state dict whose SAM 2 and
  mask-encoder tensors sit under ``model.sam2_model.`` (Meta names) and whose codebooks are
  ``quantizer.codebooks.<d>.{weight, cluster_size_ema, embed_ema}`` (992 tensors for Hiera-L);
- Meta's ``sam2.1_hiera_*.pt`` (``{"model": state dict}``), used for SAM 2 tensors that a
  tokenizer file lacks;
- masktok's own ``config.json`` + ``model.safetensors`` (the model's own key names).

Only ``torch.load(..., weights_only=True)`` is used. SAM 2's video-memory tensors
(``memory_*``, ``maskmem_*``, ``obj_ptr*``, ``mask_downsample``, ``no_obj_*``, ``no_mem_pos_enc``)
belong to the official layout but not to an image tokenizer: they are checked for shape and
dropped on load, and written as zeros by :func:`save_official_checkpoint` so that the file has the
official key set. The Meta→HF renames are those of the design notes (``trunk``→``backbone``,
``norm``→``layer_norm``, ``out_proj``→``o_proj``, MLP ``layers.i`` → ``proj_in``/``layers``/
``proj_out``, ``point_embeddings.i`` → rows of ``point_embed``, one positional matrix → both HF
copies, …); they are derived here from the model itself, so any Hiera size maps.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from transformers.models.sam2.modeling_sam2 import Sam2FeedForward

from masktok.tokenizers.samtok.config import HIERA_PRESETS, SAMTokConfig

TOKENIZER_SAM2_PREFIX = "model.sam2_model."
POSITIONAL_META_KEY = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
POSITIONAL_HF_KEYS = ("sam2.prompt_encoder.shared_embedding.positional_embedding",
                      "sam2.shared_image_embedding.positional_embedding")
POINT_EMBED_HF_KEY = "sam2.prompt_encoder.point_embed.weight"

_SAM2_RENAMES: list[tuple[str, str]] = [
    (r"^vision_encoder\.backbone\.", "image_encoder.trunk."),
    (r"^vision_encoder\.neck\.convs\.(\d+)\.", r"image_encoder.neck.convs.\1.conv."),
    (r"^prompt_encoder\.", "sam_prompt_encoder."),
    (r"^mask_decoder\.", "sam_mask_decoder."),
    (r"\.mask_embed\.conv1\.", ".mask_downscaling.0."),
    (r"\.mask_embed\.layer_norm1\.", ".mask_downscaling.1."),
    (r"\.mask_embed\.conv2\.", ".mask_downscaling.3."),
    (r"\.mask_embed\.layer_norm2\.", ".mask_downscaling.4."),
    (r"\.mask_embed\.conv3\.", ".mask_downscaling.6."),
    (r"\.upscale_conv1\.", ".output_upscaling.0."),
    (r"\.upscale_layer_norm\.", ".output_upscaling.1."),
    (r"\.upscale_conv2\.", ".output_upscaling.3."),
    (r"\.patch_embed\.projection\.", ".patch_embed.proj."),
    (r"\.layer_norm_final_attn\.", ".norm_final_attn."),
    (r"\.layer_norm(\d)\.", r".norm\1."),
    (r"\.o_proj\.", ".out_proj."),
    (r"^no_memory_embedding$", "no_mem_embed"),
]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not have the expected layout."""


class CheckpointKeyError(CheckpointError):
    """A state dict whose keys or shapes differ from the model's; lists every difference."""

    def __init__(self, source: str, missing: list[str], unexpected: list[str],
                 mismatched: list[tuple[str, tuple, tuple]]) -> None:
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        parts = [f"{source} does not match the SAMTok model:"]
        for title, items in (("missing", missing), ("unexpected", unexpected)):
            if items:
                shown = ", ".join(items[:20]) + (f", … ({len(items) - 20} more)" if len(items) > 20 else "")
                parts.append(f"{len(items)} {title} key(s): {shown}")
        if mismatched:
            shown = "; ".join(f"{k}: file {tuple(a)} vs model {tuple(b)}" for k, a, b in mismatched[:20])
            parts.append(f"{len(mismatched)} mis-shaped key(s): {shown}")
        super().__init__("\n  ".join(parts))


# Reading files ---------------------------------------------------------------------------------
def read_torch_state(path: str | Path) -> dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)`` of a flat state dict or of Meta's ``{"model": state}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, foreign bytes, pickled objects refused by weights_only
        raise CheckpointError(f"cannot read {path} as a PyTorch tensor checkpoint (corrupted, truncated, "
                              f"or not a weights-only state dict): {type(err).__name__}: {err}") from err
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    return _check_state(data, str(path))


def read_safetensors_state(path: str | Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:
        raise CheckpointError(f"{path}: not a valid safetensors file (corrupted or truncated?): "
                              f"{type(err).__name__}: {err}") from err


def _check_state(data: object, source: str) -> dict[str, torch.Tensor]:
    if not isinstance(data, dict) or not data:
        raise CheckpointError(f"{source} does not hold a state dict (got {type(data).__name__})")
    bad = [k for k, v in data.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source} is not a state dict of tensors: entries {bad[:5]} are not "
                              "string → tensor")
    return data


# The official layout of a model ------------------------------------------------------------------
def _feedforward_depths(model: torch.nn.Module) -> dict[str, int]:
    return {name: module.num_layers for name, module in model.named_modules() if isinstance(module, Sam2FeedForward)}


def _rename_feedforward(key: str, depths: dict[str, int]) -> str:
    module, _, leaf = key.rpartition(".")
    for prefix, depth in depths.items():
        if not module.startswith(prefix + "."):
            continue
        rest = module[len(prefix) + 1:]
        if rest == "proj_in":
            return f"{prefix}.layers.0.{leaf}"
        if rest == "proj_out":
            return f"{prefix}.layers.{depth - 1}.{leaf}"
        match = re.fullmatch(r"layers\.(\d+)", rest)
        if match:
            return f"{prefix}.layers.{int(match.group(1)) + 1}.{leaf}"
    return key


def _meta_name(hf_key: str, depths: dict[str, int]) -> str:
    """masktok key → official (Meta-named, prefixed) key, for keys that map one to one."""
    key = _rename_feedforward(hf_key, depths)
    if key.startswith("quantizer."):
        return key
    if key.startswith("mask_encoder."):
        inner = "sam_mask_encoder." + key[len("mask_encoder."):]
    elif key.startswith("sam2."):
        inner = key[len("sam2."):]
    else:
        raise ValueError(f"no official name for model key {hf_key!r}")
    for pattern, replacement in _SAM2_RENAMES:
        inner = re.sub(pattern, replacement, inner)
    return TOKENIZER_SAM2_PREFIX + inner


def video_only_shapes(config: SAMTokConfig) -> dict[str, tuple[int, ...]]:
    """Official SAM 2 video-memory tensors (unused for images) with their shapes, prefixed."""
    d, m, ff = config.hidden_size, config.memory_dim, 2048
    shapes: dict[str, tuple[int, ...]] = {
        "maskmem_tpos_enc": (7, 1, 1, m), "no_mem_pos_enc": (1, 1, d), "no_obj_ptr": (1, d),
        "no_obj_embed_spatial": (1, m), "mask_downsample.weight": (1, 1, 4, 4), "mask_downsample.bias": (1,),
        "memory_attention.norm.weight": (d,), "memory_attention.norm.bias": (d,),
        "memory_encoder.pix_feat_proj.weight": (d, d, 1, 1), "memory_encoder.pix_feat_proj.bias": (d,),
        "memory_encoder.out_proj.weight": (m, d, 1, 1), "memory_encoder.out_proj.bias": (m,),
        "obj_ptr_tpos_proj.weight": (m, d), "obj_ptr_tpos_proj.bias": (m,),
    }
    for i in range(4):
        layer = f"memory_attention.layers.{i}."
        for attn in ("self_attn", "cross_attn_image"):
            kv_in = d if attn == "self_attn" else m
            for proj, in_dim in (("q_proj", d), ("k_proj", kv_in), ("v_proj", kv_in), ("out_proj", d)):
                shapes[f"{layer}{attn}.{proj}.weight"] = (d, in_dim)
                shapes[f"{layer}{attn}.{proj}.bias"] = (d,)
        shapes.update({f"{layer}linear1.weight": (ff, d), f"{layer}linear1.bias": (ff,),
                       f"{layer}linear2.weight": (d, ff), f"{layer}linear2.bias": (d,)})
        for n in (1, 2, 3):
            shapes.update({f"{layer}norm{n}.weight": (d,), f"{layer}norm{n}.bias": (d,)})
    channels = [(1, 4), (4, 16), (16, 64), (64, 256)]
    for step, (cin, cout) in enumerate(channels):
        conv, norm = f"memory_encoder.mask_downsampler.encoder.{3 * step}", f"memory_encoder.mask_downsampler.encoder.{3 * step + 1}"
        shapes.update({f"{conv}.weight": (cout, cin, 3, 3), f"{conv}.bias": (cout,),
                       f"{norm}.weight": (cout,), f"{norm}.bias": (cout,)})
    shapes.update({"memory_encoder.mask_downsampler.encoder.12.weight": (d, 256, 1, 1),
                   "memory_encoder.mask_downsampler.encoder.12.bias": (d,)})
    for i in range(2):
        layer = f"memory_encoder.fuser.layers.{i}."
        shapes.update({f"{layer}gamma": (d,), f"{layer}dwconv.weight": (d, 1, 7, 7), f"{layer}dwconv.bias": (d,),
                       f"{layer}norm.weight": (d,), f"{layer}norm.bias": (d,), f"{layer}pwconv1.weight": (4 * d, d),
                       f"{layer}pwconv1.bias": (4 * d,), f"{layer}pwconv2.weight": (d, 4 * d), f"{layer}pwconv2.bias": (d,)})
    for i in range(3):
        shapes.update({f"obj_ptr_proj.layers.{i}.weight": (d, d), f"obj_ptr_proj.layers.{i}.bias": (d,)})
    return {TOKENIZER_SAM2_PREFIX + k: v for k, v in shapes.items()}


class OfficialLayout:
    """How a :class:`SAMTokModel`'s state maps onto the official tokenizer file's keys."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.config: SAMTokConfig = model.config
        self.model_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        depths = _feedforward_depths(model)
        self.renamed: dict[str, str] = {}  # official key → model key
        for key in self.model_shapes:
            if key in POSITIONAL_HF_KEYS or key == POINT_EMBED_HF_KEY:
                continue
            self.renamed[_meta_name(key, depths)] = key
        self.num_points = self.model_shapes[POINT_EMBED_HF_KEY][0]
        self.point_keys = [f"{TOKENIZER_SAM2_PREFIX}sam_prompt_encoder.point_embeddings.{i}.weight"
                           for i in range(self.num_points)]
        self.positional_key = TOKENIZER_SAM2_PREFIX + POSITIONAL_META_KEY
        self.video_only = video_only_shapes(self.config)

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every official key this model reads, with its shape (the file's full key set)."""
        shapes = {k: self.model_shapes[v] for k, v in self.renamed.items()}
        width = self.model_shapes[POINT_EMBED_HF_KEY][1]
        shapes.update({k: (1, width) for k in self.point_keys})
        shapes[self.positional_key] = self.model_shapes[POSITIONAL_HF_KEYS[0]]
        shapes.update(self.video_only)
        return shapes

    def to_model_state(self, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
        """Official state → model state. Video-only keys are optional, everything else required."""
        expected = self.expected_shapes()
        missing = [k for k in expected if k not in state and k not in self.video_only]
        unexpected = [k for k in state if k not in expected]
        mismatched = [(k, tuple(state[k].shape), expected[k]) for k in state
                      if k in expected and tuple(state[k].shape) != expected[k]]
        if missing or unexpected or mismatched:
            raise CheckpointKeyError(source, missing, unexpected, mismatched)
        out = {model_key: state[key] for key, model_key in self.renamed.items()}
        out[POINT_EMBED_HF_KEY] = torch.cat([state[k] for k in self.point_keys], dim=0)
        for key in POSITIONAL_HF_KEYS:
            out[key] = state[self.positional_key]
        return out

    def from_model_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Model state → the official file's state dict (video-only tensors as zeros)."""
        out = {key: state[model_key] for key, model_key in self.renamed.items()}
        for i, key in enumerate(self.point_keys):
            out[key] = state[POINT_EMBED_HF_KEY][i: i + 1]
        out[self.positional_key] = state[POSITIONAL_HF_KEYS[0]]
        out.update({k: torch.zeros(shape) for k, shape in self.video_only.items()})
        return {k: v.detach().cpu().float().contiguous().clone() for k, v in out.items()}


def merge_sam2_fallback(tokenizer_state: dict[str, torch.Tensor] | None,
                        sam2_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Meta SAM 2 tensors under the tokenizer prefix, overridden by the tokenizer's own ones."""
    merged = {TOKENIZER_SAM2_PREFIX + k: v for k, v in sam2_state.items()}
    merged.update(tokenizer_state or {})
    return merged


def check_model_state(state: dict[str, torch.Tensor], model: torch.nn.Module, source: str) -> None:
    """Strict key/shape comparison of a masktok-format state dict with ``model``."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [(k, tuple(state[k].shape), expected[k]) for k in state
                  if k in expected and tuple(state[k].shape) != expected[k]]
    if missing or unexpected or mismatched:
        raise CheckpointKeyError(source, missing, unexpected, mismatched)


# Config inference -------------------------------------------------------------------------------
def infer_official_config(state: dict[str, torch.Tensor], source: str) -> SAMTokConfig:
    """The SAMTok config of an official state dict: Hiera preset from its shapes, codebooks from
    the quantizer. Files that match no SAM 2.1 preset need an explicit config."""
    pos_key = TOKENIZER_SAM2_PREFIX + "image_encoder.trunk.pos_embed"
    if pos_key not in state:
        raise CheckpointError(f"{source} has no SAM 2 image encoder ({pos_key} missing); pass a "
                              "sam2.1_hiera_*.pt file for the SAM 2 part")
    embed_dim, bkg = state[pos_key].shape[1], tuple(state[pos_key].shape[2:])
    block_ids = {int(m.group(1)) for k in state
                 if (m := re.match(re.escape(TOKENIZER_SAM2_PREFIX) + r"image_encoder\.trunk\.blocks\.(\d+)\.", k))}
    hiera = next((h for h in HIERA_PRESETS.values() if h.embed_dim == embed_dim
                  and h.num_blocks == len(block_ids) and h.window_pos_embed_background == bkg), None)
    if hiera is None:
        raise CheckpointError(f"{source}: a Hiera with embed_dim {embed_dim}, {len(block_ids)} blocks and "
                              f"background {bkg} matches no SAM 2.1 preset; pass config=SAMTokConfig(...)")
    books = sorted({int(m.group(1)) for k in state if (m := re.match(r"quantizer\.codebooks\.(\d+)\.weight$", k))})
    if not books:
        raise CheckpointError(f"{source} has no quantizer codebooks (quantizer.codebooks.<d>.weight)")
    size = state[f"quantizer.codebooks.{books[0]}.weight"].shape[0] - 1
    hidden = state[TOKENIZER_SAM2_PREFIX + "no_mem_embed"].shape[-1] if TOKENIZER_SAM2_PREFIX + "no_mem_embed" in state else 256
    return SAMTokConfig(hiera=hiera, hidden_size=int(hidden), codebook_size=int(size), codebook_depth=len(books))


def save_official_checkpoint(model: torch.nn.Module, path: str | Path) -> Path:
    """Write ``model`` as an official ``mask_tokenizer_*.pth`` (flat, Meta-named, ``torch.save``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(OfficialLayout(model).from_model_state(model.state_dict()), path)
    return path

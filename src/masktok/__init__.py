"""masktok: a vocabulary of segmentation masks for multimodal LLMs.

A mask becomes a few discrete *mask words* that a vision-language model reads and writes like
text, and mask words become masks again. The data path reads straight through the package::

    image ──► tokenizers (SAMTok / HiMTok) ──► codes ──► words.format ──► text
    text  ──► words.parse ──► codes ──► tokenizers.decode ──► masks (masks.py: RLE, PNG, polygons)

``import masktok`` stays light: it never imports torchvision or the VLM/training stacks.
"""

__version__ = "0.1.0"


def load_default(device="cpu", dtype=None, name=None):
    """The shipped default mask tokenizer (a compact HiMTok), or the shipped one called ``name``
    (e.g. ``"masktok-box-v1"``); see :mod:`masktok.default_model`.

    Imported on first call, so ``import masktok`` stays light.
    """
    from masktok.default_model import load_default as _load_default

    return _load_default(device=device, dtype=dtype, name=name)

"""masktok: a vocabulary of segmentation masks for multimodal LLMs.

A mask becomes a few discrete *mask words* that a vision-language model reads and writes like
text, and mask words become masks again. The data path reads straight through the package::

    image ──► tokenizers (SAMTok / HiMTok) ──► codes ──► words.format ──► text
    text  ──► words.parse ──► codes ──► tokenizers.decode ──► masks (masks.py: RLE, PNG, polygons)

``import masktok`` stays light: it never imports torchvision or the VLM/training stacks.
"""

__version__ = "0.1.0"

"""Optional SAM refinement of de-tokenized masks (HiMTok paper §3 "Inference" and Appendix C).

A mask from a de-tokenizer (HiMTok needs no image, so fine edges can be lost) is fed, with its
image, to a SAM 2 mask decoder on transformers' ``Sam2Model``: the mask as a dense prompt
(probabilities p → logits (2p − 1) · 6) and its centroid as a point prompt (foreground, or
background for a thin mask that touches the border), one output mask.

- :mod:`.prompts`: the prompts made from a batch of masks;
- :mod:`.refiner`: :class:`SAMRefiner` (build, load, save, refine);
- :mod:`.checkpoint`: Meta's ``sam2.1_hiera_*.pt`` → the ``Sam2Model`` state;
- :mod:`.refined`: :class:`RefinedTokenizer`, any tokenizer whose decoding ends in refinement
  (what ``refine="sam2"`` / ``--refine sam2`` turn on; without it nothing is refined).

The fine-tuning recipe (masks made imperfect on purpose) is :mod:`masktok.train.refine`.
"""

from masktok.tokenizers.refine.prompts import RefinePrompts, refine_prompts
from masktok.tokenizers.refine.refined import RefinedTokenizer, with_refinement
from masktok.tokenizers.refine.refiner import REFINER_KINDS, SAMRefiner

__all__ = ["REFINER_KINDS", "RefinePrompts", "RefinedTokenizer", "SAMRefiner", "refine_prompts", "with_refinement"]

"""The transfer study: Hernandez et al. 2021, "Scaling Laws for Transfer" (arXiv 2102.01293).

Question: how much is pre-training on one distribution worth in data of another? A model
pre-trained on A (English) and fine-tuned on D_F tokens of B (Python) reaches the loss that a model
of the same size trained from scratch reaches only with D_E tokens of B; D_T = D_E - D_F is the
effective data transferred, D_E / D_F the effective data multiplier. The paper fits
D_T = k D_F^alpha N^beta (N non-embedding parameters): text -> Python k 1.9e4, alpha 0.18, beta 0.38,
and sees small pre-trained models do worse than from scratch at large D_F ("ossification").

Design: stage 0 pre-trains a size ladder on A (`source_a`, default 'stdlib:prose', the docstrings
and comments of the embedded corpus). Stage 1 fine-tunes each on the first D_F tokens of B
(`source_b`, default 'stdlib:code', the same corpus's code without them) at D_F spanning >= 3
orders of magnitude, and trains the same sizes from scratch on the first D tokens of B over a wider
range; both with early stopping on B's validation loss (`train.early_stop_patience`) and one
recipe, so that they differ only by the starting weights (`train.init_from`). A and B share the
byte tokenizer.

Outputs (`analyze`): `fit` {k, alpha, beta, ci, paper_inside}; per size the from-scratch and
fine-tuned points and a table of D_E, D_T and the multiplier (D_E read off the from-scratch curve by
interpolation in log D; outside the measured range extrapolated along a power law and flagged);
`ossified` fine-tunes; notes on compute-capped runs and how small scale differs.
Presets: quick (2 CPU cores, a few minutes), full (one GPU).
"""

from scalelab.studies.transfer.analyze import analyze, summary
from scalelab.studies.transfer.config import Config
from scalelab.studies.transfer.figures import figures, sections
from scalelab.studies.transfer.plan import plan

__all__ = ["Config", "analyze", "figures", "plan", "sections", "summary"]

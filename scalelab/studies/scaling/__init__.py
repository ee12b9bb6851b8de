"""The scaling study: Kaplan et al. 2020 ("Scaling laws for neural language models") and Hoffmann
et al. 2022 ("Training compute-optimal large language models").

Question: is language-model loss a predictable function of scale? Fit the laws on small runs and
forecast a larger one, with intervals (the "predictable loss" half of Ganguli et al. 2022).

Design: a sweep of model sizes (and, in the `quick`/`full` presets, token budgets) on one corpus;
`seeds` replicate seeds per point measure the noise floor. The `demo` preset trains five small
models on the same token budget and one larger model with at least 4x the compute of any of them.

Outputs (`analyze` -> `results["fits"]`):
- `power_N`: L(N) = E + A N^-alpha on final validation loss, N non-embedding (Kaplan), with
  bootstrap intervals;
- `compute_frontier`: Kaplan's L(C) fitted to the lower envelope of all runs' loss-vs-FLOPs curves;
- `chinchilla`: L(N, D) = E + A/N^alpha + B/D^beta (Approach 3) on total parameters (Hoffmann), when
  the runs vary N and D independently; `isoflop`: Approach 2 when the design has IsoFLOP profiles,
  with the tokens each run actually had;
- `forecast`: the chosen law fitted on the runs with at most 1/4 of the largest run's FLOPs,
  predicting it: `rel_error`, `rel_error_ci` and the 95% `prediction_interval` (refit spread plus
  the noise of one observation), one entry per held-out run.
Presets: demo (2 CPU cores, about 3 minutes), quick (2 CPU cores, <= 15 min), full (one GPU).
"""

from scalelab.studies.scaling.analyze import analyze, analyze_group, headline, summary
from scalelab.studies.scaling.config import Config
from scalelab.studies.scaling.figures import figures, write
from scalelab.studies.scaling.plan import plan

__all__ = ["Config", "analyze", "analyze_group", "figures", "headline", "plan", "summary", "write"]

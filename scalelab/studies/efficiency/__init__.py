"""The algorithmic-efficiency study: Hernandez & Brown 2020 ("Measuring the algorithmic efficiency of
neural networks", arXiv 2005.04305).

Question: how much less training compute does a newer recipe need to reach the same capability?
The paper fixes a target (AlexNet's ImageNet accuracy) and measures each method's training compute
until the first epoch at which it matches it: 44x less from 2012 to 2019, efficiency doubling about
every 16 months.

Design: recipes (the `gpt2` recipe as the "2019" baseline, `modern`, `modern` + Muon, and any recipe a
preset adds: a name, a date and overrides of the run config) x a few sizes x seeds, each run evaluated
often (`evals` per run) so that the crossing of the target loss is resolved. The target is given
(`target_loss`) or the baseline's final loss. Each recipe is taken at its best size (least compute to
target, seeds averaged geometrically); runs are matched to the plan by config hash.

Outputs (`analyze`): `multipliers` {recipe: [value, lo, hi]} (baseline compute / recipe compute, 95%
bootstrap over seeds with the best size chosen again in each resample), `compute` {recipe: [FLOPs,
lo, hi]}, the `compute_to_target` table per recipe and size, `doubling_time_months` [value, lo, hi]
when at least three dated recipes reach the target, and `unreached` (recipes that never reached it
and by how much). With `paper_table = true` (`scalelab study efficiency --paper-table`) nothing is
trained: the doubling time is fitted on the paper's ImageNet table (`laws.efficiency.PAPER_IMAGENET`).
Presets: quick (2 CPU cores, a few minutes), full (one GPU).
"""

from scalelab.studies.efficiency.analyze import analyze, summary
from scalelab.studies.efficiency.config import Config
from scalelab.studies.efficiency.figures import figures
from scalelab.studies.efficiency.plan import plan
from scalelab.studies.efficiency.report import sections

__all__ = ["Config", "analyze", "figures", "plan", "sections", "summary"]

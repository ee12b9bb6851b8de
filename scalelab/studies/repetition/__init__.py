"""Repeated data: Hernandez et al. 2022, "Scaling Laws and Interpretability of Learning from Repeated Data".

Question. How much does a small, heavily repeated subset of the training data hurt a language
model, at which repeat count R is the damage worst (double descent), and does it damage the
copying / induction-head mechanism?

Design (the paper's Section 2, at any scale; `config.Design`). Every model size trains on the same
token budget D, once on data seen once (the baseline) and once per treatment (f, R): a share f of
the D training tokens comes from a random subset of exactly f D / R tokens seen R times, the rest
is unique (`data.RepetitionMixer`). Every cell runs over `design.seeds` seeds (paired with the
baseline of the same seed). Test loss is measured on the val split, which holds none of the
subset; loss on the subset is logged beside it, and the mechanism probes (prefix matching and
copying, Olsson et al. 2022; Section 5) run at every evaluation. A `[corpus]` table trains on
text with repeated random spans instead (`data.repetition.write_copy_corpus`), so that small
CPU models form induction heads at all.

Outputs (`analyze`, plain data with intervals; `rules` holds the tests, `laws.inversion` the law):
- eval noise sigma from the baseline curves' jitter and from replicate seeds;
- double descent during training: a sustained rise of test loss after an earlier minimum;
- double descent across R: the R of largest degradation per size, claimed as a peak only when it
  exceeds both neighbours by more than the noise threshold (else "no peak resolved");
- effective size: L(N) fitted on the baselines and inverted at each degraded loss, "performs like
  a model k times smaller", with a bootstrap interval; the data-constrained law (Muennighoff
  et al. 2023) for the same runs;
- the probes at the end of training, treated minus baseline, with intervals over seeds.

Presets: `quick.toml` (2 CPU cores, about 10 min: the double descent across R),
`mechanism.toml` (2 CPU cores, <= 15 min: induction heads form in the baselines, and the probes
show what repetition does to them), `full.toml` (one GPU). Run:
`scalelab study repetition --preset quick [--set design.seeds=2] [--dry-run] [--json]`.
"""

from scalelab.studies.repetition.analyze import analyze, summary
from scalelab.studies.repetition.config import Config
from scalelab.studies.repetition.figures import figures, sections
from scalelab.studies.repetition.plan import plan

__all__ = ["Config", "analyze", "figures", "plan", "sections", "summary"]

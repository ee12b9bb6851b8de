"""Askell et al. 2021 (arXiv 2112.00861): ranked PM vs binary discrimination vs imitation, with and without PMP.

Question: which objective learns human-like preferences most sample-efficiently, how does it
scale with model size, and does preference-model pre-training (PMP) help fine-tuning?

Design (the paper's sections 4 and 5, on a gold-known task):

1. Stage 0: pre-train GPT backbones of several sizes on the embedded corpus (`backbone-<size>`).
2. The code-validity comparison set (a function that parses preferred to a minimally broken copy),
   split by source document into train and test; the PMP set from the train documents only.
3. Stage 1: PMs with each objective (ranked, binary, imitation) on every backbone
   (`pm-<size>-<objective>-n<N>`), and on the largest one with growing numbers of training
   comparisons; PMP stages (`pmp-<binary|ranked>-<size>`): the ranked loss on the binarised (or
   raw) automatic set; each backbone alone choosing by log-probability (`zeroshot-<size>`).
4. Stage 2: the ranked / binary PMs fine-tuned from a PMP stage (`pm-<size>-<objective>-<v>pmp-n<N>`).

Every run goes through the sweep machinery: an interrupted study resumes, finished runs are reused
by config hash, `--executor ray` spreads them, `--dry-run` shows the plan. PMs are trained by
`scalelab.align.pm_run.pm_worker` (kind "pm"), which finds its backbone as ``run:<name>``.

Outputs: held-out accuracy with 95% bootstrap intervals per size / objective / training-set size,
the PMP stages' own accuracy, calibration (ECE, reliability diagrams), and a fit of
Acc = a + b log N + c log D (Bai et al. 2022, arXiv 2204.05862).

    scalelab study preference --preset quick [--set sizes=['3xs','2xs']] [--dry-run] [--json]
"""

from scalelab.studies.preference.analyze import analyze, summary
from scalelab.studies.preference.config import Config
from scalelab.studies.preference.figures import figures, sections
from scalelab.studies.preference.plan import build_sets as prepare
from scalelab.studies.preference.plan import plan

__all__ = ["Config", "analyze", "figures", "plan", "prepare", "sections", "summary"]

"""Askell et al. 2021 (arXiv 2112.00861): prompting and context distillation, across model size.

Question: a prompt makes a language model act in a given way; does context distillation (training
the model without the prompt to match its prompted self) carry that behaviour into the weights, at
what cost on plain text (the "alignment tax"), and is a prompted or distilled model a better
starting point for preference modelling than the plain one? And (Bai et al. 2022, arXiv 2204.05862)
how well do a model's activations tell in- from out-of-distribution prompts, layer by layer?

Design, on a behaviour a tiny model can show: a corpus in which half the documents are written in
capitals, and a prompt of a few capitalised lines (shipped as ``upper``), so that the prompted
model writes capitals more often.

1. Stage 0: language models of several sizes on that corpus (`lm-<size>`).
2. Stage 1: each model's context-distilled student (`distill-<size>`, run kind "distill": the
   teacher's top-k log-probs plus a remainder bucket cached once, KL(p(x|prompt) || p_theta(x)));
   PMs on the plain model and on the prompted model (the prompt before every comparison).
3. Stage 2: PMs on the distilled students. Every PM is trained on the same automatic comparisons.
4. Analysis, per size: the format choice (capitalised vs as-written text, by log-probability) and
   the share of capitals written, for the plain model without / with the prompt and the student;
   held-out loss and the alignment tax with bootstrap intervals; the distillation's KL before and
   after; PM accuracy from the three starting points; OOD AUROC per layer (`scalelab.evals.ood`).

    scalelab study assistant --preset quick [--set sizes=['3xs']] [--dry-run] [--json]
"""

from scalelab.studies.assistant.analyze import analyze, summary
from scalelab.studies.assistant.config import Config
from scalelab.studies.assistant.figures import figures
from scalelab.studies.assistant.plan import plan

__all__ = ["Config", "analyze", "figures", "plan", "summary"]

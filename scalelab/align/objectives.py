"""The three preference-modelling objectives of Askell et al. 2021 (arXiv 2112.00861, section 4).

- ranked preference modelling: L = log(1 + exp(r_bad - r_good)) = softplus(r_bad - r_good), so
  that P(good > bad) = sigmoid(r_good - r_bad) (their eq. in section 4.1; Bai et al. 2022,
  arXiv 2204.05862, use the same loss);
- binary discrimination: every response is labelled good (1) or bad (0) on its own and the scalar
  is a classifier logit, trained with binary cross-entropy, -y log sigmoid(r) - (1 - y) log(1 - sigmoid(r));
- imitation learning: the language-model loss on the good responses only (response tokens only);
  at evaluation the response with the larger log-probability, summed over its tokens, is chosen.

Pure functions of tensors: they know no model, tokenizer or data format. A comparison's optional
``margin`` is not used: the papers' losses have none.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

OBJECTIVES = ("ranked", "binary", "imitation")


def ranked_loss(scores_good: torch.Tensor, scores_bad: torch.Tensor) -> torch.Tensor:
    """Mean of log(1 + exp(r_bad - r_good)) over pairs (Askell et al. 2021, section 4.1)."""
    return F.softplus(scores_bad.float() - scores_good.float()).mean()


def binary_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of scalar logits against labels in {0, 1} (1 = good)."""
    return F.binary_cross_entropy_with_logits(scores.float(), labels.float())


def response_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over positions of log p(target | context), skipping targets of -1: (B, T, V), (B, T) -> (B,).

    ``targets[b, t]`` is the token that should follow position t (the next token), or -1 where the
    position is not part of the response (prompt, padding).
    """
    B, T, V = logits.shape
    nll = F.cross_entropy(logits.float().reshape(-1, V), targets.reshape(-1), ignore_index=-1, reduction="none")
    return -nll.view(B, T).sum(dim=-1)  # ignored positions contribute 0


def imitation_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over response tokens (targets != -1): the LM loss on good samples."""
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)

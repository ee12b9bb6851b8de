"""Gold rewards: verifiable properties of a completion, and a noisy Bradley-Terry labeller built on them.

Gao et al. 2022 ("Scaling Laws for Reward Model Overoptimization", arXiv 2210.10760) measure
over-optimisation in a setting where the true ("gold") reward is known: a gold model labels
comparisons, proxy reward models are trained on those labels, and the policy optimises a proxy
while the gold reward is measured alongside. Here the gold reward is a property of the text that
a program can check, so that a tiny byte-level policy trained on the embedded corpus (Python
standard-library source) has a moderate base rate that a minute of RL can move:

- ``balanced``: the brackets of prompt + response close in order; 1 when the response leaves none
  open, 1 / (1 + k) with k brackets left open, 0 after a mismatched or unmatched closer.
- ``parses``: the response's complete lines continue the prompt into valid Python (a valid prefix
  of a program: an open block or bracket is allowed, a syntax error is not), as a fraction of
  those lines; the unfinished last line does not count; a response without a complete line scores 0.
- ``keywords``: the fraction of the response's words that are Python keywords.
- ``spacing``: a gold with an interior optimum, exp(-((s - 0.45) / 0.12)^2 / 2) of the response's
  whitespace share s. The tiny policies write bodies with a share of 0.33 (sd 0.16, 95th percentile
  0.62), so nearly every labelled pair sits below the optimum and says "more whitespace is better":
  a proxy trained on those labels learns that monotone trend, and a policy that follows it past 0.45
  (towards a body of blanks) loses gold reward while the proxy still rises. This is the premise of
  Gao et al.'s over-optimisation: the proxy is fitted on the initial policy's samples and is wrong
  where the optimised policy goes. The verifiable rewards above saturate instead (a tiny policy
  reaches ``balanced`` = 1 by opening no bracket), so they show no gold peak at small scale.

`gold_reward(name)` returns a `RewardFn` ``(prompts, responses) -> scores``. `label_pairs` turns
two responses per prompt into `Comparison`s with the Bradley-Terry labeller
P(A > B) = sigmoid((g_A - g_B) / temperature) (temperature 0: the higher gold score always wins).
"""

from __future__ import annotations

import codeop
import keyword
import math
import random
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from scalelab.data.comparisons import Comparison
from scalelab.errors import UserError

RewardFn = Callable[[list[str], list[str]], list[float]]
OPEN, CLOSE = "([{", ")]}"
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
STRING = re.compile(r"'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\"|#[^\n]*", re.S)


def _code_only(text: str) -> str:
    """The text with string literals and comments blanked, so that their brackets and words do not count."""
    return STRING.sub(lambda m: " " * len(m.group(0)), text)


def _open_brackets(text: str) -> list[str] | None:
    """The stack of brackets left open by ``text`` (strings and comments ignored); None on a mismatch."""
    stack: list[str] = []
    for ch in _code_only(text):
        if ch in OPEN:
            stack.append(ch)
        elif ch in CLOSE:
            if not stack or OPEN.index(stack.pop()) != CLOSE.index(ch):
                return None
    return stack


def balanced_score(prompt: str, response: str) -> float:
    """1 / (1 + brackets the response leaves open beyond the prompt's); 0 after a mismatched closer."""
    before = _open_brackets(prompt)
    after = _open_brackets(prompt + response)
    if after is None:
        return 0.0
    return 1.0 / (1.0 + max(0, len(after) - len(before or [])))


def _valid_prefix(source: str) -> bool:
    """True when ``source`` is a whole Python program or a prefix of one (an open block or bracket)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences in sampled strings are not our business
        try:
            codeop.compile_command(source, "<gold>", "exec")
        except (SyntaxError, ValueError, OverflowError):
            return False
    return True


def parses_score(prompt: str, response: str) -> float:
    """Fraction of the response's complete lines after which prompt + response is still a valid prefix.

    Lines are checked cumulatively (a line after a syntax error cannot repair it); the last, unfinished
    line (no newline yet) does not count; no complete line scores 0, so silence is not rewarded.
    """
    lines = response.split("\n")[:-1]
    if not lines:
        return 0.0
    text, good = prompt, 0
    for line in lines:
        text += line + "\n"
        if not _valid_prefix(text):
            break
        good += 1
    return good / len(lines)


def keywords_score(prompt: str, response: str) -> float:
    """Fraction of the response's words (outside strings and comments) that are Python keywords."""
    words = WORD.findall(_code_only(response))
    return sum(keyword.iskeyword(w) for w in words) / len(words) if words else 0.0


def whitespace_share(response: str) -> float:
    """Share of the response's characters that are whitespace (spaces, tabs, newlines); 0 for an empty response."""
    return sum(c.isspace() for c in response) / len(response) if response else 0.0


def bump(x: float, best: float, width: float) -> float:
    """exp(-((x - best) / width)^2 / 2): 1 at x = best, exp(-1/2) at best +- width, towards 0 far away."""
    return math.exp(-0.5 * ((x - best) / width) ** 2)


SPACING_BEST, SPACING_WIDTH = 0.45, 0.12


def spacing_score(prompt: str, response: str) -> float:
    """Gold with an interior optimum: bump(whitespace share of the response, 0.45, 0.12)."""
    return bump(whitespace_share(response), SPACING_BEST, SPACING_WIDTH)


@dataclass(frozen=True)
class GoldReward:
    name: str
    score: Callable[[str, str], float]
    description: str


GOLD_REWARDS: dict[str, GoldReward] = {
    g.name: g
    for g in (
        GoldReward("balanced", balanced_score, "brackets close in order: 1/(1 + left open), 0 on a mismatch"),
        GoldReward("parses", parses_score, "fraction of complete response lines that keep the program valid"),
        GoldReward("keywords", keywords_score, "fraction of response words that are Python keywords"),
        GoldReward("spacing", spacing_score, "whitespace share near 0.45: exp(-((share - 0.45) / 0.12)^2 / 2)"),
    )
}
"""Every gold reward by name."""


def gold_reward(name: str) -> RewardFn:
    """The batched gold reward ``(prompts, responses) -> scores`` of a name in `GOLD_REWARDS`."""
    if name not in GOLD_REWARDS:
        raise UserError(f"no gold reward {name!r}; the gold rewards are: {', '.join(GOLD_REWARDS)}")
    score = GOLD_REWARDS[name].score

    def reward(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        return [float(score(p, r)) for p, r in zip(prompts, responses)]

    reward.__name__ = f"gold_{name}"
    return reward


def preference_probability(gold_a: float, gold_b: float, temperature: float) -> float:
    """Bradley-Terry P(A > B) = sigmoid((g_A - g_B) / temperature); temperature 0 is the noiseless limit."""
    diff = gold_a - gold_b
    if temperature <= 0:
        return 1.0 if diff > 0 else 0.0 if diff < 0 else 0.5
    z = diff / temperature
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


@dataclass
class LabelStats:
    """What a labelling pass did: pairs offered, kept, dropped and how often the label agrees with gold."""

    offered: int = 0
    kept: int = 0
    identical: int = 0  # the two responses were the same text: no comparison
    empty: int = 0  # a response was empty (ended at once): comparison files need text
    ties: int = 0  # equal gold scores, dropped (drop_ties)
    agree: int = 0  # kept pairs whose chosen response has the higher gold score
    gold_mean: float = float("nan")
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"offered": self.offered, "kept": self.kept, "identical": self.identical, "empty": self.empty,
                "ties": self.ties, "agree": self.agree, "agreement": self.agree / self.kept if self.kept else None,
                "gold_mean": self.gold_mean}  # fmt: skip


def label_pairs(prompts: Sequence[str], responses_a: Sequence[str], responses_b: Sequence[str], gold: str, *,
                temperature: float = 0.1, drop_ties: bool = True,
                seed: int = 0) -> tuple[list[Comparison], LabelStats]:  # fmt: skip
    """Comparisons of two responses per prompt, labelled by a noisy Bradley-Terry labeller on a gold reward.

    P(A > B) = sigmoid((g_A - g_B) / temperature) (Bradley & Terry 1952); the label is drawn with a
    seeded generator, so the same inputs and seed give the same comparisons. Identical responses
    give no comparison, nor does an empty one (a comparison file holds text; a response of blanks is
    kept); equal gold scores are dropped (``drop_ties``) or labelled by a coin flip.
    Each comparison's ``meta`` holds the pair's index in the input, both gold scores and P(chosen > rejected).
    """
    if not len(prompts) == len(responses_a) == len(responses_b):
        raise ValueError("label_pairs needs as many prompts as responses of each side")
    if temperature < 0 or not math.isfinite(temperature):
        raise UserError(f"labeller temperature {temperature} must be a finite number >= 0 (0 = noiseless)")
    fn = gold_reward(gold)
    ga, gb = fn(list(prompts), list(responses_a)), fn(list(prompts), list(responses_b))
    rng = random.Random(seed)
    out, stats = [], LabelStats(offered=len(prompts))
    stats.gold_mean = sum(ga + gb) / (2 * len(prompts)) if prompts else float("nan")
    for i, (prompt, a, b, x, y) in enumerate(zip(prompts, responses_a, responses_b, ga, gb)):
        u = rng.random()  # drawn for every pair, so one pair's fate never shifts another's label
        if a == b:
            stats.identical += 1
            continue
        if not a or not b:
            stats.empty += 1
            continue
        if x == y and drop_ties:
            stats.ties += 1
            continue
        p = preference_probability(x, y, temperature)
        a_wins = u < p
        chosen, rejected, g_c, g_r = (a, b, x, y) if a_wins else (b, a, y, x)
        meta = {"pair": i, "gold_chosen": g_c, "gold_rejected": g_r, "p_chosen": p if a_wins else 1 - p}
        out.append(Comparison(prompt, chosen, rejected, source=f"gold:{gold}", meta=meta))
        stats.agree += g_c > g_r
    stats.kept = len(out)
    return out, stats

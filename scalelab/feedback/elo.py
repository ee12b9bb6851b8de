"""Elo ratings of models from human comparisons: a Bradley-Terry fit with bootstrap intervals.

Bradley & Terry (1952): P(i beats j) = 1 / (1 + exp(-(s_i - s_j))). Elo is the same model on the
base-10 scale of 400 points, Elo_i = 400 / ln(10) * s_i, so 400 points means 10:1 odds (Bai et al.
2022, arXiv 2204.05862, section 3.4 and figure 1 rate their models this way, and find about 174 Elo
per unit of preference-model score). The fit maximises the log-likelihood with a weak Gaussian prior
(L2 on s), which keeps a model that never lost finite; ratings are centred to mean zero. Intervals are
a percentile bootstrap over comparisons. The win-rate matrix counts every decided comparison.

A comparison between two samples of the same model says nothing about ratings and is left out;
which model *won* follows `scalelab.feedback.export.preferred_side` (helpful: the pick; red-team:
the response not picked, i.e. the less harmful one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scalelab.errors import UserError

ELO_PER_NAT = 400.0 / math.log(10.0)


@dataclass
class EloResult:
    models: list[str]
    elo: list[float]  # centred to mean 0
    elo_ci: list[tuple[float, float]]  # 95% percentile bootstrap
    wins: list[list[int]]  # wins[i][j]: times model i beat model j
    n_comparisons: int
    n_same_model: int

    def win_rate(self) -> list[list[float | None]]:
        """win_rate[i][j] = wins of i over j / games between them (None without games)."""
        w = np.asarray(self.wins, dtype=float)
        games = w + w.T
        return [[float(w[i, j] / games[i, j]) if games[i, j] else None for j in range(len(self.models))]
                for i in range(len(self.models))]  # fmt: skip

    def table(self) -> list[dict]:
        order = np.argsort(self.elo)[::-1]
        w = np.asarray(self.wins)
        return [{"model": self.models[i], "elo": self.elo[i], "elo_lo": self.elo_ci[i][0], "elo_hi": self.elo_ci[i][1],
                 "wins": int(w[i].sum()), "losses": int(w[:, i].sum())} for i in order]  # fmt: skip

    def summary(self) -> dict:
        return {"models": self.models, "ratings": self.table(), "win_rate": self.win_rate(), "wins": self.wins,
                "n_comparisons": self.n_comparisons, "n_same_model": self.n_same_model}  # fmt: skip


def fit_bradley_terry(wins: np.ndarray, prior: float = 0.01, tol: float = 1e-10) -> np.ndarray:
    """Strengths s (nats, mean 0) maximising sum_ij wins_ij log sigmoid(s_i - s_j) - prior/2 |s|^2.

    wins (M, M): wins[i, j] = times model i beat model j. The objective is concave, so Newton's
    method (a few M x M solves) converges in a handful of steps; the prior makes it strictly so.
    """
    w = np.asarray(wins, dtype=float)
    games = w + w.T  # (M, M)
    s = np.zeros(len(w))
    for _ in range(100):
        d = s[:, None] - s[None, :]  # (M, M)
        p = 0.5 * (1.0 + np.tanh(0.5 * d))  # sigmoid(d) = P(i beats j)
        grad = (w - games * p).sum(axis=1) - prior * s  # of the log-likelihood
        q = games * p * (1.0 - p)
        hess = np.diag(q.sum(axis=1) + prior) - q  # minus the Hessian: positive definite
        step = np.linalg.solve(hess, grad)
        s += step
        if np.max(np.abs(step)) < tol:
            break
    return s - s.mean()


def elo_ratings(comparisons: list[tuple[str, str]], n_bootstrap: int = 1000, seed: int = 0) -> EloResult:
    """Ratings from (winner model, loser model) pairs; same-model pairs are counted and dropped.

    The bootstrap resamples the comparisons with replacement: a multinomial draw over the cells of
    the win matrix with the observed frequencies, which is the same distribution and much faster.
    """
    same = sum(1 for w, loser in comparisons if w == loser)
    pairs = [(w, loser) for w, loser in comparisons if w != loser]
    if not pairs:
        raise UserError("no comparison between two different models yet; serve two models with "
                        "--models A,B and collect comparisons first")  # fmt: skip
    models = sorted({m for p in pairs for m in p})
    index = {m: i for i, m in enumerate(models)}
    wins = np.zeros((len(models), len(models)), dtype=int)
    for w, loser in pairs:
        wins[index[w], index[loser]] += 1
    s = fit_bradley_terry(wins)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(pairs), wins.ravel() / len(pairs), size=n_bootstrap)
    boot = np.array([fit_bradley_terry(d.reshape(wins.shape)) for d in draws]).reshape(n_bootstrap, len(models))
    if n_bootstrap:
        lo, hi = np.percentile(boot * ELO_PER_NAT, [2.5, 97.5], axis=0)
    else:
        lo = hi = np.full(len(models), np.nan)
    return EloResult(models, [float(v) for v in s * ELO_PER_NAT], [(float(a), float(b)) for a, b in zip(lo, hi)],
                     wins.tolist(), len(pairs), same)  # fmt: skip


def outcomes(rows: list[dict]) -> list[tuple[str, str]]:
    """(winner model, loser model) of each stored comparison (see the module docstring)."""
    from scalelab.feedback.export import preferred_side

    out = []
    for row in rows:
        good = preferred_side(row)
        out.append((row["model_a"], row["model_b"]) if good == "a" else (row["model_b"], row["model_a"]))
    return out


def elo_per_pm_unit(elo: EloResult, pm_scores: dict[str, float]) -> float | None:
    """Slope of Elo on mean PM score across models (least squares through the centred points);
    Bai et al. 2022 report about 174 Elo per unit of PM score. None with fewer than two scored models."""
    names = [m for m in elo.models if m in pm_scores]
    if len(names) < 2:
        return None
    x = np.array([pm_scores[m] for m in names])
    y = np.array([elo.elo[elo.models.index(m)] for m in names])
    x, y = x - x.mean(), y - y.mean()
    return float(x @ y / (x @ x)) if x @ x > 0 else None


def write_elo_report(result: EloResult, path, meta: str = ""):
    """A small HTML page (and Markdown twin) of the ratings, their intervals and the win-rate matrix."""
    import matplotlib.pyplot as plt

    from scalelab.report import Section, write_report

    rows = result.table()
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.45 * len(rows)), layout="constrained")
    y = np.arange(len(rows))[::-1]
    elo = np.array([r["elo"] for r in rows])
    err = np.array([[r["elo"] - r["elo_lo"], r["elo_hi"] - r["elo"]] for r in rows]).T
    ax.errorbar(elo, y, xerr=np.nan_to_num(err), fmt="o", capsize=3)
    ax.set_yticks(y, [r["model"] for r in rows])
    ax.axvline(0, color="0.8", lw=1)
    ax.set_xlabel("Elo (mean 0), 95% bootstrap interval")
    rates = result.win_rate()
    matrix = [{"model": m, **{f"vs {o}": rates[i][j] for j, o in enumerate(result.models)}}
              for i, m in enumerate(result.models)]  # fmt: skip
    text = (f"{result.n_comparisons} comparisons between different models "
            f"({result.n_same_model} between two samples of one model left out). Bradley-Terry fit, "
            "400 Elo = 10:1 odds; intervals: percentile bootstrap over comparisons.")  # fmt: skip
    sections = [Section("Ratings", text, [fig], [rows]), Section("Win rate (row beats column)", "", [], [matrix])]
    out = write_report(path, "Elo ratings from human feedback", sections, meta=meta)
    plt.close(fig)
    return out


def pm_scores_by_model(pm, rows: list[dict]) -> dict[str, float]:
    """Mean PM score of each model's responses over the stored comparisons (prompt = the context
    and human turn before the response); `pm` is a `scalelab.align.pm.PreferenceModel`."""
    from scalelab.feedback.hh_format import prompt_for

    texts, owners = [], []
    for row in rows:
        prompt = prompt_for(row["context"], row["human"])
        for side in ("a", "b"):
            texts.append(pm.encode(prompt, row[f"response_{side}"]))
            owners.append(row[f"model_{side}"])
    if not texts:
        return {}
    scores = pm.score_texts(texts).numpy()
    out: dict[str, list[float]] = {}
    for owner, score in zip(owners, scores):
        out.setdefault(owner, []).append(float(score))
    return {m: float(np.mean(v)) for m, v in out.items()}

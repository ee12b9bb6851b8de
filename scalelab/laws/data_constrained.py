"""Data-constrained scaling law (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models").

With U_D unique tokens seen for D tokens in total, R_D = D/U_D - 1 repeated epochs are worth

    D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*))            (Muennighoff et al. 2023, Section 3)

effective tokens: repeated tokens decay in value with half-life-like constant R_D*, so D' never
exceeds U_D (1 + R_D*). Likewise parameters beyond U_N, the compute-optimal size for U_D tokens,
are worth N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)) with R_N = N/U_N - 1. The loss is the
Chinchilla law at the effective sizes, L = E + A/N'^alpha + B/D'^beta. Their fit: R_D* = 15.4,
R_N* = 5.3 (so 4 epochs give D' = 3.7 U_D, and D' <= 16.4 U_D).

Our fitting choice follows the paper's two stages: E, A, B, alpha, beta are fitted on the
single-epoch runs (D <= U) with Approach 3 (or passed in), then held fixed while R_D* (and
optionally R_N*) are fitted on all runs with the same summed Huber loss on log L. Holding them
keeps the decay constants from trading off against alpha and beta when few repeated runs exist.
The intervals do not hold it: each bootstrap resample refits the base law on its own single-epoch
runs (from a screen of the full grid, `bootstrap.refit_resamples`) before refitting the decay
constants, so the uncertainty of E, A, B, alpha and beta flows into R_D* and R_N*. A base passed
in by the caller is held fixed in the intervals too (it carries no data to resample); `ci_note`
says which was done.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scalelab.errors import UserError
from scalelab.laws.allocation import params_for_tokens
from scalelab.laws.bootstrap import percentile_ci, refit_resamples, resample_weights
from scalelab.laws.chinchilla import ChinchillaFit, fit_chinchilla
from scalelab.laws.objective import HUBER_DELTA, huber
from scalelab.laws.validate import enough_points, positive_finite, same_length

R_D_STAR = 15.4
"""Decay constant of repeated data fitted by Muennighoff et al. 2023."""
R_N_STAR = 5.3
"""Decay constant of excess parameters fitted by Muennighoff et al. 2023."""
_LOG_R_BOUNDS = (np.log(1e-2), np.log(1e4))


def effective_data(tokens: np.ndarray | float, unique: np.ndarray | float,
                   r_star: float = R_D_STAR) -> np.ndarray:
    """D' = U + U R* (1 - exp(-R/R*)), R = D/U - 1 (Muennighoff et al. 2023, Section 3).

    Runs that see each token at most once (D <= U) get D' = D. `r_star = inf` means no decay.
    """
    d = np.asarray(tokens, dtype=float)
    u = np.minimum(np.asarray(unique, dtype=float), d)
    repeats = d / u - 1.0
    if np.isinf(r_star):
        return d * np.ones_like(u)
    return u + u * r_star * -np.expm1(-repeats / r_star)


def effective_params(params: np.ndarray | float, unique_params: np.ndarray | float,
                     r_star: float = R_N_STAR) -> np.ndarray:
    """N' = U_N + U_N R_N* (1 - exp(-R_N/R_N*)), R_N = N/U_N - 1 (Muennighoff et al. 2023, Sec. 3)."""
    return effective_data(params, unique_params, r_star)


def unique_params(law: ChinchillaFit, unique_tokens: np.ndarray | float,
                  params: np.ndarray | float) -> np.ndarray:
    """U_N = min(N_opt(U_D), N), N_opt(U_D) the compute-optimal size for U_D tokens.

    Muennighoff et al. 2023, Section 3; as in their formula, this applies to single-epoch runs too:
    a model larger than compute-optimal for its unique data has R_N > 0.
    """
    n_for_u = params_for_tokens(unique_tokens, law.A, law.B, law.alpha, law.beta)
    return np.minimum(n_for_u, np.asarray(params, dtype=float))


def data_constrained_loss(law: ChinchillaFit, params: np.ndarray | float, tokens: np.ndarray | float,
                          unique_tokens: np.ndarray | float, r_d_star: float = R_D_STAR,
                          r_n_star: float = R_N_STAR) -> np.ndarray:
    """L = E + A/N'^alpha + B/D'^beta at effective parameters and data (Muennighoff et al. 2023)."""
    u_d = np.minimum(np.asarray(unique_tokens, dtype=float), np.asarray(tokens, dtype=float))
    d_eff = effective_data(tokens, u_d, r_d_star)
    n_eff = effective_params(params, unique_params(law, u_d, params), r_n_star)
    return law.E + law.A / n_eff**law.alpha + law.B / d_eff**law.beta


@dataclass
class DataConstrainedFit:
    """Decay constants fitted on top of a Chinchilla law (held fixed; see module docstring)."""

    base: ChinchillaFit
    r_d_star: float
    r_n_star: float
    n_points: int
    objective: float
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    ci_note: str = ""

    def predict(self, params: np.ndarray | float, tokens: np.ndarray | float,
                unique_tokens: np.ndarray | float) -> np.ndarray:
        """Predicted loss for runs of `params` on `tokens` total tokens drawn from `unique_tokens`."""
        return data_constrained_loss(self.base, params, tokens, unique_tokens, self.r_d_star, self.r_n_star)

    def to_dict(self) -> dict[str, object]:
        """Plain numbers for JSON."""
        return {"R_D_star": self.r_d_star, "R_N_star": self.r_n_star, "n_points": self.n_points,
                "objective": self.objective, "base": self.base.to_dict(),
                "ci": {k: list(v) for k, v in self.ci.items()}, "ci_note": self.ci_note}


def _fit_decay(base: ChinchillaFit, n: np.ndarray, d: np.ndarray, u: np.ndarray, y: np.ndarray,
               weights: np.ndarray, fit_rn: bool, delta: float) -> tuple[float, float, float]:
    """Minimise summed Huber(log L_hat - log L) over log R_D* (and log R_N*); grid then L-BFGS-B."""
    log_y = np.log(y)

    def objective(log_r: np.ndarray) -> float:
        r_n = float(np.exp(log_r[1])) if fit_rn else np.inf
        pred = data_constrained_loss(base, n, d, u, float(np.exp(log_r[0])), r_n)
        return float(np.sum(weights * huber(np.log(pred) - log_y, delta)))

    grid = np.log(np.geomspace(0.3, 300.0, 13))
    starts = [np.array([g, h]) for g in grid for h in (grid if fit_rn else grid[:1])]
    best = min(starts, key=objective)
    from scipy.optimize import minimize  # imported here: SciPy's import costs ~0.4 s of CLI start-up

    res = minimize(objective, best, method="L-BFGS-B", bounds=[_LOG_R_BOUNDS] * 2,
                   options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 2000})
    r_d = float(np.exp(res.x[0]))
    r_n = float(np.exp(res.x[1])) if fit_rn else float("inf")
    return r_d, r_n, float(res.fun)


def fit_data_constrained(
    params: np.ndarray,
    tokens: np.ndarray,
    unique_tokens: np.ndarray,
    loss: np.ndarray,
    *,
    base: ChinchillaFit | None = None,
    fit_rn: bool = True,
    delta: float = HUBER_DELTA,
    n_boot: int = 0,
    seed: int = 0,
    level: float = 0.95,
) -> DataConstrainedFit:
    """Fit R_D* (and R_N*) of Muennighoff et al. 2023 with the Chinchilla parameters held fixed.

    Args:
        params, tokens, unique_tokens, loss: one entry per run (N, D total tokens, U unique tokens).
        base: Chinchilla law to hold fixed; default: `fit_chinchilla` on the single-epoch runs.
        fit_rn: also fit R_N*; if False, excess parameters keep full value (R_N* = inf).
        n_boot: if > 0, resample runs, refit the base law on each resample's single-epoch runs
            (unless `base` was given) and then the decay constants, and report percentile
            intervals at `level` in `ci` (R_D_star, R_N_star, and the base's E, A, B, alpha, beta).
    """
    n = positive_finite("params", params)
    d = positive_finite("tokens", tokens)
    u = positive_finite("unique_tokens", unique_tokens)
    y = positive_finite("loss", loss)
    count = same_length(params=n, tokens=d, unique_tokens=u, loss=y)
    base_given = base is not None
    single = d <= u
    if base is None:
        if single.sum() < 6:
            raise UserError(
                f"only {int(single.sum())} runs see each token at most once (tokens <= unique_tokens); "
                "fitting the Chinchilla base law on them needs at least 6: add single-epoch runs or "
                "pass base= a fitted ChinchillaFit"
            )
        base = fit_chinchilla(n[single], d[single], y[single], delta=delta)
    if not np.any(d > u):
        raise UserError("no run repeats data (every run has tokens <= unique_tokens), so the decay "
                        "constant R_D* cannot be fitted: add runs with several epochs")
    enough_points(count, 2 if fit_rn else 1, "data-constrained decay")
    r_d, r_n, obj = _fit_decay(base, n, d, u, y, np.ones(count), fit_rn, delta)
    fit = DataConstrainedFit(base=base, r_d_star=r_d, r_n_star=r_n, n_points=count, objective=obj)
    if n_boot > 0:
        weights = resample_weights(count, n_boot, seed)
        if base_given:
            bases = [base] * n_boot
            fit.ci_note = "the base law was given, so it is held fixed in the intervals"
        else:
            bases = _refit_bases(base, n[single], d[single], y[single], weights[:, single], delta)
            fit.ci_note = "each resample refits the base law on its single-epoch runs, then the decay"
            for key in ("E", "A", "B", "alpha", "beta"):
                fit.ci[key] = percentile_ci(np.array([getattr(b, key) for b in bases]), level)
        draws = np.array([_fit_decay(b, n, d, u, y, w, fit_rn, delta)[:2] for b, w in zip(bases, weights)])
        fit.ci["R_D_star"] = percentile_ci(draws[:, 0], level)
        if fit_rn:
            fit.ci["R_N_star"] = percentile_ci(draws[:, 1], level)
    return fit


def _refit_bases(base: ChinchillaFit, n: np.ndarray, d: np.ndarray, y: np.ndarray, weights: np.ndarray,
                 delta: float) -> list[ChinchillaFit]:
    """The Chinchilla base refitted on each row of single-epoch point weights (bootstrap.py)."""
    log_x = np.stack([np.log(n), np.log(d)])
    candidates = base.candidates if len(base.candidates) else base.theta[None]
    theta, f = refit_resamples(log_x, np.log(y), weights, candidates, always=base.best_starts[:8], delta=delta)
    return [ChinchillaFit.from_theta(t, n_points=int(w.sum()), objective=float(fv))
            for t, w, fv in zip(theta, weights, f)]

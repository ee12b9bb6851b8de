"""Scaling-law fitting: pure NumPy/SciPy, no torch; it fits numbers wherever they came from.

- `fit_power_law`: L(x) = E + A x^(-alpha) (Kaplan et al. 2020, with Hoffmann et al.'s E).
- `fit_chinchilla`: Approach 3, L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, Eq. 2-3),
  fitted as Besiroglu et al. 2024 do, from the 4,500-start grid, vectorised.
- `bootstrap_chinchilla`, `bootstrap_power_law`: percentile intervals by resample-and-refit.
- `compute_optimal`: N_opt, D_opt and tokens per parameter at a budget (Hoffmann et al., Eq. 4).
- `fit_isoflop`: Approach 2, parabola minima of IsoFLOP profiles.
- `effective_data`, `fit_data_constrained`: repeated-data law of Muennighoff et al. 2023.
- `fit_compute_frontier`: Kaplan's L(C) on the lower envelope of the runs' loss-vs-FLOPs curves.
- `forecast_chinchilla`, `forecast_power_law`: fit on small runs, score prediction intervals of large ones.
- `percentile_ci`: the one percentile interval of the code base.

Which N: the laws fit whatever N they are given. `fit_chinchilla` reproduces Hoffmann et al. 2022,
who count total parameters, and C = 6 N D holds only approximately for small models (embeddings,
attention): pass the D and C each run actually had (`fit_isoflop(..., tokens=)`).
"""

from scalelab.laws.abrupt import abrupt_jumps as abrupt_jumps
from scalelab.laws.allocation import (
    Allocation,
    allocation_coefficient,
    allocation_exponents,
    compute_optimal,
    optimal_params,
    optimal_tokens,
    params_for_tokens,
    tokens_per_param,
)
from scalelab.laws.bootstrap import (
    BootstrapResult,
    bootstrap_chinchilla,
    bootstrap_power_law,
    percentile_ci,
    resample_weights,
)
from scalelab.laws.chinchilla import ChinchillaFit, chinchilla_grid, chinchilla_loss, fit_chinchilla
from scalelab.laws.data_constrained import (
    R_D_STAR,
    R_N_STAR,
    DataConstrainedFit,
    data_constrained_loss,
    effective_data,
    effective_params,
    fit_data_constrained,
)
from scalelab.laws.efficiency import compute_to_target, efficiency_multipliers, fit_doubling_time  # noqa: F401
from scalelab.laws.forecast import Forecast, forecast_chinchilla, forecast_power_law, residual_noise_sd
from scalelab.laws.frontier import FrontierFit, compute_frontier, fit_compute_frontier
from scalelab.laws.inversion import effective_size, invert_power_law, parametric_bootstrap_power_law
from scalelab.laws.isoflop import IsoFlopFit, IsoFlopMinimum, fit_isoflop
from scalelab.laws.objective import HUBER_DELTA
from scalelab.laws.power import PowerLawFit, fit_power_law, power_law
from scalelab.laws.transfer import TransferFit, fit_transfer, invert_scratch_curve, transfer_table  # noqa: F401

__all__ = [
    "HUBER_DELTA",
    "R_D_STAR",
    "R_N_STAR",
    "Allocation",
    "BootstrapResult",
    "ChinchillaFit",
    "DataConstrainedFit",
    "Forecast",
    "FrontierFit",
    "IsoFlopFit",
    "IsoFlopMinimum",
    "PowerLawFit",
    "allocation_coefficient",
    "allocation_exponents",
    "bootstrap_chinchilla",
    "bootstrap_power_law",
    "chinchilla_grid",
    "chinchilla_loss",
    "compute_frontier",
    "compute_optimal",
    "data_constrained_loss",
    "effective_size",
    "effective_data",
    "effective_params",
    "fit_chinchilla",
    "fit_compute_frontier",
    "fit_data_constrained",
    "fit_isoflop",
    "fit_power_law",
    "invert_power_law",
    "parametric_bootstrap_power_law",
    "forecast_chinchilla",
    "forecast_power_law",
    "optimal_params",
    "optimal_tokens",
    "params_for_tokens",
    "percentile_ci",
    "power_law",
    "resample_weights",
    "residual_noise_sd",
    "tokens_per_param",
]

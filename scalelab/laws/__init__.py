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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# Each name is imported from its module on first use (PEP 562): a command that fits one law does not pay
# for importing every other (the first `scalelab report` reads power laws, frontiers and forecasts only).
_EXPORTS = {
    "abrupt_jumps": "abrupt",
    "Allocation": "allocation",
    "allocation_coefficient": "allocation",
    "allocation_exponents": "allocation",
    "compute_optimal": "allocation",
    "optimal_params": "allocation",
    "optimal_tokens": "allocation",
    "params_for_tokens": "allocation",
    "tokens_per_param": "allocation",
    "BootstrapResult": "bootstrap",
    "bootstrap_chinchilla": "bootstrap",
    "bootstrap_power_law": "bootstrap",
    "percentile_ci": "bootstrap",
    "resample_weights": "bootstrap",
    "ChinchillaFit": "chinchilla",
    "chinchilla_grid": "chinchilla",
    "chinchilla_loss": "chinchilla",
    "fit_chinchilla": "chinchilla",
    "R_D_STAR": "data_constrained",
    "R_N_STAR": "data_constrained",
    "DataConstrainedFit": "data_constrained",
    "data_constrained_loss": "data_constrained",
    "effective_data": "data_constrained",
    "effective_params": "data_constrained",
    "fit_data_constrained": "data_constrained",
    "compute_to_target": "efficiency",
    "efficiency_multipliers": "efficiency",
    "fit_doubling_time": "efficiency",
    "Forecast": "forecast",
    "forecast_chinchilla": "forecast",
    "forecast_power_law": "forecast",
    "residual_noise_sd": "forecast",
    "FrontierFit": "frontier",
    "compute_frontier": "frontier",
    "fit_compute_frontier": "frontier",
    "effective_size": "inversion",
    "invert_power_law": "inversion",
    "parametric_bootstrap_power_law": "inversion",
    "IsoFlopFit": "isoflop",
    "IsoFlopMinimum": "isoflop",
    "fit_isoflop": "isoflop",
    "HUBER_DELTA": "objective",
    "PowerLawFit": "power",
    "fit_power_law": "power",
    "power_law": "power",
    "TransferFit": "transfer",
    "fit_transfer": "transfer",
    "invert_scratch_curve": "transfer",
    "transfer_table": "transfer",
}

if TYPE_CHECKING:
    from scalelab.laws.abrupt import abrupt_jumps
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
    from scalelab.laws.efficiency import compute_to_target, efficiency_multipliers, fit_doubling_time
    from scalelab.laws.forecast import Forecast, forecast_chinchilla, forecast_power_law, residual_noise_sd
    from scalelab.laws.frontier import FrontierFit, compute_frontier, fit_compute_frontier
    from scalelab.laws.inversion import effective_size, invert_power_law, parametric_bootstrap_power_law
    from scalelab.laws.isoflop import IsoFlopFit, IsoFlopMinimum, fit_isoflop
    from scalelab.laws.objective import HUBER_DELTA
    from scalelab.laws.power import PowerLawFit, fit_power_law, power_law
    from scalelab.laws.transfer import TransferFit, fit_transfer, invert_scratch_curve, transfer_table


def __getattr__(name: str) -> object:
    """The exported name (or the submodule) `name`, imported on first use."""
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f"scalelab.laws.{module}"), name)
    else:
        try:
            value = importlib.import_module(f"scalelab.laws.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"scalelab.laws.{name}":
                raise
            raise AttributeError(f"module 'scalelab.laws' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


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
    "abrupt_jumps",
    "compute_to_target",
    "efficiency_multipliers",
    "fit_doubling_time",
    "TransferFit",
    "fit_transfer",
    "invert_scratch_curve",
    "transfer_table",
]

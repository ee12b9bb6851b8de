"""The fields every training study shares: its seed and where and how its runs train.

A study's `Config` subclasses `Resources` rather than repeating these four fields; a study whose
defaults differ (the transfer study trains two one-thread runs at once) redeclares only that field.
"""

from __future__ import annotations

from pydantic import Field

from scalelab.config import _Strict


class Resources(_Strict):
    """Seed, threads, workers and device of a study's runs."""

    seed: int = 0
    """Seed of data building, splits, initialisations and sampling."""
    threads: int | None = Field(None, ge=1)
    """torch threads per run (default: the executor's share of the cores)."""
    workers: int = Field(1, ge=1)
    """Runs trained at once (the default of --workers)."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:1, ..."""

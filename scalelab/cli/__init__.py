"""The `scalelab` command line (a face: it parses, calls the library and prints; no science here).

    app.py     the Typer app assembling the groups, and `main` (the console script `scalelab`)
    common.py  shared options (--workdir, --json, --set), consoles, JSON output, number formatting
    runs.py    train, sample, runs          sweep.py  sweep, report       study.py  study NAME
    fit.py     fit chinchilla|power         pm.py     pm train|score, eval choice
    probe.py   probe induction              bench.py  bench train         demo.py   demo

Library code never imports from here.
"""

from scalelab.cli.app import app, main

__all__ = ["app", "main"]

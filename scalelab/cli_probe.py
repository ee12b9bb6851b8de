"""`scalelab probe ...` (being written)."""

import typer

probe_app = typer.Typer(no_args_is_help=True, help="Mechanism probes on checkpoints.")

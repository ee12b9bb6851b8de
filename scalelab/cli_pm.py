"""`scalelab pm ...` and `scalelab eval ...` (being written)."""

import typer

pm_app = typer.Typer(no_args_is_help=True, help="Preference models: train and score.")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluations of checkpoints.")

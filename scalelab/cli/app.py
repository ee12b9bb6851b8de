"""The `scalelab` command line: parse, call the library, print. No science here.

Each command group lives in its own module of this package; `main` turns every user mistake (a
`UserError`, or a usage error found by the parser) into a short message on stderr and exit status 2;
a bare command group prints its help and exits 0, as `--help` does.
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.text import Text

from scalelab.cli import interop, runs, sweep
from scalelab.cli.bench import bench_app
from scalelab.cli.common import err, say
from scalelab.cli.demo import demo_cmd
from scalelab.cli.distill import distill_app
from scalelab.cli.feedback import feedback_app
from scalelab.cli.fit import fit_app
from scalelab.cli.ood import ood_app
from scalelab.cli.pm import eval_app, pm_app
from scalelab.cli.probe import probe_app
from scalelab.cli.rl import rl_app
from scalelab.cli.study import study_cmd
from scalelab.errors import RunDiverged, UserError

app = typer.Typer(
    add_completion=False, no_args_is_help=True,
    help="scalelab: a laboratory for the empirical science of language models.",
)
runs.register(app)
sweep.register(app)
interop.register(app)
app.command("study")(study_cmd)
app.command("demo")(demo_cmd)
app.add_typer(fit_app, name="fit")
app.add_typer(pm_app, name="pm")
app.add_typer(eval_app, name="eval")
app.add_typer(probe_app, name="probe")
app.add_typer(bench_app, name="bench")
app.add_typer(feedback_app, name="feedback")
app.add_typer(distill_app, name="distill")
app.add_typer(rl_app, name="rl")
app.add_typer(ood_app, name="ood")


def _parser_exceptions(name: str) -> tuple[type[BaseException], ...]:
    """The parser's exception class `name`. Typer >= 0.22 vendors click as `typer._click` (so
    `click.ClickException` never matches its errors); older typer uses click itself. Both are looked up."""
    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _complain(label: str, error: Exception) -> None:
    """`label` in bold red, then the message as literal text (it may hold user-given names)."""
    err.print(Text(label + " ", style="bold red") + Text(str(error)), soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes print a short message and exit 2, never a traceback."""
    try:
        rc = app(args=argv, prog_name="scalelab", standalone_mode=False)  # returns, rather than raises, Exit
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except UserError as e:
        _complain("error:", e)
        sys.exit(2)
    except RunDiverged as e:
        _complain("failed:", e)
        sys.exit(1)
    except KeyboardInterrupt:
        say("interrupted", err)
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(130)
    except _parser_exceptions("NoArgsIsHelpError") as e:  # a bare group: its help, as with --help (click < 8.2 too)
        e.show()
        sys.exit(0)
    except _parser_exceptions("ClickException") as e:  # usage errors: the usage line, the error, exit 2
        e.show()
        sys.exit(e.exit_code)

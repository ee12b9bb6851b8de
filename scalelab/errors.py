"""Errors that the user can fix.

A `UserError` means the input was wrong (a config key, a path, a data line), not the code. Its
message says what is wrong and what to do; the CLI prints it without a traceback and exits 2.
"""


class UserError(Exception):
    """A mistake in the user's input, with a message that names the problem and the fix."""


class RunDiverged(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


class RunBusy(UserError):
    """Another live process holds the run's lease (trains it right now)."""

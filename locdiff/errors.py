"""The errors LocDiff raises on purpose: each says what is wrong and what to do.

The command line turns each into one line on standard error and exit status 2.
"""

from __future__ import annotations


class DataError(ValueError):
    """A dataset file that cannot be used, with its name and the offending row."""


class RunError(FileNotFoundError):
    """A run directory that is missing, unfinished or not of the expected kind."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# What the command line reports as a one-line error (anything else is a bug: traceback).
USER_ERRORS = (ValueError, FileNotFoundError, ImportError, NonFiniteLossError)

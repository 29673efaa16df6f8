"""The errors LocDiff raises on purpose: each says what is wrong and what to do.

The command line turns each into one line on standard error and exit status 2.
"""

from __future__ import annotations

import numpy as np


class DataError(ValueError):
    """A dataset file that cannot be used, with its name and the offending row."""


class RunError(FileNotFoundError):
    """A run directory that is missing, unfinished or not of the expected kind."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def check_rows(
    name: str, embeddings: np.ndarray, latlon: np.ndarray | None, offset: int = 0
) -> None:
    """Every row of ``embeddings`` (and ``latlon``) finite, every latitude in [-90, 90];
    a ``DataError`` names the file ``name`` and the row (``offset`` + its index)."""
    bad = ~np.isfinite(embeddings).all(axis=1)
    if latlon is not None:
        bad |= ~np.isfinite(latlon).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad)) + offset
        raise DataError(f"{name}: row {row} has a NaN or infinite value")
    out = np.zeros(len(embeddings), bool) if latlon is None else np.abs(latlon[:, 0]) > 90
    if out.any():
        row = int(np.argmax(out))
        raise DataError(
            f"{name}: row {row + offset} has latitude {latlon[row, 0]}, outside [-90, 90] degrees"
        )


# What the command line reports as a one-line error (anything else is a bug: traceback).
USER_ERRORS = (ValueError, FileNotFoundError, ImportError, NonFiniteLossError)

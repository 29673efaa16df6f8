"""The validation split and the early-stopping rule that every learned method shares.

A method trains on its data minus a validation slice (:func:`validation_split`: the same
rows for every method and every training seed, so that the methods of an experiment are
stopped on the same evidence), evaluates its loss on that slice every ``eval_every``
steps, and stops once ``patience`` evaluations in a row have not improved on the best
(:class:`EarlyStopping`). The model kept is the one of the best evaluation. The cap in
samples seen is ``steps * batch_size``, the same for every method of an experiment.
"""

from __future__ import annotations

import dataclasses

import numpy as np

VALIDATION_SEED = 0  # one split per dataset size, whatever the method or its seed


def validation_split(n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(train_rows, validation_rows)`` of ``n`` rows; ``fraction`` 0: no validation.

    The validation rows are a random ``fraction`` of the rows (at least one, and at least
    one row left to train on), drawn with a fixed seed. The training rows are sorted; the
    validation rows are in random order, so that any prefix of them (a capped number of
    validation queries) is itself a random sample, whatever the order of the file.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return np.arange(n), np.arange(0)
    if n < 2:
        raise ValueError(f"a validation split needs at least 2 rows, the data have {n}")
    n_val = min(n - 1, max(1, round(fraction * n)))
    order = np.random.default_rng(VALIDATION_SEED).permutation(n)
    return np.sort(order[n_val:]), order[:n_val]


@dataclasses.dataclass
class EarlyStopping:
    """Tracks validation losses; ``should_stop`` after ``patience`` evaluations in a row
    without a relative improvement of more than ``min_delta`` (``patience`` 0: never).

    ``history`` holds ``(step, loss)`` pairs; rebuilding from a saved history (on resume)
    gives the same decisions as an uninterrupted run.
    """

    patience: int
    min_delta: float = 1e-3
    history: list[tuple[int, float]] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        history, self.history = list(self.history), []
        self.best_step, self.best_loss, self.since_best = None, float("inf"), 0
        for step, loss in history:
            self.update(step, loss)

    def update(self, step: int, loss: float) -> bool:
        """Record the loss at ``step``; whether it is the new best."""
        self.history.append((int(step), float(loss)))
        threshold = self.best_loss - self.min_delta * abs(self.best_loss)
        if self.best_step is None or loss < threshold:
            self.best_step, self.best_loss, self.since_best = int(step), float(loss), 0
            return True
        self.since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.since_best >= self.patience

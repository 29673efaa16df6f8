"""How far LocDiff is from home: its answer against the nearest training photo's place.

LocDiff's credible regions are only as honest as the map behind them, and a condition
far from every training photo gets a sharp map at the wrong place: the spread of the K
samples does not show it (they agree with each other while all being wrong). What does
show it is a second, independent answer. The :class:`Reference` keeps (up to
:data:`REFERENCE_ROWS` of) the training conditions with their locations; its
:meth:`Reference.doubt_km` is the great-circle distance between LocDiff's mode and the
location of the most similar training condition (cosine, as retrieval answers). In
distribution the two agree; far from training they part (the
nearest condition is a poor match, and the model interpolates elsewhere).

How well it separates far-validation rows from random ones and ranks LocDiff's errors,
beside the spread of the answer and the similarity of the nearest condition alone, is
measured on validation rows by ``python -m experiments.doubt``
(``experiments/results/doubt/``). Each run bins its map rules by the doubt or by the
spread, whichever keeps the promise of its credible regions better on its own
validation rows (:func:`locdiff.infer.calibration.choose_map_signal`). Snapping is gated by
it; the run keeps its reference in ``reference.npz``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from locdiff.evaluation import metrics
from locdiff.infer import neighbours
from locdiff.io import files

REFERENCE_ROWS = 100_000  # training conditions kept (a fixed random subset of more)


@dataclasses.dataclass(frozen=True)
class Reference:
    """Training conditions ``conditions [G, E]`` (unit length, float16 on disk) and their
    locations ``latlon [G, 2]`` degrees."""

    conditions: np.ndarray
    latlon: np.ndarray

    def __post_init__(self):
        c, ll = np.asarray(self.conditions), np.asarray(self.latlon)
        if c.ndim != 2 or not len(c) or ll.shape != (len(c), 2):
            raise ValueError(
                f"a reference needs conditions [G, E] with G >= 1 and latlon [G, 2], got "
                f"{list(c.shape)} and {list(ll.shape)}"
            )

    @classmethod
    def from_training(
        cls, embeddings, latlon, *, max_rows: int = REFERENCE_ROWS, seed: int = 0
    ) -> Reference:
        """The reference of training ``embeddings [N, E]`` at ``latlon [N, 2]``: all of
        them, or a fixed random ``max_rows`` of them."""
        embeddings, latlon = np.asarray(embeddings), np.asarray(latlon, np.float32)
        if len(embeddings) != len(latlon):
            raise ValueError(f"{len(embeddings)} embeddings but {len(latlon)} locations")
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1, got {max_rows}")
        rows = np.arange(len(latlon))
        if len(rows) > max_rows:
            rows = np.sort(np.random.default_rng(seed).permutation(len(rows))[:max_rows])
        return cls(neighbours.normalise(embeddings[rows]), latlon[rows])

    def __len__(self) -> int:
        return len(self.latlon)

    def nearest(self, embeddings) -> tuple[np.ndarray, np.ndarray]:
        """``(latlon [B, 2], similarity [B])``: the location of the most similar reference
        condition of each row and its cosine similarity."""
        unit = self.__dict__.get("_unit")
        if unit is None:  # float32 once, for the matrix products
            unit = np.asarray(self.conditions, np.float32)
            object.__setattr__(self, "_unit", unit)
        index, similarity = neighbours.most_similar(neighbours.normalise(embeddings), unit, k=1)
        return np.asarray(self.latlon[index[:, 0]], np.float64), similarity[:, 0]

    def nearest_latlon(self, embeddings) -> np.ndarray:
        """``[B, 2]`` the location of the most similar reference condition of each row."""
        return self.nearest(embeddings)[0]

    def doubt_km(self, modes, embeddings) -> np.ndarray:
        """``[B]`` km between each mode ``modes [B, 2]`` and the location of the most
        similar reference condition to its condition ``embeddings [B, E]`` (as given to
        the model, before any standardisation)."""
        return self.doubt_and_similarity(modes, embeddings)[0]

    def doubt_and_similarity(self, modes, embeddings) -> tuple[np.ndarray, np.ndarray]:
        """``(doubt_km [B], similarity [B])``: :meth:`doubt_km` and the cosine similarity
        of the most similar reference condition, from one search."""
        modes = np.asarray(modes, np.float64)
        if modes.shape != (len(embeddings), 2):
            raise ValueError(f"modes must be [{len(embeddings)}, 2], got {list(modes.shape)}")
        latlon, similarity = self.nearest(embeddings)
        return metrics.distances_km(modes, latlon), similarity

    def save(self, path: str) -> None:
        files.save_npz(path, conditions=np.asarray(self.conditions, np.float16), latlon=self.latlon)

    @classmethod
    def load(cls, path: str) -> Reference:
        arrays = files.load_npz(path)
        return cls(arrays["conditions"], arrays["latlon"])

"""Cell classification (PlaNet, ISN): classify into adaptive cells of the training locations.

:func:`adaptive_cells` splits the training locations recursively into cells of between
``min_count`` and ``max_count`` points; a cell answers with the spherical mean of its
points. With several ``partitions`` at once the classifier has one softmax head per
partition and a fine cell's score adds the log-probabilities of the coarser cells that
hold it (ISN's hierarchy): each fine cell's parent is the coarse cell holding most of
its training points.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import shdd
from locdiff.infer.prediction import Prediction
from locdiff.io import files
from locdiff.methods.base import BaselineConfig, no_options, read_training_data
from locdiff.methods.network import NetworkLocator, Trunk, fit, load_params, save_params

Config = BaselineConfig


def spherical_mean(latlon) -> np.ndarray:
    """Mean location ``[2]`` of ``[N, 2]`` degrees (the normalised mean unit vector)."""
    return shdd.sphere.xyz_to_latlon_np(shdd.sphere.latlon_to_xyz_np(latlon).mean(axis=0))


@dataclasses.dataclass
class Cells:
    """A partition of training locations: ``labels [N]``, ``centres [C, 2]``, ``counts [C]``."""

    labels: np.ndarray
    centres: np.ndarray
    counts: np.ndarray


def adaptive_cells(latlon, *, min_count: int = 50, max_count: int = 5000) -> Cells:
    """PlaNet-style cells: split each cell in four (at its median latitude, then the median
    longitude of each half) while it holds more than ``max_count`` points; pieces smaller
    than ``min_count`` are merged back into their parent.

    Raises:
      ValueError: on bad counts or fewer points than ``min_count``.
    """
    latlon = np.asarray(latlon, np.float64)
    if not 1 <= min_count <= max_count:
        raise ValueError(f"need 1 <= min_count <= max_count, got {min_count}, {max_count}")
    if len(latlon) < min_count:
        raise ValueError(f"{len(latlon)} points are fewer than min_count={min_count}")
    cells: list[np.ndarray] = []

    def split(index: np.ndarray) -> None:
        if len(index) <= max_count:
            cells.append(index)
            return
        lat = latlon[index, 0]
        halves = [index[lat < np.median(lat)], index[lat >= np.median(lat)]]
        quarters = []
        for half in halves:
            lon = latlon[half, 1]
            quarters += [half[lon < np.median(lon)], half[lon >= np.median(lon)]]
        if any(len(q) < min_count for q in quarters) or max(len(q) for q in quarters) == len(index):
            cells.append(index)  # cannot split without a piece below min_count
            return
        for q in quarters:
            split(q)

    split(np.arange(len(latlon)))
    labels = np.empty(len(latlon), np.int64)
    for c, index in enumerate(cells):
        labels[index] = c
    centres = np.stack([spherical_mean(latlon[index]) for index in cells])
    return Cells(labels=labels, centres=centres, counts=np.array([len(i) for i in cells]))


@dataclasses.dataclass
class Hierarchy:
    """Several partitions: ``centres[j] [C_j, 2]``, ``parents[j] [C_finest]`` (the cell of
    partition ``j`` that holds each finest cell), and which partition is the ``finest``."""

    centres: list[np.ndarray]
    parents: list[np.ndarray]
    finest: int

    @classmethod
    def build(cls, latlon, partitions) -> tuple[Hierarchy, np.ndarray]:
        """The hierarchy of ``partitions`` over ``latlon``, and the labels ``[N, partitions]``."""
        parts = [adaptive_cells(latlon, min_count=lo, max_count=hi) for lo, hi in partitions]
        finest = int(np.argmax([len(p.centres) for p in parts]))
        fine = parts[finest].labels
        parents = []
        for p in parts:  # the coarse cell holding most of each fine cell's points
            table = np.zeros((len(parts[finest].centres), len(p.centres)), np.int64)
            np.add.at(table, (fine, p.labels), 1)
            parents.append(table.argmax(axis=1))
        labels = np.stack([p.labels for p in parts], axis=1)
        return cls([p.centres for p in parts], parents, finest), labels

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for j, (c, p) in enumerate(zip(self.centres, self.parents, strict=True)):
            out[f"centres:{j}"], out[f"parents:{j}"] = c, p
        return out

    @classmethod
    def from_arrays(cls, arrays, n: int, finest: int) -> Hierarchy:
        centres = [arrays[f"centres:{j}"] for j in range(n)]
        return cls(centres, [arrays[f"parents:{j}"] for j in range(n)], finest)


class CellClassifier(nnx.Module):
    """Trunk + one log-softmax head per partition."""

    def __init__(self, embed_dim, hidden, depth, num_cells: tuple[int, ...], *, rngs):
        self.trunk = Trunk(embed_dim, hidden, depth, rngs=rngs)
        self.heads = nnx.List([nnx.Linear(hidden, n, rngs=rngs) for n in num_cells])

    def __call__(self, x):
        h = self.trunk(x)
        return [jax.nn.log_softmax(head(h), axis=-1) for head in self.heads]


def loss(model, x, labels, key):
    """Cross-entropy summed over the partitions; ``labels [B, partitions]``."""
    logps = model(x)  # one [B, C_j] per partition
    return -sum(
        jnp.mean(jnp.take_along_axis(lp, labels[:, j : j + 1], axis=1))
        for j, lp in enumerate(logps)
    )


class CellsLocator(NetworkLocator):
    """Top-k cells of the finest partition (ISN-scored), answered by their centres."""

    method = "cells"

    def __init__(self, model, config, embed_dim, hierarchy: Hierarchy, meta=None):
        super().__init__(model, config, embed_dim, meta)
        self.hierarchy = hierarchy
        parents = [jnp.asarray(p, jnp.int32) for p in hierarchy.parents]
        fine, graphdef = hierarchy.finest, self._graphdef

        @jax.jit
        def scores(state, x):
            logps = nnx.merge(graphdef, state)(x)
            total = logps[fine]
            for j, lp in enumerate(logps):
                if j != fine:
                    total = total + jnp.take(lp, parents[j], axis=1)
            return total

        self._scores = scores

    def _predict(self, embeddings, *, top_k: int, seed: int) -> Prediction:
        s = self._batches(embeddings, lambda x, _: self._scores(self._state, x))  # [N, C]
        top = np.argsort(-s, axis=1)[:, :top_k]
        if top.shape[1] < top_k:  # fewer cells than top_k: repeat the last
            top = np.concatenate([top, np.repeat(top[:, -1:], top_k - top.shape[1], 1)], 1)
        return Prediction(latlon=self.hierarchy.centres[self.hierarchy.finest][top])


def _model(config: BaselineConfig, embed_dim: int, hierarchy: Hierarchy) -> CellClassifier:
    num_cells = tuple(len(c) for c in hierarchy.centres)
    return CellClassifier(
        embed_dim, config.hidden, config.depth, num_cells, rngs=nnx.Rngs(config.seed)
    )


def train(data_path: str, run, config: BaselineConfig, *, progress=True, on_eval=None) -> dict:
    x, latlon, info = read_training_data(data_path)
    hierarchy, labels = Hierarchy.build(latlon, config.partitions)
    model = _model(config, x.shape[1], hierarchy)
    model.trunk.standardise_with(x)
    callback = None
    if on_eval is not None:
        callback = lambda step, m: on_eval(step, CellsLocator(m, config, x.shape[1], hierarchy))  # noqa: E731
    record = fit("cells", model, loss, x, labels, config, progress=progress, on_eval=callback)
    save_params(run.params, model, **hierarchy.arrays())
    return {**info, "finest": hierarchy.finest, **record}


def load(run, meta: dict, **options) -> CellsLocator:
    no_options("cells", options)
    config = BaselineConfig.from_dict(meta["config"])
    arrays = files.load_npz(run.require(run.params, "parameters"))
    hierarchy = Hierarchy.from_arrays(arrays, len(config.partitions), int(meta["finest"]))
    model = _model(config, int(meta["embed_dim"]), hierarchy)
    load_params(model, arrays)
    return CellsLocator(model, config, int(meta["embed_dim"]), hierarchy, meta)

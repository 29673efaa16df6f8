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
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import shdd
from locdiff.data import datasets as data
from locdiff.infer.prediction import Prediction
from locdiff.io import files
from locdiff.methods.base import no_options
from locdiff.methods.configs import CellsConfig
from locdiff.methods.network import (
    NetworkLocator,
    NetworkObjective,
    Trunk,
    train_network,
    trained_network,
)

Config = CellsConfig

# What the method is (read by the registry and the command line, never its name):
LEARNED = True  # trains a network (with the one trainer)
CALIBRATED_MAPS = False  # LocDiff's maps: calibrated after training, a density to re-rank by
TAKES_GALLERY = False  # searches a gallery of (embedding, location) pairs given to it


def spherical_mean(latlon) -> np.ndarray:
    """Mean location ``[2]`` of ``[N, 2]`` degrees (the normalised mean unit vector)."""
    return shdd.sphere.xyz_to_latlon_np(shdd.sphere.latlon_to_xyz_np(latlon).mean(axis=0))


@dataclasses.dataclass
class CellTree:
    """A partition as the tree of its median splits, so that a location's cell can be
    found from the location alone (in the train step, on the device): node ``i`` sends a
    point to child ``children[i, 2 h + q]``, ``h = lat >= lat[i]``, ``q = lon >=
    lon[i, h]``; a leaf (``children = -1``) is cell ``label[i]``. Splits are float32, as
    the locations a batch carries."""

    lat: np.ndarray  # [nodes] float32
    lon: np.ndarray  # [nodes, 2] float32
    children: np.ndarray  # [nodes, 4] int32
    label: np.ndarray  # [nodes] int32, -1 for inner nodes

    @property
    def depth(self) -> int:
        depth, level = 0, np.array([0])
        while len(level):
            level = self.children[level].ravel()
            level = level[level >= 0]
            depth += 1
        return depth

    def labels(self, latlon, xp=np):
        """The cell ``[N]`` of each of ``latlon [N, 2]`` (``xp``: ``numpy`` or ``jax.numpy``)."""
        latlon = xp.asarray(latlon, xp.float32)
        lat, lon = latlon[:, 0], latlon[:, 1]
        parts = [xp.asarray(a) for a in (self.lat, self.lon, self.children, self.label)]
        split_lat, split_lon, children, label = parts
        node = xp.zeros(latlon.shape[0], xp.int32)
        for _ in range(self.depth):
            h = (lat >= split_lat[node]).astype(xp.int32)
            q = lon >= xp.take_along_axis(split_lon[node], h[:, None], axis=1)[:, 0]
            child = xp.take_along_axis(children[node], (2 * h + q.astype(xp.int32))[:, None], 1)
            node = xp.where(child[:, 0] >= 0, child[:, 0], node)
        return label[node]

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        names = ("lat", "lon", "children", "label")
        return {f"{prefix}{name}": getattr(self, name) for name in names}

    @classmethod
    def from_arrays(cls, arrays, prefix: str) -> CellTree:
        names = ("lat", "lon", "children", "label")
        return cls(*(arrays[f"{prefix}{name}"] for name in names))


@dataclasses.dataclass
class Cells:
    """A partition of training locations: ``labels [N]``, ``centres [C, 2]``, ``counts
    [C]``, and the ``tree`` that finds any location's cell."""

    labels: np.ndarray
    centres: np.ndarray
    counts: np.ndarray
    tree: CellTree


def adaptive_cells(latlon, *, min_count: int = 50, max_count: int = 5000) -> Cells:
    """PlaNet-style cells: split each cell in four (at its median latitude, then the median
    longitude of each half) while it holds more than ``max_count`` points; a split that
    would leave a piece smaller than ``min_count`` is not made.

    Raises:
      ValueError: on bad counts or fewer points than ``min_count``.
    """
    latlon = np.asarray(latlon, np.float64)
    if not 1 <= min_count <= max_count:
        raise ValueError(f"need 1 <= min_count <= max_count, got {min_count}, {max_count}")
    if len(latlon) < min_count:
        raise ValueError(f"{len(latlon)} points are fewer than min_count={min_count}")
    points = latlon.astype(np.float32)  # the splits' precision (a batch's locations)
    lat_split, lon_split, children, label = [], [], [], []
    leaves = [0]  # cells numbered so far

    def split(index: np.ndarray) -> int:
        node = len(label)
        lat_split.append(np.float32(0)), lon_split.append((0, 0)), children.append([-1] * 4)
        label.append(-1)
        if len(index) > max_count:
            lat = points[index, 0]
            m = np.median(lat).astype(np.float32)
            halves = [index[lat < m], index[lat >= m]]
            meds = [np.median(points[h, 1]).astype(np.float32) if len(h) else 0 for h in halves]
            quarters = []
            for half, med in zip(halves, meds, strict=True):
                lon = points[half, 1]
                quarters += [half[lon < med], half[lon >= med]]
            sizes = [len(q) for q in quarters]
            if min(sizes) >= min_count and max(sizes) < len(index):
                lat_split[node], lon_split[node] = m, tuple(meds)
                children[node] = [split(q) for q in quarters]
                return node
        label[node] = leaves[0]  # a leaf: the next cell
        leaves[0] += 1
        return node

    split(np.arange(len(latlon)))
    tree = CellTree(
        np.array(lat_split, np.float32), np.array(lon_split, np.float32),
        np.array(children, np.int32), np.array(label, np.int32),
    )  # fmt: skip
    labels = tree.labels(points)
    counts = np.bincount(labels, minlength=int(tree.label.max()) + 1)
    xyz = shdd.sphere.latlon_to_xyz_np(latlon)  # each cell's spherical mean, in one pass
    sums = [np.bincount(labels, weights=xyz[:, i], minlength=len(counts)) for i in range(3)]
    centres = shdd.sphere.xyz_to_latlon_np(np.stack(sums, axis=1))
    return Cells(labels=labels.astype(np.int64), centres=centres, counts=counts, tree=tree)


@dataclasses.dataclass
class Hierarchy:
    """Several partitions: ``centres[j] [C_j, 2]``, ``parents[j] [C_finest]`` (the cell of
    partition ``j`` that holds each finest cell), and which partition is the ``finest``."""

    centres: list[np.ndarray]
    parents: list[np.ndarray]
    finest: int
    trees: list[CellTree] | None = None  # in training: each partition's tree

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
        trees = [p.tree for p in parts]
        return cls([p.centres for p in parts], parents, finest, trees), labels

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for j, (c, p) in enumerate(zip(self.centres, self.parents, strict=True)):
            out[f"centres:{j}"], out[f"parents:{j}"] = c, p
            if self.trees is not None:
                out |= self.trees[j].arrays(f"tree:{j}:")
        return out

    @classmethod
    def from_arrays(cls, arrays, n: int, finest: int) -> Hierarchy:
        """The saved hierarchy (with its trees, where the run saved them: since 0.3)."""
        centres = [arrays[f"centres:{j}"] for j in range(n)]
        trees = None
        if "tree:0:lat" in arrays:
            trees = [CellTree.from_arrays(arrays, f"tree:{j}:") for j in range(n)]
        return cls(centres, [arrays[f"parents:{j}"] for j in range(n)], finest, trees)


class CellClassifier(nnx.Module):
    """Trunk + one log-softmax head per partition."""

    def __init__(self, embed_dim, hidden, depth, num_cells, *, rngs, standardise: bool = True):
        self.trunk = Trunk(embed_dim, hidden, depth, rngs=rngs, standardise=standardise)
        self.heads = nnx.List([nnx.Linear(hidden, n, rngs=rngs) for n in num_cells])

    def __call__(self, x):
        h = self.trunk(x)
        return [jax.nn.log_softmax(head(h), axis=-1) for head in self.heads]


def loss(model, x, latlon, key, *, trees):
    """Cross-entropy summed over the partitions; each location's cell of partition ``j``
    is found by ``trees[j]`` (:meth:`CellTree.labels`)."""
    labels = jnp.stack([tree.labels(latlon, jnp) for tree in trees], axis=1)
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


@dataclasses.dataclass(frozen=True)
class CellsObjective(NetworkObjective):
    """The classifier's objective, with the ``hierarchy`` its heads are over."""

    hierarchy: Hierarchy


def objective(config: CellsConfig, hierarchy: Hierarchy) -> CellsObjective:
    """The classifier over ``hierarchy``'s cells, and its loss (needs its trees)."""
    num_cells = tuple(len(c) for c in hierarchy.centres)

    def build(config, embed_dim, rngs, *, standardise=True):
        m = config.model
        return CellClassifier(embed_dim, m.hidden, m.depth, num_cells, rngs=rngs,
                              standardise=standardise)  # fmt: skip

    return CellsObjective("cells", config, build, functools.partial(loss, trees=hierarchy.trees),
                          hierarchy)  # fmt: skip


def objective_for(config: CellsConfig, data_path: str) -> CellsObjective:
    """The trainer's objective: the cells of every location of ``data_path`` first."""
    latlon = data.locations(data.open_dataset(data_path)).astype(np.float64)
    return objective(config, Hierarchy.build(latlon, config.model.partitions)[0])


def train(data_path: str, run, config: CellsConfig, *, progress=True, on_eval=None) -> dict:
    """The classifier over the cells of ``data_path``'s locations, by the one trainer."""
    goal = objective_for(config, data_path)
    hierarchy = goal.hierarchy

    def make(model):
        return CellsLocator(model, config, model.trunk.mean.shape[0], hierarchy)

    info = train_network(goal, data_path, run, make, progress=progress, on_eval=on_eval,
                         extra=hierarchy.arrays())  # fmt: skip
    return {**info, "finest": hierarchy.finest}


def load(run, meta: dict, **options) -> CellsLocator:
    no_options("cells", options)
    config = CellsConfig.from_dict(meta["config"])
    arrays = files.load_npz(run.require(run.params, "parameters"))
    n = len(config.model.partitions)
    hierarchy = Hierarchy.from_arrays(arrays, n, int(meta["finest"]))
    embed_dim = int(meta["embed_dim"])
    model = trained_network(objective(config, hierarchy), embed_dim, arrays)
    return CellsLocator(model, config, embed_dim, hierarchy, meta)

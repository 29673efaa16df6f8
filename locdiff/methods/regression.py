"""Regression: a unit 3-vector from the embedding, trained with the cosine loss (the
maximum-likelihood direction of a von Mises-Fisher model); one location per input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import shdd
from locdiff.infer.prediction import Prediction, broadcast_top_k
from locdiff.methods.configs import RegressionConfig
from locdiff.methods.network import (
    NetworkLocator,
    Trunk,
    plain_method,
)

Config = RegressionConfig

# What the method is (read by the registry and the command line, never its name):
LEARNED = True  # trains a network (with the one trainer)
CALIBRATED_MAPS = False  # LocDiff's maps: calibrated after training, a density to re-rank by
TAKES_GALLERY = False  # searches a gallery of (embedding, location) pairs given to it


class Regressor(nnx.Module):
    """Trunk + a unit 3-vector."""

    def __init__(self, embed_dim, hidden, depth, *, rngs, standardise: bool = True):
        self.trunk = Trunk(embed_dim, hidden, depth, rngs=rngs, standardise=standardise)
        self.head = nnx.Linear(hidden, 3, rngs=rngs)

    def __call__(self, x):
        v = self.head(self.trunk(x))
        return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-6)


def loss(model, x, latlon, key):
    """``1 - cos`` between the predicted and the true unit vectors ``[B, 3]``."""
    xyz = shdd.sphere.latlon_to_xyz(latlon.astype(jnp.float32))
    return jnp.mean(1.0 - jnp.sum(model(x) * xyz, axis=-1))


class RegressionLocator(NetworkLocator):
    """The regressed unit vector; one location, repeated ``top_k`` times."""

    method = "regression"

    def __init__(self, *args):
        super().__init__(*args)
        graphdef = self._graphdef
        self._apply = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))

    def _predict(self, embeddings, *, top_k: int, seed: int) -> Prediction:
        xyz = self._batches(embeddings, lambda x, _: self._apply(self._state, x))
        latlon = shdd.sphere.xyz_to_latlon_np(xyz)
        return Prediction(latlon=broadcast_top_k(latlon, top_k))


def _build(config: RegressionConfig, embed_dim: int, rngs, *, standardise: bool = True):
    m = config.model
    return Regressor(embed_dim, m.hidden, m.depth, rngs=rngs, standardise=standardise)


objective, objective_for, train, load = plain_method(
    "regression", RegressionConfig, _build, loss, RegressionLocator
)

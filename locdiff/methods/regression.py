"""Regression: a unit 3-vector from the embedding, trained with the cosine loss (the
maximum-likelihood direction of a von Mises-Fisher model); one location per input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import shdd
from locdiff.infer.prediction import Prediction, broadcast_top_k
from locdiff.methods.base import BaselineConfig
from locdiff.methods.network import (
    NetworkLocator,
    Trunk,
    load_network,
    train_on_unit_vectors,
)

Config = BaselineConfig


class Regressor(nnx.Module):
    """Trunk + a unit 3-vector."""

    def __init__(self, embed_dim, hidden, depth, *, rngs):
        self.trunk = Trunk(embed_dim, hidden, depth, rngs=rngs)
        self.head = nnx.Linear(hidden, 3, rngs=rngs)

    def __call__(self, x):
        v = self.head(self.trunk(x))
        return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-6)


def loss(model, x, xyz, key):
    """``1 - cos`` between the predicted and the true unit vectors ``[B, 3]``."""
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


def _model(config: BaselineConfig, embed_dim: int) -> Regressor:
    return Regressor(embed_dim, config.hidden, config.depth, rngs=nnx.Rngs(config.seed))


def train(data_path: str, run, config: BaselineConfig, *, progress=True, on_eval=None) -> dict:
    make = (
        None if on_eval is None else (lambda m: RegressionLocator(m, config, m.trunk.mean.shape[0]))
    )
    return train_on_unit_vectors(
        "regression", data_path, run, config, _model, loss, progress=progress, on_eval=on_eval,
        locator=make,
    )  # fmt: skip


def load(run, meta: dict, **options) -> RegressionLocator:
    return load_network("regression", run, meta, _model, RegressionLocator, options)

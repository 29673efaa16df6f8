"""Flow matching on raw 3-D coordinates (PLONK-style): the baseline that diffuses in R^3.

A velocity field ``v(x_t, t | condition)`` is trained by conditional flow matching from
Gaussian noise to the unit vector of the location; sampling integrates it with Euler
steps, projects the samples to the sphere, and ranks them by a von Mises-Fisher kernel
density over the samples (greedy: each mode suppresses the samples within
``2 kde_km``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import shdd
from locdiff.infer.prediction import Prediction, check_embeddings
from locdiff.methods.configs import FlowConfig
from locdiff.methods.network import (
    NetworkLocator,
    Trunk,
    plain_method,
)

Config = FlowConfig

# What the method is (read by the registry and the command line, never its name):
LEARNED = True  # trains a network (with the one trainer)
CALIBRATED_MAPS = False  # LocDiff's maps: calibrated after training, a density to re-rank by
TAKES_GALLERY = False  # searches a gallery of (embedding, location) pairs given to it


class FlowNet(nnx.Module):
    """Velocity field ``v(x_t, t | condition)`` on R^3: trunk features + ``x_t`` + Fourier(t)."""

    def __init__(self, embed_dim, hidden, depth, *, rngs, standardise: bool = True):
        self.trunk = Trunk(embed_dim, hidden, depth, rngs=rngs, standardise=standardise)
        self.mix1 = nnx.Linear(hidden + 3 + 32, hidden, rngs=rngs)
        self.mix2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, 3, rngs=rngs)

    def features(self, cond):
        return self.trunk(cond)

    def velocity(self, h, x_t, t):
        freqs = jnp.exp(jnp.linspace(0.0, math.log(100.0), 16))  # [16]
        angles = t[:, None] * freqs[None, :]
        z = jnp.concatenate([h, x_t, jnp.cos(angles), jnp.sin(angles)], axis=-1)
        return self.out(jax.nn.gelu(self.mix2(jax.nn.gelu(self.mix1(z)))))


def loss(model, x, latlon, key):
    """Conditional flow matching: ``|v(x_t, t) - (x1 - x0)|^2`` on ``x_t = (1-t) x0 + t x1``."""
    xyz = shdd.sphere.latlon_to_xyz(latlon.astype(jnp.float32))
    k_noise, k_t = jax.random.split(key)
    x0 = jax.random.normal(k_noise, xyz.shape)
    t = jax.random.uniform(k_t, (xyz.shape[0],))
    x_t = (1.0 - t)[:, None] * x0 + t[:, None] * xyz
    v = model.velocity(model.features(x), x_t, t)
    return jnp.mean(jnp.sum((v - (xyz - x0)) ** 2, axis=-1))


class FlowLocator(NetworkLocator):
    """Euler samples of the flow, projected to the sphere; modes by kernel density."""

    method = "coords-diffusion"

    def __init__(self, *args):
        super().__init__(*args)
        c, graphdef = self.config.model, self._graphdef

        @jax.jit
        def sample(state, cond, key):
            model = nnx.merge(graphdef, state)
            b, k = cond.shape[0], c.num_samples
            h = jnp.repeat(model.features(cond), k, axis=0)  # [B*K, hidden]
            x = jax.random.normal(key, (b * k, 3))
            dt = 1.0 / c.flow_steps

            def euler(x, i):
                t = jnp.full((b * k,), i * dt)
                return x + dt * model.velocity(h, x, t), None

            x, _ = jax.lax.scan(euler, x, jnp.arange(c.flow_steps))
            return (x / jnp.linalg.norm(x, axis=-1, keepdims=True)).reshape(b, k, 3)

        self._sample = sample

    def samples(self, embeddings, *, seed: int = 0) -> np.ndarray:
        """``[N, num_samples, 3]`` unit vectors."""
        return self._samples(check_embeddings(embeddings, self.embed_dim), seed)

    def _samples(self, embeddings: np.ndarray, seed: int) -> np.ndarray:
        key = jax.random.key(seed)
        return self._batches(
            embeddings,
            lambda x, start: self._sample(self._state, x, jax.random.fold_in(key, start)),
            batch_size=256,
        )

    def _predict(self, embeddings, *, top_k: int, seed: int) -> Prediction:
        xyz = self._samples(embeddings, seed).astype(np.float64)  # [N, K, 3]
        kappa = 1.0 / shdd.sphere.km_to_radians(self.config.model.kde_km) ** 2
        density = np.exp(kappa * (np.einsum("nkd,njd->nkj", xyz, xyz) - 1.0)).sum(-1)  # [N, K]
        out = np.empty((len(xyz), top_k, 2))
        radius = math.cos(2 * shdd.sphere.km_to_radians(self.config.model.kde_km))
        for i in range(len(xyz)):  # greedy: densest sample, then suppress its neighbourhood
            d = density[i].copy()
            for r in range(top_k):
                j = int(np.argmax(d))
                out[i, r] = shdd.sphere.xyz_to_latlon_np(xyz[i, j])
                if np.isfinite(d).sum() > 1:
                    d[xyz[i] @ xyz[i, j] > radius] = -np.inf
                    d[j] = -np.inf
        return Prediction(latlon=out)


def _build(config: FlowConfig, embed_dim: int, rngs, *, standardise: bool = True):
    m = config.model
    return FlowNet(embed_dim, m.hidden, m.depth, rngs=rngs, standardise=standardise)


objective, objective_for, train, load = plain_method(
    "coords-diffusion", FlowConfig, _build, loss, FlowLocator
)

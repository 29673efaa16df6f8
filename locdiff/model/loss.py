"""LocDiff's objective: the CS-UNet and its diffusion loss in SHDD space.

What the trainer (:mod:`locdiff.training`) asks of every learned method
(:class:`locdiff.training.step.Objective`): a network, and a loss on a batch of
standardised conditions and locations. The SHDD target is computed from ``latlon``
inside the step, so the input pipeline only gathers rows.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

import shdd
from locdiff.config import Config
from locdiff.model import diffusion
from locdiff.model.csunet import CSUNet


def shdd_target(latlon, config: Config):
    """Scaled SHDD vectors ``[B, D]`` of ``latlon [B, 2]`` (inside jit: no value checks)."""
    m = config.model
    return shdd.encode(latlon, L=m.L, sigma_km=m.sigma_km) * config.diffusion.scale  # [B, D]


def loss_terms(model: CSUNet, batch, key, config: Config, *, train: bool = True):
    """Per-batch ``(loss, {"mse", "kl"})`` for one noisy draw of every example.

    ``train=False`` (the validation loss) keeps every condition and turns dropout off.
    """
    d = config.diffusion
    B = batch["latlon"].shape[0]
    k_t, k_eps, k_drop, k_dropout = jax.random.split(key, 4)
    x0 = shdd_target(batch["latlon"], config)
    t = diffusion.sample_time(k_t, B, d.timesteps)
    eps = jax.random.normal(k_eps, x0.shape)
    x_t = diffusion.q_sample(x0, t, eps)
    if train:
        drop = jax.random.bernoulli(k_drop, config.model.cond_drop, (B,))
        out = model(x_t, t, batch["embedding"], drop=drop, dropout_key=k_dropout)
    else:
        out = model(x_t, t, batch["embedding"])
    mse = jnp.mean((out - diffusion.target(d.prediction, x0, eps, t)) ** 2)
    kl = jnp.zeros(())
    if d.loss in ("kl", "mse+kl"):
        x0_hat, _ = diffusion.to_x0_eps(d.prediction, out, x_t, t)
        kl = jnp.mean(
            shdd.delta_kl_divergence(
                x0 / d.scale, x0_hat / d.scale, L=config.model.L,
                sigma_km=config.model.sigma_km, temperature=d.kl_temperature,
            )
        )  # fmt: skip
    loss = {"mse": mse, "kl": kl, "mse+kl": mse + d.kl_weight * kl}[d.loss]
    return loss, {"mse": mse, "kl": kl}


@dataclasses.dataclass(frozen=True)
class LocDiffObjective:
    """The CS-UNet of ``config.model`` trained by :func:`loss_terms`."""

    config: Config
    method: str = "locdiff"

    def init(self, embed_dim: int, rngs: nnx.Rngs) -> CSUNet:
        return CSUNet(self.config.model, embed_dim, rngs=rngs)

    def loss_terms(self, model: CSUNet, batch, key, *, train: bool = True):
        return loss_terms(model, batch, key, self.config, train=train)

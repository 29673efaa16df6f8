"""Drawing SHDD vectors from a trained CS-UNet: K samples per condition.

``sample_coefficients`` runs the reverse diffusion of :mod:`locdiff.model.diffusion` with the
network as denoiser, for ``K`` independent samples of every condition, in one jitted
call (compiled once per batch shape). It returns unscaled SHDD vectors, ready for
``shdd.decode`` and ``shdd.probability_map``; because decoding is linear in the
coefficients, the mean over the K samples maps to the mixture of their densities.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from locdiff.config import Config
from locdiff.model import diffusion

_STATIC = ("graphdef", "config", "num_samples", "sample_steps", "sampler", "guidance")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _sample(graphdef, params, cond, key, *, config, num_samples, sample_steps, sampler, guidance):
    model = nnx.merge(graphdef, params)
    B = cond.shape[0]
    cond_k = jnp.repeat(cond, num_samples, axis=0)  # [B*K, E]

    def model_fn(x_t, t, conditional):
        drop = jnp.full(t.shape, not conditional)
        return model(x_t, t, cond_k, drop=drop)

    x0 = diffusion.sample(
        model_fn,
        key,
        (B * num_samples, config.model.num_coeffs),
        steps=sample_steps,
        prediction=config.diffusion.prediction,
        sampler=sampler,
        guidance=guidance,
    )
    return (x0 / config.diffusion.scale).reshape(B, num_samples, -1)  # [B, K, D]


def sample_coefficients(
    graphdef,
    params,
    cond,
    key,
    config: Config,
    *,
    num_samples: int | None = None,
    sample_steps: int | None = None,
    sampler: str | None = None,
    guidance: float | None = None,
):
    """``K`` sampled SHDD vectors per condition: ``cond [B, E]`` -> ``[B, K, (L+1)**2]``.

    Unset options take the run's ``config.diffusion`` defaults. Deterministic for a given
    ``key``.
    """
    d = config.diffusion
    return _sample(
        graphdef,
        params,
        jnp.asarray(cond, jnp.float32),
        key,
        config=config,
        num_samples=num_samples or d.num_samples,
        sample_steps=sample_steps or d.sample_steps,
        sampler=sampler or d.sampler,
        guidance=d.guidance if guidance is None else guidance,
    )

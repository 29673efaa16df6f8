"""Diffusion in SHDD space as pure functions on arrays (no Flax, no Optax).

Forward process ``x_t = alpha_t x0 + sigma_t eps`` with the cosine schedule
``alpha_t**2 = cos(pi/2 (t+s)/(1+s))**2 / cos(pi/2 s/(1+s))**2`` (``s = 0.008``) and
``sigma_t**2 = 1 - alpha_t**2``, in continuous time ``t in [0, 1]`` (or on ``T`` steps,
``t = i / T``). The network predicts ``x0``, ``eps`` or ``v = alpha eps - sigma x0``;
:func:`to_x0_eps` converts any of them. Samplers (DDIM, ancestral DDPM) run as one
``lax.scan`` over a decreasing time grid, with optional classifier-free guidance.

Shapes: ``x0, x_t, eps: [B, D]``; ``t, alpha, sigma: [B]`` (broadcast explicitly).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

COSINE_OFFSET = 0.008
MIN_ALPHA_SQ = 1e-8  # alpha_1 = 1e-4: keeps x0 = (x_t - sigma eps) / alpha finite


def alpha_sigma(t):
    """``(alpha_t, sigma_t)`` of the cosine schedule at times ``t`` in ``[0, 1]`` (any shape)."""
    s = COSINE_OFFSET
    f = jnp.cos(0.5 * jnp.pi * (t + s) / (1 + s)) ** 2 / np.cos(0.5 * np.pi * s / (1 + s)) ** 2
    alpha_sq = jnp.clip(f, MIN_ALPHA_SQ, 1.0)
    return jnp.sqrt(alpha_sq), jnp.sqrt(1.0 - alpha_sq)


def ideal_x0(x_t, t, pool):
    """What a perfect x0-predictor trained on ``pool [P, D]`` (its training vectors,
    already scaled) answers for ``x_t [B, D]`` at times ``t [B]``: the posterior mean
    ``E[x0 | x_t]`` with ``x0`` uniform over the pool (NumPy, float64)."""
    alpha, sigma = (np.asarray(v, np.float64) for v in alpha_sigma(jnp.asarray(t)))
    x_t, pool = np.asarray(x_t, np.float64), np.asarray(pool, np.float64)
    d2 = ((x_t[:, None, :] - alpha[:, None, None] * pool[None]) ** 2).sum(-1)  # [B, P]
    logits = -d2 / (2 * sigma[:, None] ** 2)
    w = np.exp(logits - logits.max(1, keepdims=True))
    return (w / w.sum(1, keepdims=True)) @ pool


def sample_time(key, batch: int, timesteps: int = 0):
    """Training times ``[B]``: uniform in ``(0, 1]``, or ``i / T`` with ``i`` in ``1..T``."""
    if timesteps:
        return jax.random.randint(key, (batch,), 1, timesteps + 1) / timesteps
    return jax.random.uniform(key, (batch,), minval=1e-5, maxval=1.0)


def _col(v):
    return v[:, None]  # [B] -> [B, 1]


def q_sample(x0, t, eps):
    """``x_t = alpha_t x0 + sigma_t eps``: ``x0, eps [B, D]``, ``t [B]``."""
    alpha, sigma = alpha_sigma(t)
    return _col(alpha) * x0 + _col(sigma) * eps


def target(prediction: str, x0, eps, t):
    """What the network is trained to output for ``prediction`` in ``x0 | eps | v``."""
    if prediction == "x0":
        return x0
    if prediction == "eps":
        return eps
    if prediction == "v":
        alpha, sigma = alpha_sigma(t)
        return _col(alpha) * eps - _col(sigma) * x0
    raise ValueError(f"prediction must be x0, eps or v, got {prediction!r}")


def to_x0_eps(prediction: str, output, x_t, t):
    """The network ``output`` as estimates ``(x0_hat, eps_hat)`` given ``x_t`` and ``t``."""
    alpha, sigma = alpha_sigma(t)
    alpha, sigma = _col(alpha), _col(sigma)
    if prediction == "x0":
        return output, (x_t - alpha * output) / sigma
    if prediction == "eps":
        return (x_t - sigma * output) / alpha, output
    if prediction == "v":
        return alpha * x_t - sigma * output, sigma * x_t + alpha * output
    raise ValueError(f"prediction must be x0, eps or v, got {prediction!r}")


def ddim_step(x0_hat, eps_hat, s):
    """Deterministic DDIM update to the earlier time ``s [B]``: ``alpha_s x0 + sigma_s eps``."""
    alpha_s, sigma_s = alpha_sigma(s)
    return _col(alpha_s) * x0_hat + _col(sigma_s) * eps_hat


def ddpm_step(key, x_t, x0_hat, t, s):
    """Ancestral step: a sample of ``q(x_s | x_t, x0 = x0_hat)`` for ``s < t`` (``[B]`` each)."""
    alpha_t, sigma_t = alpha_sigma(t)
    alpha_s, sigma_s = alpha_sigma(s)
    alpha_ts = alpha_t / alpha_s
    var_ts = jnp.maximum(sigma_t**2 - alpha_ts**2 * sigma_s**2, 0.0)  # sigma_{t|s}^2
    mean = (
        _col(alpha_ts * sigma_s**2 / sigma_t**2) * x_t
        + _col(alpha_s * var_ts / sigma_t**2) * x0_hat
    )
    std = jnp.sqrt(var_ts * sigma_s**2 / sigma_t**2)
    return mean + _col(std) * jax.random.normal(key, x_t.shape, x_t.dtype)


def time_grid(steps: int):
    """``steps + 1`` decreasing times from 1 to 0 (the sampler's grid)."""
    return jnp.linspace(1.0, 0.0, steps + 1)


def sample(
    model_fn: Callable,
    key,
    shape: tuple[int, int],
    *,
    steps: int,
    prediction: str = "x0",
    sampler: str = "ddim",
    guidance: float = 1.0,
):
    """Reverse diffusion from ``N(0, I)`` to an estimate of ``x0``: ``[B, D]``.

    Args:
      model_fn: ``model_fn(x_t [B, D], t [B], conditional: bool) -> output [B, D]`` in the
        parameterisation ``prediction``; ``conditional=False`` must use the null condition.
      key: PRNG key (initial noise, and the DDPM noise).
      shape: ``(B, D)``.
      steps: number of denoising steps.
      sampler: ``ddim`` (deterministic given the initial noise) or ``ddpm``.
      guidance: classifier-free guidance scale ``w``: ``out = out_null + w (out_cond -
        out_null)``; 1 is the plain conditional model (one network call per step).

    Returns:
      The last ``x0_hat`` (at ``t = 0`` the state equals it).
    """
    if sampler not in ("ddim", "ddpm"):
        raise ValueError(f"sampler must be ddim or ddpm, got {sampler!r}")
    B = shape[0]
    key, noise_key = jax.random.split(key)
    x = jax.random.normal(noise_key, shape)
    grid = time_grid(steps)

    def output(x_t, t):
        cond = model_fn(x_t, t, True)
        if guidance == 1.0:
            return cond
        return model_fn(x_t, t, False) * (1.0 - guidance) + guidance * cond

    def step(x_t, inputs):
        t_now, t_next, step_key = inputs
        t = jnp.full((B,), t_now)
        s = jnp.full((B,), t_next)
        x0_hat, eps_hat = to_x0_eps(prediction, output(x_t, t), x_t, t)
        if sampler == "ddim":
            x_s = ddim_step(x0_hat, eps_hat, s)
        else:
            x_s = ddpm_step(step_key, x_t, x0_hat, t, s)
        last = t_next <= 0.0
        return jnp.where(last, x0_hat, x_s), None

    keys = jax.random.split(key, steps)
    x, _ = jax.lax.scan(step, x, (grid[:-1], grid[1:], keys))
    return x

"""CS-UNet: the conditional SIREN U-Net that denoises SHDD vectors (``flax.nnx``).

An MLP U-Net over the ``D = (L+1)**2`` vector: an input SIREN projection ``D -> h``, an
encoder path of blocks of widths ``h, h/2, ..., h/2**(depth-1)``, a bottleneck at
``h/2**depth``, a decoder path back to ``h`` that concatenates the encoder's outputs
(skip connections), and a linear output projection ``h -> D``.

Each block is a SIREN layer modulated by FiLM, with dropout and a residual path::

    z = W x + b;  (gamma, beta) = FiLM(e);  h = sin(w0 ((1 + gamma) z + beta))
    out = (R x + dropout(h)) / sqrt(2)        # R = identity when the widths match

where ``e = MLP([condition embedding, sinusoidal(t)])`` (``cond_layers`` hidden layers).
FiLM starts at zero, so an untrained block is a plain SIREN layer. SIREN initialisation:
the first layer uniform in ``+-1/fan_in``, later layers ``+-sqrt(6/fan_in)/w0``. For
classifier-free guidance the condition is replaced by a learned null embedding where
``drop`` is true.

With ``compute_dtype="bfloat16"`` every layer computes in bfloat16 from float32
parameters (mixed precision) and the output is returned in float32.

Randomness is explicit: dropout draws from the ``dropout_key`` passed to ``__call__``
(none: no dropout), so the module holds parameters only.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from locdiff.config import ModelConfig


def timestep_embedding(t, dim: int, max_period: float = 10_000.0):
    """Sinusoidal embedding ``[B, dim]`` of times ``t [B]`` in ``[0, 1]`` (scaled by 1000)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)  # [half]
    angles = (1000.0 * t)[:, None] * freqs[None, :]  # [B, half]
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


# XLA's sin costs 2-4 ns an element on a CPU; SIREN layers take it (and its derivative)
# at every unit, about 1 ms of Blue Marble's 11 ms train step on 2 cores. ``sine``
# reduces modulo pi by Cody-Waite (pi split in three float32 parts, exact products up
# to |x| ~ 1e5) and evaluates odd / even polynomials on [-pi/2, pi/2] fitted in float64:
# six times faster, within a few float32 ulps of sin (``tests/locdiff/model/test_csunet.py``).
_PI = (3.140625, 0.0009670257568359375, float(np.pi - 3.140625 - 0.0009670257568359375))
_R2 = np.linspace(0.0, (np.pi / 2) ** 2, 4001)  # r^2 for |r| <= pi/2
_SIN = [float(c) for c in np.polynomial.polynomial.polyfit(_R2, np.sinc(np.sqrt(_R2) / np.pi), 7)]
_COS = [float(c) for c in np.polynomial.polynomial.polyfit(_R2, np.cos(np.sqrt(_R2)), 8)]
# sin r = r P(r^2) and cos r = Q(r^2) with P = _SIN, Q = _COS (lowest degree first)


def _reduce(x):
    """``(r, odd)`` with ``x = k pi + r``, ``|r| <= pi/2`` and ``odd = k % 2 == 1``."""
    k = jnp.round(x * (1.0 / np.pi))
    r = ((x - k * _PI[0]) - k * _PI[1]) - k * _PI[2]
    return r, (k.astype(jnp.int32) & 1) == 1


def _horner(coeffs, z):
    out = jnp.full_like(z, coeffs[-1])
    for c in coeffs[-2::-1]:
        out = out * z + c
    return out


@jax.custom_jvp
def sine(x):
    """``sin(x)`` elementwise, float32 arithmetic (returned in ``x``'s dtype)."""
    r, odd = _reduce(x.astype(jnp.float32))
    s = r * _horner(_SIN, r * r)
    return jnp.where(odd, -s, s).astype(x.dtype)


@sine.defjvp
def _sine_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    r, odd = _reduce(x.astype(jnp.float32))
    r2 = r * r
    s, c = r * _horner(_SIN, r2), _horner(_COS, r2)
    sign = jnp.where(odd, -1.0, 1.0)
    return (sign * s).astype(x.dtype), (sign * c).astype(x.dtype) * dx


def _uniform(bound: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def siren_linear(fan_in: int, fan_out: int, w0: float, *, first: bool, rngs: nnx.Rngs, dtype=None):
    """A linear layer with SIREN initialisation (weights and biases; float32 parameters,
    ``dtype`` arithmetic)."""
    bound = 1.0 / fan_in if first else math.sqrt(6.0 / fan_in) / w0
    return nnx.Linear(
        fan_in, fan_out, kernel_init=_uniform(bound), bias_init=_uniform(bound), dtype=dtype,
        rngs=rngs,
    )  # fmt: skip


def _dropout(x, rate: float, key):
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


class FiLMSirenBlock(nnx.Module):
    """``out = (R x + dropout(sin(w0 ((1 + gamma) (W x + b) + beta)))) / sqrt(2)``."""

    def __init__(
        self,
        fan_in: int,
        fan_out: int,
        film_dim: int,
        config: ModelConfig,
        *,
        first: bool,
        rngs: nnx.Rngs,
    ):
        self.w0 = config.w0
        self.rate = config.dropout
        dtype = jnp.dtype(config.compute_dtype)
        self.linear = siren_linear(fan_in, fan_out, config.w0, first=first, rngs=rngs, dtype=dtype)
        self.film = nnx.Linear(
            film_dim, 2 * fan_out, kernel_init=nnx.initializers.zeros, dtype=dtype, rngs=rngs
        )
        self.residual = (
            None
            if fan_in == fan_out
            else nnx.Linear(fan_in, fan_out, use_bias=False, dtype=dtype, rngs=rngs)
        )

    def __call__(self, x, e, dropout_key=None):
        gamma, beta = jnp.split(self.film(e), 2, axis=-1)  # [B, out] each
        h = sine(self.w0 * ((1.0 + gamma) * self.linear(x) + beta))
        skip = x if self.residual is None else self.residual(x)
        return (skip + _dropout(h, self.rate, dropout_key)) / math.sqrt(2.0)


class CSUNet(nnx.Module):
    """Conditional SIREN U-Net: ``(x_t [B, D], t [B], cond [B, E]) -> [B, D]``."""

    def __init__(self, config: ModelConfig, cond_dim: int, *, rngs: nnx.Rngs):
        if cond_dim < 1:
            raise ValueError(f"cond_dim must be >= 1, got {cond_dim}")
        self.config = config
        self.cond_dim = cond_dim
        D, E = config.num_coeffs, config.film_dim
        dtype = jnp.dtype(config.compute_dtype)
        widths = [config.hidden // 2**i for i in range(config.depth + 1)]  # h .. h/2**depth
        self.null_cond = nnx.Param(jnp.zeros((cond_dim,)))
        self.embed_in = nnx.Linear(cond_dim + config.time_dim, E, dtype=dtype, rngs=rngs)
        self.embed_hidden = (
            nnx.List(
                [nnx.Linear(E, E, dtype=dtype, rngs=rngs) for _ in range(config.cond_layers - 1)]
            )
            if config.cond_layers > 1
            else None
        )
        self.embed_out = nnx.Linear(E, E, dtype=dtype, rngs=rngs)
        self.input = siren_linear(D, widths[0], config.w0, first=True, rngs=rngs, dtype=dtype)
        self.down = nnx.List(
            [
                FiLMSirenBlock(widths[i], widths[i + 1], E, config, first=False, rngs=rngs)
                for i in range(config.depth)
            ]
        )
        self.mid = FiLMSirenBlock(widths[-1], widths[-1], E, config, first=False, rngs=rngs)
        self.up = nnx.List(
            [
                FiLMSirenBlock(2 * widths[i + 1], widths[i], E, config, first=False, rngs=rngs)
                for i in reversed(range(config.depth))
            ]
        )
        self.output = nnx.Linear(
            widths[0],
            D,
            kernel_init=nnx.initializers.variance_scaling(1e-2, "fan_in", "uniform"),
            dtype=dtype,
            rngs=rngs,
        )

    def embed(self, t, cond, drop):
        """FiLM driver ``[B, E]`` from times ``t [B]``, conditions ``[B, C]`` and ``drop [B]``."""
        # embed_in([c, time]) with its kernel split by rows, so that the learned null
        # condition enters after the product: W (drop ? null : c) = drop ? W null : W c.
        # The gradient then never needs d/dc of the [B, C] conditions (C is 512-1280).
        dtype = self.embed_in.dtype or jnp.float32
        kernel = self.embed_in.kernel[...].astype(dtype)
        w_cond, w_time = kernel[: self.cond_dim], kernel[self.cond_dim :]
        h_cond = cond.astype(dtype) @ w_cond  # [B, E]
        h_null = self.null_cond[...].astype(dtype) @ w_cond  # [E]
        h = jnp.where(drop[:, None], h_null[None, :], h_cond)
        h = h + timestep_embedding(t, self.config.time_dim).astype(dtype) @ w_time
        h = jax.nn.silu(h + self.embed_in.bias[...].astype(dtype)[None, :])
        for layer in self.embed_hidden or ():
            h = jax.nn.silu(layer(h))
        return self.embed_out(h)

    def __call__(self, x_t, t, cond, *, drop=None, dropout_key=None):
        """Denoiser output ``[B, D]`` (the configured target: ``x0``, ``eps`` or ``v``).

        Args:
          x_t: ``[B, D]`` noisy scaled SHDD vectors.
          t: ``[B]`` times in ``[0, 1]``.
          cond: ``[B, C]`` condition embeddings.
          drop: ``[B]`` bool, where to use the learned null condition (default: nowhere).
          dropout_key: PRNG key for dropout (None: no dropout, as at inference).
        """
        if drop is None:
            drop = jnp.zeros(t.shape, bool)
        e = self.embed(t, cond, drop)
        n_blocks = 2 * self.config.depth + 1
        keys = (
            [None] * n_blocks
            if dropout_key is None
            else list(jax.random.split(dropout_key, n_blocks))
        )
        h = sine(self.config.w0 * self.input(x_t))
        skips = []
        for block in self.down:
            h = block(h, e, keys.pop())
            skips.append(h)
        h = self.mid(h, e, keys.pop())
        for block in self.up:
            h = block(jnp.concatenate([h, skips.pop()], axis=-1), e, keys.pop())
        return self.output(h).astype(jnp.float32)


def count_parameters(model: nnx.Module) -> int:
    """Number of scalar parameters of an ``nnx`` module."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))

"""Real orthonormal spherical harmonics by a stable, scaled three-term recurrence.

Convention (owned by :mod:`shdd.sphere`): integral of ``Y_lm**2`` over the unit
sphere is 1, no Condon-Shortley phase,

* ``Y_l0      = Pbar_l0(cos theta)``
* ``Y_lm      = sqrt(2) Pbar_lm(cos theta) cos(m phi)``   for ``m > 0``
* ``Y_l,-m    = sqrt(2) Pbar_lm(cos theta) sin(m phi)``   for ``m > 0``

where ``Pbar_lm`` are the fully normalised associated Legendre functions, computed by

* ``Pbar_00 = 1/sqrt(4 pi)``,
* ``Pbar_mm = sqrt((2m+1)/(2m)) sin(theta) Pbar_{m-1,m-1}``,
* ``Pbar_lm = a_lm (cos(theta) Pbar_{l-1,m} - b_lm Pbar_{l-2,m})`` for ``l > m`` with
  ``a_lm = sqrt((4l^2-1)/(l^2-m^2))`` and ``b_lm = sqrt(((l-1)^2-m^2)/(4(l-1)^2-1))``.

The diagonal ``Pbar_mm ~ sin(theta)**m`` underflows near the poles at high degree
(float32 from ``L`` of a few hundred) while ``Pbar_lm`` for ``l >> m`` is still
representable. We therefore carry every order ``m`` as a mantissa and an integer
power-of-two exponent: the diagonal starts from ``log2 Pbar_mm``, the mantissa is
renormalised by an exact power of two whenever it grows large, and the value is
only formed (``ldexp``) at the output, where genuinely tiny values underflow to 0.
The recurrence runs as one ``lax.scan`` over the degree ``l``, vectorised over the
order ``m`` and over the points; it is jit-able and differentiable.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from shdd import sphere

_RESCALE_LOG2 = 64  # renormalise mantissas above 2**64 (float32 overflows at 2**128)


@functools.cache
def _recurrence_tables(L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 tables ``a [L+1, L+1]``, ``b [L+1, L+1]`` (rows l, columns m) and the
    diagonal constants ``log2(Pbar_mm / sin(theta)**m)`` ``[L+1]``.

    ``a`` and ``b`` vanish for ``m >= l``, so that the general recurrence also gives
    ``Pbar_{m+1,m} = sqrt(2m+3) cos(theta) Pbar_mm`` (``b = 0`` and ``Pbar_{m-1,m} = 0``).
    """
    l = np.arange(L + 1, dtype=np.float64)[:, None]  # [L+1, 1]
    m = np.arange(L + 1, dtype=np.float64)[None, :]  # [1, L+1]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(m < l, np.sqrt((4 * l**2 - 1) / (l**2 - m**2)), 0.0)
        b = np.where(m < l - 1, np.sqrt(((l - 1) ** 2 - m**2) / (4 * (l - 1) ** 2 - 1)), 0.0)
    i = np.arange(1, L + 1, dtype=np.float64)
    diag = np.concatenate([[0.0], np.cumsum(0.5 * np.log2((2 * i + 1) / (2 * i)))])
    diag += np.log2(1.0 / np.sqrt(4.0 * np.pi))
    return a, b, diag


def recurrence(cos_theta, sin_theta, *, L: int, fold, init, xs=None):
    """Run the scaled Legendre recurrence over ``l = 0..L`` and fold each row into a result.

    The one implementation of the recurrence; :func:`legendre` stacks the rows, the
    decoder accumulates Legendre sums from them without storing a table.

    Args:
      cos_theta, sin_theta: ``[...]`` cosine and sine (``>= 0``) of the colatitude.
      L: band limit (static).
      fold: ``fold(acc, row, x) -> (acc, y)``, called for each degree ``l`` with
        ``row = Pbar_l,m`` ``[..., L+1]`` over ``m`` (0 for ``m > l``) and ``x`` the
        ``l``-th slice of ``xs``.
      init: initial accumulator (any pytree).
      xs: optional pytree of arrays with leading axis ``L+1``.

    Returns:
      ``(acc, ys)`` as from ``lax.scan``; ``ys`` has a leading axis ``L+1``.
    """
    cos_theta = jnp.asarray(cos_theta)
    dtype = jnp.result_type(cos_theta.dtype, jnp.float32)
    c = cos_theta.astype(dtype)[..., None]  # [..., 1]
    s = jnp.maximum(jnp.asarray(sin_theta, dtype), jnp.finfo(dtype).tiny)[..., None]  # [..., 1]

    a_np, b_np, diag_np = _recurrence_tables(L)
    m = jnp.arange(L + 1)
    lead = (1,) * (c.ndim - 1)  # broadcast [M] against [..., M] explicitly
    # Diagonal start values as mantissa * 2**exponent, per point and order.
    log2_diag = (
        jnp.asarray(diag_np, dtype)[None, :] + m[None, :] * jnp.log2(s.reshape(-1, 1))
    ).reshape(*c.shape[:-1], L + 1)  # [..., M]
    exponent0 = jnp.floor(jax.lax.stop_gradient(log2_diag))
    mantissa = jnp.exp2(log2_diag - exponent0)  # [..., M] in [1, 2)
    exponent0 = exponent0.astype(jnp.int32)

    big = jnp.asarray(2.0**_RESCALE_LOG2, dtype)
    shrink = jnp.asarray(2.0 ** (-_RESCALE_LOG2), dtype)

    def step(carry, inputs):
        (p1, p2, e), acc = carry  # P_{l-1}, P_{l-2} mantissas [..., M]; exponents [..., M]
        (a_l, b_l, is_diag), x = inputs  # [M], [M], [M] bool
        a_l, b_l, is_diag = (v.reshape(*lead, -1) for v in (a_l, b_l, is_diag))
        p = a_l * (c * p1 - b_l * p2)  # [..., M]
        p = jnp.where(is_diag, mantissa, p)
        grow = jnp.abs(p) > big
        p = jnp.where(grow, p * shrink, p)
        p1 = jnp.where(grow, p1 * shrink, p1)
        e = e + _RESCALE_LOG2 * grow.astype(jnp.int32)
        acc, y = fold(acc, _ldexp(p, e), x)
        return ((p, p1, e), acc), y

    zeros = jnp.zeros(mantissa.shape, dtype)
    tables = (jnp.asarray(a_np, dtype), jnp.asarray(b_np, dtype), m[:, None] == m[None, :])
    (_, acc), ys = jax.lax.scan(step, ((zeros, zeros, exponent0), init), (tables, xs))
    return acc, ys


def legendre(cos_theta, sin_theta, *, L: int):
    """Fully normalised associated Legendre functions ``Pbar_lm`` for ``0 <= m <= l <= L``.

    Args:
      cos_theta: ``[...]`` cosine of the colatitude.
      sin_theta: ``[...]`` sine of the colatitude, ``>= 0``.
      L: band limit (static).

    Returns:
      ``[..., L+1, L+1]`` array indexed ``[..., l, m]``; entries with ``m > l`` are 0.
    """
    _, rows = recurrence(
        cos_theta, sin_theta, L=L, fold=lambda acc, row, x: (acc, row), init=()
    )  # [L+1, ..., M]
    return jnp.moveaxis(rows, 0, -2)


def _ldexp(mantissa, exponent):
    """``mantissa * 2**exponent`` without overflow of the intermediate power of two.

    The exponent is split in two halves so that each power of two is representable
    whenever the product is; values below the smallest subnormal become 0.
    """
    e1 = exponent // 2
    e2 = exponent - e1
    dtype = mantissa.dtype
    return mantissa * jnp.exp2(e1.astype(dtype)) * jnp.exp2(e2.astype(dtype))


@functools.cache
def _flat_layout(L: int) -> tuple[np.ndarray, np.ndarray]:
    """Gather indices for the flat layout: into the ``[l, m>=0]`` table and the trig table."""
    l, m = sphere.degree_order(L)
    return l * (L + 1) + np.abs(m), m + L


SLICE_MAX_L = 32  # the flat layout by static slices up to this band limit, above by a gather


def _trig(phi, L: int):
    """``[..., 2L+1]`` factors by ``m + L``: ``sqrt2 sin(|m| phi)``, ``1``, ``sqrt2 cos(m phi)``."""
    m = jnp.arange(1, L + 1, dtype=phi.dtype)
    angle = phi[..., None] * m.reshape(*(1,) * phi.ndim, L)  # [..., L]
    root2 = jnp.sqrt(jnp.asarray(2.0, phi.dtype))
    sin = root2 * jnp.sin(angle[..., ::-1])  # orders -L..-1
    cos = root2 * jnp.cos(angle)  # orders 1..L
    return jnp.concatenate([sin, jnp.ones_like(phi)[..., None], cos], axis=-1)


@functools.partial(jax.jit, static_argnames=("L",))
def _harmonics(latlon, L: int):
    cos_theta, sin_theta = sphere.polar_trig(latlon)
    _, phi = sphere.colatitude_longitude(latlon)
    table = legendre(cos_theta, sin_theta, L=L)  # [..., L+1, L+1] over (l, m>=0)
    trig = _trig(phi, L)  # [..., 2L+1] over m + L
    if L > SLICE_MAX_L:  # one gather each: the slices' program would grow as L
        table = table.reshape(*table.shape[:-2], (L + 1) ** 2)
        lm_index, trig_index = (jnp.asarray(i, jnp.int32) for i in _flat_layout(L))
        return table[..., lm_index] * trig[..., trig_index]  # [..., D]
    # Degree l holds Pbar_l|m| * trig_m for m = -l..l: static slices, several times
    # cheaper than the gather on a CPU (the training target is computed every step).
    blocks = []
    for l in range(L + 1):
        row = table[..., l, : l + 1]  # [..., l+1] over m = 0..l
        row = jnp.concatenate([row[..., :0:-1], row], axis=-1)  # over m = -l..l
        blocks.append(row * trig[..., L - l : L + l + 1])
    return jnp.concatenate(blocks, axis=-1)  # [..., D]


def harmonics(latlon, *, L: int):
    """Real orthonormal spherical harmonics of degrees ``0..L`` at the given points.

    Args:
      latlon: ``[..., 2]`` (latitude, longitude) in degrees; float32 or float64
        (float64 needs ``jax_enable_x64``). Integer input is promoted to float32.
      L: band limit, ``>= 1``.

    Returns:
      ``[..., (L+1)**2]`` with entry ``k = l*l + l + m`` holding ``Y_lm`` in the
      convention of :mod:`shdd.harmonics`. Differentiable in ``latlon``; finite at the
      poles and on the antimeridian for any ``L`` (tiny values underflow to 0).

    Raises:
      ValueError: on a bad ``L``, a last axis that is not 2, a NaN, or a latitude
        outside ``[-90, 90]`` (values are checked when not traced).
    """
    L = sphere.check_band_limit(L)
    sphere.check_latlon(latlon)
    latlon = jnp.asarray(latlon)
    if not jnp.issubdtype(latlon.dtype, jnp.floating):
        latlon = latlon.astype(jnp.float32)
    return _harmonics(latlon, L)


def evaluate(coeffs, latlon, *, L: int):
    """The function ``f(x) = sum_k coeffs_k Y_k(x)`` at points.

    Args:
      coeffs: ``[..., (L+1)**2]`` coefficients.
      latlon: ``[..., 2]`` degrees, broadcasting against the leading axes of ``coeffs``.
      L: band limit.

    Returns:
      ``[...]`` values (the broadcast of both leading shapes).
    """
    L = sphere.check_band_limit(L)
    sphere.check_coeffs(coeffs, L)
    sphere.check_latlon(latlon)
    latlon = jnp.asarray(latlon)
    if not jnp.issubdtype(latlon.dtype, jnp.floating):
        latlon = latlon.astype(jnp.float32)
    Y = _harmonics(latlon, L)
    coeffs = jnp.asarray(coeffs)
    shape = jnp.broadcast_shapes(coeffs.shape, Y.shape)
    return jnp.sum(jnp.broadcast_to(coeffs, shape) * jnp.broadcast_to(Y, shape), axis=-1)

"""The SHDD-KL from a (smoothed) delta, at a fraction of the general one's cost.

Training asks for ``KL(p || q)`` where ``p`` is the distribution of the target's SHDD
vector, a truncated or heat-smoothed delta at ``x0``, and ``q`` that of the denoiser's
estimate, both by the ``"softmax"`` rule of :mod:`shdd.maps`: ``p(x) ∝ exp(f_p(x) / s)``
with ``s = temperature * (L+1)**2 / (4 pi)``. Writing ``f_q = sum_k c_k Y_k``,

    KL(p || q) = int p log p  -  (c · P) / s  +  log Z_q,
    P_k = int p(x) Y_k(x) dx,      Z_q = int exp(f_q(x) / s) dx.

``f_p`` is a zonal function of the angle to ``x0``, so ``p`` is too and the first two
terms are one-dimensional (Funk-Hecke): ``P_k = lambda_l Y_k(x0)`` with
``lambda_l = 2 pi int_{-1}^{1} p(t) P_l(t) dt`` and ``int p log p`` one number, both
computed once per ``(L, sigma_km, temperature)`` in float64 by Gauss-Legendre
quadrature in ``t = cos(angle)``. Nothing of the target is synthesised on a grid.

Only ``log Z_q`` needs the estimate on the sphere: it is a Gauss-Legendre quadrature
(``n_lat`` nodes in ``cos(colatitude)``, ``n_lon`` equally spaced longitudes) sized by
the target's bandwidth (:func:`quadrature_size`), with the synthesis as small matrix
products (Legendre by order, then a real DFT). Its gradient is ``(Q - P) / s`` with
``Q_k`` the same quadrature of ``q Y_k``, written out (a custom VJP) rather than traced.

The value is the continuous KL that :func:`shdd.kl_divergence` approximates on its
latitude-longitude grid; the two agree to that grid's own discretisation error
(``tests/shdd/test_kl.py``). The quadrature is sized for estimates near the target (what
a denoiser produces) and for rough ones as random vectors (:func:`quadrature_size`).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial import legendre as np_legendre

from shdd import encoder, sphere
from shdd.harmonics import legendre as _legendre

QUADRATURE_TOL = 1e-5  # relative size of the target's Legendre spectrum left out
# The estimate's softmax is resolved to at least this many times L: a random vector
# (degree-L roughness) with the 700 km target is 2.0e-3 off in gradient at L = 32 on the
# target's bandwidth alone, 9e-4 at 2.5 L (too close to 1e-3), 1.5e-4 at 3 L.
ROUGH_BANDWIDTH = 3


@dataclasses.dataclass(frozen=True)
class TargetTerms:
    """What the target contributes, per ``(L, sigma_km, temperature)`` (float64).

    Attributes:
      scale: ``s``, the softmax rule's divisor of ``f``.
      response: ``[L+1]`` ``lambda_l``, so that ``P = lambda_l Y_lm(x0)``.
      neg_entropy: ``int p log p`` (nats, per steradian density).
      bandwidth: degree beyond which ``p``'s Legendre spectrum is below ``QUADRATURE_TOL``.
    """

    scale: float
    response: np.ndarray
    neg_entropy: float
    bandwidth: int


def _legendre_rows(t: np.ndarray, n: int) -> np.ndarray:
    """Legendre polynomials ``P_0..P_n`` at ``t``: ``[n+1, len(t)]`` float64."""
    out = np.empty((n + 1, t.size))
    out[0] = 1.0
    if n:
        out[1] = t
    for l in range(2, n + 1):
        out[l] = ((2 * l - 1) * t * out[l - 1] - (l - 1) * out[l - 2]) / l
    return out


@functools.cache
def target_terms(L: int, sigma_km: float | None = None, temperature: float = 0.1) -> TargetTerms:
    """The target's side of the SHDD-KL in closed form (see the module docstring)."""
    L = sphere.check_band_limit(L)
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    scale = temperature * (L + 1) ** 2 / (4 * np.pi)
    n_max = 16 * (L + 1) + 64  # spectrum searched this far (a truncated delta at T = 0.1
    t, weight = np_legendre.leggauss(n_max + L + 64)  # needs about 7 L)
    profile = encoder.kernel_profile(np.arccos(t), L=L, sigma_km=sigma_km)  # f_p(t)
    exponent = profile / scale
    density = np.exp(exponent - exponent.max())
    log_z = np.log(2 * np.pi * np.sum(weight * density)) + exponent.max()
    density = np.exp(exponent - log_z)  # p(t) per steradian, integrating to 1
    legendre = _legendre_rows(t, n_max)  # [n_max + 1, nodes]
    spectrum = 2 * np.pi * legendre @ (weight * density)  # lambda_l, lambda_0 = 1
    size = np.abs(spectrum) * (2 * np.arange(n_max + 1) + 1)
    above = np.nonzero(size > QUADRATURE_TOL * size.sum())[0]
    bandwidth = int(above[-1]) if above.size else 0
    if bandwidth >= n_max:
        raise ValueError(f"the target at L={L}, temperature {temperature} is too sharp to size")
    neg_entropy = 2 * np.pi * np.sum(weight * density * (exponent - log_z))
    return TargetTerms(scale, spectrum[: L + 1].copy(), float(neg_entropy), bandwidth)


def quadrature_size(L: int, sigma_km: float | None = None, temperature: float = 0.1):
    """``(n_lat, n_lon)`` of the Gauss-Legendre grid for ``log Z_q`` and its gradient.

    ``q Y_k`` has degree up to ``N + L`` for an estimate whose softmax has bandwidth
    ``N``: ``n_lon = N + L + 1`` longitudes integrate it exactly along a row (trapezoid
    rule on a periodic function), ``n_lat = ceil((N + L + 1) / 2)`` nodes in latitude.
    ``N`` is the larger of the target's bandwidth (an estimate near the target, as a
    trained denoiser's) and ``ROUGH_BANDWIDTH * L`` (a rough one, as a random vector).
    """
    degree = max(target_terms(L, sigma_km, temperature).bandwidth, ROUGH_BANDWIDTH * L) + L
    n_lon = degree + 1 + (degree + 1) % 2  # even
    return (n_lon + 1) // 2, n_lon


@functools.cache
def _parity_order(L: int) -> tuple[np.ndarray, int]:
    """Order of the ``2(L+1)`` Fourier terms (cosines ``0..L``, then sines ``0..L``) with
    the even orders first, and how many are even: ``cos(m (phi + pi)) = (-1)**m cos(m
    phi)``, so the even and odd halves give the grid's two halves in longitude."""
    j = np.arange(2 * (L + 1))
    even = j[(j % (L + 1)) % 2 == 0]
    return np.concatenate([even, j[(j % (L + 1)) % 2 == 1]]), even.size


@functools.cache
def _order_index(L: int) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], tuple[int, ...]]:
    """How the coefficients are read by order: the flat indices ``k`` of degrees ``m..L``
    of each order ``m``, cosine and sine interleaved (``(m, +m), (m, -m), (m+1, +m),
    ...``; order 0 has only cosines), concatenated over ``m`` (each ``k`` once); the
    inverse permutation; each order's start (``L + 2`` offsets); and the position of
    each of the ``2(L+1)`` Fourier terms (cosines, then sines) in :func:`_parity_order`."""
    index, starts = [], [0]
    for m in range(L + 1):
        for l in range(m, L + 1):
            index += [l * l + l + m] + ([l * l + l - m] if m else [])
        starts.append(len(index))
    index = np.asarray(index, np.int32)
    position = np.argsort(_parity_order(L)[0])
    return index, np.argsort(index).astype(np.int32), tuple(starts), tuple(position.tolist())


BAND_FRACTIONS = (0.25, 0.5, 0.75, 1.0)  # longitudes of a reduced row, of the equator's
BAND_MARGIN = 8  # longitudes beyond n_lon * sin(colatitude) that a reduced row keeps


@functools.cache
def _gauss_tables(L: int, n_lat: int, n_lon: int):
    """The reduced Gauss grid: ``(bands, (legendre, dfts, log_weight))``.

    Rows nearer a pole need fewer longitudes: a function of degree ``n`` has no
    longitude frequency above about ``n sin(colatitude)`` there. Each row keeps the
    smallest of ``BAND_FRACTIONS`` of ``n_lon`` (even) that is at least ``n_lon
    sin(colatitude) + BAND_MARGIN``; rows of a band are stored together. ``bands`` is a
    tuple of ``(rows, longitudes)``.

    ``legendre`` holds, for each order ``m``, ``w_m Pbar_lm`` ``[n_lat, L + 1 - m]`` at
    each node for degrees ``m..L`` (``w_0 = 1``, ``w_m = sqrt 2``), rows by band;
    ``dfts`` has each band's ``dft_even`` and ``dft_odd`` (``[longitudes / 2, terms]``:
    the even or odd terms of :func:`_parity_order` at the first half of its longitudes,
    ``cos(m phi)`` or ``sin(m phi)``); ``log_weight [cells]`` is the log of each cell's
    weight in steradians (Gauss weight times ``2 pi / longitudes``), cells by band, then
    row, then longitude.
    """
    x, weight = np_legendre.leggauss(n_lat)  # x = cos(colatitude)
    with jax.enable_x64(True), jax.ensure_compile_time_eval():
        table = np.asarray(
            _legendre(jnp.asarray(x), jnp.asarray(np.sqrt(1 - x**2)), L=L)
        )  # [n_lat, l, m]
    m = np.arange(L + 1)
    table = table * np.where(m == 0, 1.0, np.sqrt(2.0))
    order, n_even = _parity_order(L)
    sizes = [n_lon - n_lon % 2] + [2 * math.ceil(f * n_lon / 2) for f in BAND_FRACTIONS[:-1]]
    sizes = sorted(set(sizes))
    need = n_lon * np.sqrt(1 - x**2) + BAND_MARGIN  # [n_lat]
    row_size = np.array([next((n for n in sizes if n >= k), sizes[-1]) for k in need])
    bands, rows, dfts, log_weight = [], [], [], []
    for n in sizes:
        (members,) = np.nonzero(row_size == n)
        if not members.size:
            continue
        phi = 2 * np.pi * np.arange(n // 2) / n
        dft = np.concatenate([np.cos(np.outer(m, phi)), np.sin(np.outer(m, phi))])[order]
        bands.append((int(members.size), int(n)))
        rows.append(members)
        dfts += [dft[:n_even].T, dft[n_even:].T]
        log_weight.append(np.repeat(np.log(weight[members] * 2 * np.pi / n), n))
    table = table[np.concatenate(rows)]
    legendre = tuple(table[:, k:, k] for k in range(L + 1))
    return tuple(bands), (legendre, tuple(dfts), np.concatenate(log_weight))


# Batch last: ``[cells, B]`` maps and ``[terms, rows, B]`` Fourier sums, so that every
# product is one matrix product over the whole batch.


def _synthesize(coeffs, tables, bands, L: int):
    """``f`` on the reduced Gauss grid: ``coeffs [B, D]`` -> ``[cells, B]``."""
    legendre, dfts = tables
    index, _, starts, position = _order_index(L)
    B, M = coeffs.shape[0], L + 1
    by_order = jnp.take(coeffs.T, index, axis=0)  # [D, B]
    terms = [None] * (2 * M)
    for m in range(M):
        chunk = by_order[starts[m] : starts[m + 1]]  # [(L + 1 - m) (1 or 2), B]
        if m == 0:
            terms[position[0]] = legendre[0] @ chunk  # [n_lat, B]
            terms[position[M]] = jnp.zeros_like(terms[position[0]])  # sin(0 phi) = 0
        else:
            both = (legendre[m] @ chunk.reshape(M - m, 2 * B)).reshape(-1, 2, B)
            terms[position[m]], terms[position[M + m]] = both[:, 0], both[:, 1]
    fourier = jnp.stack(terms)  # [2M, n_lat, B] in parity order
    n_even = _parity_order(L)[1]
    out, start = [], 0
    for (rows, n), dft_even, dft_odd in zip(bands, dfts[::2], dfts[1::2], strict=True):
        band = fourier[:, start : start + rows].reshape(2 * M, rows * B)
        even = (dft_even @ band[:n_even]).reshape(n // 2, rows, B)
        odd = (dft_odd @ band[n_even:]).reshape(n // 2, rows, B)
        half = jnp.concatenate([even + odd, even - odd])  # [n, rows, B]: phi, phi + pi
        out.append(jnp.transpose(half, (1, 0, 2)).reshape(rows * n, B))
        start += rows
    return jnp.concatenate(out)


def _analyse(values, tables, bands, L: int):
    """The transpose of :func:`_synthesize`: ``[cells, B]`` -> ``[B, D]``."""
    legendre, dfts = tables
    _, inverse, _, position = _order_index(L)
    B, M = values.shape[1], L + 1
    fourier, start = [], 0
    for (rows, n), dft_even, dft_odd in zip(bands, dfts[::2], dfts[1::2], strict=True):
        band = jnp.transpose(values[start : start + rows * n].reshape(rows, n, B), (1, 0, 2))
        first = band[: n // 2].reshape(n // 2, rows * B)
        second = band[n // 2 :].reshape(n // 2, rows * B)
        even, odd = dft_even.T @ (first + second), dft_odd.T @ (first - second)
        fourier.append(jnp.concatenate([even, odd]).reshape(2 * M, rows, B))
        start += rows * n
    fourier = jnp.concatenate(fourier, 1)  # [2M, n_lat, B]
    parts = [legendre[0].T @ fourier[position[0]]]
    for m in range(1, M):
        both = jnp.stack([fourier[position[m]], fourier[position[M + m]]], 1)  # [n_lat, 2, B]
        parts.append((legendre[m].T @ both.reshape(-1, 2 * B)).reshape(-1, B))
    return jnp.take(jnp.concatenate(parts), inverse, axis=0).T


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _log_partition(scale: float, L: int, bands, coeffs, tables, log_weight):
    """``log Z_q`` ``[B]`` for ``coeffs [B, D]`` on the reduced Gauss grid."""
    return _log_partition_fwd(scale, L, bands, coeffs, tables, log_weight)[0]


def _log_partition_fwd(scale, L, bands, coeffs, tables, log_weight):
    z = _synthesize(coeffs, tables, bands, L) / scale + log_weight[:, None]  # [cells, B]
    top = jax.lax.stop_gradient(jnp.max(z, axis=0, keepdims=True))  # [1, B]
    e = jnp.exp(z - top)  # kept for the gradient: q = e / total
    total = jnp.sum(e, axis=0)  # [B]
    return top[0] + jnp.log(total), (e, total, tables)


def _log_partition_bwd(scale, L, bands, residuals, g):
    e, total, tables = residuals
    q = e * (g / (scale * total))[None, :]  # [cells, B]
    return _analyse(q, tables, bands, L), None, None


_log_partition.defvjp(_log_partition_fwd, _log_partition_bwd)


def delta_kl_divergence(
    p_coeffs, q_coeffs, *, L: int, sigma_km: float | None = None, temperature: float = 0.1
):
    """SHDD-KL ``KL(p || q)`` from encoded deltas ``p_coeffs`` to estimates ``q_coeffs``.

    The quantity :func:`shdd.kl_divergence` computes for the same two vectors (the
    ``"softmax"`` rule at ``temperature``), in closed form on the target's side and by a
    Gauss-Legendre quadrature on the estimate's (module docstring). Jit-compatible
    (``L``, ``sigma_km``, ``temperature`` static); differentiable in ``q_coeffs``;
    ``p_coeffs`` is data (no gradient flows to it).

    Args:
      p_coeffs: ``[B, (L+1)**2]`` SHDD vectors of deltas, ``shdd.encode(x0, L=L,
        sigma_km=sigma_km)`` (unscaled); only these are valid (inside ``jit`` this is not
        checked: the training step builds them itself).
      q_coeffs: ``[B, (L+1)**2]`` unscaled coefficient vectors (``f = sum_k c_k Y_k``).

    Returns:
      ``[B]`` divergences in nats.
    """
    L = sphere.check_band_limit(L)
    sphere.check_coeffs(p_coeffs, L, "p_coeffs")
    sphere.check_coeffs(q_coeffs, L, "q_coeffs")
    p_coeffs, q_coeffs = jnp.asarray(p_coeffs), jnp.asarray(q_coeffs)
    if q_coeffs.ndim != 2 or p_coeffs.shape != q_coeffs.shape:
        raise ValueError(
            f"need p_coeffs and q_coeffs of one shape [B, D], got {p_coeffs.shape} and "
            f"{q_coeffs.shape}"
        )
    terms = target_terms(L, sigma_km, temperature)
    dtype = q_coeffs.dtype
    bands, (legendre, dfts, log_weight) = _gauss_tables(
        L, *quadrature_size(L, sigma_km, temperature)
    )
    tables = jax.tree.map(lambda a: jnp.asarray(a, dtype), (legendre, dfts))
    log_weight = jnp.asarray(log_weight, dtype)
    l, _ = sphere.degree_order(L)
    # P = lambda_l Y(x0) = (lambda_l / w_l) p_coeffs   [B, D]; degrees whose weight
    # underflows carry nothing in p_coeffs (and lambda_l is rounding there)
    weight = encoder.degree_weights(L, sigma_km)
    response = np.where(weight > 1e-30, terms.response / np.maximum(weight, 1e-30), 0.0)
    target = jax.lax.stop_gradient(p_coeffs) * jnp.asarray(response[l], dtype)[None, :]
    cross = jnp.sum(q_coeffs * target, axis=-1) / terms.scale  # [B]
    log_z = _log_partition(terms.scale, L, bands, q_coeffs, tables, log_weight)
    return terms.neg_entropy - cross + log_z

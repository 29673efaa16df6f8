"""Separable synthesis of ``f(x) = sum_k c_k Y_k(x)`` on a latitude-longitude grid.

For each latitude row the Legendre sums give the Fourier coefficients in longitude,
``A_m = sum_l Pbar_lm c_lm`` and ``B_m = sum_l Pbar_lm c_l,-m``, and one real FFT per
row evaluates ``f = sum_m A_m cos(m phi) + B_m sin(m phi)`` at every column: ``O(rows
L^2 + rows cols log cols)`` per vector instead of ``O(rows cols L^2)`` for a dense basis.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from shdd import harmonics, sphere
from shdd.grids import LatLonGrid


@functools.lru_cache(maxsize=32)
def _row_table(L: int, lat: tuple[float, ...], dtype_name: str):
    """``Pbar`` at the row latitudes, laid out ``[m, row, l]`` for a batched matmul over ``m``."""
    dtype = jnp.dtype(dtype_name)
    lat_rad = np.deg2rad(np.asarray(lat, dtype=np.float64))
    with jax.ensure_compile_time_eval():  # a concrete, cacheable array even under jit
        table = harmonics.legendre(
            jnp.asarray(np.sin(lat_rad), dtype), jnp.asarray(np.abs(np.cos(lat_rad)), dtype), L=L
        )  # [rows, l, m]
        return jnp.transpose(table, (2, 0, 1))  # [m, rows, l]


@functools.cache
def _square_layout(L: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of ``c_lm`` and ``c_l,-m`` arranged ``[l, m]`` (``D`` marks a zero)."""
    D = sphere.num_coeffs(L)
    l = np.arange(L + 1)[:, None]
    m = np.arange(L + 1)[None, :]
    valid = m <= l
    cos_index = np.where(valid, l * l + l + m, D)
    sin_index = np.where(valid & (m > 0), l * l + l - m, D)
    return cos_index, sin_index


def square_coeffs(coeffs, L: int):
    """``coeffs [..., (L+1)**2]`` -> ``(c_cos, c_sin)`` ``[..., L+1 (l), L+1 (m)]``.

    ``c_cos[l, m] = w_m c_lm`` and ``c_sin[l, m] = w_m c_l,-m`` with ``w_0 = 1``,
    ``w_m = sqrt 2``; zero where ``m > l`` (and ``c_sin`` at ``m = 0``), so that
    ``f = sum_lm Pbar_lm (c_cos cos(m phi) + c_sin sin(m phi))``.
    """
    cos_index, sin_index = (jnp.asarray(i, jnp.int32) for i in _square_layout(L))
    padded = jnp.concatenate([coeffs, jnp.zeros_like(coeffs[..., :1])], axis=-1)  # [..., D+1]
    scale = jnp.asarray(np.where(np.arange(L + 1) == 0, 1.0, np.sqrt(2.0)), coeffs.dtype)
    scale = scale.reshape(*(1,) * coeffs.ndim, L + 1)  # [..., 1 (l), M]
    return padded[..., cos_index] * scale, padded[..., sin_index] * scale


def fourier_rows(coeffs, table, L: int):
    """Longitude Fourier coefficients ``(A, B)`` ``[..., rows, L+1]`` of ``f`` on each row."""
    c_cos, c_sin = square_coeffs(coeffs, L)  # [..., l, m]
    A = jnp.einsum("mrl,...lm->...rm", table, c_cos)  # [..., rows, M]
    B = jnp.einsum("mrl,...lm->...rm", table, c_sin)  # [..., rows, M]
    return A, B


def fourier_to_grid(A, B, n_lon: int, lon0_deg: float):
    """Evaluate ``sum_m A_m cos(m phi_j) + B_m sin(m phi_j)`` at ``phi_j = lon0 + 2 pi j / n_lon``.

    ``A, B``: ``[..., rows, M]``. Returns ``[..., rows, n_lon]``. Orders ``m >= n_lon / 2``
    are folded onto their aliases, so the result is exact for any ``n_lon``.
    """
    M = A.shape[-1]
    m = np.arange(M)
    lead = (1,) * (A.ndim - 1)
    shift = np.exp(1j * m * np.deg2rad(lon0_deg)).reshape(*lead, M)
    G = (A - 1j * B) * shift.astype(jnp.result_type(A.dtype, jnp.complex64))  # [..., rows, M]
    if M <= n_lon // 2:  # no aliasing: one real inverse FFT per row
        weight = (np.where(m == 0, 1.0, 0.5) * n_lon).reshape(*lead, M)
        return jnp.fft.irfft(G * weight.astype(A.dtype), n=n_lon, axis=-1)
    folded = jnp.zeros((*G.shape[:-1], n_lon), G.dtype).at[..., m % n_lon].add(G)
    return jnp.real(jnp.fft.ifft(folded, axis=-1)) * n_lon


@functools.partial(jax.jit, static_argnames=("L", "n_lon", "lon0_deg"))
def _synthesize(coeffs, table, L: int, n_lon: int, lon0_deg: float):
    A, B = fourier_rows(coeffs, table, L)
    return fourier_to_grid(A, B, n_lon, lon0_deg)


def synthesize(coeffs, grid: LatLonGrid, *, L: int):
    """``f`` at the cell centres of ``grid``: ``coeffs [..., (L+1)**2]`` -> ``[..., n_lat, n_lon]``.

    Jit-compatible and differentiable in ``coeffs``; the Legendre table of the grid's
    rows is computed once per ``(L, grid, dtype)`` and cached.
    """
    coeffs = jnp.asarray(coeffs)
    if not jnp.issubdtype(coeffs.dtype, jnp.floating):
        coeffs = coeffs.astype(jnp.float32)
    table = _row_table(L, tuple(grid.lat.tolist()), coeffs.dtype.name)
    return _synthesize(coeffs, table, L, grid.lon.size, float(grid.lon[0]))

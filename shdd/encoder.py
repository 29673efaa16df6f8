"""SHDD encoding: the spherical-harmonic coefficients of a (smoothed) Dirac delta.

The Dirac delta at ``x0`` expands as ``delta_x0(x) = sum_lm Y_lm(x0) Y_lm(x)``; truncated
at degree ``L`` its coefficient vector is ``e(x0)_k = w_l Y_lm(x0)`` with per-degree
weights ``w_l``:

* ``w_l = 1`` (``sigma_km=None``): the truncated delta, a spherical Dirichlet kernel
  ``sum_l (2l+1)/(4 pi) P_l(cos gamma)`` with negative side lobes;
* ``w_l = exp(-l(l+1) sigma**2 / 2)``: the heat kernel, a spherical Gaussian of angular
  width ``sigma = sigma_km / R_earth``. It does not ring once ``w_L`` is small, i.e.
  ``sigma >~ 3.5 / L`` radians (``sigma_km >~ 22000 / L``); a narrower ``sigma`` is
  truncated at ``L`` and rings like the plain delta.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from shdd import harmonics as _harmonics
from shdd import sphere


def degree_weights(L: int, sigma_km: float | None = None) -> np.ndarray:
    """Per-degree weights ``w_l`` ``[L+1]`` (float64): 1, or the heat kernel of ``sigma_km``."""
    L = sphere.check_band_limit(L)
    l = np.arange(L + 1, dtype=np.float64)
    if sigma_km is None:
        return np.ones(L + 1)
    if not np.isfinite(sigma_km) or sigma_km <= 0:
        raise ValueError(f"sigma_km must be a positive number of km or None, got {sigma_km!r}")
    sigma = sphere.km_to_radians(float(sigma_km))
    return np.exp(-l * (l + 1) * sigma**2 / 2)


def coefficient_weights(L: int, sigma_km: float | None = None) -> np.ndarray:
    """``w_l`` expanded to the flat layout ``[(L+1)**2]`` (float64)."""
    l, _ = sphere.degree_order(L)
    return degree_weights(L, sigma_km)[l]


def encode(latlon, *, L: int, sigma_km: float | None = None):
    """SHDD vectors of points: ``latlon [..., 2]`` degrees -> ``[..., (L+1)**2]``.

    ``f(x) = sum_k e_k Y_k(x)`` is the delta at each point truncated at degree ``L``
    (``sigma_km=None``), or smoothed by the heat kernel of angular width ``sigma_km``.
    The vector is not rescaled: ``f`` integrates to 1 over the unit sphere (its
    ``k = 0`` entry is ``1/sqrt(4 pi)``); see ``shdd.delta_peak`` for its maximum.

    Raises:
      ValueError: on a bad ``L``, ``sigma_km`` or ``latlon`` (shape, NaN, latitude range).
    """
    L = sphere.check_band_limit(L)
    weights = coefficient_weights(L, sigma_km)
    Y = _harmonics.harmonics(latlon, L=L)  # [..., D]
    return Y * jnp.asarray(weights, Y.dtype).reshape(*(1,) * (Y.ndim - 1), -1)


def delta_peak(L: int, sigma_km: float | None = None) -> float:
    """Value at its centre of the (smoothed) delta: ``sum_l w_l (2l+1) / (4 pi)``."""
    l = np.arange(L + 1)
    return float(np.sum(degree_weights(L, sigma_km) * (2 * l + 1)) / (4 * np.pi))


def kernel_profile(gamma, *, L: int, sigma_km: float | None = None) -> np.ndarray:
    """The encoded delta as a function of the angle ``gamma`` (radians) from its centre.

    ``K(gamma) = sum_l w_l (2l+1)/(4 pi) P_l(cos gamma)`` in float64 numpy (Legendre
    polynomials by their three-term recurrence).
    """
    x = np.cos(np.asarray(gamma, dtype=np.float64))
    w = degree_weights(L, sigma_km)
    p_prev, p = np.ones_like(x), x
    total = w[0] / (4 * np.pi) * p_prev + w[1] * 3 / (4 * np.pi) * p
    for l in range(2, L + 1):
        p_prev, p = p, ((2 * l - 1) * x * p - (l - 1) * p_prev) / l
        total = total + w[l] * (2 * l + 1) / (4 * np.pi) * p
    return total


@functools.cache
def kernel_width_km(L: int, sigma_km: float | None = None) -> float:
    """Half width at half maximum, in km, of the encoded delta (truncated or smoothed).

    About 1287 km at ``L=10``, 277 km at ``L=50`` and 140 km at ``L=100`` for the
    truncated delta.
    """
    L = sphere.check_band_limit(L)
    peak = delta_peak(L, sigma_km)
    gamma = np.linspace(0.0, np.pi, 20001)
    below = np.nonzero(kernel_profile(gamma, L=L, sigma_km=sigma_km) < peak / 2)[0]
    if below.size == 0:  # extremely smooth kernel: never falls to half its peak
        return float(np.pi * sphere.EARTH_RADIUS_KM)
    lo, hi = gamma[below[0] - 1], gamma[below[0]]
    for _ in range(60):  # bisection on the bracketing interval
        mid = 0.5 * (lo + hi)
        if kernel_profile(mid, L=L, sigma_km=sigma_km) >= peak / 2:
            lo = mid
        else:
            hi = mid
    return float(0.5 * (lo + hi) * sphere.EARTH_RADIUS_KM)

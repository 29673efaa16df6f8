"""Float64 reference implementations from scipy and ducc0, for tests and benchmarks.

The one place where the complex, Condon-Shortley-phased harmonics of scipy and the
complex ``a_lm`` layout of ducc0 are converted to the real convention of
:mod:`shdd.harmonics`:

* scipy: ``Y_lm^real = sqrt(2) (-1)^m Re Y_l^m`` (``m > 0``), ``Y_l0^real = Y_l^0``,
  ``Y_l,-m^real = sqrt(2) (-1)^m Im Y_l^m`` (``m > 0``);
* ducc0: ``a_l0 = c_l0`` and ``a_lm = (-1)^m (c_lm - i c_l,-m) / sqrt(2)`` for ``m > 0``,
  stored m-major (healpy order).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from shdd import sphere


def harmonics_scipy(latlon, *, L: int) -> np.ndarray:
    """``shdd.harmonics`` in float64 numpy from ``scipy.special.sph_legendre_p_all``."""
    latlon = np.asarray(latlon, dtype=np.float64)
    theta = np.pi / 2 - np.deg2rad(latlon[..., 0])
    phi = np.deg2rad(latlon[..., 1])
    p = special.sph_legendre_p_all(L, L, theta)[0]  # [l, m (negative orders at the end), ...]
    l, m = sphere.degree_order(L)
    am = np.abs(m)
    legendre = p[l, am] * ((-1.0) ** am)[:, None] if p.ndim > 2 else p[l, am] * (-1.0) ** am
    legendre = np.moveaxis(legendre, 0, -1)  # [..., D]
    angle = am * phi[..., None]  # [..., D]
    trig = np.where(
        m > 0, np.sqrt(2) * np.cos(angle), np.where(m < 0, np.sqrt(2) * np.sin(angle), 1.0)
    )
    return legendre * trig


def harmonic_scipy(l: int, m: int, latlon) -> np.ndarray:
    """One real harmonic ``Y_lm`` from ``scipy.special.sph_harm_y`` (complex, CS phase)."""
    latlon = np.asarray(latlon, dtype=np.float64)
    theta = np.pi / 2 - np.deg2rad(latlon[..., 0])
    phi = np.deg2rad(latlon[..., 1])
    y = special.sph_harm_y(l, abs(m), theta, phi)
    sign = (-1.0) ** abs(m)
    if m > 0:
        return np.sqrt(2) * sign * y.real
    if m < 0:
        return np.sqrt(2) * sign * y.imag
    return y.real


def to_ducc_alm(coeffs, L: int) -> np.ndarray:
    """Real ``coeffs [..., (L+1)**2]`` -> complex ``a_lm`` ``[..., (L+1)(L+2)/2]`` for ducc0."""
    coeffs = np.asarray(coeffs, dtype=np.float64)
    out = []
    for m in range(L + 1):
        l = np.arange(m, L + 1)
        if m == 0:
            out.append(coeffs[..., l * l + l].astype(np.complex128))
        else:
            cos_part = coeffs[..., l * l + l + m]
            sin_part = coeffs[..., l * l + l - m]
            out.append((-1) ** m * (cos_part - 1j * sin_part) / np.sqrt(2))
    return np.concatenate(out, axis=-1)


def synthesis_ducc(coeffs, L: int, n_lat: int, n_lon: int, nthreads: int = 1) -> np.ndarray:
    """``f`` at the cell centres of the ``n_lat x n_lon`` grid (``shdd.latlon_grid``) by ducc0.

    Rings follow Fejer's first rule (cell centres in colatitude); the first pixel of each
    ring lies half a cell east of -180 degrees.
    """
    import ducc0  # optional: pip install ducc0

    alm = to_ducc_alm(coeffs, L).reshape(1, -1)
    phi0 = np.deg2rad(-180.0 + 180.0 / n_lon)
    return ducc0.sht.synthesis_2d(
        alm=alm,
        spin=0,
        lmax=L,
        geometry="F1",
        ntheta=n_lat,
        nphi=n_lon,
        phi0=phi0,
        nthreads=nthreads,
    )[0]

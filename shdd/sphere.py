"""Conventions of the sphere: the one module that converts angles and indexes harmonics.

Everything in LocDiff speaks ``latlon``: arrays of shape ``[..., 2]`` holding
``(latitude, longitude)`` in degrees, latitude in ``[-90, 90]`` and longitude in
``[-180, 180)``. Inside the spherical-harmonic maths we use the colatitude
``theta = pi/2 - lat`` and the longitude ``phi = lon`` in radians. No other module
converts between the two.

Real spherical harmonics are indexed by degree ``l`` and order ``m`` with
``-l <= m <= l``, flattened as ``k = l*l + l + m``; a band limit ``L`` (degrees
``0..L``) gives ``D = (L+1)**2`` coefficients.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG), in km."""


# --------------------------------------------------------------------------- indices


def num_coeffs(L: int) -> int:
    """Number of real spherical-harmonic coefficients of degrees ``0..L``: ``(L+1)**2``."""
    return (L + 1) ** 2


def flat_index(l: int, m: int) -> int:
    """Flat index ``k = l*l + l + m`` of degree ``l`` and order ``m`` (``|m| <= l``)."""
    if not 0 <= abs(m) <= l:
        raise ValueError(f"order m must satisfy |m| <= l, got l={l}, m={m}")
    return l * l + l + m


def degree_order(L: int) -> tuple[np.ndarray, np.ndarray]:
    """Degree and order of every flat index: ``(l [D], m [D])`` as int numpy arrays."""
    l = np.repeat(np.arange(L + 1), 2 * np.arange(L + 1) + 1)  # [D]
    m = np.arange(num_coeffs(L)) - l * l - l  # [D]
    return l, m


def band_limit(num: int) -> int:
    """The band limit ``L`` with ``(L+1)**2 == num``; raises ``ValueError`` otherwise."""
    L = math.isqrt(num) - 1
    if num < 4 or (L + 1) ** 2 != num:
        raise ValueError(
            f"the last axis of coeffs must have (L+1)**2 entries with L >= 1, got {num}"
        )
    return L


# --------------------------------------------------------------------------- angles


def colatitude_longitude(latlon):
    """``latlon [..., 2]`` degrees -> ``(theta [...], phi [...])`` radians.

    ``theta = pi/2 - lat`` is the colatitude in ``[0, pi]``, ``phi = lon``.
    """
    latlon = jnp.asarray(latlon)
    lat = jnp.deg2rad(latlon[..., 0])
    lon = jnp.deg2rad(latlon[..., 1])
    return jnp.pi / 2 - lat, lon


def polar_trig(latlon):
    """``(cos theta, sin theta)`` of the colatitude from ``latlon [..., 2]`` degrees.

    Computed as ``(sin lat, cos lat)`` so that both are smooth functions of the
    latitude (no ``arccos``), with ``sin theta >= 0`` guaranteed: in float32,
    ``cos(pi/2)`` rounds to a small negative number.
    """
    lat = jnp.deg2rad(jnp.asarray(latlon)[..., 0])
    return jnp.sin(lat), jnp.abs(jnp.cos(lat))


def latlon_to_xyz(latlon):
    """``latlon [..., 2]`` degrees -> unit vectors ``[..., 3]`` (x towards (0, 0), z north)."""
    latlon = jnp.asarray(latlon)
    lat = jnp.deg2rad(latlon[..., 0])
    lon = jnp.deg2rad(latlon[..., 1])
    cos_lat = jnp.cos(lat)
    return jnp.stack([cos_lat * jnp.cos(lon), cos_lat * jnp.sin(lon), jnp.sin(lat)], axis=-1)


def xyz_to_latlon(xyz):
    """Vectors ``[..., 3]`` -> ``latlon [..., 2]`` degrees, lon in [-180, 180)."""
    xyz = jnp.asarray(xyz)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    lat = jnp.rad2deg(jnp.arctan2(z, jnp.hypot(x, y)))
    lon = wrap_longitude(jnp.rad2deg(jnp.arctan2(y, x)))
    return jnp.stack([lat, lon], axis=-1)


def latlon_to_xyz_np(latlon) -> np.ndarray:
    """``latlon_to_xyz`` in float64 numpy, whatever JAX's precision setting."""
    lat, lon = np.moveaxis(np.deg2rad(np.asarray(latlon, np.float64)), -1, 0)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)


def xyz_to_latlon_np(xyz) -> np.ndarray:
    """``xyz_to_latlon`` in float64 numpy, whatever JAX's precision setting."""
    x, y, z = np.moveaxis(np.asarray(xyz, np.float64), -1, 0)
    lat = np.rad2deg(np.arctan2(z, np.hypot(x, y)))
    lon = (np.rad2deg(np.arctan2(y, x)) + 180.0) % 360.0 - 180.0
    return np.stack([lat, lon], axis=-1)


def wrap_longitude(lon):
    """Longitudes in degrees wrapped into ``[-180, 180)``."""
    return (jnp.asarray(lon) + 180.0) % 360.0 - 180.0


def tangent_frame(latlon):
    """Unit north and east tangent vectors ``([..., 3], [..., 3])`` at ``latlon [..., 2]``.

    At a pole the frame is the limit along the meridian of the given longitude.
    """
    latlon = jnp.asarray(latlon)
    lat = jnp.deg2rad(latlon[..., 0])
    lon = jnp.deg2rad(latlon[..., 1])
    sin_lat, cos_lat = jnp.sin(lat), jnp.cos(lat)
    sin_lon, cos_lon = jnp.sin(lon), jnp.cos(lon)
    north = jnp.stack([-sin_lat * cos_lon, -sin_lat * sin_lon, cos_lat], axis=-1)
    east = jnp.stack([-sin_lon, cos_lon, jnp.zeros_like(lon)], axis=-1)
    return north, east


def exp_map(xyz, tangent):
    """Move unit vectors ``xyz [..., 3]`` along great circles by ``tangent [..., 3]`` (radians)."""
    norm = jnp.linalg.norm(tangent, axis=-1, keepdims=True)
    safe = jnp.where(norm > 0, norm, 1.0)
    moved = jnp.cos(norm) * xyz + jnp.sin(norm) * tangent / safe
    return moved / jnp.linalg.norm(moved, axis=-1, keepdims=True)


# --------------------------------------------------------------------------- distances


def central_angle(latlon_a, latlon_b):
    """Great-circle angle in radians between ``[..., 2]`` degree arrays (haversine; broadcasts)."""
    a = jnp.deg2rad(jnp.asarray(latlon_a))
    b = jnp.deg2rad(jnp.asarray(latlon_b))
    dlat = b[..., 0] - a[..., 0]
    dlon = b[..., 1] - a[..., 1]
    h = jnp.sin(dlat / 2) ** 2 + jnp.cos(a[..., 0]) * jnp.cos(b[..., 0]) * jnp.sin(dlon / 2) ** 2
    return 2 * jnp.arcsin(jnp.sqrt(jnp.clip(h, 0.0, 1.0)))


def haversine_km(latlon_a, latlon_b):
    """Great-circle distance in km between ``latlon`` arrays ``[..., 2]`` degrees (broadcasts).

    Use float64 inputs (numpy, or JAX with x64 enabled) for distances of a few km:
    in float32 the haversine loses about 1 km of resolution.
    """
    return EARTH_RADIUS_KM * central_angle(latlon_a, latlon_b)


def haversine_km_np(latlon_a, latlon_b) -> np.ndarray:
    """``haversine_km`` in float64 numpy, whatever JAX's precision setting."""
    a = np.deg2rad(np.asarray(latlon_a, dtype=np.float64))
    b = np.deg2rad(np.asarray(latlon_b, dtype=np.float64))
    dlat = b[..., 0] - a[..., 0]
    dlon = b[..., 1] - a[..., 1]
    h = np.sin(dlat / 2) ** 2 + np.cos(a[..., 0]) * np.cos(b[..., 0]) * np.sin(dlon / 2) ** 2
    return EARTH_RADIUS_KM * 2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def km_to_radians(km):
    """Great-circle distance in km -> angle in radians."""
    return km / EARTH_RADIUS_KM


# --------------------------------------------------------------------------- validation


def check_band_limit(L, name: str = "L") -> int:
    """Validate a band limit: an integer ``>= 1``."""
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {L!r}")
    return int(L)


def check_latlon(latlon, name: str = "latlon") -> None:
    """Raise ``ValueError`` unless ``latlon`` is ``[..., 2]`` degrees with finite, in-range values.

    Latitude must lie in ``[-90, 90]``; longitude may be any finite number (it is
    periodic), and is reported in ``[-180, 180)`` on output. Arrays that are being
    traced by JAX are only checked for shape.
    """
    shape = np.shape(latlon)
    if len(shape) == 0 or shape[-1] != 2:
        raise ValueError(f"{name} must have shape [..., 2] (lat, lon in degrees), got {shape}")
    try:
        values = np.asarray(latlon, dtype=np.float64)
    except Exception:  # a JAX tracer: values unknown at trace time
        return
    if not np.all(np.isfinite(values)):
        bad = np.argwhere(~np.isfinite(values))[0]
        raise ValueError(f"{name} must be finite, got a NaN or Inf at index {tuple(bad)}")
    lat = values[..., 0]
    if np.any(np.abs(lat) > 90.0):
        bad = np.argwhere(np.abs(lat) > 90.0)[0]
        raise ValueError(
            f"{name} latitude must lie in [-90, 90] degrees, got {lat[tuple(bad)]} "
            f"at index {tuple(bad)}"
        )


def check_coeffs(coeffs, L: int, name: str = "coeffs") -> None:
    """Raise ``ValueError`` unless ``coeffs`` is ``[..., (L+1)**2]`` and finite."""
    shape = np.shape(coeffs)
    D = num_coeffs(L)
    if len(shape) == 0 or shape[-1] != D:
        raise ValueError(
            f"{name} must have shape [..., (L+1)**2] = [..., {D}] for L={L}, got {shape}"
        )
    try:
        values = np.asarray(coeffs)
    except Exception:
        return
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be finite, got NaN or Inf")

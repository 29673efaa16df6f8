"""SHDD: spherical-harmonic coefficients of Dirac deltas, and the way back to locations.

Conventions (``shdd.sphere``): ``latlon`` arrays are ``[..., 2]`` (latitude, longitude)
in degrees; coefficient vectors are ``[..., (L+1)**2]`` real orthonormal spherical
harmonics without the Condon-Shortley phase, flat index ``k = l*l + l + m``.
"""

from shdd.decoder import decode
from shdd.encoder import (
    coefficient_weights,
    degree_weights,
    delta_peak,
    encode,
    kernel_profile,
    kernel_width_km,
)
from shdd.grids import LatLonGrid, default_resolution, fibonacci_lattice, latlon_grid
from shdd.harmonics import evaluate, harmonics, legendre
from shdd.kl import delta_kl_divergence, quadrature_size, target_terms
from shdd.maps import (
    cell_levels,
    credible_area_km2,
    credible_level,
    density,
    kl_divergence,
    probability_map,
)
from shdd.sphere import (
    EARTH_RADIUS_KM,
    band_limit,
    degree_order,
    flat_index,
    haversine_km,
    haversine_km_np,
    num_coeffs,
)
from shdd.synthesis import synthesize

__all__ = [
    "EARTH_RADIUS_KM",
    "LatLonGrid",
    "band_limit",
    "coefficient_weights",
    "cell_levels",
    "credible_area_km2",
    "credible_level",
    "decode",
    "default_resolution",
    "degree_order",
    "degree_weights",
    "delta_kl_divergence",
    "delta_peak",
    "density",
    "encode",
    "evaluate",
    "fibonacci_lattice",
    "flat_index",
    "harmonics",
    "haversine_km",
    "haversine_km_np",
    "kernel_profile",
    "kernel_width_km",
    "kl_divergence",
    "latlon_grid",
    "legendre",
    "num_coeffs",
    "probability_map",
    "quadrature_size",
    "synthesize",
    "target_terms",
]

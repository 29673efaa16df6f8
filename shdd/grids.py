"""Point sets on the sphere: the regular latitude-longitude cell grid and the Fibonacci lattice."""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from shdd import sphere


@dataclasses.dataclass(frozen=True)
class LatLonGrid:
    """A regular grid of cells, ``n_lat`` rows from north to south and ``n_lon`` columns from -180.

    Attributes:
      lat: ``[n_lat]`` latitudes of the cell centres, degrees, from north to south.
      lon: ``[n_lon]`` longitudes of the cell centres, degrees, from ``-180 + res/2``.
      area: ``[n_lat]`` area of one cell of each row on the unit sphere (steradians);
        ``n_lon * area.sum() == 4 pi`` exactly.
    """

    lat: np.ndarray
    lon: np.ndarray
    area: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return (self.lat.size, self.lon.size)

    @property
    def resolution_deg(self) -> float:
        return 180.0 / self.lat.size

    def latlon(self) -> np.ndarray:
        """Cell centres ``[n_lat, n_lon, 2]`` degrees."""
        lat, lon = np.meshgrid(self.lat, self.lon, indexing="ij")
        return np.stack([lat, lon], axis=-1)

    def cell_of(self, latlon) -> tuple[np.ndarray, np.ndarray]:
        """Row and column indices of the cells containing ``latlon [..., 2]`` degrees."""
        latlon = np.asarray(latlon, dtype=np.float64)
        res = self.resolution_deg
        row = np.clip(np.floor((90.0 - latlon[..., 0]) / res), 0, self.lat.size - 1)
        lon = (latlon[..., 1] + 180.0) % 360.0
        col = np.clip(np.floor(lon / res), 0, self.lon.size - 1)
        return row.astype(int), col.astype(int)


@functools.lru_cache(maxsize=64)
def latlon_grid(resolution_deg: float) -> LatLonGrid:
    """The grid of ``resolution_deg``-degree cells; ``180 / resolution_deg`` must be an integer.

    Raises:
      ValueError: if the resolution does not divide 180 degrees.
    """
    n_lat = _rows(resolution_deg)
    res = 180.0 / n_lat
    edges = np.deg2rad(90.0 - res * np.arange(n_lat + 1))  # [n_lat + 1] north to south
    dlon = 2 * np.pi / (2 * n_lat)
    area = (np.sin(edges[:-1]) - np.sin(edges[1:])) * dlon  # [n_lat]
    lat = 90.0 - res * (np.arange(n_lat) + 0.5)
    lon = -180.0 + res * (np.arange(2 * n_lat) + 0.5)
    return LatLonGrid(lat=lat, lon=lon, area=area)


def _rows(resolution_deg: float) -> int:
    if not (isinstance(resolution_deg, (int, float)) and 0 < resolution_deg <= 90):
        raise ValueError(f"resolution_deg must be in (0, 90] degrees, got {resolution_deg!r}")
    n_lat = round(180.0 / resolution_deg)
    if abs(n_lat * resolution_deg - 180.0) > 1e-6 * 180.0:
        raise ValueError(
            f"resolution_deg must divide 180 degrees (e.g. 1, 0.5, 0.25), got {resolution_deg}"
        )
    return n_lat


def default_resolution(L: int) -> float:
    """Grid spacing used to search for modes and to integrate at band limit ``L``.

    ``180 / (3 (L+1))`` degrees: about half the half-width of the truncated delta
    (which is about ``127 / (L+1)`` degrees), so that every peak is sampled.
    """
    return 180.0 / (3 * (sphere.check_band_limit(L) + 1))


def fibonacci_lattice(n: int) -> np.ndarray:
    """``n`` nearly equal-area points ``[n, 2]`` degrees on the golden spiral (none at a pole)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    i = np.arange(n, dtype=np.float64)
    z = 1.0 - (2 * i + 1) / n
    lon = np.rad2deg((i * math.pi * (3.0 - math.sqrt(5.0))) % (2 * math.pi))
    lat = np.rad2deg(np.arcsin(z))
    return np.stack([lat, np.asarray(sphere.wrap_longitude(lon))], axis=-1)

"""Snapping LocDiff's modes to where the training photos are (a learning-free decoder step).

A band-limited SHDD function (``L = 32`` resolves about 600 km; setting B's target is
smoothed further, to 700 km) puts its mode near the right place but not on it: the mode
of a blurred posterior falls between the towns that it blurs together. Below the model's
resolution nothing in the coefficients says where in a blob the photo was taken; the
training locations do. The :class:`LocationPrior` bins the training locations into cells
of ``cell_deg`` degrees (0.1: about 11 km) and keeps each occupied cell's centroid and its
photos per unit area; :meth:`LocationPrior.snap` moves each mode to the centroid of the
densest cell within ``within_km`` of it (a mode with no cell in reach stays).

``within_km`` (0: no snapping) is chosen on the run's validation split with the guidance
(:func:`locdiff.infer.calibration.choose_snap`) and kept in ``calibration.json``; the prior is
``location_prior.npz`` in the run directory. It looks at no embedding: it is part of
LocDiff's decoder, not a hybrid with retrieval (that is :mod:`locdiff.infer.hybrid`). A mode
can only move onto a cell where training photos were taken, so for places far from every
training photo it costs what it gains elsewhere: the far-from-training subsets of the
experiments report it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial import cKDTree

import shdd
from locdiff.io import files

CELL_DEG = 0.1


def _unit(latlon) -> np.ndarray:
    """``[..., 3]`` unit vectors of ``latlon [..., 2]`` degrees."""
    lat, lon = np.radians(latlon[..., 0]), np.radians(latlon[..., 1])
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)


@dataclasses.dataclass(frozen=True)
class LocationPrior:
    """Occupied cells of the training locations: centroids ``[C, 2]`` degrees, photos
    ``counts [C]`` and photos per unit area ``density [C]`` (relative: count / cos of
    the cell's middle latitude)."""

    centroids: np.ndarray
    counts: np.ndarray
    density: np.ndarray
    cell_deg: float = CELL_DEG

    @classmethod
    def from_locations(cls, latlon, *, cell_deg: float = CELL_DEG) -> LocationPrior:
        """The prior of training locations ``latlon [N, 2]`` degrees (N >= 1)."""
        latlon = np.asarray(latlon, np.float64)
        if latlon.ndim != 2 or latlon.shape[1] != 2 or not len(latlon):
            raise ValueError(f"locations must be [N, 2] degrees with N >= 1, got {latlon.shape}")
        if not np.all(np.isfinite(latlon)) or np.any(np.abs(latlon[:, 0]) > 90):
            raise ValueError("locations must be finite with latitudes in [-90, 90]")
        if not 0 < cell_deg <= 10:
            raise ValueError(f"cell_deg must be in (0, 10], got {cell_deg}")
        n_lon = int(round(360 / cell_deg))
        row = np.clip(np.floor((latlon[:, 0] + 90) / cell_deg), 0, 180 / cell_deg - 1)
        col = np.floor(((latlon[:, 1] + 180) % 360) / cell_deg) % n_lon
        cells, inverse, counts = np.unique(
            row.astype(np.int64) * n_lon + col.astype(np.int64),
            return_inverse=True,
            return_counts=True,
        )
        # centroid as the normalised mean unit vector: right across the antimeridian
        mean = np.stack([np.bincount(inverse, u) for u in _unit(latlon).T], -1)
        mean /= np.linalg.norm(mean, axis=1, keepdims=True)
        centroids = np.stack(
            [
                np.degrees(np.arcsin(np.clip(mean[:, 2], -1, 1))),
                np.degrees(np.arctan2(mean[:, 1], mean[:, 0])),
            ],
            -1,
        )
        lat_mid = (cells // n_lon + 0.5) * cell_deg - 90
        density = counts / np.maximum(np.cos(np.radians(lat_mid)), 1e-6)
        return cls(centroids, counts, density, cell_deg)

    @property
    def _tree(self) -> cKDTree:
        tree = self.__dict__.get("_tree_cache")
        if tree is None:
            tree = cKDTree(_unit(self.centroids))
            object.__setattr__(self, "_tree_cache", tree)
        return tree

    def snap(self, latlon, within_km: float) -> np.ndarray:
        """``latlon [..., 2]`` with each point moved to the centroid of the densest cell
        within ``within_km`` (great-circle) of it; points with none in reach, and all
        points when ``within_km`` is 0, stay."""
        latlon = np.asarray(latlon, np.float64)
        if within_km < 0:
            raise ValueError(f"within_km must be >= 0, got {within_km}")
        if within_km == 0:
            return latlon.copy()
        out = latlon.reshape(-1, 2).copy()
        finite = np.flatnonzero(np.all(np.isfinite(out), axis=1))
        chord = 2 * np.sin(min(within_km / shdd.EARTH_RADIUS_KM, np.pi) / 2)
        reach = self._tree.query_ball_point(_unit(out[finite]), chord)
        for i, near in zip(finite, reach, strict=True):
            if near:
                near = np.asarray(near)
                out[i] = self.centroids[near[np.argmax(self.density[near])]]
        return out.reshape(latlon.shape)

    def save(self, path: str) -> None:
        files.save_npz(
            path,
            centroids=self.centroids,
            counts=self.counts,
            density=self.density,
            cell_deg=self.cell_deg,
        )

    @classmethod
    def load(cls, path: str) -> LocationPrior:
        arrays = files.load_npz(path)
        return cls(
            arrays["centroids"], arrays["counts"], arrays["density"], float(arrays["cell_deg"])
        )

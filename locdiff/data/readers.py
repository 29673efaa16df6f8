"""Readers for location metadata: benchmark CSVs and a user's own list of photos.

Formats recognised by their header (case-insensitive):

* GeoEstimation benchmarks (Im2GPS, Im2GPS3k, YFCC4k, YFCC26k, MP16):
  ``IMG_ID, AUTHOR, LAT, LON, S3_Label, ..., Prob_indoor, Prob_natural, Prob_urban``;
* OSV-5M: ``id, latitude, longitude, ...``;
* MP16 S2 cells: ``class_label, hex_id, imgs_per_cell, latitude_mean, longitude_mean``;
* a plain list: ``path, lat, lon`` (``lat, lon`` may be empty for unknown locations);
* a GPS gallery: ``lat, lon`` only (e.g. GeoCLIP's 100K MP16 ``coordinates_100K.csv``);
  the row numbers are the ids.

Each gives a :class:`Locations` table: ``ids [N]``, ``latlon [N, 2]`` (NaN where unknown),
and, where the file has them, ``scene [N]`` (0 indoor, 1 natural, 2 urban), ``weights``
(photos per cell) or ``paths``. Files may be gzip-compressed (``.csv.gz``).

The benchmark metadata the project uses (Im2GPS3k, Im2GPS, YFCC26k, the MP16 cells; MIT
licensed) ships inside the package (``locdiff/resources/``, with its licence and
provenance): :func:`read_benchmark` reads it by name.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import os

import numpy as np


@dataclasses.dataclass
class Locations:
    ids: np.ndarray
    latlon: np.ndarray  # [N, 2] float64 degrees, NaN where unknown
    scene: np.ndarray | None = None
    weights: np.ndarray | None = None
    paths: np.ndarray | None = None
    format: str = ""

    def __len__(self) -> int:
        return len(self.ids)


# format -> (id column or None for row numbers, lat column, lon column); tried in order
_FORMATS = {
    "geoestimation": ("img_id", "lat", "lon"),
    "osv5m": ("id", "latitude", "longitude"),
    "mp16_cells": ("class_label", "latitude_mean", "longitude_mean"),
    "paths": ("path", "lat", "lon"),
    "gallery": (None, "lat", "lon"),
}


def _detect(header: list[str], path: str) -> str:
    names = set(header)
    for fmt, columns in _FORMATS.items():
        if {c for c in columns if c} <= names:
            return fmt
    raise ValueError(
        f"{path}: unrecognised columns {header}; expected one of "
        + "; ".join(", ".join(c for c in cols if c) for cols in _FORMATS.values())
    )


def _float(value: str, path: str, row: int, column: str) -> float:
    if value is None or value.strip() == "":
        return float("nan")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{path}: row {row}: {column}={value!r} is not a number") from None


def read_locations(path: str) -> Locations:
    """Read a metadata CSV in any of the recognised formats (module docstring).

    Raises:
      ValueError: for a missing or empty file, unknown columns, a non-numeric or
        out-of-range coordinate, naming the file and the row.
    """
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file")
        header = [h.strip().lower() for h in header]
        rows = list(reader)
    if not rows:
        raise ValueError(f"{path}: no rows after the header")
    fmt = _detect(header, path)
    id_name, lat_name, lon_name = _FORMATS[fmt]
    lat_col, lon_col = header.index(lat_name), header.index(lon_name)
    ids, latlon = [], []
    for i, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise ValueError(f"{path}: row {i} has {len(row)} fields, the header has {len(header)}")
        lat = _float(row[lat_col], path, i, header[lat_col])
        lon = _float(row[lon_col], path, i, header[lon_col])
        if abs(lat) > 90:
            raise ValueError(f"{path}: row {i}: latitude {lat} outside [-90, 90]")
        ids.append(row[header.index(id_name)] if id_name else str(i - 1))
        latlon.append([lat, lon])
    out = Locations(ids=np.array(ids), latlon=np.array(latlon, np.float64), format=fmt)
    if "s3_label" in header:
        out.scene = np.array([int(r[header.index("s3_label")]) for r in rows])
    if fmt == "mp16_cells":
        out.weights = np.array([float(r[header.index("imgs_per_cell")]) for r in rows])
    if fmt == "paths":
        base = os.path.dirname(os.path.abspath(path))
        out.paths = np.array([os.path.join(base, r[header.index("path")]) for r in rows])
    return out


RESOURCES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources")
# name -> file in ``RESOURCES`` (see its README.md for rows, columns and provenance)
BENCHMARKS = {
    "im2gps3k": "im2gps3k_places365.csv.gz",
    "im2gps": "im2gps_places365.csv.gz",
    "yfcc26k": "yfcc25600_places365.csv.gz",
    "mp16_cells": "mp16_cells_50_5000.csv.gz",
}


def benchmark_file(name: str) -> str:
    """Path of the shipped metadata file of benchmark ``name`` (one of ``BENCHMARKS``)."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}")
    return os.path.join(RESOURCES, BENCHMARKS[name])


def read_benchmark(name: str, *, path: str | None = None) -> Locations:
    """The locations of benchmark ``name`` from the metadata shipped with the package, or
    from ``path`` (your own copy, in any format :func:`read_locations` reads)."""
    return read_locations(benchmark_file(name) if path is None else path)

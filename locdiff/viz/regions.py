"""Credible regions as data: the cells of a probability map's 50% / 90% regions, and the
same regions as GeoJSON polygons.

A region at level ``a`` is the smallest set of cells holding a share ``a`` of the map's
mass (:func:`shdd.cell_levels`: the cells whose level is below ``a``; the cells whose
area :func:`shdd.credible_area_km2` gives, except that cells of exactly equal density are
all in or all out). Its polygons are
the union of its cells, so they follow the map's grid: a region across the antimeridian
is one polygon on each side of it (touching longitude 180), and a region over a pole
reaches latitude 90. Exterior rings run counter-clockwise, holes clockwise (RFC 7946).

    geometry = region_geometry(prediction.maps[0], level=0.9, resolution_deg=1.0)
    shapely.geometry.shape(geometry).is_valid   # True
"""

from __future__ import annotations

import numpy as np

import shdd

LEVELS = (0.5, 0.9)


def region_cells(pmap, *, level: float, resolution_deg: float) -> np.ndarray:
    """``[n_lat, n_lon]`` bool: the cells of ``pmap``'s credible region at ``level``."""
    if not 0 < level <= 1:
        raise ValueError(f"level must be in (0, 1], got {level}")
    return shdd.cell_levels(np.asarray(pmap), resolution_deg=resolution_deg) < level


def cell_polygons(cells, *, resolution_deg: float):
    """The union of the ``cells [n_lat, n_lon]`` (rows from the north, ``shdd.latlon_grid``
    layout) as a shapely (Multi)Polygon in (lon, lat) degrees, oriented as RFC 7946
    asks; an empty GeometryCollection where no cell is set."""
    from shapely import box, orient_polygons, simplify, unary_union

    cells = np.asarray(cells, bool)
    n_lat, n_lon = cells.shape
    if (n_lat, n_lon) != (round(180 / resolution_deg), round(360 / resolution_deg)):
        raise ValueError(f"{cells.shape} cells are not a {resolution_deg}-degree grid")
    # every edge computed once from its index, so that neighbouring cells share exact
    # coordinates and their union leaves no sliver between rows
    lat_edges = 90.0 - 180.0 * np.arange(n_lat + 1) / n_lat
    lon_edges = -180.0 + 360.0 * np.arange(n_lon + 1) / n_lon
    lat_edges[[0, -1]], lon_edges[[0, -1]] = (90.0, -90.0), (-180.0, 180.0)
    boxes = []
    for row in np.flatnonzero(cells.any(axis=1)):  # runs of set cells along each row
        edges = np.diff(np.concatenate([[0], cells[row].astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        for start, end in zip(starts, ends, strict=True):
            boxes.append(box(lon_edges[start], lat_edges[row + 1], lon_edges[end], lat_edges[row]))
    union = simplify(unary_union(boxes), 0.0)  # without the points along straight sides
    return orient_polygons(union, exterior_cw=False)


def region_geometry(pmap, *, level: float, resolution_deg: float) -> dict:
    """``pmap``'s credible region at ``level`` as a GeoJSON MultiPolygon geometry
    (``[lon, lat]`` coordinates)."""
    from shapely.geometry import mapping

    shape = cell_polygons(
        region_cells(pmap, level=level, resolution_deg=resolution_deg),
        resolution_deg=resolution_deg,
    )
    polygons = getattr(shape, "geoms", [shape]) if not shape.is_empty else []
    multi = [mapping(p)["coordinates"] for p in polygons]
    return {"type": "MultiPolygon", "coordinates": _plain(multi)}


def _plain(value):
    """Tuples of floats (shapely's ``mapping``) as lists, for JSON."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return float(value)

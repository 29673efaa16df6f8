"""Classic geolocation baselines that need no gradient training (issue #5 builds on these).

* Retrieval (IM2GPS, GeoCLIP): the location of the nearest training embedding by cosine
  similarity (``top1``), or the densest cluster among the ``k`` nearest (``densest``):
  the neighbour with the most other neighbours within ``radius_km``, averaged with them.
* Adaptive cells (PlaNet): a recursive split of the sphere's training locations into
  cells holding between ``min_count`` and ``max_count`` points; a cell predicts the mean
  location (the spherical mean) of its training points. The classifier over cells is
  trained like any model; :func:`adaptive_cells` gives its label space.

All inputs are numpy; locations are ``[N, 2]`` degrees; distances in km.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import shdd


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def spherical_mean(latlon) -> np.ndarray:
    """Mean location ``[2]`` of ``[N, 2]`` degrees (the normalised mean unit vector)."""
    xyz = np.asarray(shdd.sphere.latlon_to_xyz(np.asarray(latlon, np.float64)), np.float64)
    return np.asarray(shdd.sphere.xyz_to_latlon(xyz.mean(axis=0)), np.float64)


def retrieval(
    query, gallery, gallery_latlon, *, k: int = 1, radius_km: float = 25.0, batch_size: int = 1024
) -> np.ndarray:
    """Locations ``[Q, 2]`` of ``query [Q, E]`` by cosine retrieval over ``gallery [G, E]``.

    ``k = 1``: the nearest neighbour's location. ``k > 1``: among the ``k`` nearest, the
    one with most others within ``radius_km``, averaged with those others.
    """
    query, gallery = _normalise(query), _normalise(gallery)
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query width {query.shape[1]} differs from gallery width {gallery.shape[1]}"
        )
    gallery_latlon = np.asarray(gallery_latlon, np.float64)
    k = min(k, len(gallery))
    out = np.empty((len(query), 2))
    for start in range(0, len(query), batch_size):
        sim = query[start : start + batch_size] @ gallery.T  # [q, G]
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k] if k > 1 else sim.argmax(1)[:, None]
        for row, index in enumerate(top):
            points = gallery_latlon[index]  # [k, 2]
            if k == 1:
                out[start + row] = points[0]
                continue
            d = shdd.haversine_km_np(points[:, None], points[None, :])  # [k, k]
            close = d <= radius_km
            best = close.sum(axis=1).argmax()
            out[start + row] = spherical_mean(points[close[best]])
    return out


@dataclasses.dataclass
class Cells:
    """A partition of training locations: ``labels [N]``, ``centres [C, 2]``, ``counts [C]``."""

    labels: np.ndarray
    centres: np.ndarray
    counts: np.ndarray


def adaptive_cells(latlon, *, min_count: int = 50, max_count: int = 5000) -> Cells:
    """PlaNet-style cells: split each cell in four (at its median latitude, then the median
    longitude of each half) while it holds more than ``max_count`` points; pieces smaller
    than ``min_count`` are merged back into their parent.

    Raises:
      ValueError: on bad counts or fewer points than ``min_count``.
    """
    latlon = np.asarray(latlon, np.float64)
    if not 1 <= min_count <= max_count:
        raise ValueError(f"need 1 <= min_count <= max_count, got {min_count}, {max_count}")
    if len(latlon) < min_count:
        raise ValueError(f"{len(latlon)} points are fewer than min_count={min_count}")
    cells: list[np.ndarray] = []

    def split(index: np.ndarray) -> None:
        if len(index) <= max_count:
            cells.append(index)
            return
        lat = latlon[index, 0]
        halves = [index[lat < np.median(lat)], index[lat >= np.median(lat)]]
        quarters = []
        for half in halves:
            lon = latlon[half, 1]
            quarters += [half[lon < np.median(lon)], half[lon >= np.median(lon)]]
        if any(len(q) < min_count for q in quarters) or max(len(q) for q in quarters) == len(index):
            cells.append(index)  # cannot split without a piece below min_count
            return
        for q in quarters:
            split(q)

    split(np.arange(len(latlon)))
    labels = np.empty(len(latlon), np.int64)
    for c, index in enumerate(cells):
        labels[index] = c
    centres = np.stack([spherical_mean(latlon[index]) for index in cells])
    return Cells(labels=labels, centres=centres, counts=np.array([len(i) for i in cells]))

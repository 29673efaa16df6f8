"""Train/test splits of located data for in-distribution and unseen-location studies.

* ``random_split``: test points drawn at random; their neighbours stay in training
  (fine-scale geolocation: 25 and 200 km).
* ``buffered_split``: random latitude/longitude blocks held out; training keeps only points
  at least ``buffer_km`` from every test point (nothing in training overlaps a test
  input: coarse geolocation, 750 and 2500 km). ``groups`` names each test point's block,
  for spreads over blocks.
* ``region_split``: named boxes held out (``REGIONS``, or any ``(lat0, lat1, lon0, lon1)``)
  with the same buffer: can a method predict a place it never saw?

Each returns a :class:`Split` of index arrays into the data.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from scipy.spatial import cKDTree

from locdiff.errors import DataError
from shdd.sphere import EARTH_RADIUS_KM, latlon_to_xyz_np

# (lat_min, lat_max, lon_min, lon_max) in degrees.
REGIONS = {
    "iberia": (36.0, 44.0, -10.0, 3.5),
    "australia": (-44.0, -10.0, 112.0, 154.0),
    "japan": (30.0, 46.0, 129.0, 146.0),
    "california": (32.5, 42.0, -124.5, -114.0),
    "sahara": (15.0, 30.0, -10.0, 30.0),
    "amazon": (-15.0, 5.0, -75.0, -50.0),
}


@dataclasses.dataclass
class Split:
    """Indices of ``train`` and ``test`` points; ``groups [len(test)]`` names each test
    point's held-out block or region (``-1`` when the split has none)."""

    train: np.ndarray
    test: np.ndarray
    groups: np.ndarray
    names: tuple[str, ...] = ()


def in_box(latlon, box) -> np.ndarray:
    """Whether each ``[N, 2]`` point lies in ``(lat0, lat1, lon0, lon1)`` (``lon0 > lon1``
    wraps across the antimeridian)."""
    lat, lon = np.asarray(latlon, np.float64).T
    lat0, lat1, lon0, lon1 = box
    inside_lon = (lon >= lon0) & (lon <= lon1) if lon0 <= lon1 else (lon >= lon0) | (lon <= lon1)
    return (lat >= lat0) & (lat <= lat1) & inside_lon


def away_from(latlon, test: np.ndarray, buffer_km: float) -> np.ndarray:
    """Indices of ``latlon [N, 2]`` not in ``test`` and at least ``buffer_km`` from every
    point of ``test``."""
    xyz = latlon_to_xyz_np(latlon)
    chord = 2 * np.sin(min(buffer_km / EARTH_RADIUS_KM, np.pi) / 2)
    rest = np.setdiff1d(np.arange(len(xyz)), test)
    if len(test) == 0:
        return rest
    distance, _ = cKDTree(xyz[test]).query(xyz[rest], k=1)
    return rest[distance >= chord]


def nearest_km(points, reference) -> np.ndarray:
    """Great-circle distance ``[N]`` in km from each of ``points [N, 2]`` to the nearest
    of ``reference [M, 2]`` (degrees): e.g. test points far from every training location."""
    reference = latlon_to_xyz_np(reference)
    if len(reference) == 0:
        raise ValueError("reference must hold at least one location")
    chord, _ = cKDTree(reference).query(latlon_to_xyz_np(points), k=1)
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.clip(chord / 2, 0.0, 1.0))


def land_points(n: int, *, seed: int = 0, min_lat: float = -60.0) -> np.ndarray:
    """``[n, 2]`` points (degrees) uniform in area over land north of ``min_lat``.

    A test set spread wherever a picture could be taken, like GWS15k's street views,
    rather than where photographers went: uniform on the sphere (``sin(lat)`` uniform
    above ``min_lat``, longitude uniform), kept where the 1 km land mask of
    ``global-land-mask`` says land (lakes count as land). The same ``seed`` gives the
    same points.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not -90 <= min_lat < 90:
        raise ValueError(f"min_lat must be in [-90, 90), got {min_lat}")
    try:
        from global_land_mask import globe
    except ImportError:
        raise ImportError("land_points needs `pip install global-land-mask`") from None
    rng = np.random.default_rng(seed)
    kept, found = [], 0
    while found < n:
        z = rng.uniform(np.sin(np.deg2rad(min_lat)), 1.0, 4 * n)
        lat = np.clip(np.rad2deg(np.arcsin(z)), -89.999, 89.999)
        lon = rng.uniform(-180.0, 180.0, 4 * n)
        land = globe.is_land(lat, lon)
        kept.append(np.stack([lat[land], lon[land]], -1))
        found += int(land.sum())
    return np.concatenate(kept)[:n]


def random_split(n: int, *, test_fraction: float = 0.1, seed: int = 0) -> Split:
    """A random ``test_fraction`` of ``n`` points for testing."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    test = np.sort(order[:n_test])
    return Split(np.sort(order[n_test:]), test, np.full(n_test, -1))


def buffered_split(
    latlon,
    *,
    n_blocks: int = 20,
    block_deg: float = 10.0,
    buffer_km: float = 500.0,
    min_points: int = 10,
    seed: int = 0,
) -> Split:
    """Hold out ``n_blocks`` random ``block_deg`` blocks that hold at least ``min_points``."""
    latlon = np.asarray(latlon, np.float64)
    rows = np.floor((latlon[:, 0] + 90) / block_deg).astype(np.int64)
    cols = np.floor((latlon[:, 1] + 180) / block_deg).astype(np.int64)
    block = rows * 1000 + cols
    ids, counts = np.unique(block, return_counts=True)
    eligible = ids[counts >= min_points]
    if len(eligible) < n_blocks:
        raise ValueError(f"only {len(eligible)} blocks hold >= {min_points} points")
    chosen = np.random.default_rng(seed).choice(eligible, n_blocks, replace=False)
    test = np.flatnonzero(np.isin(block, chosen))
    groups = np.searchsorted(np.sort(chosen), block[test])
    names = tuple(
        f"{(b // 1000) * block_deg - 90:+.0f},{(b % 1000) * block_deg - 180:+.0f}"
        for b in np.sort(chosen)
    )
    return Split(away_from(latlon, test, buffer_km), test, groups, names)


def region_split(latlon, regions, *, buffer_km: float = 500.0) -> Split:
    """Hold out every point inside the named ``regions`` (names of ``REGIONS`` or a dict
    of boxes); ``groups`` gives the region of each test point."""
    latlon = np.asarray(latlon, np.float64)
    if not isinstance(regions, dict):
        unknown = [r for r in regions if r not in REGIONS]
        if unknown:
            raise ValueError(f"unknown regions {unknown}; known: {sorted(REGIONS)}")
        regions = {r: REGIONS[r] for r in regions}
    groups = np.full(len(latlon), -1)
    for g, box in enumerate(regions.values()):
        groups[(groups < 0) & in_box(latlon, box)] = g
    test = np.flatnonzero(groups >= 0)
    if len(test) == 0:
        raise ValueError(f"no points inside the regions {list(regions)}")
    return Split(away_from(latlon, test, buffer_km), test, groups[test], tuple(regions))


FAR_KM = 100.0  # a point farther than this from every training location is "far"
# A data file may also carry a far-validation set (not rows of the data: nothing trains
# on it): conditions and locations far from every training row, e.g. the held-out blocks
# of :func:`far_validation`. The choices made after training (map rule, snapping,
# guidance, hybrid rule) are then also scored there (:func:`far_validation_set`).
FAR_KEYS = ("far_embeddings", "far_latlon")


def far_validation(
    latlon, *, fraction: float = 0.05, block_deg: float = 5.0, far_km: float = FAR_KM,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(train_rows, far_rows)``: validation rows that look like unseen locations, from
    the training data alone.

    Whole ``block_deg`` latitude/longitude blocks of ``latlon [N, 2]`` are held out of
    training, in a random order of the occupied blocks (``seed``), each one taken if the
    held-out rows stay within ``fraction`` of ``N``: the order is uniform over blocks,
    not rows, so sparse blocks, where an unseen place is most likely, make up most of
    the set (a block denser than ``fraction * N`` is never held out). ``far_rows`` are the
    held-out rows farther than ``far_km`` from every training row (the rest are dropped:
    neither trained on nor used to choose); ``train_rows`` are the rows of the other
    blocks. A method trained on ``train_rows`` has never seen anything near
    ``far_rows``: its choices (hybrid rule, map rule, snapping) can be checked there
    before any test set is.
    """
    latlon = np.asarray(latlon, np.float64)
    if latlon.ndim != 2 or latlon.shape[1] != 2 or len(latlon) < 2:
        raise ValueError(f"latlon must be [N, 2] with N >= 2, got {latlon.shape}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    rows = np.floor((latlon[:, 0] + 90) / block_deg).astype(np.int64)
    cols = np.floor(((latlon[:, 1] + 180) % 360) / block_deg).astype(np.int64)
    ids, block, counts = np.unique(rows * 100_000 + cols, return_inverse=True, return_counts=True)
    held, total, budget = np.zeros(len(ids), bool), 0, fraction * len(latlon)
    for b in np.random.default_rng(seed).permutation(len(ids)):
        if total + counts[b] <= budget:
            held[b], total = True, total + counts[b]
    out = held[block.ravel()]
    train = np.flatnonzero(~out)
    if not len(train):
        raise ValueError("no training rows left outside the held-out blocks")
    candidates = np.flatnonzero(out)
    if not len(candidates):
        return train, candidates
    far = nearest_km(latlon[candidates], latlon[train]) > far_km
    return train, candidates[far]


def far_validation_set(path: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(embeddings [F, E] float32, latlon [F, 2])`` of the far-validation set a ``.npz``
    data file carries (:data:`FAR_KEYS`), or None (none, or not an ``.npz``)."""
    if not path.endswith(".npz") or not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as arrays:
        if not all(key in arrays.files for key in FAR_KEYS):
            return None
        emb, latlon = (arrays[key] for key in FAR_KEYS)
    if emb.ndim != 2 or latlon.shape != (len(emb), 2):
        raise DataError(
            f"{os.path.basename(path)}: far_embeddings [F, E] and far_latlon [F, 2] expected,"
            f" got {emb.shape} and {latlon.shape}"
        )
    if not len(emb):
        return None
    return emb.astype(np.float32), latlon.astype(np.float64)

"""Synthetic training data of any size, in the shard format ``locdiff embed`` writes.

For testing the path from embeddings on disk to training at the scale of MP16 (4.7 M
photos of 768-d CLIP ViT-L/14 embeddings) without the real data:

    locdiff synthetic DIR --rows 4700000 --dim 768 --dtype float16

Locations follow MP16: an S2 cell is drawn in proportion to its photo count (the
shipped ``mp16_cells`` metadata), then a point scattered about the cell's mean location
(``scatter_km``). Embeddings carry real spatial structure: random Fourier features of
the point's unit vector at three length scales (continental, regional, city), mapped
by one fixed random projection to ``dim`` and unit norm, plus Gaussian noise: nearby
places get similar embeddings, and a model can learn the inverse map. Everything is
seeded per shard, so shards are written (and rewritten after a crash) independently:
existing shards are kept, so a rerun finishes an interrupted job.
"""

from __future__ import annotations

import os

import numpy as np
from tqdm.auto import tqdm

from locdiff.data import datasets as data
from shdd.sphere import EARTH_RADIUS_KM

SCALES_KM = (3000.0, 300.0, 30.0)  # length scales of the location features
FEATURES = 128  # Fourier features per scale (each a cos and a sin)


class LocationFeatures:
    """The fixed map from locations to embeddings (``seed`` fixes it)."""

    def __init__(self, dim: int, *, noise: float = 0.5, seed: int = 0):
        rng = np.random.default_rng([seed, 0])
        self.freqs = np.concatenate(
            [rng.normal(size=(3, FEATURES)) * EARTH_RADIUS_KM / s for s in SCALES_KM], axis=1
        )  # [3, F]: radians of phase per unit of the unit vector
        self.phase = rng.uniform(0, 2 * np.pi, self.freqs.shape[1])
        width = 2 * self.freqs.shape[1]
        self.projection = rng.normal(size=(width, dim)) / np.sqrt(width)
        self.dim, self.noise = dim, noise

    def __call__(self, latlon: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        lat, lon = np.deg2rad(latlon[:, 0]), np.deg2rad(latlon[:, 1])
        xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)
        angle = xyz @ self.freqs + self.phase
        features = np.concatenate([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32)
        x = features @ self.projection.astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x += rng.standard_normal(x.shape, dtype=np.float32) * (self.noise / np.sqrt(self.dim))
        return x


def mp16_locations(n: int, rng: np.random.Generator, *, scatter_km: float = 25.0):
    """``[n, 2]`` float32 points drawn like MP16's photos (cell by count, then scattered)."""
    from locdiff.data.readers import read_benchmark

    cells = read_benchmark("mp16_cells")
    pick = rng.choice(len(cells.latlon), n, p=cells.weights / cells.weights.sum())
    centre = cells.latlon[pick]
    step = np.rad2deg(scatter_km / EARTH_RADIUS_KM) * rng.normal(size=(n, 2))
    lat = np.clip(centre[:, 0] + step[:, 0], -89.9, 89.9)
    lon = centre[:, 1] + step[:, 1] / np.cos(np.deg2rad(lat))
    return np.stack([lat, (lon + 180) % 360 - 180], -1).astype(np.float32)


SHARD_ROWS = 250_000  # rows of a shard written by write_synthetic (default)


def write_synthetic(
    out: str,
    rows: int,
    *,
    dim: int = 768,
    dtype: str = "float16",
    shard_rows: int = SHARD_ROWS,
    seed: int = 0,
    progress: bool = True,
) -> list[str]:
    """Write ``rows`` synthetic rows as ``out/part_00000.npz`` ...; returns the paths.

    Shards already in ``out`` are kept (a rerun completes an interrupted job); each
    shard is written atomically.
    """
    if rows < 1 or dim < 1 or shard_rows < 1:
        raise ValueError(f"rows, dim and shard_rows must be >= 1, got {rows}, {dim}, {shard_rows}")
    os.makedirs(out, exist_ok=True)
    features = LocationFeatures(dim, seed=seed)
    starts = range(0, rows, shard_rows)
    paths = []
    for index, start in enumerate(
        tqdm(starts, disable=not progress, desc="synthetic", unit="shard")
    ):
        path = os.path.join(out, f"part_{index:05d}.npz")
        paths.append(path)
        if os.path.exists(path):
            continue
        n = min(shard_rows, rows - start)
        rng = np.random.default_rng([seed, 1, index])
        latlon = mp16_locations(n, rng)
        emb = np.concatenate([features(latlon[i : i + 65_536], rng) for i in range(0, n, 65_536)])
        data.save_npz(path, emb, latlon, dtype=np.dtype(dtype), encoder=np.array("synthetic"))
    return paths

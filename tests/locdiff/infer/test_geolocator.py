"""Geolocator: restore a run, predict in batches, maps and credible regions."""

import numpy as np
import pytest

import shdd
from locdiff.infer.geolocator import Geolocator
from locdiff.infer.prediction import Prediction


@pytest.fixture(scope="module")
def geo(tiny_locdiff):
    return Geolocator.from_checkpoint(tiny_locdiff)


def test_predict_shapes_determinism_maps_and_credible_regions(geo, clusters):
    x = clusters.test_emb[:8]
    out = geo.predict(x, top_k=3, seed=1, maps=True, map_resolution=5.0)
    assert out.latlon.shape == (8, 3, 2) and out.prob.shape == (8, 3)
    assert out.coeffs.shape == (8, 2, 81) and out.maps.shape == (8, 36, 72)
    np.testing.assert_allclose(out.maps.sum(axis=(1, 2)), 1.0, rtol=1e-4)
    again = geo.predict(x, top_k=3, seed=1)
    np.testing.assert_array_equal(out.latlon, again.latlon)
    area50, area90 = out.credible_km2[:, 0], out.credible_km2[:, 1]
    # Nested regions: the same cells where one 5-degree cell already holds 90% of a sharp
    # calibrated map (the map rule's power goes up to 128), larger elsewhere.
    assert np.all(area50 > 0) and np.all(area90 >= area50) and np.any(area90 > area50)
    assert np.all(area90 < 4 * np.pi * shdd.EARTH_RADIUS_KM**2)
    # the model learnt the clusters: top-1 within the L=8 kernel's half-width
    error = shdd.haversine_km_np(out.top1, clusters.test_latlon[:8])
    assert np.median(error) < shdd.kernel_width_km(8)


def test_batches_match_one_call_per_batch(geo, clusters):
    """N > batch_size: padded batches of one shape, batch i seeded seed + i * batch_size."""
    x = clusters.test_emb[:20]
    whole = geo.predict(x, top_k=2, seed=3, batch_size=8)
    assert isinstance(whole, Prediction) and whole.latlon.shape == (20, 2, 2)
    for start in (0, 8, 16):
        part = geo.predict(np.resize(x[start : start + 8], (8, 8)), top_k=2, seed=3 + start)
        n = min(8, 20 - start)
        np.testing.assert_allclose(whole.coeffs[start : start + n], part.coeffs[:n], atol=1e-6)


def test_embedding_width_mismatch_is_a_clear_error(geo):
    with pytest.raises(ValueError, match=r"embeddings must be \[N, 8\] for this run"):
        geo.predict(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="finite"):
        geo.predict(np.full((2, 8), np.nan))


def test_credible_area_of_a_uniform_map_is_the_level_times_the_sphere():
    grid = shdd.latlon_grid(2.0)
    pmap = np.broadcast_to(grid.area[:, None] / (4 * np.pi), grid.shape)
    area = np.asarray(shdd.credible_area_km2(pmap, resolution_deg=2.0, levels=(0.5, 0.9)))
    sphere_km2 = 4 * np.pi * shdd.EARTH_RADIUS_KM**2
    np.testing.assert_allclose(area, [0.5 * sphere_km2, 0.9 * sphere_km2], rtol=0.02)

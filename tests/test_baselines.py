import numpy as np
import pytest

import shdd
from locdiff import baselines, data


def test_spherical_mean_across_the_antimeridian():
    mean = baselines.spherical_mean(np.array([[10.0, 179.0], [10.0, -179.0]]))
    assert abs(mean[1]) == pytest.approx(180.0, abs=1e-9) and mean[0] == pytest.approx(
        10.0, abs=0.01
    )


def test_retrieval_top1_and_densest_cluster():
    emb, latlon = data.synthetic_clustered(400, n_clusters=5, embed_dim=16, noise=0.05, seed=3)
    pred = baselines.retrieval(emb[:50], emb[50:], latlon[50:], k=1)
    error = shdd.haversine_km_np(pred, latlon[:50])
    assert np.median(error) < 300  # the right cluster (100 km spread)
    dense = baselines.retrieval(emb[:50], emb[50:], latlon[50:], k=16, radius_km=250)
    assert np.median(shdd.haversine_km_np(dense, latlon[:50])) < np.median(error)
    # an exact copy of a gallery row retrieves its own location
    np.testing.assert_allclose(
        baselines.retrieval(emb[60:61], emb[50:], latlon[50:]), latlon[60:61]
    )
    with pytest.raises(ValueError, match="width"):
        baselines.retrieval(emb[:2, :3], emb, latlon)


def test_adaptive_cells_respect_their_counts(shared_data):
    from locdiff.readers import read_locations

    latlon = read_locations(f"{shared_data}/yfcc25600_places365.csv").latlon
    cells = baselines.adaptive_cells(latlon, min_count=50, max_count=1000)
    assert cells.counts.sum() == len(latlon) and len(cells.centres) == len(cells.counts)
    assert cells.counts.min() >= 50
    assert np.mean(cells.counts <= 1000) > 0.95  # cells that cannot split stay whole
    np.testing.assert_array_equal(np.bincount(cells.labels), cells.counts)
    # the partition localises: points lie far nearer their cell's centre than the global mean
    to_cell = shdd.haversine_km_np(latlon, cells.centres[cells.labels])
    to_mean = shdd.haversine_km_np(latlon, baselines.spherical_mean(latlon))
    assert np.median(to_cell) < 0.1 * np.median(to_mean)
    with pytest.raises(ValueError, match="min_count"):
        baselines.adaptive_cells(latlon[:10], min_count=50)

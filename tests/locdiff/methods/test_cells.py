"""Cells: adaptive partitions of real locations, and the ISN hierarchy's scores."""

import numpy as np
import pytest

import shdd
from locdiff import methods
from locdiff.data import datasets as data
from locdiff.data.readers import read_benchmark
from locdiff.methods import cells

FAST = methods.BaselineConfig(
    hidden=64, steps=100, batch_size=64, learning_rate=3e-3, partitions=((10, 120), (40, 500))
)


def test_spherical_mean_across_the_antimeridian():
    mean = cells.spherical_mean(np.array([[10.0, 179.0], [10.0, -179.0]]))
    assert abs(mean[1]) == pytest.approx(180.0, abs=1e-9)
    assert mean[0] == pytest.approx(10.0, abs=0.01)


def test_adaptive_cells_respect_their_counts():
    latlon = read_benchmark("yfcc26k").latlon
    part = cells.adaptive_cells(latlon, min_count=50, max_count=1000)
    assert part.counts.sum() == len(latlon) and len(part.centres) == len(part.counts)
    assert part.counts.min() >= 50
    assert np.mean(part.counts <= 1000) > 0.95  # cells that cannot split stay whole
    np.testing.assert_array_equal(np.bincount(part.labels), part.counts)
    # the partition localises: points lie far nearer their cell's centre than the global mean
    to_cell = shdd.haversine_km_np(latlon, part.centres[part.labels])
    to_mean = shdd.haversine_km_np(latlon, cells.spherical_mean(latlon))
    assert np.median(to_cell) < 0.1 * np.median(to_mean)
    for c in (0, len(part.counts) // 2, len(part.counts) - 1):  # each centre: its points' mean
        mean = cells.spherical_mean(latlon[part.labels == c])
        assert shdd.haversine_km_np(part.centres[c], mean) < 1e-6
    with pytest.raises(ValueError, match="min_count"):
        cells.adaptive_cells(latlon[:10], min_count=50)


def test_isn_scores_add_the_coarse_log_probabilities(clusters, tmp_path):
    locator = methods.train_method(
        "cells", clusters.train, str(tmp_path / "c"), config=FAST, progress=False
    )
    h = locator.hierarchy
    fine = h.finest
    logps = [np.asarray(lp) for lp in locator.model(clusters.test_emb)]
    expected = logps[fine] + sum(lp[:, h.parents[j]] for j, lp in enumerate(logps) if j != fine)
    best = h.centres[fine][np.argmax(expected, axis=1)]
    np.testing.assert_allclose(locator.locate(clusters.test_emb)[:, 0], best)
    # Each fine cell's parent holds most of the fine cell's training points.
    train = data.load_npz(clusters.train)["latlon"]
    coarse = 1 - fine
    labels = [
        cells.adaptive_cells(train, min_count=lo, max_count=hi).labels for lo, hi in FAST.partitions
    ]
    for c in range(len(h.centres[fine])):
        members = labels[coarse][labels[fine] == c]
        assert np.bincount(members).argmax() == h.parents[coarse][c]

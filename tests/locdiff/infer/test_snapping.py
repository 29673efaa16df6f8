"""Snapping modes to the training locations' densest cell (locdiff.infer.snapping)."""

import os

import numpy as np
import pytest

import shdd
from locdiff.evaluation import metrics
from locdiff.infer import calibration
from locdiff.infer.geolocator import Geolocator
from locdiff.infer.reference import Reference
from locdiff.infer.snapping import LocationPrior
from locdiff.io import files
from locdiff.methods.shdd_diffusion import calibration_rows
from locdiff.training.early_stopping import validation_split

PARIS = (48.857, 2.352)


def _around(rng, centre, n, km):
    """``n`` points within about ``km`` of ``centre`` (degrees)."""
    lat = centre[0] + rng.uniform(-1, 1, n) * km / 111.0
    lon = centre[1] + rng.uniform(-1, 1, n) * km / (111.0 * np.cos(np.radians(centre[0])))
    return np.stack([lat, lon], -1)


def test_a_mode_moves_to_the_densest_cell_in_reach(rng):
    """Paris holds 200 photos, a town 30 km west of the query holds 3: the query snaps to
    Paris's densest cell when Paris is in reach, to the town when only it is, and stays
    when nothing is."""
    paris = _around(rng, PARIS, 200, 2.0)
    town = np.array([[48.857, 1.2]] * 3)
    prior = LocationPrior.from_locations(np.concatenate([paris, town]))
    assert prior.counts.sum() == 203
    query = np.array([[48.857, 1.6]])  # ~29 km from the town, ~55 km from Paris
    to_paris = prior.snap(query, 100.0)
    assert shdd.haversine_km_np(to_paris, np.array([PARIS]))[0] < 10
    densest = prior.centroids[np.argmax(prior.density)]
    np.testing.assert_allclose(to_paris[0], densest)
    np.testing.assert_allclose(prior.snap(query, 40.0), town[:1], atol=1e-9)
    np.testing.assert_array_equal(prior.snap(query, 5.0), query)
    np.testing.assert_array_equal(prior.snap(query, 0.0), query)


def test_cells_hold_their_photos_centroid_and_density_per_area(rng):
    """Each occupied cell's centroid is its photos' spherical mean (right across the
    antimeridian), and equal counts are denser nearer a pole (cells are smaller)."""
    east, west = [10.02, 179.995], [10.04, -179.995]  # two cells across the antimeridian
    prior = LocationPrior.from_locations(np.array([east, east, west, [60.05, 5.05], [0.05, 5.05]]))
    assert sorted(prior.counts.tolist()) == [1, 1, 1, 2]
    assert np.all(np.abs(prior.centroids[:, 1]) <= 180)
    one = {tuple(np.round(c, 3)): d for c, d in zip(prior.centroids, prior.density, strict=True)}
    assert one[(60.05, 5.05)] == pytest.approx(
        one[(0.05, 5.05)] * np.cos(np.radians(0.05)) / np.cos(np.radians(60.05))
    )
    # the two antimeridian cells are 4 km apart: snapping reaches across it
    assert prior.snap(np.array([[10.03, -179.99]]), 20.0)[0, 1] == pytest.approx(179.995)
    # a cell's centroid across the antimeridian is not the arithmetic mean (0)
    across = LocationPrior.from_locations(np.array([[0.0, 179.999], [0.0, -179.999]]), cell_deg=1.0)
    assert np.all(np.abs(np.abs(across.centroids[:, 1]) - 180) < 0.01)


def test_bad_inputs_are_refused_and_nan_modes_stay(tmp_path):
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        LocationPrior.from_locations(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="latitudes"):
        LocationPrior.from_locations(np.array([[95.0, 0.0]]))
    with pytest.raises(ValueError, match="cell_deg"):
        LocationPrior.from_locations(np.array([[0.0, 0.0]]), cell_deg=0.0)
    prior = LocationPrior.from_locations(np.array([[0.0, 0.0], [0.01, 0.01]]))
    with pytest.raises(ValueError, match="within_km"):
        prior.snap(np.zeros((1, 2)), -1.0)
    modes = np.array([[[np.nan, np.nan], [0.1, 0.1]]])  # [Q, k, 2]
    out = prior.snap(modes, 50.0)
    assert out.shape == modes.shape and np.all(np.isnan(out[0, 0]))
    np.testing.assert_allclose(out[0, 1], prior.centroids[np.argmax(prior.density)])
    prior.save(str(tmp_path / "prior.npz"))
    back = LocationPrior.load(str(tmp_path / "prior.npz"))
    for name in ("centroids", "counts", "density"):
        np.testing.assert_array_equal(getattr(back, name), getattr(prior, name))
    assert back.cell_deg == prior.cell_deg


def test_training_chooses_a_radius_on_validation_and_predictions_snap(tiny_locdiff, clusters):
    """Calibration kept the training split's prior and the radius of the best mean
    validation accuracy; the run's predictions are its plain decoder's modes snapped."""
    chosen = files.read_json(os.path.join(tiny_locdiff, "calibration.json"))
    table = chosen["snap_validation"]
    assert sorted({r["snap_km"] for r in table}) == list(calibration.SNAP_KM)
    assert len(table) == 1 + (len(calibration.SNAP_KM) - 1) * len(calibration.SNAP_GATES)
    best = max(enumerate(table), key=lambda r: (r[1]["mean"], -r[1]["snap_km"], r[0]))[1]
    assert (chosen["snap_km"], chosen["snap_max_doubt_km"]) == (
        best["snap_km"], best["snap_max_doubt_km"]
    )  # fmt: skip
    prior = LocationPrior.load(os.path.join(tiny_locdiff, "location_prior.npz"))
    geo = Geolocator.from_checkpoint(tiny_locdiff)
    # Independently of the table: the validation queries' accuracy under each radius and
    # gate, from the run's own modes; the chosen pair has the best mean
    x, truth, _ = calibration_rows(clusters.train, geo.config.train.validation_fraction)
    drawn = geo.with_snapping(None, 0.0).predict(x, top_k=1)
    doubt = Reference.load(os.path.join(tiny_locdiff, "reference.npz")).doubt_km(drawn.top1, x)

    def mean_accuracy(km, limit):
        moved = prior.snap(drawn.top1, km)
        if limit is not None:
            moved = np.where((doubt <= limit)[:, None], moved, drawn.top1)
        d = metrics.distances_km(moved, truth)
        return np.mean([100 * np.mean(d <= t) for t in calibration.THRESHOLDS_KM])

    got = mean_accuracy(chosen["snap_km"], chosen["snap_max_doubt_km"])
    assert got == pytest.approx(max(mean_accuracy(r["snap_km"], r["snap_max_doubt_km"])
                                    for r in table))  # fmt: skip
    train_rows, _ = validation_split(1000, geo.config.train.validation_fraction)
    assert prior.counts.sum() == len(train_rows)

    assert geo.snap_km == chosen["snap_km"]
    x = clusters.test_emb[:16]
    plain = geo.with_snapping(None, 0.0).predict(x, top_k=2)
    snapped = geo.with_snapping(prior, 100.0, max_doubt_km=None).predict(x, top_k=2)  # no gate
    np.testing.assert_allclose(snapped.latlon, prior.snap(plain.latlon, 100.0), atol=1e-4)
    np.testing.assert_array_equal(snapped.prob, plain.prob)
    assert not np.allclose(snapped.latlon, plain.latlon)  # the modes did move


def test_a_gate_on_the_doubt_leaves_doubtful_answers_where_they_are(tiny_locdiff, clusters):
    geo = Geolocator.from_checkpoint(tiny_locdiff)
    prior = LocationPrior.load(os.path.join(tiny_locdiff, "location_prior.npz"))
    x = clusters.test_emb[:16]
    plain = geo.with_snapping(None, 0.0).predict(x, top_k=1, doubt=True)
    limit = float(np.median(plain.doubt_km))
    gated = geo.with_snapping(prior, 100.0, max_doubt_km=limit).predict(x, top_k=1)
    snapped = prior.snap(plain.latlon, 100.0)
    low = plain.doubt_km <= limit
    np.testing.assert_allclose(gated.latlon[low], snapped[low], atol=1e-4)
    np.testing.assert_array_equal(gated.latlon[~low], plain.latlon[~low])
    assert (~low).any() and not np.allclose(snapped[~low], plain.latlon[~low])

"""The reference of training conditions and the doubt of an answer."""

import os

import numpy as np
import pytest

import shdd
from locdiff.infer.geolocator import Geolocator
from locdiff.infer.reference import Reference


def _by_hand(modes, queries, conditions, latlon):
    """Great-circle km from each mode to the place of the condition of highest cosine."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = conditions / np.linalg.norm(conditions, axis=1, keepdims=True)
    nearest = latlon[np.argmax(q @ c.T, axis=1)].astype(np.float64)
    lat1, lon1, lat2, lon2 = map(np.radians, (modes[:, 0], modes[:, 1], *nearest.T))
    dlat, dlon = lat2 - lat1, lon2 - lon1
    h = np.sin(dlat / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin(dlon / 2) ** 2
    return 2 * shdd.EARTH_RADIUS_KM * np.arcsin(np.sqrt(h))


def test_the_doubt_is_the_distance_to_the_nearest_conditions_place(tmp_path):
    rng = np.random.default_rng(0)
    conditions = rng.standard_normal((50, 8)).astype(np.float32) * rng.uniform(0.5, 3, (50, 1))
    latlon = np.c_[rng.uniform(-80, 80, 50), rng.uniform(-180, 180, 50)].astype(np.float32)
    ref = Reference.from_training(conditions, latlon)
    queries = conditions[[3, 7]] * 5.0 + 0.01 * rng.standard_normal((2, 8)).astype(np.float32)
    at_home = latlon[[3, 7]].astype(np.float64)
    np.testing.assert_allclose(ref.doubt_km(at_home, queries), 0.0, atol=1e-3)  # scale-free
    modes = np.c_[rng.uniform(-80, 80, 20), rng.uniform(-180, 180, 20)]
    queries = rng.standard_normal((20, 8)).astype(np.float32)
    expected = _by_hand(modes, queries, conditions, latlon)
    np.testing.assert_allclose(ref.doubt_km(modes, queries), expected, rtol=1e-5, atol=1e-3)
    ref.save(str(tmp_path / "reference.npz"))  # float16 on disk: the same neighbours here
    back = Reference.load(str(tmp_path / "reference.npz"))
    assert back.conditions.dtype == np.float16 and len(back) == 50
    np.testing.assert_allclose(back.doubt_km(modes, queries), expected, rtol=1e-4, atol=1e-2)


def test_a_large_training_split_keeps_a_fixed_random_subset():
    rng = np.random.default_rng(1)
    x, latlon = rng.standard_normal((40, 4)), rng.uniform(-50, 50, (40, 2))
    a = Reference.from_training(x, latlon, max_rows=10, seed=3)
    b = Reference.from_training(x, latlon, max_rows=10, seed=3)
    assert len(a) == 10
    np.testing.assert_array_equal(a.latlon, b.latlon)
    stored = latlon.astype(np.float32)
    kept = [int(np.flatnonzero(np.all(stored == row, axis=1))[0]) for row in a.latlon]
    assert kept == sorted(kept) and len(set(kept)) == 10  # training order, no repeats


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="embeddings but"):
        Reference.from_training(np.zeros((3, 4)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="max_rows"):
        Reference.from_training(np.zeros((3, 4)), np.zeros((3, 2)), max_rows=0)
    with pytest.raises(ValueError, match="G >= 1"):
        Reference(np.zeros((0, 4)), np.zeros((0, 2)))
    ref = Reference.from_training(np.eye(3), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="modes must be"):
        ref.doubt_km(np.zeros((2, 2)), np.eye(3))
    with pytest.raises(ValueError, match="width"):
        ref.doubt_km(np.zeros((2, 2)), np.zeros((2, 5)))


def test_a_runs_predictions_carry_the_doubt_of_their_unsnapped_mode(tiny_locdiff, clusters):
    """Calibration kept the training split's conditions; a prediction's doubt is that of
    the decoder's own mode (before snapping) against the conditions as given (the
    model's standardisation does not enter)."""
    geo = Geolocator.from_checkpoint(tiny_locdiff)
    assert geo.reference is not None
    ref = Reference.load(os.path.join(tiny_locdiff, "reference.npz"))
    x = clusters.test_emb[:12]
    plain = geo.with_snapping(None, 0.0).predict(x, top_k=1, doubt=True)
    snapped = geo.with_snapping(geo.prior, 200.0, max_doubt_km=None)
    snapped = snapped.predict(x, top_k=1, doubt=True)
    expected = _by_hand(plain.top1, x, ref.conditions.astype(np.float32), ref.latlon)
    np.testing.assert_allclose(plain.doubt_km, expected, rtol=1e-4, atol=1e-2)
    np.testing.assert_array_equal(snapped.doubt_km, plain.doubt_km)
    assert geo.with_reference(None).predict(x, top_k=1, doubt=True).doubt_km is None
    # not asked for and not needed (no gate, no maps): not computed
    assert geo.with_snapping(None, 0.0).predict(x, top_k=1).doubt_km is None
    gated = geo.with_snapping(geo.prior, 200.0, max_doubt_km=1e9).predict(x, top_k=1)
    np.testing.assert_array_equal(gated.doubt_km, plain.doubt_km)  # the gate reads it

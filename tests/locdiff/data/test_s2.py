"""S2 cell tokens: the reference implementation's cells, and back to within a cell."""

import jax.numpy as jnp
import numpy as np
import pytest

from locdiff.data import s2
from locdiff.evaluation import metrics

s2sphere = pytest.importorskip("s2sphere")

EARTH_M = 6_371_008.8
MAX_DIAG = 2.438654594434021  # S2's largest cell diagonal, in radians at level 0 (kMaxDiag)


def _uniform(n, seed=0):
    xyz = np.random.default_rng(seed).standard_normal((n, 3))
    xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)
    lat, lon = np.degrees(np.arcsin(xyz[:, 2])), np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0]))
    edges = np.array([[90, 0], [-90, 0], [0, 180], [0, -180], [0, 45], [35.26439, 45]])
    return np.concatenate([np.stack([lat, lon], 1), edges])  # poles, seams, cube corners


def test_tokens_are_the_reference_cells():
    latlon = _uniform(2000)
    seqs = s2.tokens(latlon)
    assert seqs.shape == (len(latlon), 11) and seqs.dtype == np.int32
    assert seqs[:, 0].max() < 6 and seqs[:, 1:].max() < 16 and seqs.min() >= 0
    want = [
        s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(a, b)).parent(20).id()
        for a, b in latlon
    ]
    np.testing.assert_array_equal(s2.cell_ids(seqs), np.array(want, np.uint64))
    coarse = s2.tokens(latlon, levels=6, per_token=3)  # another grouping, the same cells
    want = [
        s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(a, b)).parent(6).id()
        for a, b in latlon[:200]
    ]
    np.testing.assert_array_equal(s2.cell_ids(coarse[:200], per_token=3), want)


def test_centres_are_the_reference_centres_and_within_a_cell_of_the_point():
    latlon = _uniform(3000, seed=1)
    seqs = s2.tokens(latlon)
    centres = s2.centres(seqs)
    half_diag_m = 0.5 * MAX_DIAG * 2.0**-20 * EARTH_M  # 7.4 m
    assert metrics.distances_km(centres, latlon).max() * 1000 <= half_diag_m
    np.testing.assert_array_equal(s2.tokens(centres), seqs)  # a centre is in its own cell
    for seq, centre in zip(seqs[:100], centres[:100], strict=True):
        cell = s2sphere.Cell(s2sphere.CellId(int(s2.cell_ids(seq))))
        ref = s2sphere.LatLng.from_point(cell.get_center())
        assert metrics.distances_km(centre, [ref.lat().degrees, ref.lng().degrees]) < 1e-6


def test_the_float32_tokens_of_the_train_step_agree_where_float32_can_tell():
    latlon = _uniform(5000, seed=2)
    exact = s2.tokens(latlon)
    on_device = np.asarray(s2.tokens(jnp.asarray(latlon, jnp.float32), xp=jnp))
    agree = (on_device == exact).mean(axis=0)
    assert agree[:5].min() > 0.999  # down to level 8 (a cell of ~30 km)
    assert agree[-1] > 0.85  # level 20 (~10 m): float32 locations are ~1 m apart


def test_vocabularies_and_bad_levels():
    assert s2.vocabularies() == (6,) + (16,) * 10
    assert s2.vocabularies(levels=9, per_token=3) == (6, 64, 64, 64)
    for levels, per_token in ((20, 3), (0, 1), (31, 1), (4, 5)):
        with pytest.raises(ValueError, match="multiple of per_token"):
            s2.tokens(np.zeros((1, 2)), levels=levels, per_token=per_token)

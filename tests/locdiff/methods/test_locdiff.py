"""LocDiff and LocDiff-H as methods: their runs, galleries and predictions."""

import numpy as np

import shdd
from locdiff import data, methods
from locdiff.hybrid import locdiff_h
from locdiff.rundir import RunDir


def test_locdiff_run_records_what_it_was_trained_on(tiny_locdiff, clusters):
    locator = methods.load_locator(tiny_locdiff)
    meta = RunDir(tiny_locdiff).read_method()
    assert locator.method == "locdiff" and meta["method"] == "locdiff"
    assert meta["rows"] == 1000 and meta["embed_dim"] == 8 and meta["train_seconds"] > 0
    assert meta["config"]["model"]["L"] == 8
    prediction = locator.predict(clusters.test_emb[:5], top_k=2, maps=True, map_resolution=10.0)
    assert prediction.maps.shape == (5, 18, 36) and prediction.coeffs.shape[:2] == (5, 2)


def test_locdiff_h_is_locdiff_snapped_to_its_gallery(tiny_locdiff, clusters):
    """The locdiff-h locator with a gallery answers exactly ``locdiff_h`` of LocDiff's
    prediction; every first location is a gallery point."""
    train = data.load_npz(clusters.train)["latlon"].astype(np.float64)
    hybrid = methods.load_locator(tiny_locdiff, gallery=train)
    assert hybrid.method == "locdiff-h"
    x = clusters.test_emb[:20]
    plain = methods.load_locator(tiny_locdiff).predict(x, top_k=2, seed=4)
    snapped = hybrid.predict(x, top_k=2, seed=4)
    np.testing.assert_array_equal(snapped.latlon, locdiff_h(plain, train, L=8).latlon)
    d = shdd.haversine_km_np(snapped.latlon[:, 0, None], train[None])
    assert d.min(axis=1).max() < 1e-6


def test_a_locdiff_h_run_keeps_its_gallery(clusters, tmp_path):
    from locdiff.config import Config, override

    tiny = override(
        Config(),
        **{"model.L": 4, "model.hidden": 16, "model.depth": 1, "model.film_dim": 8},
        **{"model.time_dim": 4, "train.steps": 2, "train.batch_size": 32},
        **{"diffusion.steps": 2, "diffusion.num_samples": 1},
    )
    gallery = np.array([[10.0, 20.0], [-30.0, 40.0]])
    workdir = str(tmp_path / "h")
    locator = methods.train_method(
        "locdiff-h", clusters.train, workdir, config=tiny, gallery=gallery, progress=False
    )
    np.testing.assert_array_equal(np.load(RunDir(workdir).gallery), gallery)
    top1 = methods.load_locator(workdir).predict(clusters.test_emb[:6]).top1
    assert locator.method == "locdiff-h"
    assert all(np.abs(gallery - p).sum(1).min() < 1e-9 for p in top1)

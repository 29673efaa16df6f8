"""Every method behind one interface: train, save, restore, locate, evaluate (issue #5)."""

import json

import numpy as np
import pytest

import shdd
from locdiff import cli, data, methods
from locdiff.config import Config, override
from tests.test_inference import TINY

FAST = methods.BaselineConfig(
    hidden=64, steps=300, batch_size=64, learning_rate=3e-3, partitions=((10, 120), (40, 500))
)


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    """Four well-separated clusters; train and test split."""
    root = tmp_path_factory.mktemp("methods")
    emb, latlon = data.synthetic_clustered(1200, n_clusters=4, embed_dim=8, spread_km=50, seed=1)
    data.save_npz(str(root / "train.npz"), emb[:1000], latlon[:1000])
    data.save_npz(str(root / "test.npz"), emb[1000:], latlon[1000:])
    return root, emb[1000:], latlon[1000:]


@pytest.mark.parametrize("method", ["retrieval", "cells", "regression", "coords-diffusion"])
def test_baseline_learns_restores_and_evaluates(clusters, tmp_path, method):
    root, test_emb, test_latlon = clusters
    workdir = str(tmp_path / method)
    locator = methods.train_method(
        method, str(root / "train.npz"), workdir, config=FAST, progress=False
    )
    pred = locator.locate(test_emb, top_k=3, seed=0)
    assert pred.shape == (200, 3, 2)
    error = shdd.haversine_km_np(pred[:, 0], test_latlon)
    # Clusters are ~50 km wide and thousands of km apart: every method must find the
    # right cluster for nearly every point (the cells' centres sit inside the clusters).
    assert np.mean(error < 1000) > 0.95, (method, np.median(error))
    restored = methods.load_locator(workdir)
    np.testing.assert_allclose(restored.locate(test_emb, top_k=3, seed=0), pred, atol=1e-5)
    result = json.loads(
        _run_cli(["evaluate", "--checkpoint", workdir, "--data", str(root / "test.npz")])
    )
    assert result["method"] == method and result["n"] == 200
    assert result["median_km"] == pytest.approx(np.median(error), rel=1e-4)


def _run_cli(args) -> str:
    import io
    import os
    import tempfile
    from contextlib import redirect_stdout

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.json")
        with redirect_stdout(io.StringIO()):
            assert cli.main([*args, "--no-progress", "--json", path]) == 0
        with open(path) as f:
            return f.read()


def test_cli_trains_a_baseline_with_flags(clusters, tmp_path, capsys):
    root, _, _ = clusters
    config = tmp_path / "baseline.json"
    config.write_text(json.dumps({"hidden": 32, "steps": 999, "retrieval_k": 5}))
    workdir = tmp_path / "reg"
    args = ["train", "--method", "regression", "--train", str(root / "train.npz")]
    args += ["--workdir", str(workdir), "--config", str(config), "--steps", "20", "--no-progress"]
    assert cli.main(args) == 0
    meta = json.loads((workdir / "method.json").read_text())
    assert meta["config"]["steps"] == 20 and meta["config"]["hidden"] == 32  # flag over file
    assert meta["rows"] == 1000 and meta["embed_dim"] == 8 and "jax" in meta["versions"]


def test_isn_scores_add_the_coarse_log_probabilities(clusters, tmp_path):
    root, test_emb, _ = clusters
    locator = methods.train_method(
        "cells", str(root / "train.npz"), str(tmp_path / "c"), config=FAST, progress=False
    )
    extra = locator.extra
    fine = extra["finest"]
    logps = [np.asarray(lp) for lp in locator.model(test_emb)]
    expected = logps[fine] + sum(
        lp[:, extra["parents"][j]] for j, lp in enumerate(logps) if j != fine
    )
    best = extra["centres"][fine][np.argmax(expected, axis=1)]
    np.testing.assert_allclose(locator.locate(test_emb)[:, 0], best)
    # Each fine cell's parent holds most of the fine cell's training points.
    train = data.load_npz(str(root / "train.npz"))["latlon"]
    coarse = 1 - fine
    parts = [shdd_cells(train, lo, hi) for lo, hi in FAST.partitions]
    for c in range(len(extra["centres"][fine])):
        members = parts[coarse][parts[fine] == c]
        assert np.bincount(members).argmax() == extra["parents"][coarse][c]


def shdd_cells(latlon, lo, hi):
    from locdiff.baselines import adaptive_cells

    return adaptive_cells(latlon, min_count=lo, max_count=hi).labels


def test_coords_diffusion_modes_are_distinct_and_on_samples(clusters, tmp_path):
    root, test_emb, _ = clusters
    locator = methods.train_method(
        "coords-diffusion",
        str(root / "train.npz"),
        str(tmp_path / "f"),
        config=FAST,
        progress=False,
    )
    samples = locator.samples(test_emb[:5], seed=3)
    assert samples.shape == (5, FAST.num_samples, 3)
    np.testing.assert_allclose(np.linalg.norm(samples, axis=-1), 1.0, atol=1e-5)
    modes = locator.locate(test_emb[:5], top_k=2, seed=3)
    sample_latlon = np.asarray(shdd.sphere.xyz_to_latlon(samples.astype(np.float64)))
    for i in range(5):
        d = shdd.haversine_km_np(modes[i, :, None], sample_latlon[i][None])  # [2, K]
        assert d.min(axis=1).max() < 1e-3  # each mode is one of the samples
        assert shdd.haversine_km_np(modes[i, 0], modes[i, 1]) > 2 * FAST.kde_km - 1e-6 or (
            np.all(modes[i, 0] == modes[i, 1])  # fewer separated samples than top_k
        )


def test_locdiff_h_run_keeps_its_gallery_and_reports_both(clusters, tmp_path):
    root, test_emb, test_latlon = clusters
    tiny = override(Config(), **{**TINY, "train.steps": 60, "train.checkpoint_every": 60})
    workdir = str(tmp_path / "h")
    locator = methods.train_method(
        "locdiff-h", str(root / "train.npz"), workdir, config=tiny, progress=False
    )
    assert locator.method == "locdiff-h"
    train = data.load_npz(str(root / "train.npz"))["latlon"]
    snapped = locator.locate(test_emb[:20], top_k=2)
    # The first location is a gallery (training) point; the second is a raw mode.
    d = shdd.haversine_km_np(snapped[:, 0, None], train[None])
    assert d.min(axis=1).max() < 1e-6
    result = json.loads(
        _run_cli(["evaluate", "--checkpoint", workdir, "--data", str(root / "test.npz")])
    )
    assert result["method"] == "locdiff" and result["locdiff_h"]["n"] == 200


def test_bad_inputs_are_clear_errors(clusters, tmp_path):
    root, _, _ = clusters
    with pytest.raises(ValueError, match="unknown method"):
        methods.train_method("knn", str(root / "train.npz"), str(tmp_path / "x"))
    with pytest.raises(ValueError, match="1 <= min <= max"):
        methods.BaselineConfig(partitions=((50, 10),))
    with pytest.raises(ValueError, match="unknown baseline config keys"):
        methods.BaselineConfig.from_dict({"hiden": 3})
    locator = methods.train_method(
        "retrieval", str(root / "train.npz"), str(tmp_path / "r"), progress=False
    )
    with pytest.raises(ValueError, match=r"embeddings must be \[N, 8\]"):
        locator.locate(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="finite"):
        locator.locate(np.full((2, 8), np.nan))

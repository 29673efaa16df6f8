"""LocDiff and LocDiff-H as methods: their runs, galleries and predictions."""

import numpy as np
import pytest

import shdd
from locdiff import methods
from locdiff.data import datasets as data
from locdiff.infer.hybrid import Gallery, Rule, locdiff_h
from locdiff.io import files
from locdiff.io.rundir import RunDir
from locdiff.methods import shdd_hybrid as locdiff_h_method
from locdiff.methods.shdd_diffusion import LocDiffLocator


def test_locdiff_run_records_what_it_was_trained_on(tiny_locdiff, clusters):
    locator = methods.load_locator(tiny_locdiff)
    meta = RunDir(tiny_locdiff).read_method()
    assert locator.method == "locdiff" and meta["method"] == "locdiff"
    assert meta["rows"] == 1000 and meta["embed_dim"] == 8 and meta["train_seconds"] > 0
    assert meta["config"]["model"]["L"] == 8
    prediction = locator.predict(clusters.test_emb[:5], top_k=2, maps=True, map_resolution=10.0)
    assert prediction.maps.shape == (5, 18, 36) and prediction.coeffs.shape[:2] == (5, 2)


def test_locdiff_h_is_the_hybrid_of_locdiffs_prediction(tiny_locdiff, clusters):
    """The locdiff-h locator answers exactly ``locdiff_h`` of LocDiff's prediction with
    the rule chosen on the run's validation split (the one ``rule_for`` keeps in
    hybrid.json); every first location is a gallery point or LocDiff's own answer (where
    the trust test keeps it)."""
    train = data.load_npz(clusters.train)
    gallery = Gallery.of(train["embeddings"], train["latlon"])
    hybrid = methods.load_locator(tiny_locdiff, gallery=gallery)
    assert hybrid.method == "locdiff-h"
    run = RunDir(tiny_locdiff)
    locdiff_h_method.rule_for(run, methods.load_locator(tiny_locdiff), clusters.train)
    stored = files.read_json(run.file("hybrid.json"))
    assert Rule.from_dict(stored["rule"]) == hybrid.rule and len(stored["validation"]) > 1
    chosen = files.read_json(RunDir(tiny_locdiff).file("calibration.json"))["guidance"]
    assert stored["guidance"] == chosen  # chosen on predictions at the run's own guidance
    x = clusters.test_emb[:20]
    plain = methods.load_locator(tiny_locdiff).predict(x, top_k=2, seed=4)
    answered = hybrid.predict(x, top_k=2, seed=4)
    expected = locdiff_h(plain, x, gallery, L=8, rule=hybrid.rule)
    np.testing.assert_array_equal(answered.latlon, expected.latlon)
    d = shdd.haversine_km_np(answered.latlon[:, 0, None], gallery.latlon[None])
    own = np.all(answered.top1 == plain.top1, axis=1)
    assert np.all((d.min(axis=1) < 1e-6) | own)
    if hybrid.rule.trust == float("inf") and hybrid.rule.gate is None:  # LocDiff itself
        assert np.all(own)


def test_a_locdiff_h_run_keeps_its_gallery(clusters, tmp_path):
    from locdiff.config import Config, override

    tiny = override(
        Config(),
        **{"model.L": 4, "model.hidden": 16, "model.depth": 1, "model.film_dim": 8},
        **{"model.time_dim": 4, "train.steps": 2, "train.batch_size": 32},
        **{"diffusion.sample_steps": 2, "diffusion.num_samples": 1},
    )
    emb = np.eye(8)[:2].astype(np.float32)
    gallery = (emb, np.array([[10.0, 20.0], [-30.0, 40.0]]))
    workdir = str(tmp_path / "h")
    locator = methods.train_method(
        "locdiff-h", clusters.train, workdir, config=tiny, gallery=gallery, progress=False
    )
    np.testing.assert_array_equal(files.load_npz(RunDir(workdir).gallery)["latlon"], gallery[1])
    loaded = methods.load_locator(workdir)
    assert locator.method == "locdiff-h"
    np.testing.assert_array_equal(loaded.gallery.latlon, gallery[1])
    x = clusters.test_emb[:6]
    top1 = loaded.predict(x).top1
    own = LocDiffLocator.predict(loaded, x).top1  # LocDiff's own
    for i, p in enumerate(top1):  # a gallery point, or LocDiff's own answer
        assert np.abs(gallery[1] - p).sum(1).min() < 1e-9 or np.array_equal(p, own[i])
    always = locdiff_h(LocDiffLocator.predict(loaded, x), x, loaded.gallery, L=4, rule=Rule(1, 0.0))
    assert all(np.abs(gallery[1] - p).sum(1).min() < 1e-9 for p in always.top1)


def test_a_run_trained_further_is_calibrated_again(clusters, tmp_path):
    """Raising a finished run's cap trains it on from its checkpoint: what was chosen for
    the old model (``calibration.json``) is chosen again for the new one; reloading at
    the same cap keeps it."""
    from locdiff.config import Config, override

    tiny = {"model.L": 4, "model.hidden": 16, "model.depth": 1, "model.film_dim": 8}
    tiny |= {"model.time_dim": 4, "train.batch_size": 32, "train.eval_every": 5}
    tiny |= {"train.warmup_steps": 2, "train.learning_rate": 3e-3}
    tiny |= {"train.checkpoint_every": 5, "diffusion.sample_steps": 2, "diffusion.num_samples": 1}
    workdir = str(tmp_path / "run")
    config = override(Config(), **tiny, **{"train.steps": 10})
    methods.train_or_load("locdiff", clusters.train, workdir, config, progress=False)
    path = RunDir(workdir).file("calibration.json")
    files.write_json(path, {**files.read_json(path), "marker": 1})
    methods.train_or_load("locdiff", clusters.train, workdir, config, progress=False)
    assert files.read_json(path)["marker"] == 1  # the same model: its choices stand
    longer = override(Config(), **tiny, **{"train.steps": 20})
    locator = methods.train_or_load("locdiff", clusters.train, workdir, longer, progress=False)
    assert locator.meta["best_step"] > 10  # a better model than the first run's
    chosen = files.read_json(path)
    assert "marker" not in chosen and "guidance" in chosen and "snap_km" in chosen


def test_a_prediction_shows_itself(tiny_locdiff, clusters):
    """``show`` draws input i's map; in a notebook the prediction is a table of its
    modes and its first map."""
    import matplotlib.figure

    prediction = methods.load_locator(tiny_locdiff).predict(
        clusters.test_emb[:12], top_k=2, maps=True, map_resolution=5.0
    )
    assert prediction.map_resolution == 5.0
    fig = prediction.show(1, truth=clusters.test_latlon[1])
    assert isinstance(fig, matplotlib.figure.Figure)
    page = prediction._repr_html_()
    assert page.count("<tr>") == 1 + 10 * 2 and "2 more inputs not shown" in page
    assert f"{prediction.latlon[0, 0, 0]:.4f}" in page and "data:image/png;base64," in page
    plain = prediction[:3]
    plain.maps = None
    assert "<img" not in plain._repr_html_() and plain.map_resolution is None


def test_the_explorer_redraws_when_a_control_changes(tiny_locdiff, clusters):
    """The Jupyter explorer: its figure follows the input, K, guidance and band limit."""
    pytest.importorskip("ipywidgets")
    pytest.importorskip("plotly")
    from locdiff.viz.explore import Explorer, map_at

    locator = methods.load_locator(tiny_locdiff)
    inputs = {"first": clusters.test_emb[0], "second": clusters.test_emb[1]}
    explorer = Explorer(locator, inputs, truth={"first": clusters.test_latlon[0]}, top_k=3)
    names = [trace.name for trace in explorer.figure.data]
    assert names == ["density", "50% region", "90% region", "coast", "modes", "truth"]
    first = np.array(explorer.figure.data[0].z, np.float64)
    explorer.controls["L"].value = 4  # a coarser map: the samples' mean truncated
    assert "L = 4" in explorer.figure.layout.title.text
    np.testing.assert_allclose(explorer.pmap, map_at(explorer.prediction, 4, 8))
    assert not np.allclose(np.nan_to_num(explorer.figure.data[0].z), np.nan_to_num(first))
    explorer.controls["K"].value = 5
    assert explorer.prediction.coeffs.shape[1] == 5 and "K = 5" in explorer.figure.layout.title.text
    explorer.controls["guidance"].value = 0.0  # the run's prior: the same for any input
    assert "guidance 0" in explorer.figure.layout.title.text
    prior = explorer.pmap
    explorer.controls["input"].value = "second"  # no truth for it
    np.testing.assert_allclose(explorer.pmap, prior, atol=1e-6)
    assert [t.name for t in explorer.figure.data][-1] == "modes"
    assert "90% region" in explorer.status.value
    with pytest.raises(ValueError, match="band limit must be in"):
        map_at(explorer.prediction, 9, 8)

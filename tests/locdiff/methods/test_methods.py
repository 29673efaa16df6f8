"""Every method behind one surface: train, restore, predict, evaluate, reuse."""

import json
import os

import numpy as np
import pytest

import shdd
from locdiff import cli, methods
from locdiff.data import datasets as data
from locdiff.errors import RunError
from locdiff.evaluation.protocol import evaluate
from locdiff.infer.prediction import Prediction

FAST = methods.BaselineConfig(
    hidden=64,
    steps=300,
    batch_size=64,
    learning_rate=3e-3,
    partitions=((10, 120), (40, 500)),
    validation_fraction=0.0,  # these tests check learning; early stopping has its own
)


@pytest.fixture(scope="module")
def trained(clusters, tmp_path_factory):
    """Each baseline trained once on the clusters: ``{method: workdir}``."""
    root = tmp_path_factory.mktemp("baselines")
    runs = {}
    for method in ("retrieval", "cells", "regression", "coords-diffusion"):
        runs[method] = str(root / method)
        methods.train_method(method, clusters.train, runs[method], config=FAST, progress=False)
    return runs


@pytest.mark.parametrize("method", ["retrieval", "cells", "regression", "coords-diffusion"])
def test_baseline_learns_restores_and_evaluates(clusters, trained, method):
    locator = methods.load_locator(trained[method])
    assert locator.method == method and locator.meta["train_seconds"] > 0
    prediction = locator.predict(clusters.test_emb, top_k=3, seed=0)
    assert isinstance(prediction, Prediction) and prediction.latlon.shape == (200, 3, 2)
    error = shdd.haversine_km_np(prediction.top1, clusters.test_latlon)
    # Clusters are ~50 km wide and thousands of km apart: every method must find the
    # right cluster for nearly every point (the cells' centres sit inside the clusters).
    assert np.mean(error < 1000) > 0.95, (method, np.median(error))
    again = methods.load_locator(trained[method]).locate(clusters.test_emb, top_k=3, seed=0)
    np.testing.assert_allclose(again, prediction.latlon, atol=1e-5)
    result = evaluate(trained[method], clusters.test, progress=False)
    assert result["method"] == method and result["n"] == 200
    assert result["median_km"] == pytest.approx(np.median(error), rel=1e-4)
    assert set(result["by_scene"]) == {"indoor", "natural", "urban"}


def test_train_or_load_reuses_a_finished_run_and_trains_on_a_longer_one(clusters, tmp_path):
    workdir = str(tmp_path / "cells")
    config = methods.BaselineConfig(hidden=16, steps=20, partitions=((10, 120),))
    first = methods.train_or_load("cells", clusters.train, workdir, config, progress=False)
    again = methods.train_or_load("cells", clusters.train, workdir, config, progress=False)
    assert again.meta["train_seconds"] == first.meta["train_seconds"]  # reused, not retrained
    longer = methods.BaselineConfig(hidden=16, steps=21, partitions=((10, 120),))
    changed = methods.train_or_load("cells", clusters.train, workdir, longer, progress=False)
    assert changed.meta["config"]["train"]["steps"] == 21  # a higher cap: trained on
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        assert [json.loads(line)["step"] for line in f][-2:] == [20, 21]  # from step 20
    other = methods.BaselineConfig(hidden=16, steps=21, partitions=((20, 400),))
    with pytest.raises(ValueError, match="holds a run with a different config"):
        methods.train_or_load("cells", clusters.train, workdir, other, progress=False)
    with pytest.raises(RunError, match="holds a cells run; train regression elsewhere"):
        methods.train_or_load("regression", clusters.train, workdir, longer, progress=False)
    # A run written before method.json recorded its config is trained again, not trusted.
    meta_path = os.path.join(workdir, "method.json")
    with open(meta_path) as f:
        old = {k: v for k, v in json.load(f).items() if k != "config"}
    with open(meta_path, "w") as f:
        json.dump(old, f)
    again = methods.train_or_load("cells", clusters.train, workdir, config, progress=False)
    assert again.meta["config"]["train"]["steps"] == 20
    # A finished run is never reused on other data, whatever its config.
    with pytest.raises(RunError, match=r"trained on .*train.npz \(1000 rows\), not .*test.npz"):
        methods.train_or_load("cells", clusters.test, workdir, config, progress=False)
    # A baseline run of the loop before the one trainer (params.npz, no checkpoints) is
    # replaced: there is nothing to resume from.
    old_run = tmp_path / "old"
    old_run.mkdir()
    legacy = {"method": "cells", "config": {"hidden": 16, "steps": 7}, "rows": 1000}
    (old_run / "method.json").write_text(json.dumps({**legacy, "data": clusters.train}))
    (old_run / "params.npz").write_bytes(b"stale")
    new = methods.train_or_load("cells", clusters.train, str(old_run), config, progress=False)
    assert new.meta["config"]["train"]["steps"] == 20 and (old_run / "config.json").exists()
    fewer = tmp_path / "other" / "train.npz"  # the same name, other rows
    fewer.parent.mkdir()
    arrays = data.load_npz(clusters.train)
    data.save_npz(str(fewer), arrays["embeddings"][:900], arrays["latlon"][:900])
    with pytest.raises(RunError, match="1000 rows"):
        methods.train_or_load("cells", str(fewer), workdir, config, progress=False)


def test_cli_trains_a_baseline_with_flags(clusters, tmp_path):
    config = tmp_path / "regression.json"
    config.write_text(json.dumps({"model": {"hidden": 32}, "train": {"steps": 999}}))
    workdir = tmp_path / "reg"
    args = ["train", "--method", "regression", "--train", clusters.train]
    args += ["--workdir", str(workdir), "--config", str(config), "--no-progress"]
    assert cli.main([*args, "--steps", "20", "--set", "model.depth=1"]) == 0
    meta = json.loads((workdir / "method.json").read_text())
    assert meta["config"]["train"]["steps"] == 20  # the flag over the file
    assert meta["config"]["model"] == {"hidden": 32, "depth": 1}  # the file, then --set
    assert meta["rows"] == 1000 and meta["embed_dim"] == 8 and "jax" in meta["versions"]
    assert meta["steps"] <= 20 and os.path.isdir(workdir / "checkpoints")  # the one trainer
    assert cli.main([*args, "--L", "16"]) == 2  # a LocDiff flag on a baseline
    assert cli.main([*args, "--set", "model.width=3"]) == 2  # no such field
    assert cli.main([*args, "--set", "train.steps"]) == 2  # no value
    assert cli.main([*args, "--set", "train.steps=0", "--workdir", str(tmp_path / "z")]) == 2
    # A config written before locdiff 0.3 (one flat BaselineConfig) still reads.
    config.write_text(json.dumps({"hidden": 32, "steps": 999, "retrieval_k": 5}))
    legacy = methods.config_from_dict("regression", json.loads(config.read_text()))
    assert legacy.model.hidden == 32 and legacy.train.steps == 999


def test_bad_inputs_are_clear_errors(clusters, trained, tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        methods.train_method("knn", clusters.train, str(tmp_path / "x"))
    with pytest.raises(ValueError, match="1 <= min <= max"):
        methods.BaselineConfig(partitions=((50, 10),))
    with pytest.raises(ValueError, match="unknown baseline config keys"):
        methods.BaselineConfig.from_dict({"hiden": 3})
    with pytest.raises(TypeError, match="takes a CellsConfig"):
        methods.train_method("cells", clusters.train, str(tmp_path / "y"), config=object())
    locator = methods.load_locator(trained["retrieval"])
    with pytest.raises(ValueError, match=r"embeddings must be \[N, 8\] for this run"):
        locator.predict(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="finite"):
        locator.predict(np.full((2, 8), np.nan))
    with pytest.raises(ValueError, match="not probability maps"):
        locator.predict(clusters.test_emb[:2], maps=True, map_resolution=2.0)
    with pytest.raises(ValueError, match="no sampling options"):
        methods.load_locator(trained["cells"], num_samples=4)
    with pytest.raises(ValueError, match="a gallery goes with LocDiff runs"):
        methods.load_locator(trained["cells"], gallery=np.zeros((3, 2)))

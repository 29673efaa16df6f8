"""The validation split, the stopping rule, and both training loops stopping on it."""

import os

import jax
import numpy as np
import pytest

from locdiff import methods
from locdiff.config import override
from locdiff.data import datasets as data
from locdiff.infer.geolocator import Geolocator
from locdiff.io import files
from locdiff.io.rundir import RunDir
from locdiff.training import trainer
from locdiff.training.early_stopping import EarlyStopping, validation_split


def test_validation_split_is_fixed_disjoint_and_complete():
    train, val = validation_split(1000, 0.05)
    assert len(val) == 50 and len(train) == 950
    assert not np.array_equal(val, np.sort(val))  # a capped prefix is still a random sample
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(1000))
    again, val_again = validation_split(1000, 0.05)
    assert np.array_equal(val, val_again)  # the same rows for every method and seed
    assert len(validation_split(10, 0.0)[1]) == 0
    assert len(validation_split(2, 0.9)[0]) == 1  # at least one row left to train on
    with pytest.raises(ValueError, match="at least 2 rows"):
        validation_split(1, 0.5)
    with pytest.raises(ValueError, match="fraction"):
        validation_split(10, 1.0)


def test_early_stopping_counts_evaluations_without_improvement():
    stopper = EarlyStopping(patience=2, min_delta=0.01)
    assert stopper.update(10, 1.0) and stopper.update(20, 0.5)
    assert not stopper.update(30, 0.499)  # less than 1% better: no improvement
    assert not stopper.should_stop
    assert not stopper.update(40, 0.7)
    assert stopper.should_stop and stopper.best_step == 20 and stopper.best_loss == 0.5
    rebuilt = EarlyStopping(patience=2, min_delta=0.01, history=stopper.history)
    assert (rebuilt.best_step, rebuilt.should_stop) == (20, True)
    assert not EarlyStopping(patience=0, history=[(1, 1.0), (2, 2.0), (3, 3.0)]).should_stop


def test_locdiff_stops_on_a_flat_validation_loss_and_restores_its_best_step(
    tmp_path, clusters, tiny_config
):
    """With a learning rate of ~0 the validation loss cannot improve: training stops after
    ``patience`` evaluations, well before the cap, and inference uses the best step."""
    config = override(
        tiny_config,
        **{"train.learning_rate": 1e-12, "train.eval_every": 2, "train.patience": 2},
        **{"train.steps": 100, "train.checkpoint_every": 1000, "train.keep": 1},
    )
    workdir = str(tmp_path / "run")
    seen = []
    trainer.train(
        config, clusters.train, workdir, progress=False, on_eval=lambda s, g, p: seen.append(s)
    )
    record = trainer.read_progress(workdir)
    assert record["stopped_early"] and record["step"] == 6 and seen == [2, 4, 6]
    assert [s for s, _ in record["evals"]] == [2, 4, 6] and record["best_step"] == 2
    assert record["samples_seen"] == 6 * 64 and record["train_seconds"] > 0
    meta = files.read_json(RunDir(workdir).data)
    assert meta["validation_rows"] == 50 and meta["train_rows"] == 950
    steps = sorted(int(s) for s in os.listdir(RunDir(workdir).checkpoints))
    assert 2 in steps and 6 in steps  # the best kept beside the latest
    best = Geolocator.from_checkpoint(workdir)  # restores the best step's EMA, not the latest
    latest = Geolocator.from_checkpoint(workdir, step=6)
    differ = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                          best.params, latest.params)  # fmt: skip
    assert any(jax.tree.leaves(differ))
    again = Geolocator.from_checkpoint(workdir, step=2)
    same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b)), best.params, again.params)
    assert all(jax.tree.leaves(same))
    # Running again on a stopped run trains no further.
    trainer.train(config, clusters.train, workdir, progress=False)
    assert trainer.read_progress(workdir)["step"] == 6


def test_baseline_stops_early_records_its_budget_and_reports_curves(tmp_path, clusters):
    config = methods.BaselineConfig(
        hidden=32, steps=5000, batch_size=64, learning_rate=3e-3, eval_every=50, patience=2
    )
    points = []
    locator = methods.train_method(
        "regression", clusters.train, str(tmp_path / "reg"), config=config, progress=False,
        on_eval=lambda step, loc: points.append((step, loc.predict(clusters.test_emb).top1)),
    )  # fmt: skip
    meta = locator.meta
    assert meta["stopped_early"] and meta["steps"] < 5000
    assert meta["steps"] == meta["evals"][-1][0] and meta["best_step"] < meta["steps"]
    assert meta["samples_seen"] == 64 * meta["steps"]
    assert meta["epochs"] == pytest.approx(64 * meta["steps"] / 950)
    assert [s for s, _ in points] == [s for s, _ in meta["evals"]]
    # The curve's locators are snapshots: the first differs from the last.
    assert not np.allclose(points[0][1], points[-1][1])
    # The saved model is the best evaluation's, not the last one's.
    best = dict((s, p) for s, p in points)[meta["best_step"]]
    saved = methods.load_locator(str(tmp_path / "reg")).predict(clusters.test_emb).top1
    np.testing.assert_allclose(saved, best, atol=1e-3)


def test_pipeline_draws_only_the_training_rows(clusters):
    source = data.open_dataset(clusters.train)
    train, val = validation_split(len(source), 0.05)
    it = iter(data.make_pipeline(source, batch_size=100, seed=0, rows=train))
    seen = np.concatenate([next(it)["latlon"] for _ in range(19)])  # two epochs of 950
    held_out = {tuple(r) for r in source.latlon[val]}
    assert not any(tuple(r) in held_out for r in seen)
    first, second = seen[:950], seen[950:1900]
    assert sorted(map(tuple, first)) == sorted(map(tuple, source.latlon[train]))
    assert not np.array_equal(first, second) and len(second) == 950

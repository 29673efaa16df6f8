"""The learned baselines on the one trainer: shard directories, resumption, the saved network."""

import json

import numpy as np
import pytest
from flax import nnx

from locdiff import cli, methods
from locdiff.data import datasets as data
from locdiff.io import files
from locdiff.io.rundir import RunDir
from locdiff.methods import cells, regression
from locdiff.methods.network import NetworkObjective, network_arrays, train_network
from locdiff.training import trainer
from locdiff.training.checkpoints import restore_params

SMALL = {  # --set of each baseline: a network of seconds
    "cells": ["model.hidden=16", "model.depth=1", "model.partitions=[[20, 200]]"],
    "regression": ["model.hidden=16", "model.depth=1"],
    "coords-diffusion": ["model.hidden=16", "model.depth=1", "model.num_samples=4",
                         "model.flow_steps=2"],
    "geotoken": ["model.hidden=16", "model.depth=1", "model.width=16", "model.layers=1",
                 "model.heads=2", "model.memory=1", "model.levels=4", "model.beam_width=3"],
    "geotoken-rag": ["model.hidden=16", "model.depth=1", "model.width=16", "model.layers=1",
                     "model.heads=2", "model.memory=1", "model.levels=4", "model.beam_width=3",
                     "model.neighbours=2"],
}  # fmt: skip


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """2,000 MP16-like rows of 16-d float16 embeddings in four ``.npz`` shards."""
    out = tmp_path_factory.mktemp("syn") / "shards"
    args = ["synthetic", str(out), "--rows", "2000", "--dim", "16", "--shard-rows", "500"]
    assert cli.main([*args, "--no-progress"]) == 0
    return str(out)


def test_every_learned_baseline_trains_and_resumes_from_a_shard_directory(shards, tmp_path):
    learned = [m for m in methods.METHODS if methods.module(m).LEARNED]
    assert set(learned) - {"locdiff", "locdiff-h"} == set(SMALL)  # LocDiff: test_streaming
    for method, settings in SMALL.items():
        workdir = tmp_path / method
        args = ["train", "--method", method, "--train", shards, "--workdir", str(workdir)]
        args += ["--batch-size", "32", "--no-progress"]
        args += [x for s in [*settings, "train.validation_fraction=0"] for x in ("--set", s)]
        assert cli.main([*args, "--steps", "6"]) == 0, method
        assert trainer.read_progress(str(workdir))["step"] == 6
        assert cli.main([*args, "--steps", "10"]) == 0, method  # resumes at step 6
        record = trainer.read_progress(str(workdir))
        assert record["step"] == 10 and record["samples_seen"] == 320
        with open(RunDir(str(workdir)).metrics) as f:
            steps = [json.loads(line)["step"] for line in f]
        assert steps == sorted(set(steps)) and steps[-1] == 10  # no step run twice
        locator = methods.load_locator(str(workdir))
        x = data.open_dataset(shards).take(np.arange(5))["embedding"]
        top = locator.predict(np.asarray(x, np.float32), top_k=2).latlon
        assert top.shape == (5, 2, 2) and np.isfinite(top).all()


class Killed(Exception):
    """The process dies: nothing is saved after the last checkpoint."""


def test_a_baseline_killed_mid_epoch_resumes_to_the_same_parameters(shards, tmp_path):
    config = methods.BaselineConfig(hidden=16, depth=1, steps=24, batch_size=32)
    config = methods.assign(
        config.for_method("cells"),
        **{"model.partitions": [[20, 200]], "train.checkpoint_every": 8},
        **{"train.validation_fraction": 0.0},
    )
    straight = methods.train_method("cells", shards, str(tmp_path / "a"), config=config,
                                    progress=False)  # fmt: skip

    def die_at_13(step, metrics):  # 62 steps to an epoch: mid-epoch, after step 8's save
        if step == 13:
            raise Killed

    latlon = data.locations(data.open_dataset(shards))
    objective = cells.objective(config, cells.Hierarchy.build(latlon, ((20, 200),))[0])
    killed = str(tmp_path / "b")
    with pytest.raises(Killed):
        trainer.train(config, shards, killed, objective=objective, on_step=die_at_13,
                      progress=False)  # fmt: skip
    assert trainer.read_progress(killed)["step"] == 8
    resumed = methods.train_method("cells", shards, killed, config=config, progress=False)
    a = files.load_npz(RunDir(str(tmp_path / "a")).params)
    b = files.load_npz(RunDir(killed).params)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    x = np.asarray(data.open_dataset(shards).take(np.arange(50))["embedding"], np.float32)
    np.testing.assert_array_equal(straight.locate(x), resumed.locate(x))


def test_the_saved_network_standardises_as_the_trainer_did(shards, tmp_path):
    """In training the trainer standardises the conditions; the saved network carries
    the same statistics and applies them itself: its answer on raw embeddings is the
    training network's on standardised ones."""
    config = methods.BaselineConfig(hidden=16, depth=1, steps=5, batch_size=32)
    locator = methods.train_method("regression", shards, str(tmp_path / "r"),
                                   config=config, progress=False)  # fmt: skip
    stats = files.load_npz(RunDir(str(tmp_path / "r")).condition_stats)
    x = np.asarray(data.open_dataset(shards).take(np.arange(20))["embedding"], np.float32)
    assert np.abs(stats["mean"]).max() > 0.01  # not the identity: the test can tell
    assert np.abs(stats["std"] - 1).max() > 0.01
    model = locator.model
    np.testing.assert_allclose(np.asarray(model.trunk.mean[...]), stats["mean"])
    np.testing.assert_allclose(np.asarray(model.trunk.std[...]), stats["std"])
    training = regression.objective(locator.config).init(16, nnx.Rngs(0))
    nnx.update(training, nnx.state(model, nnx.Param))
    z = (x - stats["mean"]) / stats["std"]
    np.testing.assert_allclose(np.asarray(training(z)), np.asarray(model(x)), rtol=1e-5, atol=1e-6)


class Contrary(NetworkObjective):
    """Regression whose validation loss is the negated training loss: the better the
    network fits, the worse it validates, so the best evaluation is the first."""

    def loss_terms(self, model, batch, key, *, train: bool = True):
        loss, terms = super().loss_terms(model, batch, key, train=train)
        return (loss if train else -loss), terms


def test_the_saved_network_is_the_best_checkpoints(shards, tmp_path):
    """params.npz holds the parameters of the step of the lowest validation loss, not
    the last step's."""
    config = methods.BaselineConfig(hidden=16, depth=1, steps=60, batch_size=32,
                                    eval_every=10, patience=3).for_method("regression")  # fmt: skip
    objective = Contrary("regression", config, regression.objective(config).build,
                         regression.loss)  # fmt: skip
    run = RunDir(str(tmp_path / "r"))
    train_network(objective, shards, run, lambda model: model, progress=False)
    record = trainer.read_progress(run.path)
    assert record["best_step"] == 10 and record["step"] == 40  # stopped after 3 worse
    saved = files.load_npz(run.params)
    for step, same in ((10, True), (40, False)):
        _, params = restore_params(run.path, config, 16, objective=objective, step=step)
        trained = {k: v for k, v in network_arrays(params, (0, 1)).items() if "trunk/m" not in k
                   and "trunk/s" not in k}  # fmt: skip
        assert all(np.array_equal(saved[k], v) for k, v in trained.items()) == same, step


def test_cells_labels_in_the_step_are_the_partitions(shards):
    """The tree finds, inside the jitted step, the cell the partition put each training
    location in (float32 splits, ties at the medians included)."""
    import jax
    import jax.numpy as jnp

    latlon = data.locations(data.open_dataset(shards)).astype(np.float64)
    for lo, hi in ((20, 200), (5, 30)):
        part = cells.adaptive_cells(latlon, min_count=lo, max_count=hi)
        in_step = jax.jit(lambda x, tree=part.tree: tree.labels(x, jnp))(jnp.asarray(latlon))
        np.testing.assert_array_equal(np.asarray(in_step), part.labels)
        members = [np.flatnonzero(part.labels == c) for c in range(len(part.counts))]
        assert all(len(m) >= lo for m in members) and len(members) > 10

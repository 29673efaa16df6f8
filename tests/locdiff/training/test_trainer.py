import json
import os

import jax
import numpy as np
import pytest

from locdiff import cli
from locdiff.config import Config, override
from locdiff.data import datasets as data
from locdiff.io.rundir import RunDir
from locdiff.training import sharding, trainer
from locdiff.training.step import init_state, jit_train_step, make_optimizer

TINY = {
    "model.L": 6,
    "model.hidden": 64,
    "model.depth": 2,
    "model.film_dim": 32,
    "model.time_dim": 16,
    "train.batch_size": 32,
    "train.learning_rate": 2e-3,
    "train.warmup_steps": 10,
    "train.log_every": 10,
    "train.checkpoint_every": 10,
}


@pytest.fixture
def dataset(tmp_path):
    emb, latlon = data.synthetic_clustered(512, n_clusters=4, embed_dim=8, seed=0)
    path = str(tmp_path / "train.npz")
    data.save_npz(path, emb, latlon)
    return path


def _config(**changes):
    return override(Config(), **{**TINY, **changes})


def _read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def _leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state.params))]


def test_cli_smoke_loss_falls_checkpoints_appear_and_rerun_resumes(tmp_path, dataset):
    workdir = str(tmp_path / "run")
    config_path = str(tmp_path / "config.json")
    _config().save(config_path)
    args = [
        "train",
        "--train",
        dataset,
        "--workdir",
        workdir,
        "--config",
        config_path,
        "--no-progress",
    ]
    assert cli.main([*args, "--steps", "60"]) == 0
    lines = _read_lines(os.path.join(workdir, "metrics.jsonl"))
    assert [x["step"] for x in lines] == [10, 20, 30, 40, 50, 60]
    assert lines[-1]["loss"] < 0.5 * lines[0]["loss"]
    assert {"loss", "mse", "grad_norm", "learning_rate", "samples_per_s"} <= set(lines[0])
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))[-1] == "60"
    with open(os.path.join(workdir, "versions.json")) as f:
        assert json.load(f)["jax"] == jax.__version__
    # a second call resumes: only the new steps run
    assert cli.main([*args, "--steps", "70"]) == 0
    lines = _read_lines(os.path.join(workdir, "metrics.jsonl"))
    assert [x["step"] for x in lines][-2:] == [60, 70]


def _assert_crash_and_resume_reproduce(config, data_path, tmp_path, *, crash_at: int):
    """A run crashed at step ``crash_at`` and resumed ends with the uninterrupted run's
    parameters, bit for bit."""
    _, straight = trainer.train(config, data_path, str(tmp_path / "a"), progress=False)

    def crash(step, metrics):
        if step == crash_at:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.train(config, data_path, str(tmp_path / "b"), progress=False, on_step=crash)
    _, resumed = trainer.train(config, data_path, str(tmp_path / "b"), progress=False)
    assert int(resumed.step) == config.train.steps
    for x, y in zip(_leaves(straight), _leaves(resumed), strict=True):
        np.testing.assert_array_equal(x, y)


def test_resume_after_a_crash_reproduces_the_uninterrupted_run(tmp_path, dataset):
    config = _config(**{"train.steps": 30, "diffusion.loss": "mse+kl"})
    _assert_crash_and_resume_reproduce(config, dataset, tmp_path, crash_at=17)  # from step 10


def test_a_resumed_run_keeps_its_best_checkpoint(tmp_path, dataset):
    """The checkpoint of the best validation loss outlives ``train.keep`` newer ones, also
    when it was saved before a resume (the run is restored from it)."""
    workdir = str(tmp_path / "run")
    changes = {"train.eval_every": 10, "train.keep": 1, "train.patience": 0}
    trainer.train(_config(**changes, **{"train.steps": 20}), dataset, workdir, progress=False)
    path = RunDir(workdir).training
    with open(path) as f:
        record = json.load(f)
    best = record["best_step"]  # made unbeatable: no later evaluation improves on it
    record["evals"] = [[s, -1.0 if s == best else v] for s, v in record["evals"]]
    with open(path, "w") as f:
        json.dump(record, f)
    trainer.train(_config(**changes, **{"train.steps": 50}), dataset, workdir, progress=False)
    assert trainer.read_progress(workdir)["best_step"] == best
    manager = trainer.checkpoint_manager(workdir)
    assert manager.all_steps() == [best, 50]  # the best, and the latest one
    manager.close()
    import shutil

    from locdiff.infer.geolocator import Geolocator

    shutil.rmtree(os.path.join(RunDir(workdir).checkpoints, str(best)))
    with pytest.warns(UserWarning, match=f"best validation loss \\(step {best}\\) is gone"):
        Geolocator.from_checkpoint(workdir)  # the latest instead, said aloud


# Run in a fresh process: the 8 simulated devices must exist before JAX starts, and the
# rest of the suite runs on one device (faster to compile).
EIGHT_DEVICES = """
import json, sys
import jax, numpy as np
from locdiff.data import datasets as data
from locdiff.training import sharding
from locdiff.config import Config, override
from locdiff.training.step import init_state, jit_train_step, make_optimizer

config = override(Config(), **json.loads(sys.argv[1]))
source = data.open_dataset(sys.argv[2])
batch = next(iter(data.make_pipeline(source, batch_size=32, seed=0)))
tx, schedule = make_optimizer(config)
results = []
for devices in (jax.devices()[:1], jax.devices()[:8]):
    mesh = sharding.make_mesh(devices)
    graphdef, state = init_state(config, source.embed_dim, tx)
    state = jax.device_put(state, sharding.replicated(mesh))
    step = jit_train_step(
        graphdef, tx, schedule, config, sharding.replicated(mesh), sharding.batch_sharded(mesh)
    )
    for _ in range(3):
        state, metrics = step(state, sharding.global_batch(batch, mesh), jax.random.key(0))
    spread = len(state.params["input"]["kernel"][...].sharding.device_set)
    leaves = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state.params))]
    results.append((spread, float(metrics["loss"]), leaves))
(n1, loss1, one), (n8, loss8, eight) = results
diff = max(float(np.max(np.abs(x - y) / (1e-4 * np.abs(x) + 1e-6))) for x, y in zip(one, eight))
print(json.dumps({"devices": [n1, n8], "loss": [loss1, loss8], "worst": diff}))
"""


def test_sharded_step_on_8_devices_matches_one_device(dataset, subprocess_env):
    import subprocess
    import sys

    flags = subprocess_env["XLA_FLAGS"] + " --xla_force_host_platform_device_count=8"
    env = {**subprocess_env, "XLA_FLAGS": flags}
    changes = json.dumps({**TINY, "train.steps": 5})
    result = subprocess.run(
        [sys.executable, "-c", EIGHT_DEVICES, changes, dataset],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["devices"] == [1, 8]  # the parameters really live on all 8 devices
    assert out["loss"][0] == pytest.approx(out["loss"][1], rel=1e-5)
    assert out["worst"] <= 1.0  # every parameter within rtol 1e-4, atol 1e-6


def test_train_step_compiles_once(dataset):
    config = _config()
    source = data.open_dataset(dataset)
    tx, schedule = make_optimizer(config)
    mesh = sharding.make_mesh(jax.devices()[:1])
    graphdef, state = init_state(config, source.embed_dim, tx)
    state = jax.device_put(state, sharding.replicated(mesh))
    step = jit_train_step(
        graphdef, tx, schedule, config, sharding.replicated(mesh), sharding.batch_sharded(mesh)
    )
    it = iter(data.make_pipeline(source, batch_size=32, seed=0))
    for _ in range(4):
        state, _ = step(state, sharding.global_batch(next(it), mesh), jax.random.key(0))
    assert step._cache_size() == 1


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, dataset):
    config = _config(
        **{
            "train.steps": 40,
            "train.learning_rate": 1e30,
            "train.warmup_steps": 0,
            "train.grad_clip": 1e30,
        }
    )
    with pytest.raises(trainer.NonFiniteLossError, match="last good checkpoint"):
        trainer.train(config, dataset, str(tmp_path / "run"), progress=False)
    kept = os.listdir(str(tmp_path / "run" / "checkpoints"))
    assert all(name.isdigit() for name in kept)  # nothing half-written, no non-finite state saved


def test_resume_with_a_different_model_is_refused(tmp_path):
    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    _config(**{"train.steps": 10}).save(RunDir(workdir).config)
    longer = trainer.resolve_config(workdir, _config(**{"train.steps": 20}))
    assert longer.train.steps == 20  # only the number of steps may change
    with pytest.raises(ValueError, match="model.L: stored 6, given 8"):
        trainer.resolve_config(workdir, _config(**{"train.steps": 20, "model.L": 8}))


def test_conditions_are_standardised_with_the_runs_statistics(tmp_path):
    """A run keeps its training conditions' mean/std and inference applies them, so the
    prediction for an embedding does not depend on the encoder's feature scale."""
    from locdiff.infer.geolocator import Geolocator

    emb, latlon = data.synthetic_clustered(400, n_clusters=4, embed_dim=8, seed=0)
    scaled = emb * np.linspace(1e-3, 1e3, 8)[None, :] + 5.0  # wildly different scales
    data.save_npz(str(tmp_path / "a.npz"), emb, latlon)
    data.save_npz(str(tmp_path / "b.npz"), scaled, latlon)
    tiny = override(
        Config(),
        **{"model.L": 4, "model.hidden": 32, "model.depth": 2, "model.film_dim": 16},
        **{"model.time_dim": 8, "train.steps": 3, "train.batch_size": 16},
    )
    for name in ("a", "b"):
        trainer.train(tiny, str(tmp_path / f"{name}.npz"), str(tmp_path / name), progress=False)
    stats = np.load(RunDir(str(tmp_path / "b")).condition_stats)
    np.testing.assert_allclose(stats["mean"], scaled.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats["std"], scaled.std(0), rtol=1e-4)
    a = Geolocator.from_checkpoint(str(tmp_path / "a"))
    b = Geolocator.from_checkpoint(str(tmp_path / "b"))
    # Same seed, same initialisation, same standardised batches: the same model.
    pa = a.predict(emb[:5], top_k=1, num_samples=1, sample_steps=3, seed=0)
    pb = b.predict(scaled[:5], top_k=1, num_samples=1, sample_steps=3, seed=0)
    np.testing.assert_allclose(pa.coeffs, pb.coeffs, atol=2e-4)


def test_condition_noise_is_fresh_every_step_fixed_in_validation_and_in_the_stats(
    tmp_path, dataset
):
    """``train.condition_noise``: a new Gaussian draw of the conditions at every step (a
    different step of the same batch sees different conditions), one fixed draw for the
    validation loss, and the standardisation's deviation widened to match."""
    from locdiff.training.step import add_condition_noise, make_validation_loss

    batch = {"embedding": np.zeros((64, 8), np.float32), "latlon": np.zeros((64, 2), np.float32)}
    same = add_condition_noise(batch, 0.0, jax.random.key(0))
    assert same is batch
    a = np.asarray(add_condition_noise(batch, 0.5, jax.random.key(0))["embedding"])
    b = np.asarray(add_condition_noise(batch, 0.5, jax.random.key(1))["embedding"])
    assert abs(a.std() - 0.5) < 0.05 and not np.allclose(a, b)

    noisy = _config(**{"train.condition_noise": 0.5})
    clean = _config()
    tx, _ = make_optimizer(noisy)
    graphdef, state = init_state(noisy, 8, tx)
    # FiLM starts at zero (the condition has no effect yet): perturb every parameter.
    leaves, tree = jax.tree.flatten(state.ema)
    keys = jax.random.split(jax.random.key(9), len(leaves))
    params = jax.tree.unflatten(
        tree, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    )
    val = {"embedding": np.ones((16, 8), np.float32), "latlon": np.zeros((16, 2), np.float32)}
    loss_noisy = make_validation_loss(graphdef, noisy)
    loss_clean = make_validation_loss(graphdef, clean)
    key = jax.random.key(3)
    assert float(loss_noisy(params, val, key)) == float(loss_noisy(params, val, key))
    assert float(loss_noisy(params, val, key)) != float(loss_clean(params, val, key))

    two_steps = _config(**{"train.condition_noise": 0.5, "train.steps": 2})
    trainer.train(two_steps, dataset, str(tmp_path / "run"), progress=False)
    stats = np.load(RunDir(str(tmp_path / "run")).condition_stats)
    raw = data.load_npz(dataset)["embeddings"]
    np.testing.assert_allclose(stats["std"], np.sqrt(raw.std(0) ** 2 + 0.25), rtol=1e-4)


def test_streamed_float16_shards_train_and_resume_exactly(tmp_path, monkeypatch):
    """Shards streamed from disk (float16, as ``locdiff synthetic`` writes them): a run
    killed mid-epoch and resumed equals the uninterrupted run, so its batches were too."""
    from locdiff.data.streaming import ShardedSource
    from locdiff.data.synthetic import write_synthetic

    folder = str(tmp_path / "shards")
    write_synthetic(folder, 600, dim=8, shard_rows=250, progress=False)
    monkeypatch.setattr(data, "STREAM_BYTES", 0)  # stream however small
    assert isinstance(data.open_dataset(folder), ShardedSource)
    config = _config(**{"train.steps": 30})
    _assert_crash_and_resume_reproduce(config, folder, tmp_path, crash_at=23)  # from 20


def test_two_processes_with_jax_distributed_train_like_one(tmp_path, dataset, subprocess_env):
    """``locdiff train --distributed`` in two processes (one CPU device each, gloo
    collectives, one coordinator on localhost): the run finishes, both processes read
    their own half of every global batch, and the parameters match a one-process run
    of the same global batch."""
    import socket
    import subprocess
    import sys

    from locdiff.infer.geolocator import Geolocator

    config = _config(**{"train.steps": 20, "train.eval_every": 10})
    config.save(str(tmp_path / "config.json"))
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    workdir = str(tmp_path / "two")
    command = [
        sys.executable, "-m", "locdiff.cli", "train", "--train", dataset, "--workdir", workdir,
        "--config", str(tmp_path / "config.json"), "--no-progress", "--distributed",
        "--coordinator", f"localhost:{port}", "--num-processes", "2",
    ]  # fmt: skip
    children = [
        subprocess.Popen(
            [*command, "--process-id", str(i)],
            env=subprocess_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    outputs = [child.communicate(timeout=300)[0] for child in children]
    assert [c.returncode for c in children] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    trainer.train(config, dataset, str(tmp_path / "one"), progress=False)
    two = Geolocator.from_checkpoint(workdir, step=20)
    one = Geolocator.from_checkpoint(str(tmp_path / "one"), step=20)
    for x, y in zip(jax.tree.leaves(one.params), jax.tree.leaves(two.params), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)


def test_data_on_the_device_trains_exactly_like_data_from_the_host(tmp_path, dataset):
    """``train.data_on_device``: the batches gathered on the device by row number are
    the host pipeline's, so the runs end with the same parameters, bit for bit."""
    config = _config(**{"train.steps": 12})
    _, host = trainer.train(config, dataset, str(tmp_path / "host"), progress=False)
    on_device = _config(**{"train.steps": 12, "train.data_on_device": True})
    _, device = trainer.train(on_device, dataset, str(tmp_path / "device"), progress=False)
    for x, y in zip(_leaves(host), _leaves(device), strict=True):
        np.testing.assert_array_equal(x, y)
    source = data.open_dataset(dataset)
    rows = next(iter(data.make_pipeline(source, batch_size=32, seed=0, indices=True)))["rows"]
    batch = next(iter(data.make_pipeline(source, batch_size=32, seed=0)))
    np.testing.assert_array_equal(source.embeddings[rows], batch["embedding"])
    np.testing.assert_array_equal(data.all_rows(source, block=100)["latlon"], source.latlon)


def test_several_steps_per_call_train_exactly_like_one(tmp_path, dataset):
    """``train.steps_per_call``: the scanned steps are the single steps, bit for bit, on
    host and device data; logs, evaluations and the end fall between calls (23 steps,
    a log every 10, an evaluation every 15, calls of 4), and a run may resume with
    another number per call."""
    changes = {"train.steps": 23, "train.eval_every": 15, "train.checkpoint_every": 100}
    _, one = trainer.train(_config(**changes), dataset, str(tmp_path / "one"), progress=False)
    runs = {
        "host": {"train.steps_per_call": 4},
        "device": {"train.steps_per_call": 4, "train.data_on_device": True},
    }
    calls = []
    for name, extra in runs.items():
        config = _config(**changes, **extra)
        _, state = trainer.train(
            config, dataset, str(tmp_path / name), progress=False,
            on_step=lambda step, metrics: calls.append(step),
        )  # fmt: skip
        for x, y in zip(_leaves(one), _leaves(state), strict=True):
            np.testing.assert_array_equal(x, y)
        lines = _read_lines(os.path.join(str(tmp_path / name), "metrics.jsonl"))
        assert [x["step"] for x in lines] == [10, 15, 20, 23]
    assert calls[:4] == [4, 8, 9, 10]  # 4 + 4, then single steps up to the log at 10
    longer = _config(**{**changes, "train.steps": 30, "train.steps_per_call": 2})
    _, resumed = trainer.train(longer, dataset, str(tmp_path / "host"), progress=False)
    assert int(resumed.step) == 30


def test_an_interrupt_inside_a_call_rewinds_the_batches_it_drew(tmp_path, dataset, monkeypatch):
    """Ctrl-C while a call of 4 steps runs: the checkpoint holds the state before the
    call and the data iterator rewound to match, so the resumed run is the straight one."""
    config = _config(
        **{"train.steps": 20, "train.steps_per_call": 4, "train.log_every": 20,
           "train.checkpoint_every": 100, "train.validation_fraction": 0.0}
    )  # fmt: skip
    _, straight = trainer.train(config, dataset, str(tmp_path / "a"), progress=False)
    real, calls = trainer.jit_train_step, []

    def interrupted_at_the_third_call(*args, **kwargs):
        step = real(*args, **kwargs)

        def run(*inputs):
            calls.append(1)
            if len(calls) == 3:  # steps 8-12: the batches are drawn, the step is not done
                raise KeyboardInterrupt
            return step(*inputs)

        return run

    monkeypatch.setattr(trainer, "jit_train_step", interrupted_at_the_third_call)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(config, dataset, str(tmp_path / "b"), progress=False)
    monkeypatch.undo()
    assert sorted(os.listdir(str(tmp_path / "b" / "checkpoints"))) == ["8"]
    _, resumed = trainer.train(config, dataset, str(tmp_path / "b"), progress=False)
    for x, y in zip(_leaves(straight), _leaves(resumed), strict=True):
        np.testing.assert_array_equal(x, y)

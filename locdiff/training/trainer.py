"""Training: ``train(config, data_path, workdir)`` runs, checkpoints and resumes a run.

One loop for every learned method: a method gives its network and its loss (an
:class:`locdiff.training.step.Objective`; LocDiff's by default), the loop gives the rest,
the same for all. The run directory holds ``config.json``, ``versions.json`` and
``data.json`` (the method, the training data's path, rows and embedding width; written
at the start),
``condition_stats.npz`` (per-feature mean and standard deviation of the training
conditions, which standardise every condition in training and in inference),
``metrics.jsonl`` (one line every ``log_every`` steps: loss, its terms, gradient norm,
learning rate, samples/s) and ``checkpoints/`` (Orbax: the train state and the Grain
iterator state together, saved asynchronously every ``checkpoint_every`` steps, at the
end and on Ctrl-C, ``keep`` of them kept). Running again on the same directory resumes
from the latest checkpoint and continues exactly as if it had never stopped. A
non-finite loss stops the run with a clear message; the last good checkpoint stays.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from locdiff.data import datasets as data
from locdiff.errors import NonFiniteLossError, RunError
from locdiff.io import files
from locdiff.io.provenance import versions
from locdiff.io.rundir import RunDir
from locdiff.training import sharding
from locdiff.training.checkpoints import (
    History,
    KeepStep,
    checkpoint_manager,
    read_progress,
    restore,
)
from locdiff.training.early_stopping import validation_split
from locdiff.training.step import (
    Objective,
    init_state,
    jit_train_step,
    make_optimizer,
    make_validation_loss,
    objective_memory,
    objective_of,
)

# Train settings a resumed run may change: the cap, and how (not what) the steps run.
RESUMABLE = ("steps", "steps_per_call", "data_on_device")


def resolve_config(workdir: str, config):
    """The config of a run: ``config``, or the one stored in ``workdir`` when resuming.

    On resume only ``train.steps`` (to train longer) and the settings of how the steps
    are run, not what they compute (``RESUMABLE``), may change; any other difference
    raises ``ValueError``, because the checkpoint could not be continued exactly.
    """
    path = RunDir(workdir).config
    if not os.path.exists(path):
        return config
    stored = type(config).load(path)
    mine, theirs = config.to_dict(), stored.to_dict()
    for name in RESUMABLE:
        mine["train"][name] = theirs["train"].get(name, mine["train"][name])
    if mine != theirs:
        diff = [
            f"{s}.{k}: stored {theirs[s][k]!r}, given {mine[s][k]!r}"
            for s in theirs
            for k in theirs[s]
            if theirs[s][k] != mine[s][k]
        ]
        raise ValueError(
            f"{workdir} holds a run with a different config ({'; '.join(diff)}); "
            "resume with the same settings or use a new --workdir"
        )
    given = {name: getattr(config.train, name) for name in RESUMABLE}
    return type(config).from_dict({**theirs, "train": {**theirs["train"], **given}})


def _condition_stats(run: RunDir, source, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """The run's condition standardisation: computed once, kept in the run directory
    (with ``train.condition_noise``, the deviation of the noisy conditions)."""
    path = run.condition_stats
    if not os.path.exists(path):
        mean, std = data.condition_stats(source)
        std = np.sqrt(std.astype(np.float64) ** 2 + noise**2).astype(std.dtype)
        if jax.process_index() == 0:
            files.save_npz(path, mean=mean, std=std)
        return mean, std
    stats = files.load_npz(path)
    mean, std = stats["mean"], stats["std"]
    if mean.shape != (source.embed_dim,):
        raise ValueError(
            f"{path} is for {mean.shape[0]}-d conditions but the data are {source.embed_dim}-d"
        )
    return mean, std


MAX_VALIDATION_ROWS = 2048  # the validation loss is computed on at most this many rows


def _validation_batch(source, rows: np.ndarray) -> dict[str, np.ndarray] | None:
    """The validation rows' raw conditions, locations and row numbers (the first
    ``MAX_VALIDATION_ROWS`` of them)."""
    rows = rows[:MAX_VALIDATION_ROWS]
    if len(rows) == 0:
        return None
    return {**source.take(rows), "rows": np.asarray(rows, np.int32)}


def _check_batch_size(batch_size: int, mesh) -> None:
    n_devices = mesh.devices.size
    if batch_size % n_devices:
        raise ValueError(
            f"train.batch_size={batch_size} must be divisible by the {n_devices} devices"
        )
    if batch_size % jax.process_count():
        raise ValueError(
            f"train.batch_size must be divisible by the {jax.process_count()} processes"
        )


def _write_run_files(run: RunDir, config, method: str, data_path, source, mesh, rows) -> None:
    """``config.json``, ``versions.json`` and ``data.json`` (on the first process)."""
    if jax.process_index() != 0:
        return
    train_rows, val_rows = rows
    config.save(run.config)
    files.write_json(run.versions, {**versions(), "devices": [str(d) for d in mesh.devices.flat]})
    files.write_json(
        run.data,
        {
            "method": method,
            "data": os.path.abspath(data_path),
            "rows": len(source),
            "train_rows": len(train_rows),
            "validation_rows": len(val_rows),
            "embed_dim": source.embed_dim,
            "encoder": source.encoder,
        },
    )


def _draw(iterator, k: int, mesh) -> dict:
    """The next batch on the mesh; with ``k > 1``, ``k`` batches stacked (``[k, B, ...]``)."""
    if k == 1:
        return sharding.global_batch(next(iterator), mesh)
    batches = [next(iterator) for _ in range(k)]
    batch = {name: np.stack([b[name] for b in batches]) for name in batches[0]}
    return sharding.global_batch(batch, mesh, stacked=True)


class _Loop:
    """One training run in motion: the state, the data iterator, the checkpoints and the
    history, and the steps that move them (:func:`train` drives it)."""

    def __init__(self, config, data_path: str, workdir: str, mesh, objective: Objective | None):
        os.makedirs(workdir, exist_ok=True)
        self.workdir, self.run = workdir, RunDir(workdir)
        objective = objective_of(config, objective)
        started = self.run.trained_method
        if started is not None and started != objective.method:
            raise RunError(f"{workdir} holds a {started} run; train {objective.method} elsewhere")
        self.config = config = resolve_config(workdir, config)
        self.source = source = data.open_dataset(data_path)  # checked before anything else
        self.mesh = mesh = sharding.make_mesh() if mesh is None else mesh
        self.t = t = config.train
        _check_batch_size(t.batch_size, mesh)
        self.train_rows, val_rows = validation_split(len(source), t.validation_fraction)
        rows = (self.train_rows, val_rows)
        _write_run_files(self.run, config, objective.method, data_path, source, mesh, rows)
        cond_stats = _condition_stats(self.run, source, t.condition_noise)
        tx, schedule = make_optimizer(config)
        self.graphdef, state = init_state(config, source.embed_dim, tx, objective)
        state = jax.device_put(state, sharding.replicated(mesh))
        self.iterator = iter(
            data.make_pipeline(
                source,
                batch_size=t.batch_size // jax.process_count(),
                seed=t.seed,
                rows=self.train_rows,
                process_index=jax.process_index(),
                process_count=jax.process_count(),
                indices=t.data_on_device,
            )
        )
        self.table = ()
        if t.data_on_device:  # the whole data set on every device, filled block by block
            take = lambda a, b: source.take(np.arange(a, b))  # noqa: E731
            self.table = (sharding.replicate_blocks(len(source), take, mesh),)
        record = read_progress(workdir)
        keep = KeepStep(record.get("best_step"))  # updated before each save
        self.manager = checkpoint_manager(workdir, config, keep)
        self.state = restore(self.manager, state, self.iterator)
        self.start = int(self.state.step)
        self.history = History.resume(record, self.start, t.patience, keep)
        self.memory = ()  # the objective's own arrays, on the devices once
        arrays = objective_memory(objective)
        if arrays is not None:
            self.memory = (jax.device_put(arrays, sharding.replicated(mesh)),)
        self.val_batch = _validation_batch(source, val_rows)
        self.val_loss = None
        if self.val_batch:
            self.val_loss = make_validation_loss(
                self.graphdef, config, cond_stats, objective=objective
            )
        self.val_key, self.key = jax.random.key(t.seed + 1), jax.random.key(t.seed)
        shardings = (sharding.replicated(mesh), sharding.batch_sharded(mesh))
        args = (self.graphdef, tx, schedule, config, *shardings, cond_stats)
        self.step_fns = {  # the single step, and train.steps_per_call of them in one call
            k: jit_train_step(
                *args,
                on_device=t.data_on_device,
                steps=k,
                objective=objective,
                memory=bool(self.memory),
            )  # fmt: skip
            for k in {1, t.steps_per_call}
        }
        self.events = [t.log_every, t.checkpoint_every] + ([t.eval_every] if self.val_loss else [])

    def steps_in_call(self, step: int) -> int:
        """``train.steps_per_call``, or 1 where a log, evaluation, save or the end falls
        inside the next ``steps_per_call`` steps (they happen between calls)."""
        t = self.t
        following = min([t.steps] + [step + every - step % every for every in self.events])
        return t.steps_per_call if following - step >= t.steps_per_call else 1

    def call(self, step: int, k: int):
        """Run steps ``step + 1 .. step + k``; returns their metrics."""
        position = self.iterator.get_state()  # to rewind to if interrupted mid-call
        try:
            batch = _draw(self.iterator, k, self.mesh)
            self.state, metrics = self.step_fns[k](
                self.state, batch, self.key, *self.table, *self.memory
            )
        except KeyboardInterrupt:  # batches drawn for a step that did not happen
            self.iterator.set_state(position)
            raise
        return metrics

    def save(self, step: int) -> None:
        self.history.keep.step = self.history.stopper.best_step
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(self.state),
                data=grain.checkpoint.CheckpointSave(self.iterator),
            ),
            force=True,
        )
        record = self.history.record(step, self.t.batch_size, len(self.train_rows))
        if jax.process_index() == 0:
            files.write_json(self.run.training, record)

    def check_finite(self, values: dict, step: int) -> None:
        if not np.isfinite(values["loss"]):
            raise NonFiniteLossError(
                f"loss is {values['loss']} at step {step}; stopping. The last good "
                f"checkpoint (step {self.manager.latest_step()}) is kept in "
                f"{self.workdir}/checkpoints; lower train.learning_rate or check the data"
            )

    def evaluate(self, step: int) -> float:
        loss = float(self.val_loss(self.state.ema, self.val_batch, self.val_key, *self.memory))
        self.history.stopper.update(step, loss)
        return loss

    def log(self, values: dict, step: int) -> None:
        if jax.process_index() == 0:
            with open(self.run.metrics, "a") as f:
                f.write(json.dumps({"step": step, **values, "time": time.time()}) + "\n")

    def interrupted(self, step: int, metrics) -> None:
        """Ctrl-C: save the last finished step (if new and finite) to resume from."""
        if step == self.start:
            return
        loss = float(jax.device_get(metrics["loss"]))
        if np.isfinite(loss) and self.manager.latest_step() != step:
            self.save(step)
            where = f"{self.workdir}/checkpoints"
            print(f"\ninterrupted: saved step {step} to {where}; run again to resume")

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def train(
    config,
    data_path: str,
    workdir: str,
    *,
    objective: Objective | None = None,
    mesh=None,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
    on_eval: Callable[[int, object, object], None] | None = None,
):
    """Train (or resume) a run of any learned method; returns the final ``(graphdef,
    state)``. The method is ``objective`` (:class:`locdiff.training.step.Objective`: its
    network and its loss), by default LocDiff's for a LocDiff :class:`Config`; ``config``
    is the method's config, whose ``train`` section the loop reads.

    With ``train.validation_fraction > 0`` a validation slice of the data is held out,
    its loss (EMA parameters, fixed noise draws) is computed every ``train.eval_every``
    steps and at the end, each evaluation is a checkpoint, and training stops after
    ``train.patience`` evaluations without improvement; ``training.json`` names the best
    step, which :meth:`locdiff.infer.geolocator.Geolocator.from_checkpoint` restores.

    Args:
      config: the run's configuration (compared with the stored one on resume).
      objective: the method's network and loss (default: LocDiff's, from ``config``).
      data_path: training data, an ``.npz`` file or a directory of shards.
      workdir: run directory (created if missing).
      mesh: device mesh (default: all devices, data-parallel).
      progress: show a progress bar.
      on_step: called after every call of the jitted step (every step, or every
        ``train.steps_per_call``) with ``(step, metrics)``; exceptions propagate (a crash
        mid-run loses only the steps since the last checkpoint).
      on_eval: called after every validation evaluation with ``(step, graphdef, ema)``
        (for learning curves); its time is not counted as training time.
    """
    loop = _Loop(config, data_path, workdir, mesh, objective)
    t, step, metrics = loop.t, loop.start, None
    bar = tqdm(total=t.steps, initial=step, disable=not progress, desc="train", unit="step")
    window = [time.perf_counter(), 0]  # start and steps of the samples/s window
    try:
        while step < t.steps and not loop.history.stopper.should_stop:
            tick = time.perf_counter()
            k = loop.steps_in_call(step)
            metrics = loop.call(step, k)
            step += k
            window[1] += k
            bar.update(k)
            if on_step is not None:
                on_step(step, metrics)
            log_due, eval_due, save_due = _events_due(loop, step)
            if log_due or save_due:
                _between_calls(loop, step, metrics, window, bar, log_due, eval_due)
            loop.history.train_seconds += time.perf_counter() - tick
            if save_due:
                loop.save(step)
                if eval_due and on_eval is not None:
                    on_eval(step, loop.graphdef, loop.state.ema)
            if log_due or save_due:
                window[0] = time.perf_counter()
        stopper = loop.history.stopper
        if stopper.should_stop and progress:
            bar.write(
                f"stopped at step {step}: no better validation loss in {t.patience} "
                f"evaluations; the best is step {stopper.best_step}"
            )
    except KeyboardInterrupt:
        loop.interrupted(step, metrics)
        raise
    finally:
        bar.close()
        loop.close()
    return loop.graphdef, loop.state


def _due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


def _events_due(loop: _Loop, step: int) -> tuple[bool, bool, bool]:
    """``(log, evaluation, save)`` due after ``step`` (an evaluation is also a save)."""
    t = loop.t
    eval_due = loop.val_loss is not None and _due(step, t.eval_every, t.steps)
    save_due = eval_due or _due(step, t.checkpoint_every, t.steps)
    return _due(step, t.log_every, t.steps), eval_due, save_due


def _between_calls(loop: _Loop, step: int, metrics, window: list, bar, log_due, eval_due):
    """The work between two calls at ``step`` where a log or a save is due: check the
    loss, evaluate and log where due."""
    t = loop.t
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    loop.check_finite(values, step)
    values["samples_per_s"] = window[1] * t.batch_size / (time.perf_counter() - window[0])
    window[1] = 0
    if eval_due:
        values["val_loss"] = loop.evaluate(step)
    bar.set_postfix(loss=f"{values['loss']:.4g}", sps=f"{values['samples_per_s']:.0f}")
    if log_due or eval_due:
        loop.log(values, step)

"""Training: ``train(config, data_path, workdir)`` runs, checkpoints and resumes a LocDiff run.

The run directory holds ``config.json``, ``versions.json`` and ``data.json`` (the
training data's path, rows and embedding width; written at the start),
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

import dataclasses
import json
import os
import time
from collections.abc import Callable

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import orbax.checkpoint.checkpoint_managers as ocp_policies
from tqdm.auto import tqdm

from locdiff import data, files, sharding
from locdiff.config import Config
from locdiff.early_stopping import EarlyStopping, validation_split
from locdiff.errors import NonFiniteLossError
from locdiff.provenance import versions
from locdiff.rundir import RunDir
from locdiff.train_step import (
    init_state,
    jit_train_step,
    make_optimizer,
    make_validation_loss,
)


@dataclasses.dataclass
class KeepStep:
    """Orbax preservation policy: keep the checkpoint of ``step`` (the early-stopping
    best, set by the trainer before each save). Unlike orbax's ``BestN``, which reads
    metrics that a reopened manager no longer has, it survives a resume."""

    step: int | None = None

    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        return [c.step == self.step for c in checkpoints]


def checkpoint_manager(
    workdir: str, config: Config | None = None, keep: KeepStep | None = None
) -> ocp.CheckpointManager:
    """The run's Orbax manager (items ``state`` and ``data``): the latest ``train.keep``
    checkpoints, and the one ``keep`` names (the lowest validation loss)."""
    policies = [] if config is None else [ocp_policies.LatestN(n=config.train.keep)]
    options = ocp.CheckpointManagerOptions(
        enable_async_checkpointing=True,
        create=True,
        preservation_policy=None
        if config is None
        else ocp_policies.AnyPreservationPolicy(policies + [keep or KeepStep()]),
    )
    return ocp.CheckpointManager(
        RunDir(workdir).checkpoints,
        options=options,
        item_handlers={
            "state": ocp.StandardCheckpointHandler(),
            "data": grain.checkpoint.CheckpointHandler(),
        },
    )


# Train settings a resumed run may change: the cap, and how (not what) the steps run.
RESUMABLE = ("steps", "steps_per_call", "data_on_device")


def resolve_config(workdir: str, config: Config) -> Config:
    """The config of a run: ``config``, or the one stored in ``workdir`` when resuming.

    On resume only ``train.steps`` (to train longer) and the settings of how the steps
    are run, not what they compute (``RESUMABLE``), may change; any other difference
    raises ``ValueError``, because the checkpoint could not be continued exactly.
    """
    path = RunDir(workdir).config
    if not os.path.exists(path):
        return config
    stored = Config.load(path)
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
    return Config.from_dict({**theirs, "train": {**theirs["train"], **given}})


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
    """The validation rows' raw conditions and locations (the first 2048 of them)."""
    rows = rows[:MAX_VALIDATION_ROWS]
    if len(rows) == 0:
        return None
    return source.take(rows)


def read_progress(workdir: str) -> dict:
    """``training.json`` of a run: validation losses ``evals [[step, loss], ...]``, the
    cumulative training ``seconds`` at each saved step, ``best_step``, ``stopped_early``
    (empty before the first save)."""
    path = RunDir(workdir).training
    return files.read_json(path) if os.path.exists(path) else {}


def train(
    config: Config,
    data_path: str,
    workdir: str,
    *,
    mesh=None,
    progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
    on_eval: Callable[[int, object, object], None] | None = None,
):
    """Train (or resume) a LocDiff run; returns the final ``(graphdef, state)``.

    With ``train.validation_fraction > 0`` a validation slice of the data is held out,
    its loss (EMA parameters, fixed noise draws) is computed every ``train.eval_every``
    steps and at the end, each evaluation is a checkpoint, and training stops after
    ``train.patience`` evaluations without improvement; ``training.json`` names the best
    step, which :meth:`locdiff.inference.Geolocator.from_checkpoint` restores.

    Args:
      config: the run's configuration (compared with the stored one on resume).
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
    os.makedirs(workdir, exist_ok=True)
    run = RunDir(workdir)
    config = resolve_config(workdir, config)
    source = data.open_dataset(data_path)  # checked before anything else starts
    mesh = sharding.make_mesh() if mesh is None else mesh
    n_devices = mesh.devices.size
    t = config.train
    if t.batch_size % n_devices:
        raise ValueError(
            f"train.batch_size={t.batch_size} must be divisible by the {n_devices} devices"
        )
    if t.batch_size % jax.process_count():
        raise ValueError(
            f"train.batch_size must be divisible by the {jax.process_count()} processes"
        )
    train_rows, val_rows = validation_split(len(source), t.validation_fraction)
    if jax.process_index() == 0:
        config.save(run.config)
        files.write_json(
            run.versions, {**versions(), "devices": [str(d) for d in mesh.devices.flat]}
        )
        files.write_json(
            run.data,
            {
                "data": os.path.abspath(data_path),
                "rows": len(source),
                "train_rows": len(train_rows),
                "validation_rows": len(val_rows),
                "embed_dim": source.embed_dim,
                "encoder": source.encoder,
            },
        )

    cond_stats = _condition_stats(run, source, t.condition_noise)
    tx, schedule = make_optimizer(config)
    graphdef, state = init_state(config, source.embed_dim, tx)
    state = jax.device_put(state, sharding.replicated(mesh))
    dataset = data.make_pipeline(
        source,
        batch_size=t.batch_size // jax.process_count(),
        seed=t.seed,
        rows=train_rows,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        indices=t.data_on_device,
    )
    iterator = iter(dataset)
    table = None
    if t.data_on_device:  # the whole data set, replicated on every device
        table = sharding.replicate_arrays(data.all_rows(source), mesh)
    keep_best = KeepStep(read_progress(workdir).get("best_step"))
    manager = checkpoint_manager(workdir, config, keep_best)
    start = manager.latest_step()
    if start is not None:
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
        restored = manager.restore(
            start,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract),
                data=grain.checkpoint.CheckpointRestore(iterator),
            ),
        )
        state = restored["state"]
    start = int(state.step)
    record = read_progress(workdir)
    evals = [(s, v) for s, v in record.get("evals", []) if s <= start]
    stopper = EarlyStopping(t.patience, history=evals)
    seconds_at = {int(k): v for k, v in record.get("seconds", {}).items() if int(k) <= start}
    train_seconds = seconds_at.get(start, 0.0)
    val_batch = _validation_batch(source, val_rows)
    val_loss = make_validation_loss(graphdef, config, cond_stats) if val_batch else None
    val_key = jax.random.key(t.seed + 1)
    shardings = (sharding.replicated(mesh), sharding.batch_sharded(mesh))
    step_args = (graphdef, tx, schedule, config, *shardings, cond_stats)
    step_fns = {  # the single step, and train.steps_per_call of them in one call
        k: jit_train_step(*step_args, on_device=t.data_on_device, steps=k)
        for k in {1, t.steps_per_call}
    }
    key = jax.random.key(t.seed)
    events = [t.log_every, t.checkpoint_every] + ([t.eval_every] if val_loss else [])

    def steps_in_call(step: int) -> int:
        """``train.steps_per_call``, or 1 where a log, evaluation, save or the end falls
        inside the next ``steps_per_call`` steps (they happen between calls)."""
        following = min([t.steps] + [step + every - step % every for every in events])
        return t.steps_per_call if following - step >= t.steps_per_call else 1

    def save(step: int) -> None:
        keep_best.step = stopper.best_step
        manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator)
            ),
            force=True,
        )
        seconds_at[step] = train_seconds
        if jax.process_index() == 0:
            files.write_json(
                run.training,
                {
                    "step": step,
                    "samples_seen": step * t.batch_size,
                    "epochs": step * t.batch_size / len(train_rows),
                    "train_seconds": train_seconds,
                    "best_step": stopper.best_step,
                    "best_val_loss": stopper.best_loss if stopper.best_step else None,
                    "stopped_early": stopper.should_stop,
                    "evals": stopper.history,
                    "seconds": seconds_at,
                },
            )

    metrics_path = run.metrics
    bar = tqdm(total=t.steps, initial=start, disable=not progress, desc="train", unit="step")
    window_start, window_steps = time.perf_counter(), 0
    step, position = start, None
    try:
        while step < t.steps and not stopper.should_stop:
            tick = time.perf_counter()
            position = iterator.get_state()  # to rewind to if interrupted before the step
            k = steps_in_call(step)
            if k == 1:
                batch = sharding.global_batch(next(iterator), mesh)
            else:
                batches = [next(iterator) for _ in range(k)]
                batch = {name: np.stack([b[name] for b in batches]) for name in batches[0]}
                batch = sharding.global_batch(batch, mesh, stacked=True)
            extra = () if table is None else (table,)
            state, metrics = step_fns[k](state, batch, key, *extra)
            position = None  # the iterator and the state agree again
            step += k
            window_steps += k
            bar.update(k)
            if on_step is not None:
                on_step(step, metrics)
            log_due = step % t.log_every == 0 or step == t.steps
            eval_due = val_loss is not None and (step % t.eval_every == 0 or step == t.steps)
            save_due = step % t.checkpoint_every == 0 or step == t.steps or eval_due
            if log_due or save_due:
                values = {k: float(v) for k, v in jax.device_get(metrics).items()}
                if not np.isfinite(values["loss"]):
                    raise NonFiniteLossError(
                        f"loss is {values['loss']} at step {step}; stopping. The last good "
                        f"checkpoint (step {manager.latest_step()}) is kept in "
                        f"{workdir}/checkpoints; lower train.learning_rate or check the data"
                    )
                elapsed = time.perf_counter() - window_start
                values["samples_per_s"] = window_steps * t.batch_size / elapsed
                window_start, window_steps = time.perf_counter(), 0
                if eval_due:
                    values["val_loss"] = float(val_loss(state.ema, val_batch, val_key))
                    stopper.update(step, values["val_loss"])
                bar.set_postfix(loss=f"{values['loss']:.4g}", sps=f"{values['samples_per_s']:.0f}")
                if (log_due or eval_due) and jax.process_index() == 0:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps({"step": step, **values, "time": time.time()}) + "\n")
                train_seconds += time.perf_counter() - tick
                if save_due:
                    save(step)
                if eval_due and on_eval is not None:
                    on_eval(step, graphdef, state.ema)
                window_start = time.perf_counter()
            else:
                train_seconds += time.perf_counter() - tick
        if stopper.should_stop and progress:
            bar.write(
                f"stopped at step {step}: no better validation loss in {t.patience} "
                f"evaluations; the best is step {stopper.best_step}"
            )
    except KeyboardInterrupt:
        if position is not None:  # batches drawn for a step that did not happen
            iterator.set_state(position)
        loss = float(jax.device_get(metrics["loss"])) if step > start else float("nan")
        if step > start and np.isfinite(loss) and manager.latest_step() != step:
            save(step)
            print(f"\ninterrupted: saved step {step} to {workdir}/checkpoints; run again to resume")
        raise
    finally:
        bar.close()
        manager.wait_until_finished()
        manager.close()
    return graphdef, state

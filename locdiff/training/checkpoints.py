"""What a run keeps: its Orbax checkpoints (the train state with the Grain iterator's
position) and ``training.json``, the history of its validation losses and seconds."""

from __future__ import annotations

import dataclasses
import os
import warnings

import grain
import jax
import orbax.checkpoint as ocp
import orbax.checkpoint.checkpoint_managers as ocp_policies

from locdiff.config import Config
from locdiff.errors import RunError
from locdiff.io import files
from locdiff.io.rundir import RunDir
from locdiff.training.early_stopping import EarlyStopping
from locdiff.training.step import init_state, make_optimizer


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


def read_progress(workdir: str) -> dict:
    """``training.json`` of a run: validation losses ``evals [[step, loss], ...]``, the
    cumulative training ``seconds`` at each saved step, ``best_step``, ``stopped_early``
    (empty before the first save)."""
    path = RunDir(workdir).training
    return files.read_json(path) if os.path.exists(path) else {}


@dataclasses.dataclass
class History:
    """What a run knows of its own past: the validation losses and early stopping, the
    cumulative training seconds at each saved step, and the checkpoint to keep (the
    best). Written to ``training.json`` at every save; read back on resume."""

    stopper: EarlyStopping
    seconds_at: dict[int, float]
    train_seconds: float
    keep: KeepStep

    @classmethod
    def resume(cls, record: dict, start: int, patience: int, keep: KeepStep) -> History:
        """The history in ``record`` (:func:`read_progress`) up to the checkpoint at
        ``start``."""
        evals = [(s, v) for s, v in record.get("evals", []) if s <= start]
        seconds = {int(k): v for k, v in record.get("seconds", {}).items() if int(k) <= start}
        stopper = EarlyStopping(patience, history=evals)
        return cls(stopper, seconds, seconds.get(start, 0.0), keep)

    def record(self, step: int, batch_size: int, train_rows: int) -> dict:
        """``training.json`` at ``step`` (see :func:`read_progress`)."""
        self.seconds_at[step] = self.train_seconds
        return {
            "step": step,
            "samples_seen": step * batch_size,
            "epochs": step * batch_size / train_rows,
            "train_seconds": self.train_seconds,
            "best_step": self.stopper.best_step,
            "best_val_loss": self.stopper.best_loss if self.stopper.best_step else None,
            "stopped_early": self.stopper.should_stop,
            "evals": self.stopper.history,
            "seconds": self.seconds_at,
        }


def restore(manager: ocp.CheckpointManager, state, iterator):
    """The latest checkpoint's state, with ``iterator`` set to its position (``state``
    itself when there is none)."""
    start = manager.latest_step()
    if start is None:
        return state
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restored = manager.restore(
        start,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract),
            data=grain.checkpoint.CheckpointRestore(iterator),
        ),
    )
    return restored["state"]


def training_record(workdir: str) -> dict:
    """What ``method.json`` records of a run's training (``training.json``)."""
    record = read_progress(workdir)
    steps = record["step"]
    return {
        "steps": steps,
        "best_step": record.get("best_step") or steps,
        "samples_seen": record["samples_seen"],
        "epochs": record["epochs"],
        "evals": record.get("evals", []),
        "stopped_early": record.get("stopped_early", False),
        "train_seconds": record["train_seconds"],
    }


def _abstract_state(config, embed_dim: int, tx, objective):
    """``(graphdef, state)`` where the state holds only shapes, dtypes and a one-device
    sharding: the restore target, with nothing allocated (AdamW moments included)."""
    graphdefs = []

    def build():
        graphdef, state = init_state(config, embed_dim, tx, objective)
        graphdefs.append(graphdef)
        return state

    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # this process's
    shapes = jax.eval_shape(build)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), shapes
    )
    return graphdefs[0], abstract


def restore_params(
    workdir: str, config, embed_dim: int, *, objective=None, step: int | None = None,
    ema: bool = True,
):  # fmt: skip
    """``(graphdef, params)`` of a run's checkpoint: ``step``, or by default the step of
    the lowest validation loss (``training.json``), else the latest; its EMA parameters
    (``ema=False``: the raw ones). ``objective`` is the run's method (default: LocDiff).

    Raises:
      RunError: no checkpoint in ``workdir``.
    """
    manager = checkpoint_manager(workdir)
    try:
        if step is None:  # the best validation step where there is one, else the latest
            best = read_progress(workdir).get("best_step")
            step = best if best in manager.all_steps() else manager.latest_step()
            if best is not None and step != best:
                warnings.warn(
                    f"{workdir}: the checkpoint of the best validation loss (step "
                    f"{best}) is gone; restoring the latest (step {step})",
                    stacklevel=3,
                )
        if step is None:
            raise RunError(f"{workdir}: no checkpoint yet")
        tx, _ = make_optimizer(config)
        graphdef, abstract = _abstract_state(config, embed_dim, tx, objective)
        restored = manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )["state"]
    finally:
        manager.close()
    return graphdef, restored.ema if ema else restored.params

"""The train state and the one jitted ``train_step(state, batch, key) -> (state, metrics)``.

The state is a pytree: ``step``, ``params`` (the network's ``nnx.Param`` state as a pure
dict of arrays), ``ema`` (their exponential moving average) and ``opt_state`` (AdamW).
Pure dicts rather than ``nnx.State`` keep the jitted call's host-side flattening cheap
(with ``nnx.Variable`` nodes it took about half as long as the step itself on 2 CPU
cores). The module's structure (``graphdef``) is static and closed over. The SHDD
target is computed from ``latlon`` inside the step; randomness comes from
``fold_in(key, step)``, so a resumed run draws the same numbers as an uninterrupted one;
with ``train.condition_noise`` the raw conditions get a fresh Gaussian draw every step.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Protocol

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from locdiff.config import Config
from locdiff.model.loss import LocDiffObjective

NOISE_STREAM = 7  # fold_in tag of the condition-noise draws (independent of the loss's)


@struct.dataclass
class TrainState:
    step: jax.Array
    params: dict
    ema: dict
    opt_state: optax.OptState


def make_optimizer(config: Config) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW with linear warm-up, cosine decay over ``train.steps`` and global-norm clipping
    (``train.grad_clip``; None: none)."""
    t = config.train
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=t.learning_rate,
        warmup_steps=min(t.warmup_steps, t.steps),
        decay_steps=max(t.steps, t.warmup_steps + 1),
        end_value=0.1 * t.learning_rate,
    )
    tx = optax.adamw(schedule, weight_decay=t.weight_decay)
    if t.grad_clip is not None:
        tx = optax.chain(optax.clip_by_global_norm(t.grad_clip), tx)
    return tx, schedule


class Objective(Protocol):
    """What a learned method gives the trainer: its network and its loss. The trainer
    gives everything else (data, optimiser, checkpoints, devices, early stopping).

    ``loss_terms`` sees batches ``{"embedding" [B, E] float32, standardised (and noised
    with ``train.condition_noise``), "latlon" [B, 2]}`` and returns ``(loss, terms)``,
    ``terms`` a dict of scalars logged beside it; ``train=False`` is the validation loss
    (no dropout, no condition dropping). ``method`` names the method (``data.json``).
    """

    method: str

    def init(self, embed_dim: int, rngs: nnx.Rngs) -> nnx.Module: ...

    def loss_terms(self, model, batch, key, *, train: bool = True): ...


def objective_of(config, objective: Objective | None = None) -> Objective:
    """``objective``, or LocDiff's for a LocDiff :class:`Config`."""
    if objective is not None:
        return objective
    if not isinstance(config, Config):
        raise TypeError(f"a {type(config).__name__} needs its method's objective")
    return LocDiffObjective(config)


def init_state(config, cond_dim: int, tx: optax.GradientTransformation, objective=None):
    """``(graphdef, state)`` for a freshly initialised model (seeded by ``train.seed``);
    the network is ``objective``'s (default: LocDiff's CS-UNet of ``config``)."""
    model = objective_of(config, objective).init(cond_dim, nnx.Rngs(config.train.seed))
    graphdef, params = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(params)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        ema=jax.tree.map(jnp.copy, params),
        opt_state=tx.init(params),
    )
    return graphdef, state


def standardise(batch, cond_stats):
    """``batch`` with its conditions in float32, standardised by ``cond_stats = (mean,
    std)`` (None: as given). Done inside the jitted step, so the input pipeline only
    gathers rows (in their stored dtype)."""
    emb = batch["embedding"].astype(jnp.float32)  # float16 storage: converted here
    if cond_stats is None:
        return {**batch, "embedding": emb}
    mean, std = cond_stats
    return {**batch, "embedding": (emb - mean[None, :]) / std[None, :]}


def objective_memory(objective) -> dict | None:
    """The arrays an objective's loss reads besides the batch (``objective.memory``, e.g.
    a gallery it looks rows up in), or None: the trainer puts them on the devices once
    (replicated) and hands them to every step."""
    return getattr(objective, "memory", None) or None


def with_memory(batch, memory):
    """``batch`` with the objective's ``memory`` as ``batch["memory"]`` (None: as it is)."""
    return batch if memory is None else {**batch, "memory": memory}


def add_condition_noise(batch, noise: float, key):
    """``batch`` with Gaussian noise of deviation ``noise`` added to its raw conditions."""
    if noise == 0:
        return batch
    emb = batch["embedding"].astype(jnp.float32)
    return {**batch, "embedding": emb + noise * jax.random.normal(key, emb.shape)}


def train_step(
    state: TrainState, batch, key, memory=None, *, graphdef, tx, schedule, config, objective,
    cond_stats=None,
):  # fmt: skip
    """One optimiser step of ``objective``; pure, to be jitted with the state donated.
    ``memory``: the objective's own arrays (:func:`objective_memory`), seen by its loss
    as ``batch["memory"]``."""
    step_key = jax.random.fold_in(key, state.step)
    noise_key = jax.random.fold_in(step_key, NOISE_STREAM)
    batch = add_condition_noise(batch, config.train.condition_noise, noise_key)
    batch = with_memory(standardise(batch, cond_stats), memory)

    def loss_fn(params):
        return objective.loss_terms(nnx.merge(graphdef, params), batch, step_key)

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    decay = config.train.ema_decay
    ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema, params)
    metrics = {
        "loss": loss,
        **terms,
        "grad_norm": optax.tree.norm(grads),
        "learning_rate": schedule(state.step),
    }
    new_state = dataclasses.replace(
        state, step=state.step + 1, params=params, ema=ema, opt_state=opt_state
    )
    return new_state, metrics


def jit_train_step(
    graphdef, tx, schedule, config, state_sharding, batch_sharding, cond_stats=None,
    *, on_device: bool = False, steps: int = 1, objective: Objective | None = None,
    memory: bool = False,
):  # fmt: skip
    """``train_step`` jitted with explicit shardings and the state donated; ``cond_stats``
    (mean, std) standardise the raw conditions of every batch inside the step.

    With ``on_device`` the step is ``(state, {"rows": [B]}, key, table) -> ...``: the
    whole training data ``table = {"embedding", "latlon"}`` lives on the devices
    (replicated) and the batch is gathered from it by row number inside the step (the
    row numbers stay in the batch, as in a streamed one).

    With ``steps > 1`` one call runs that many steps (a ``lax.scan``): every leaf of the
    batch has a leading axis of ``steps`` (``[steps, B, ...]``) and the metrics are the
    last step's. The same steps as ``steps`` calls, for a fraction of the host's work per
    step (on 2 CPU cores, where the host shares the cores with the step, about 1 ms of
    a 9 ms step).

    With ``memory`` the step takes the objective's arrays (:func:`objective_memory`,
    replicated) as its last argument.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    mesh = batch_sharding.mesh
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    if cond_stats is not None:
        cond_stats = tuple(jnp.asarray(x, jnp.float32) for x in cond_stats)
    one = functools.partial(
        train_step, graphdef=graphdef, tx=tx, schedule=schedule, config=config,
        objective=objective_of(config, objective), cond_stats=cond_stats,
    )  # fmt: skip
    if on_device:

        def one(state, rows, key, table, *memory, step=one):
            # jnp.take rather than v[rows]: half the time on a CPU (same rows, in bounds).
            batch = {k: jnp.take(v, rows["rows"], axis=0) for k, v in table.items()}
            return step(state, batch | rows, key, *memory)

    fn = one
    if steps > 1:

        def fn(state, batches, key, *table):
            def body(state, batch):
                return one(state, batch, key, *table)

            state, metrics = jax.lax.scan(body, state, batches)
            return state, jax.tree.map(lambda x: x[-1], metrics)

        spec = batch_sharding.spec
        batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, *spec))
    shardings = (state_sharding, batch_sharding, replicated)
    shardings += (replicated,) * (int(on_device) + int(memory))  # the table, the memory
    return jax.jit(
        fn, in_shardings=shardings, out_shardings=(state_sharding, replicated), donate_argnums=0
    )


def make_validation_loss(
    graphdef, config, cond_stats=None, *, draws: int = 4, objective: Objective | None = None
):
    """``loss(params, batch) -> float``: the loss of ``params`` on a validation batch,
    averaged over ``draws`` fixed noise draws per example (the same draws at every call,
    so that successive evaluations differ only by the parameters)."""
    objective = objective_of(config, objective)
    if cond_stats is not None:
        cond_stats = tuple(jnp.asarray(x, jnp.float32) for x in cond_stats)

    @jax.jit
    def loss(params, batch, key, memory=None):
        noise_key = jax.random.fold_in(key, NOISE_STREAM)
        batch = add_condition_noise(batch, config.train.condition_noise, noise_key)
        batch = with_memory(standardise(batch, cond_stats), memory)
        model = nnx.merge(graphdef, params)
        keys = jax.random.split(key, draws)
        return jnp.mean(
            jax.lax.map(lambda k: objective.loss_terms(model, batch, k, train=False)[0], keys)
        )

    return loss

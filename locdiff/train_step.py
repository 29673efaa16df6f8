"""The train state and the one jitted ``train_step(state, batch, key) -> (state, metrics)``.

The state is a pytree: ``step``, ``params`` (the CS-UNet's ``nnx.Param`` state), ``ema``
(their exponential moving average) and ``opt_state`` (AdamW). The module's structure
(``graphdef``) is static and closed over. The SHDD target is computed from ``latlon``
inside the step; randomness comes from ``fold_in(key, step)``, so a resumed run draws
the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

import shdd
from locdiff import diffusion
from locdiff.config import Config
from locdiff.model import CSUNet


@struct.dataclass
class TrainState:
    step: jax.Array
    params: nnx.State
    ema: nnx.State
    opt_state: optax.OptState


def make_optimizer(config: Config) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW with linear warm-up, cosine decay over ``train.steps`` and global-norm clipping."""
    t = config.train
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=t.learning_rate,
        warmup_steps=min(t.warmup_steps, t.steps),
        decay_steps=max(t.steps, t.warmup_steps + 1),
        end_value=0.1 * t.learning_rate,
    )
    tx = optax.chain(
        optax.clip_by_global_norm(t.grad_clip),
        optax.adamw(schedule, weight_decay=t.weight_decay),
    )
    return tx, schedule


def init_state(config: Config, cond_dim: int, tx: optax.GradientTransformation):
    """``(graphdef, state)`` for a freshly initialised model (seeded by ``train.seed``)."""
    model = CSUNet(config.model, cond_dim, rngs=nnx.Rngs(config.train.seed))
    graphdef, params = nnx.split(model, nnx.Param)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        ema=jax.tree.map(jnp.copy, params),
        opt_state=tx.init(params),
    )
    return graphdef, state


def shdd_target(latlon, config: Config):
    """Scaled SHDD vectors ``[B, D]`` of ``latlon [B, 2]`` (inside jit: no value checks)."""
    m = config.model
    return shdd.encode(latlon, L=m.L, sigma_km=m.sigma_km) * config.diffusion.scale  # [B, D]


def loss_terms(model: CSUNet, batch, key, config: Config):
    """Per-batch ``(loss, {"mse", "kl"})`` for one noisy draw of every example."""
    d = config.diffusion
    B = batch["latlon"].shape[0]
    k_t, k_eps, k_drop, k_dropout = jax.random.split(key, 4)
    x0 = shdd_target(batch["latlon"], config)
    t = diffusion.sample_time(k_t, B, d.timesteps)
    eps = jax.random.normal(k_eps, x0.shape)
    x_t = diffusion.q_sample(x0, t, eps)
    drop = jax.random.bernoulli(k_drop, config.model.cond_drop, (B,))
    out = model(x_t, t, batch["embedding"], drop=drop, dropout_key=k_dropout)
    mse = jnp.mean((out - diffusion.target(d.prediction, x0, eps, t)) ** 2)
    kl = jnp.zeros(())
    if d.loss in ("kl", "mse+kl"):
        x0_hat, _ = diffusion.to_x0_eps(d.prediction, out, x_t, t)
        kl = jnp.mean(
            shdd.kl_divergence(
                x0 / d.scale, x0_hat / d.scale, L=config.model.L, temperature=d.kl_temperature
            )
        )
    loss = {"mse": mse, "kl": kl, "mse+kl": mse + d.kl_weight * kl}[d.loss]
    return loss, {"mse": mse, "kl": kl}


def train_step(state: TrainState, batch, key, *, graphdef, tx, schedule, config: Config):
    """One optimiser step; pure, to be jitted with the state donated."""
    step_key = jax.random.fold_in(key, state.step)

    def loss_fn(params):
        return loss_terms(nnx.merge(graphdef, params), batch, step_key, config)

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


def jit_train_step(graphdef, tx, schedule, config: Config, state_sharding, batch_sharding):
    """``train_step`` jitted with explicit shardings and the state donated."""
    replicated = jax.sharding.NamedSharding(batch_sharding.mesh, jax.sharding.PartitionSpec())
    fn = functools.partial(train_step, graphdef=graphdef, tx=tx, schedule=schedule, config=config)
    return jax.jit(
        fn,
        in_shardings=(state_sharding, batch_sharding, replicated),
        out_shardings=(state_sharding, replicated),
        donate_argnums=0,
    )

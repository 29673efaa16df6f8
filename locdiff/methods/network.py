"""What the trained baselines share: an MLP trunk, one AdamW loop, parameters on disk.

``cells``, ``regression`` and ``coords-diffusion`` are each a head on :class:`Trunk`
(standardised embedding -> ``depth`` GELU layers), trained by :func:`fit` and saved
with :func:`save_params` into the run's ``params.npz``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

import shdd
from locdiff.errors import NonFiniteLossError
from locdiff.io import files
from locdiff.methods.base import BaselineConfig, Locator, no_options, read_training_data
from locdiff.training.early_stopping import EarlyStopping, validation_split


class Trunk(nnx.Module):
    """Standardise the embedding, then ``depth`` GELU layers of width ``hidden``."""

    def __init__(self, embed_dim: int, hidden: int, depth: int, *, rngs: nnx.Rngs):
        self.mean = nnx.Variable(jnp.zeros((embed_dim,)))
        self.std = nnx.Variable(jnp.ones((embed_dim,)))
        widths = [embed_dim] + [hidden] * depth
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths, widths[1:], strict=False)]
        )

    def standardise_with(self, x: np.ndarray) -> None:
        """Set the standardisation to the per-feature mean and std of ``x [N, E]``."""
        self.mean[...] = jnp.asarray(x.mean(axis=0))
        self.std[...] = jnp.asarray(x.std(axis=0) + 1e-6)

    def __call__(self, x):
        x = (x - self.mean[...][None, :]) / self.std[...][None, :]
        for layer in self.layers:
            x = jax.nn.gelu(layer(x))
        return x


LossFn = Callable[[nnx.Module, jax.Array, jax.Array, jax.Array], jax.Array]


MAX_VALIDATION_ROWS = 4096  # the validation loss is computed on at most this many rows


def _optimizer_and_step(model: nnx.Module, loss_fn: LossFn, config: BaselineConfig):
    """AdamW (5% warm-up, cosine decay over ``config.steps``) on ``model``, and the jitted
    ``step(model, optimizer, x, targets, key) -> loss`` that updates both in place."""
    warmup = max(1, config.steps // 20)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, warmup, max(config.steps, warmup + 1)
    )
    optimizer = nnx.Optimizer(
        model, optax.adamw(schedule, weight_decay=config.weight_decay), wrt=nnx.Param
    )

    @nnx.jit
    def step(model, optimizer, xb, yb, key):
        loss, grads = nnx.value_and_grad(lambda m: loss_fn(m, xb, yb, key))(model)
        optimizer.update(model, grads)
        return loss

    return optimizer, step


def fit(
    name: str,
    model: nnx.Module,
    loss_fn: LossFn,
    x: np.ndarray,
    targets: np.ndarray,
    config: BaselineConfig,
    *,
    progress: bool = True,
    on_eval: Callable[[int, nnx.Module], None] | None = None,
) -> dict:
    """Train ``model`` in place on ``loss_fn(model, x_batch, target_batch, key)`` with AdamW
    (5% warm-up, cosine decay over ``config.steps``) on batches drawn with replacement.

    With ``config.validation_fraction > 0`` the validation rows of
    :func:`locdiff.training.early_stopping.validation_split` are held out, the loss on them (fixed
    key) is computed every ``eval_every`` steps and at the end, training stops after
    ``patience`` evaluations without improvement, and the model is left at its best
    evaluation. ``on_eval(step, model)`` is called after each evaluation (its time is not
    training time). Returns what ``method.json`` records: ``steps``, ``best_step``,
    ``samples_seen``, ``epochs``, ``evals`` ``[[step, loss], ...]``, ``train_seconds``,
    ``final_loss``.

    Raises:
      NonFiniteLossError: the loss became NaN or infinite.
    """
    optimizer, step = _optimizer_and_step(model, loss_fn, config)
    evaluate = nnx.jit(loss_fn)
    train_rows, val_rows = validation_split(len(x), config.validation_fraction)
    val_rows = val_rows[:MAX_VALIDATION_ROWS]
    val_key = jax.random.key(config.seed + 1)
    stopper, best = EarlyStopping(config.patience), None
    rng = np.random.default_rng(config.seed)
    key = jax.random.key(config.seed)
    batch = min(config.batch_size, len(train_rows))
    bar = tqdm(range(config.steps), disable=not progress, desc=f"train {name}", unit="step")
    loss, seconds, steps = float("nan"), 0.0, 0
    for i in bar:
        tick = time.perf_counter()
        index = train_rows[rng.integers(0, len(train_rows), batch)]
        loss = step(model, optimizer, x[index], targets[index], jax.random.fold_in(key, i))
        steps = i + 1
        eval_due = len(val_rows) and (steps % config.eval_every == 0 or steps == config.steps)
        if steps % 100 == 0 or steps == config.steps or eval_due:
            loss = float(loss)
            if not np.isfinite(loss):
                raise NonFiniteLossError(f"{name}: loss is {loss} at step {steps}")
            bar.set_postfix(loss=f"{loss:.4g}")
        if eval_due:
            value = float(evaluate(model, x[val_rows], targets[val_rows], val_key))
            if stopper.update(steps, value):
                best = jax.tree.map(np.array, nnx.state(model))
        seconds += time.perf_counter() - tick
        if eval_due and on_eval is not None:
            on_eval(steps, model)
        if stopper.should_stop:
            break
    bar.close()
    if best is not None:
        nnx.update(model, best)
    return {
        "steps": steps,
        "best_step": stopper.best_step or steps,
        "samples_seen": steps * batch,
        "epochs": steps * batch / len(train_rows),
        "evals": stopper.history,
        "stopped_early": stopper.should_stop,
        "train_seconds": seconds,
        "final_loss": float(loss),
    }


def _flat(tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v) for path, v in leaves}


def save_params(path: str, model: nnx.Module, **arrays) -> None:
    """Write the model's state (as ``param:<path>``) and ``arrays`` to ``path``, atomically."""
    params = {f"param:{k}": v for k, v in _flat(nnx.to_pure_dict(nnx.state(model))).items()}
    files.save_npz(path, **params, **arrays)


def load_params(model: nnx.Module, arrays: dict[str, np.ndarray]) -> None:
    """Set the model's state from :func:`save_params`' arrays (shapes must match)."""
    state = nnx.state(model)
    pure = nnx.to_pure_dict(state)
    values = []
    for name, leaf in _flat(pure).items():
        saved = arrays.get(f"param:{name}")
        if saved is None or saved.shape != leaf.shape:
            raise ValueError(f"params.npz does not match the model at param:{name}")
        values.append(saved)
    pure = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(pure), values)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)


class NetworkLocator(Locator):
    """A trained baseline: an nnx module split once into graph and state for jitted calls."""

    def __init__(self, model: nnx.Module, config: BaselineConfig, embed_dim: int, meta=None):
        self.model, self.config, self.embed_dim = model, config, embed_dim
        self.meta = meta or {}
        self._graphdef, self._state = nnx.split(model)

    def _batches(self, embeddings, fn, batch_size: int = 1024) -> np.ndarray:
        """``fn(chunk, start)`` over consecutive chunks of ``embeddings``, concatenated."""
        starts = range(0, len(embeddings), batch_size)
        return np.concatenate([np.asarray(fn(embeddings[i : i + batch_size], i)) for i in starts])


Build = Callable[[BaselineConfig, int], nnx.Module]


def train_on_unit_vectors(
    name: str, data_path: str, run, config: BaselineConfig, build: Build, loss_fn: LossFn, *,
    progress: bool = True, on_eval=None, locator=None,
) -> dict:  # fmt: skip
    """Train ``build(config, embed_dim)`` with ``loss_fn`` against the unit vectors
    ``[N, 3]`` of the training locations; save it in the run; what ``method.json`` records.
    ``on_eval(step, locator(model))`` is called after each validation evaluation."""
    x, latlon, info = read_training_data(data_path)
    targets = shdd.sphere.latlon_to_xyz_np(latlon).astype(np.float32)
    model = build(config, x.shape[1])
    model.trunk.standardise_with(x)
    callback = None if on_eval is None else lambda step, m: on_eval(step, locator(m))
    record = fit(name, model, loss_fn, x, targets, config, progress=progress, on_eval=callback)
    save_params(run.params, model)
    return {**info, **record}


def load_network(name: str, run, meta: dict, build: Build, locator, options: dict):
    """``locator(model, config, embed_dim, meta)`` over the saved ``build(config, embed_dim)``."""
    no_options(name, options)
    config = BaselineConfig.from_dict(meta["config"])
    embed_dim = int(meta["embed_dim"])
    model = build(config, embed_dim)
    load_params(model, files.load_npz(run.require(run.params, "parameters")))
    return locator(model, config, embed_dim, meta)

"""What the trained baselines share: an MLP trunk, one AdamW loop, parameters on disk.

``cells``, ``regression`` and ``coords-diffusion`` are each a head on :class:`Trunk`
(standardised embedding -> ``depth`` GELU layers), trained by :func:`fit` and saved
with :func:`save_params` into the run's ``params.npz``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

import shdd
from locdiff import files
from locdiff.errors import NonFiniteLossError
from locdiff.methods.base import BaselineConfig, Locator, no_options, read_training_data


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


def fit(
    name: str,
    model: nnx.Module,
    loss_fn: LossFn,
    x: np.ndarray,
    targets: np.ndarray,
    config: BaselineConfig,
    *,
    progress: bool = True,
) -> float:
    """Train ``model`` in place on ``loss_fn(model, x_batch, target_batch, key)`` with AdamW
    (5% warm-up, cosine decay) on batches drawn with replacement; the final loss.

    Raises:
      NonFiniteLossError: the loss became NaN or infinite.
    """
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

    rng = np.random.default_rng(config.seed)
    key = jax.random.key(config.seed)
    batch = min(config.batch_size, len(x))
    bar = tqdm(range(config.steps), disable=not progress, desc=f"train {name}", unit="step")
    loss = float("nan")
    for i in bar:
        index = rng.integers(0, len(x), batch)
        loss = step(model, optimizer, x[index], targets[index], jax.random.fold_in(key, i))
        if (i + 1) % 100 == 0 or i + 1 == config.steps:
            loss = float(loss)
            if not np.isfinite(loss):
                raise NonFiniteLossError(f"{name}: loss is {loss} at step {i + 1}")
            bar.set_postfix(loss=f"{loss:.4g}")
    return float(loss)


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
    progress: bool = True,
) -> dict:  # fmt: skip
    """Train ``build(config, embed_dim)`` with ``loss_fn`` against the unit vectors
    ``[N, 3]`` of the training locations; save it in the run; what ``method.json`` records."""
    x, latlon, info = read_training_data(data_path)
    targets = shdd.sphere.latlon_to_xyz_np(latlon).astype(np.float32)
    model = build(config, x.shape[1])
    model.trunk.standardise_with(x)
    final = fit(name, model, loss_fn, x, targets, config, progress=progress)
    save_params(run.params, model)
    return {**info, "final_loss": final}


def load_network(name: str, run, meta: dict, build: Build, locator, options: dict):
    """``locator(model, config, embed_dim, meta)`` over the saved ``build(config, embed_dim)``."""
    no_options(name, options)
    config = BaselineConfig.from_dict(meta["config"])
    embed_dim = int(meta["embed_dim"])
    model = build(config, embed_dim)
    load_params(model, files.load_npz(run.require(run.params, "parameters")))
    return locator(model, config, embed_dim, meta)

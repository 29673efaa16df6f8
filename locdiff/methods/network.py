"""What the learned baselines share: an MLP trunk, the trainer's objective, parameters on disk.

``cells``, ``regression`` and ``coords-diffusion`` are each a head on :class:`Trunk`
(standardised embedding -> ``depth`` GELU layers). They train through the one trainer
(:func:`locdiff.training.trainer.train`), like LocDiff: a :class:`NetworkObjective` gives
it the network and the loss; the trainer standardises the conditions, streams the data,
checkpoints, resumes, stops early. When training ends the best checkpoint's parameters
go, with the standardisation, into the run's ``params.npz`` (:func:`network_arrays`),
which :func:`load_network` restores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from locdiff.io import files
from locdiff.methods.base import Locator, no_options
from locdiff.training import trainer
from locdiff.training.checkpoints import restore_params, training_record


class Trunk(nnx.Module):
    """Standardise the embedding (``standardise``), then ``depth`` GELU layers of width
    ``hidden``. In training the trainer standardises (``standardise=False``); the saved
    network does it itself, with the training run's statistics."""

    def __init__(self, embed_dim, hidden, depth, *, rngs: nnx.Rngs, standardise: bool = True):
        self.standardise = standardise
        if standardise:
            self.mean = nnx.Variable(jnp.zeros((embed_dim,)))
            self.std = nnx.Variable(jnp.ones((embed_dim,)))
        widths = [embed_dim] + [hidden] * depth
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths, widths[1:], strict=False)]
        )

    def __call__(self, x):
        if self.standardise:
            x = (x - self.mean[...][None, :]) / self.std[...][None, :]
        for layer in self.layers:
            x = jax.nn.gelu(layer(x))
        return x


# build(config, embed_dim, rngs, standardise) -> the method's network
Build = Callable[..., nnx.Module]
# loss(model, embeddings [B, E], latlon [B, 2], key) -> scalar
Loss = Callable[[nnx.Module, jax.Array, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class NetworkObjective:
    """A baseline for the trainer (:class:`locdiff.training.step.Objective`): its network
    ``build(config, embed_dim, rngs, standardise=False)`` and its ``loss``."""

    method: str
    config: object
    build: Build
    loss: Loss

    def init(self, embed_dim: int, rngs: nnx.Rngs) -> nnx.Module:
        return self.build(self.config, embed_dim, rngs, standardise=False)

    def loss_terms(self, model, batch, key, *, train: bool = True):
        return self.loss(model, batch["embedding"], batch["latlon"], key), {}


def _flat(tree) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v) for path, v in leaves}


def network_arrays(params, stats) -> dict[str, np.ndarray]:
    """``params.npz``'s arrays: the trained parameters (a pure dict, as the trainer keeps
    them) as ``param:<path>``, and the standardisation ``stats = (mean, std)`` as the
    trunk's."""
    out = {f"param:{k}": v for k, v in _flat(params).items()}
    out["param:trunk/mean"], out["param:trunk/std"] = (np.asarray(s) for s in stats)
    return out


def load_params(model: nnx.Module, arrays: dict[str, np.ndarray]) -> None:
    """Set the model's state from :func:`network_arrays` (shapes must match)."""
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

    def __init__(self, model: nnx.Module, config, embed_dim: int, meta=None):
        self.model, self.config, self.embed_dim = model, config, embed_dim
        self.meta = meta or {}
        self._graphdef, self._state = nnx.split(model)

    def _batches(self, embeddings, fn, batch_size: int = 1024) -> np.ndarray:
        """``fn(chunk, start)`` over consecutive chunks of ``embeddings``, concatenated."""
        starts = range(0, len(embeddings), batch_size)
        return np.concatenate([np.asarray(fn(embeddings[i : i + batch_size], i)) for i in starts])


def trained_network(objective: NetworkObjective, embed_dim: int, arrays) -> nnx.Module:
    """The saved network (standardising its inputs) with ``arrays``' parameters."""
    model = objective.build(objective.config, embed_dim, nnx.Rngs(0), standardise=True)
    load_params(model, arrays)
    return model


def train_network(
    objective: NetworkObjective, data_path: str, run, make_locator, *, progress=True,
    on_eval=None, extra: dict | None = None,
) -> dict:  # fmt: skip
    """Train ``objective`` into ``run`` with the one trainer, save the best checkpoint's
    parameters (and ``extra`` arrays) to ``params.npz``; return what ``method.json``
    records. ``on_eval(step, make_locator(network))`` follows each validation evaluation."""
    config, stats = objective.config, None

    def arrays_of(params):
        nonlocal stats
        if stats is None:
            saved = files.load_npz(run.condition_stats)
            stats = (saved["mean"], saved["std"])
        return network_arrays(params, stats)

    callback = None
    if on_eval is not None:

        def callback(step, graphdef, ema):
            embed_dim = int(files.read_json(run.data)["embed_dim"])
            on_eval(step, make_locator(trained_network(objective, embed_dim, arrays_of(ema))))

    trainer.train(
        config, data_path, run.path, objective=objective, progress=progress, on_eval=callback
    )
    info = files.read_json(run.data)
    _, params = restore_params(run.path, config, int(info["embed_dim"]), objective=objective)
    files.save_npz(run.params, **arrays_of(params), **(extra or {}))
    return {**info, **training_record(run.path)}


def load_network(name: str, run, meta: dict, objective_of, locator, options: dict):
    """``locator(network, config, embed_dim, meta)`` over the run's saved network
    (``objective_of(config)``: the method's objective)."""
    no_options(name, options)
    objective = objective_of(meta["config"])
    embed_dim = int(meta["embed_dim"])
    arrays = files.load_npz(run.require(run.params, "parameters"))
    return locator(trained_network(objective, embed_dim, arrays), objective.config, embed_dim, meta)


def plain_method(name: str, config_type, build: Build, loss: Loss, locator):
    """``(objective, objective_for, train, load)`` of a baseline whose objective is its
    network and loss alone (no data needed to build it): regression, flow matching."""

    def objective(config) -> NetworkObjective:
        return NetworkObjective(name, config, build, loss)

    def objective_for(config, data_path: str) -> NetworkObjective:
        """The trainer's objective (the data play no part in it)."""
        return objective(config)

    def train(data_path: str, run, config, *, progress=True, on_eval=None) -> dict:
        def make(model):
            return locator(model, config, model.trunk.mean.shape[0])

        return train_network(objective(config), data_path, run, make, progress=progress,
                             on_eval=on_eval)  # fmt: skip

    def load(run, meta: dict, **options):
        def objective_of(values):
            return objective(config_type.from_dict(values))

        return load_network(name, run, meta, objective_of, locator, options)

    return objective, objective_for, train, load

"""Every geolocation method behind one interface: train on an embedding dataset, locate.

``train_method(method, data, workdir)`` trains one of :data:`METHODS` and writes a run
directory; ``load_locator(workdir)`` restores it as a :class:`Locator` whose
``locate(embeddings, top_k=k)`` returns ``[N, k, 2]`` degrees, best first. The methods:

* ``locdiff``: the CS-UNet in SHDD space (:mod:`locdiff.trainer`), modes of the mean
  of K samples.
* ``locdiff-h``: the same model, each prediction snapped to the gallery point of highest
  decoded density near its modes (:func:`locdiff.inference.rerank_gallery`); the gallery
  is the training locations unless one is given.
* ``retrieval``: the nearest training embedding by cosine similarity (IM2GPS, GeoCLIP);
  ``retrieval_k > 1`` takes the densest cluster of the top ``retrieval_k`` instead.
* ``cells``: classification over PlaNet-style adaptive cells of the training locations,
  predicting the cells' mean locations; several ``partitions`` at once are ISN-style:
  a fine cell's score adds the log-probabilities of the coarser cells that contain it.
* ``regression``: a unit-vector head trained with the cosine loss (the maximum
  likelihood direction of a von Mises-Fisher model); one location per input.
* ``coords-diffusion``: flow matching on raw 3-D coordinates (PLONK-style): Euler
  integration from Gaussian noise, samples projected to the sphere, modes by a
  von Mises-Fisher kernel density over the samples.

The trained baselines (``cells``, ``regression``, ``coords-diffusion``) share one MLP
trunk over standardised embeddings and one AdamW loop; their run directory holds
``method.json`` (method, config, data, versions) and ``params.npz``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

import shdd
from locdiff import baselines, data

METHODS = ("locdiff", "locdiff-h", "retrieval", "cells", "regression", "coords-diffusion")
TRAINED = ("cells", "regression", "coords-diffusion")


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
    """Settings of the baselines (each reads only its own fields).

    Attributes:
      hidden, depth: width and number of hidden layers of the MLP trunk.
      steps, batch_size, learning_rate, weight_decay, seed: the AdamW loop (warm-up of
        5% of the steps, cosine decay).
      retrieval_k, radius_km: ``retrieval``: neighbours searched and the cluster radius
        for the densest-of-top-k rule (``retrieval_k = 1``: plain nearest neighbour).
      partitions: ``cells``: ``(min_count, max_count)`` of each adaptive partition.
      num_samples, flow_steps, kde_km: ``coords-diffusion``: samples per input, Euler
        steps, and the kernel width that ranks the samples.
    """

    hidden: int = 512
    depth: int = 2
    steps: int = 2000
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    retrieval_k: int = 1
    radius_km: float = 200.0
    partitions: tuple[tuple[int, int], ...] = ((20, 400),)
    num_samples: int = 32
    flow_steps: int = 50
    kde_km: float = 150.0

    def __post_init__(self):
        checks = {
            "hidden >= 1 and depth >= 1": self.hidden >= 1 and self.depth >= 1,
            "steps >= 1 and batch_size >= 1": self.steps >= 1 and self.batch_size >= 1,
            "learning_rate > 0": self.learning_rate > 0,
            "retrieval_k >= 1 and radius_km > 0": self.retrieval_k >= 1 and self.radius_km > 0,
            "partitions non-empty, 1 <= min <= max": bool(self.partitions)
            and all(1 <= lo <= hi for lo, hi in self.partitions),
            "num_samples >= 1 and flow_steps >= 1": self.num_samples >= 1 and self.flow_steps >= 1,
            "kde_km > 0": self.kde_km > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"bad baseline config: need {', '.join(bad)}")
        object.__setattr__(self, "partitions", tuple(tuple(p) for p in self.partitions))

    @classmethod
    def from_dict(cls, values: dict) -> BaselineConfig:
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown baseline config keys: {sorted(unknown)}")
        return cls(**values)


class Locator(Protocol):
    """What ``load_locator`` returns."""

    method: str
    embed_dim: int

    def locate(self, embeddings, *, top_k: int = 1, seed: int = 0) -> np.ndarray:
        """``[N, top_k, 2]`` degrees, best first."""


def _check_embeddings(embeddings, embed_dim: int) -> np.ndarray:
    embeddings = np.asarray(embeddings, np.float32)
    if embeddings.ndim != 2 or embeddings.shape[1] != embed_dim:
        raise ValueError(
            f"embeddings must be [N, {embed_dim}] for this run, got {list(embeddings.shape)}"
        )
    if not np.all(np.isfinite(embeddings)):
        raise ValueError("embeddings must be finite")
    return embeddings


# --------------------------------------------------------------------------- networks


class Trunk(nnx.Module):
    """Standardise the embedding, then ``depth`` GELU layers of width ``hidden``."""

    def __init__(self, embed_dim: int, hidden: int, depth: int, *, rngs: nnx.Rngs):
        self.mean = nnx.Variable(jnp.zeros((embed_dim,)))
        self.std = nnx.Variable(jnp.ones((embed_dim,)))
        widths = [embed_dim] + [hidden] * depth
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths, widths[1:], strict=False)]
        )

    def __call__(self, x):
        x = (x - self.mean[...][None, :]) / self.std[...][None, :]
        for layer in self.layers:
            x = jax.nn.gelu(layer(x))
        return x


class CellClassifier(nnx.Module):
    """Trunk + one softmax head per partition."""

    def __init__(self, embed_dim, hidden, depth, num_cells: tuple[int, ...], *, rngs):
        self.trunk = Trunk(embed_dim, hidden, depth, rngs=rngs)
        self.heads = nnx.List([nnx.Linear(hidden, n, rngs=rngs) for n in num_cells])

    def __call__(self, x):
        h = self.trunk(x)
        return [jax.nn.log_softmax(head(h), axis=-1) for head in self.heads]


class Regressor(nnx.Module):
    """Trunk + a unit 3-vector."""

    def __init__(self, embed_dim, hidden, depth, *, rngs):
        self.trunk = Trunk(embed_dim, hidden, depth, rngs=rngs)
        self.head = nnx.Linear(hidden, 3, rngs=rngs)

    def __call__(self, x):
        v = self.head(self.trunk(x))
        return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), 1e-6)


class FlowNet(nnx.Module):
    """Velocity field ``v(x_t, t | condition)`` on R^3: trunk features + ``x_t`` + Fourier(t)."""

    def __init__(self, embed_dim, hidden, depth, *, rngs):
        self.trunk = Trunk(embed_dim, hidden, depth, rngs=rngs)
        self.mix1 = nnx.Linear(hidden + 3 + 32, hidden, rngs=rngs)
        self.mix2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, 3, rngs=rngs)

    def features(self, cond):
        return self.trunk(cond)

    def velocity(self, h, x_t, t):
        freqs = jnp.exp(jnp.linspace(0.0, math.log(100.0), 16))  # [16]
        angles = t[:, None] * freqs[None, :]
        z = jnp.concatenate([h, x_t, jnp.cos(angles), jnp.sin(angles)], axis=-1)
        return self.out(jax.nn.gelu(self.mix2(jax.nn.gelu(self.mix1(z)))))


def _build(method: str, config: BaselineConfig, embed_dim: int, extra: dict):
    rngs = nnx.Rngs(config.seed)
    if method == "cells":
        num_cells = tuple(len(c) for c in extra["centres"])
        return CellClassifier(embed_dim, config.hidden, config.depth, num_cells, rngs=rngs)
    if method == "regression":
        return Regressor(embed_dim, config.hidden, config.depth, rngs=rngs)
    return FlowNet(embed_dim, config.hidden, config.depth, rngs=rngs)


def _loss(method: str, model, x, targets, key):
    if method == "cells":
        logps = model(x)  # one [B, C_j] per partition
        return -sum(
            jnp.mean(jnp.take_along_axis(lp, targets[:, j : j + 1], axis=1))
            for j, lp in enumerate(logps)
        )
    xyz = targets  # [B, 3]
    if method == "regression":
        return jnp.mean(1.0 - jnp.sum(model(x) * xyz, axis=-1))
    k_noise, k_t = jax.random.split(key)
    x0 = jax.random.normal(k_noise, xyz.shape)
    t = jax.random.uniform(k_t, (xyz.shape[0],))
    x_t = (1.0 - t)[:, None] * x0 + t[:, None] * xyz
    v = model.velocity(model.features(x), x_t, t)
    return jnp.mean(jnp.sum((v - (xyz - x0)) ** 2, axis=-1))


def _fit(method: str, model, x: np.ndarray, targets: np.ndarray, config: BaselineConfig, progress):
    warmup = max(1, config.steps // 20)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, warmup, max(config.steps, warmup + 1)
    )
    tx = optax.adamw(schedule, weight_decay=config.weight_decay)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, xb, yb, key):
        loss, grads = nnx.value_and_grad(lambda m: _loss(method, m, xb, yb, key))(model)
        optimizer.update(model, grads)
        return loss

    rng = np.random.default_rng(config.seed)
    key = jax.random.key(config.seed)
    batch = min(config.batch_size, len(x))
    bar = tqdm(range(config.steps), disable=not progress, desc=f"train {method}", unit="step")
    loss = float("nan")
    for i in bar:
        index = rng.integers(0, len(x), batch)
        loss = step(model, optimizer, x[index], targets[index], jax.random.fold_in(key, i))
        if (i + 1) % 100 == 0 or i + 1 == config.steps:
            loss = float(loss)
            if not np.isfinite(loss):
                raise FloatingPointError(f"{method}: loss is {loss} at step {i + 1}")
            bar.set_postfix(loss=f"{loss:.4g}")
    return float(loss)


# --------------------------------------------------------------------------- locators


class RetrievalLocator:
    """Cosine retrieval over the training embeddings."""

    method = "retrieval"

    def __init__(self, embeddings, latlon, config: BaselineConfig):
        self.gallery = np.asarray(embeddings, np.float32)
        self.latlon = np.asarray(latlon, np.float64)
        self.config = config
        self.embed_dim = self.gallery.shape[1]

    def locate(self, embeddings, *, top_k: int = 1, seed: int = 0) -> np.ndarray:
        embeddings = _check_embeddings(embeddings, self.embed_dim)
        c = self.config
        out = baselines.retrieval(
            embeddings, self.gallery, self.latlon, k=c.retrieval_k, radius_km=c.radius_km
        )
        return np.repeat(out[:, None, :], top_k, axis=1)


class _NetworkLocator:
    """Shared parts of the trained baselines: a restored nnx module and its config."""

    def __init__(self, method, model, config: BaselineConfig, embed_dim: int, extra: dict):
        self.method, self.model, self.config = method, model, config
        self.embed_dim, self.extra = embed_dim, extra
        self._graphdef, self._state = nnx.split(model)

    def _batches(self, embeddings, fn, batch_size: int = 1024):
        """``fn(chunk, start)`` over consecutive chunks, concatenated."""
        embeddings = _check_embeddings(embeddings, self.embed_dim)
        starts = range(0, len(embeddings), batch_size)
        return np.concatenate([np.asarray(fn(embeddings[i : i + batch_size], i)) for i in starts])


class CellsLocator(_NetworkLocator):
    """Top-k cells of the finest partition (ISN-scored), answered by their centres."""

    def __init__(self, *args):
        super().__init__(*args)
        parents = [jnp.asarray(p, jnp.int32) for p in self.extra["parents"]]

        @jax.jit
        def scores(state, x):
            logps = nnx.merge(self._graphdef, state)(x)
            fine = self.extra["finest"]
            total = logps[fine]
            for j, lp in enumerate(logps):
                if j != fine:
                    total = total + jnp.take(lp, parents[j], axis=1)
            return total

        self._scores = scores

    def locate(self, embeddings, *, top_k: int = 1, seed: int = 0) -> np.ndarray:
        s = self._batches(embeddings, lambda x, _: self._scores(self._state, x))  # [N, C]
        top = np.argsort(-s, axis=1)[:, :top_k]
        centres = self.extra["centres"][self.extra["finest"]]
        if top.shape[1] < top_k:  # fewer cells than top_k: repeat the last
            top = np.concatenate([top, np.repeat(top[:, -1:], top_k - top.shape[1], 1)], 1)
        return centres[top]


class RegressionLocator(_NetworkLocator):
    """The regressed unit vector; one location, repeated ``top_k`` times."""

    def __init__(self, *args):
        super().__init__(*args)
        self._apply = jax.jit(lambda state, x: nnx.merge(self._graphdef, state)(x))

    def locate(self, embeddings, *, top_k: int = 1, seed: int = 0) -> np.ndarray:
        xyz = self._batches(embeddings, lambda x, _: self._apply(self._state, x))
        latlon = np.asarray(shdd.sphere.xyz_to_latlon(xyz.astype(np.float64)))
        return np.repeat(latlon[:, None, :], top_k, axis=1)


class FlowLocator(_NetworkLocator):
    """Flow-matching samples on R^3, projected to the sphere; modes by greedy kernel
    density over the samples (each mode suppresses samples within ``2 kde_km``)."""

    def __init__(self, *args):
        super().__init__(*args)
        c = self.config

        @jax.jit
        def sample(state, cond, key):
            model = nnx.merge(self._graphdef, state)
            b, k = cond.shape[0], c.num_samples
            h = jnp.repeat(model.features(cond), k, axis=0)  # [B*K, hidden]
            x = jax.random.normal(key, (b * k, 3))
            dt = 1.0 / c.flow_steps

            def euler(x, i):
                t = jnp.full((b * k,), i * dt)
                return x + dt * model.velocity(h, x, t), None

            x, _ = jax.lax.scan(euler, x, jnp.arange(c.flow_steps))
            return (x / jnp.linalg.norm(x, axis=-1, keepdims=True)).reshape(b, k, 3)

        self._sample = sample

    def samples(self, embeddings, *, seed: int = 0) -> np.ndarray:
        """``[N, num_samples, 3]`` unit vectors."""
        key = jax.random.key(seed)
        return self._batches(
            embeddings,
            lambda x, start: self._sample(self._state, x, jax.random.fold_in(key, start)),
            batch_size=256,
        )

    def locate(self, embeddings, *, top_k: int = 1, seed: int = 0) -> np.ndarray:
        xyz = self.samples(embeddings, seed=seed).astype(np.float64)  # [N, K, 3]
        kappa = 1.0 / shdd.sphere.km_to_radians(self.config.kde_km) ** 2
        density = np.exp(kappa * (np.einsum("nkd,njd->nkj", xyz, xyz) - 1.0)).sum(-1)  # [N, K]
        out = np.empty((len(xyz), top_k, 2))
        radius = math.cos(2 * shdd.sphere.km_to_radians(self.config.kde_km))
        for i in range(len(xyz)):  # greedy: densest sample, then suppress its neighbourhood
            d = density[i].copy()
            for r in range(top_k):
                j = int(np.argmax(d))
                out[i, r] = shdd.sphere.xyz_to_latlon(xyz[i, j])
                if np.isfinite(d).sum() > 1:
                    d[xyz[i] @ xyz[i, j] > radius] = -np.inf
                    d[j] = -np.inf
        return out


class LocDiffLocator:
    """A LocDiff run (``gallery``: LocDiff-H re-ranking over ``[G, 2]`` degrees)."""

    def __init__(self, workdir: str, gallery=None, **predict_kwargs):
        from locdiff.inference import Geolocator

        self.geolocator = Geolocator.from_checkpoint(workdir)
        self.gallery = gallery
        self.method = "locdiff" if gallery is None else "locdiff-h"
        self.embed_dim = self.geolocator.embed_dim
        self.predict_kwargs = predict_kwargs

    def predict(self, embeddings, *, top_k: int = 1, seed: int = 0, progress: bool = False):
        from locdiff.evaluate import predict_all

        return predict_all(
            self.geolocator,
            embeddings,
            top_k=top_k,
            seed=seed,
            progress=progress,
            **self.predict_kwargs,
        )

    def locate(self, embeddings, *, top_k: int = 1, seed: int = 0) -> np.ndarray:
        from locdiff.inference import rerank_gallery

        prediction = self.predict(embeddings, top_k=top_k, seed=seed)
        latlon = prediction.latlon.astype(np.float64)
        if self.gallery is not None:
            L = self.geolocator.config.model.L
            latlon[:, 0] = rerank_gallery(prediction, self.gallery, L=L)
        return latlon


_LOCATORS = {
    "cells": CellsLocator,
    "regression": RegressionLocator,
    "coords-diffusion": FlowLocator,
}


# --------------------------------------------------------------------------- train / load


def _cell_extra(latlon: np.ndarray, partitions) -> tuple[dict, np.ndarray]:
    parts = [baselines.adaptive_cells(latlon, min_count=lo, max_count=hi) for lo, hi in partitions]
    finest = int(np.argmax([len(p.centres) for p in parts]))
    fine = parts[finest].labels
    parents = []
    for p in parts:  # the coarse cell holding most of each fine cell's points
        table = np.zeros((len(parts[finest].centres), len(p.centres)), np.int64)
        np.add.at(table, (fine, p.labels), 1)
        parents.append(table.argmax(axis=1))
    labels = np.stack([p.labels for p in parts], axis=1)  # [N, partitions]
    extra = {"centres": [p.centres for p in parts], "parents": parents, "finest": finest}
    return extra, labels


def _save_extra(path: str, extra: dict, params) -> None:
    flat = {
        "/".join(str(getattr(k, "key", k)) for k in path_): np.asarray(v)
        for path_, v in jax.tree_util.tree_flatten_with_path(params)[0]
    }
    arrays = {f"param:{k}": v for k, v in flat.items()}
    for j, (c, p) in enumerate(
        zip(extra.get("centres", []), extra.get("parents", []), strict=True)
    ):
        arrays[f"centres:{j}"], arrays[f"parents:{j}"] = c, p
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load_params(model, arrays) -> None:
    state = nnx.state(model)
    pure = nnx.to_pure_dict(state)
    leaves = jax.tree_util.tree_flatten_with_path(pure)[0]
    values = []
    for path_, leaf in leaves:
        name = "param:" + "/".join(str(getattr(k, "key", k)) for k in path_)
        if name not in arrays or arrays[name].shape != np.shape(leaf):
            raise ValueError(f"params.npz does not match the model at {name}")
        values.append(arrays[name])
    pure = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(pure), values)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)


def _write_meta(workdir: str, meta: dict) -> None:
    from locdiff.trainer import versions

    tmp = os.path.join(workdir, "method.json.tmp")
    with open(tmp, "w") as f:
        json.dump({**meta, "versions": versions()}, f, indent=2)
    os.replace(tmp, os.path.join(workdir, "method.json"))


def train_method(
    method: str,
    data_path: str,
    workdir: str,
    *,
    config=None,
    gallery=None,
    progress: bool = True,
):
    """Train ``method`` on ``data_path`` (``.npz`` with ``embeddings`` and ``latlon``) into
    ``workdir``; returns its :class:`Locator`.

    Args:
      method: one of :data:`METHODS`.
      config: a :class:`locdiff.config.Config` for ``locdiff``/``locdiff-h``, a
        :class:`BaselineConfig` for the others (None: defaults).
      gallery: ``locdiff-h`` only: ``[G, 2]`` gallery degrees (default: the training
        locations).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    os.makedirs(workdir, exist_ok=True)
    if method in ("locdiff", "locdiff-h"):
        from locdiff import trainer
        from locdiff.config import Config

        trainer.train(config or Config(), data_path, workdir, progress=progress)
        meta = {"method": method, "data": os.path.abspath(data_path)}
        if method == "locdiff-h":
            if gallery is None:
                gallery = data.load_npz(data_path)["latlon"]
            np.save(os.path.join(workdir, "gallery.npy"), np.asarray(gallery, np.float64))
        _write_meta(workdir, meta)
        return load_locator(workdir)

    config = config or BaselineConfig()
    if not isinstance(config, BaselineConfig):
        raise TypeError(f"{method} takes a BaselineConfig, got {type(config).__name__}")
    arrays = data.load_npz(data_path)
    x, latlon = arrays["embeddings"].astype(np.float32), arrays["latlon"].astype(np.float64)
    meta = {
        "method": method,
        "config": dataclasses.asdict(config),
        "data": os.path.abspath(data_path),
        "rows": len(x),
        "embed_dim": int(x.shape[1]),
        "encoder": str(arrays["encoder"]) if "encoder" in arrays else None,
    }
    if method == "retrieval":
        np.savez(os.path.join(workdir, "params.npz"), embeddings=x, latlon=latlon)
        _write_meta(workdir, meta)
        return RetrievalLocator(x, latlon, config)

    extra: dict = {}
    if method == "cells":
        extra, targets = _cell_extra(latlon, config.partitions)
        meta["finest"] = extra["finest"]
    else:
        targets = np.asarray(shdd.sphere.latlon_to_xyz(latlon), np.float32)
    model = _build(method, config, x.shape[1], extra)
    model.trunk.mean[...] = jnp.asarray(x.mean(axis=0))
    model.trunk.std[...] = jnp.asarray(x.std(axis=0) + 1e-6)
    meta["final_loss"] = _fit(method, model, x, targets, config, progress)
    _save_extra(os.path.join(workdir, "params.npz"), extra, nnx.to_pure_dict(nnx.state(model)))
    _write_meta(workdir, meta)
    return _LOCATORS[method](method, model, config, x.shape[1], extra)


def load_locator(workdir: str, **predict_kwargs) -> Locator:
    """The :class:`Locator` of a run directory written by :func:`train_method` or
    ``locdiff train`` (a plain LocDiff run has no ``method.json``).

    ``predict_kwargs`` (``num_samples``, ``steps``, ``guidance``) apply to LocDiff runs.
    """
    meta_path = os.path.join(workdir, "method.json")
    if not os.path.exists(meta_path):
        return LocDiffLocator(workdir, **predict_kwargs)
    with open(meta_path) as f:
        meta = json.load(f)
    method = meta["method"]
    if method in ("locdiff", "locdiff-h"):
        gallery = None
        if method == "locdiff-h":
            gallery = np.load(os.path.join(workdir, "gallery.npy"))
        return LocDiffLocator(workdir, gallery, **predict_kwargs)
    config = BaselineConfig.from_dict(meta["config"])
    params_path = os.path.join(workdir, "params.npz")
    if not os.path.exists(params_path):
        raise FileNotFoundError(f"{workdir}: no params.npz (training did not finish)")
    with np.load(params_path) as f:
        arrays = {k: f[k] for k in f.files}
    if method == "retrieval":
        return RetrievalLocator(arrays["embeddings"], arrays["latlon"], config)
    extra: dict = {}
    if method == "cells":
        n = len(config.partitions)
        extra = {
            "centres": [arrays[f"centres:{j}"] for j in range(n)],
            "parents": [arrays[f"parents:{j}"] for j in range(n)],
            "finest": int(meta["finest"]),
        }
    model = _build(method, config, int(meta["embed_dim"]), extra)
    _load_params(model, arrays)
    return _LOCATORS[method](method, model, config, int(meta["embed_dim"]), extra)

"""Every geolocation method behind one surface: train on an embedding dataset, predict.

    locator = train_or_load("cells", "train.npz", "runs/cells", config)
    prediction = locator.predict(embeddings, top_k=5)   # a locdiff.Prediction
    locator = load_locator("runs/cells")                 # later, from its run directory

One module per method, each with ``Config``, ``train`` and ``load``
(:mod:`locdiff.methods.base`):

* ``locdiff`` (:mod:`.shdd_diffusion`): the CS-UNet in SHDD space; modes of the mean of K
  samples, with coefficients and, on request, probability maps.
* ``locdiff-h`` (:mod:`.shdd_hybrid`): retrieval's candidates re-ranked by LocDiff's
  density (:mod:`locdiff.infer.hybrid`); the gallery is the training set unless one is given.
* ``retrieval`` (:mod:`.retrieval`): the nearest training embedding by cosine similarity.
* ``cells`` (:mod:`.cells`): classification over PlaNet-style adaptive cells, ISN-style.
* ``regression`` (:mod:`.regression`): a unit vector with the cosine loss.
* ``coords-diffusion`` (:mod:`.coords_diffusion`): flow matching on raw 3-D coordinates.
* ``geotoken`` (:mod:`.geotoken`): S2 cell tokens predicted by a transformer decoder.
* ``geotoken-rag`` (:mod:`.geotoken_rag`): the same, reading the query's nearest training
  photos and their cells.

Every finished run's ``method.json`` records the method, its config, the training data
and the training seconds (:mod:`locdiff.io.rundir`).
"""

from __future__ import annotations

import os
import time
from types import ModuleType

from locdiff.config import assign
from locdiff.data import datasets as data
from locdiff.errors import RunError
from locdiff.io.rundir import RunDir
from locdiff.methods import (
    cells,
    coords_diffusion,
    geotoken,
    geotoken_rag,
    regression,
    retrieval,
    shdd_diffusion,
    shdd_hybrid,
)
from locdiff.methods.base import Locator
from locdiff.methods.configs import BaselineConfig

REGISTRY: dict[str, ModuleType] = {
    "locdiff": shdd_diffusion,
    "locdiff-h": shdd_hybrid,
    "retrieval": retrieval,
    "cells": cells,
    "regression": regression,
    "coords-diffusion": coords_diffusion,
    "geotoken": geotoken,
    "geotoken-rag": geotoken_rag,
}
METHODS = tuple(REGISTRY)


def module(method: str) -> ModuleType:
    """The module of ``method``; ``ValueError`` for an unknown name."""
    if method not in REGISTRY:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    return REGISTRY[method]


def default_config(method: str):
    """The default config of ``method`` (``module(method).Config``)."""
    return module(method).Config()


def config_from_dict(method: str, values: dict):
    """``method``'s config from a dict (a JSON config file); unknown keys are refused."""
    return module(method).Config.from_dict(values)


def train_method(
    method: str, data_path: str, workdir: str, *, config=None, progress=True, **options
):
    """Train ``method`` on ``data_path`` into ``workdir`` and return its :class:`Locator`.

    Args:
      method: one of :data:`METHODS`.
      config: the method's config (``module(method).Config``; None: its defaults; a
        :class:`BaselineConfig` gives a baseline its share of the shared settings).
      options: ``on_eval(step, locator)``, called after each validation evaluation of
        a learned method (for learning curves); ``gallery=(embeddings, latlon)`` for
        ``locdiff-h`` (default: the training set).

    ``method.json`` records, for learned methods, the steps, best step, samples seen,
    epochs, validation losses and training seconds (cumulative over resumes).
    """
    mod = module(method)
    config = mod.Config() if config is None else config
    if isinstance(config, BaselineConfig):
        config = config.for_method(method)  # the baselines' shared settings
    if not isinstance(config, mod.Config):
        raise TypeError(f"{method} takes a {mod.Config.__name__}, got {type(config).__name__}")
    run = RunDir(workdir)
    os.makedirs(workdir, exist_ok=True)
    start = time.perf_counter()
    info = mod.train(data_path, run, config, progress=progress, **options)
    info = {k: v for k, v in info.items() if k != "method"}  # data.json's: the network's
    meta = {"method": method, "config": config.to_dict(), **info}
    meta.setdefault("train_seconds", time.perf_counter() - start)
    run.write_method(meta)
    return mod.load(run, meta)


def train_or_load(
    method: str, data_path: str, workdir: str, config=None, *, progress=True, on_eval=None
):
    """The run in ``workdir`` if it finished with the same method and config, else
    :func:`train_method`: a run cut off mid-way, or a finished one given a higher cap,
    resumes from its checkpoint (``on_eval`` is then called only for the evaluations
    still to come); a baseline run written before the one trainer (no checkpoints) is
    replaced.

    Raises:
      RunError: ``workdir`` holds a finished run of another method, or trained on other
        data (a run is never reused, nor resumed, on data it did not train on).
      ValueError: ``workdir`` holds a trainer's run of another config (the trainer's
        refusal: resume with the same settings or use a new directory).
    """
    mod = module(method)
    config = mod.Config() if config is None else config
    if isinstance(config, BaselineConfig):
        config = config.for_method(method)
    run = RunDir(workdir)
    if run.finished:
        meta = run.read_method()
        _check_same_data(workdir, meta, data_path)
        if meta["method"] != method:
            raise RunError(f"{workdir} holds a {meta['method']} run; train {method} elsewhere")
        stored = meta.get("config")  # absent in runs written before locdiff 0.2
        current = stored and mod.Config.upgrade(stored) == stored
        if current and mod.Config.from_dict(stored) == config:
            calibrate_run(workdir)  # a run calibrated by an earlier version: choose again
            return mod.load(run, meta)
        if not run.started:  # no checkpoints to resume: trained before the one trainer
            run.clear()
    options = {} if on_eval is None else {"on_eval": on_eval}
    return train_method(method, data_path, workdir, config=config, progress=progress, **options)


def _check_same_data(workdir: str, meta: dict, data_path: str) -> None:
    """``RunError`` unless the finished run in ``workdir`` (``meta``) was trained on
    ``data_path``: the same file name (a moved cache stays usable) and number of rows."""
    trained_on, rows = meta.get("data"), meta.get("rows")
    if not trained_on:
        return
    other = os.path.basename(trained_on) != os.path.basename(data_path)
    if not other and rows is not None:
        other = rows != len(data.open_dataset(data_path))
    if other:
        raise RunError(
            f"{workdir}: trained on {trained_on} ({rows} rows), not "
            f"{os.path.abspath(data_path)}; train into another directory"
        )


def calibrate_run(workdir: str) -> None:
    """Make a finished LocDiff or LocDiff-H run's choices current: its guidance, map
    rules and snapping (:func:`locdiff.methods.shdd_diffusion.recalibrate`) and, for LocDiff-H,
    its hybrid rule (``hybrid.json``), each chosen again only where it was made by an
    earlier version. Other methods choose nothing after training."""
    run = RunDir(workdir)
    meta = run.read_method()
    if not module(meta["method"]).CALIBRATED_MAPS:  # calibration is of maps
        return
    shdd_diffusion.recalibrate(run, meta)
    if module(meta["method"]).TAKES_GALLERY:
        shdd_hybrid.rule_for(run, shdd_diffusion.load(run, meta), meta["data"])


def load_locator(workdir: str, *, gallery=None, **options) -> Locator:
    """The :class:`Locator` of a finished run directory.

    Args:
      gallery: a :class:`locdiff.infer.hybrid.Gallery`: a LocDiff run becomes LocDiff-H
        searching it (a ``locdiff-h`` run's own gallery is replaced).
      options: LocDiff's sampling options (``num_samples``, ``sample_steps``, ``guidance``,
        ``batch_size``); None leaves the run's default.
    """
    run = RunDir(workdir)
    meta = run.read_method()
    method = meta["method"]
    if gallery is not None:
        if not module(method).CALIBRATED_MAPS:  # LocDiff's density re-ranks the gallery
            raise ValueError(f"a gallery goes with LocDiff runs; {workdir} is {method}")
        return shdd_hybrid.load(run, meta, gallery=gallery, **options)
    return module(method).load(run, meta, **options)


FLAGS = {  # the command line's shorthands, as dotted config fields
    "steps": "train.steps",
    "batch_size": "train.batch_size",
    "seed": "train.seed",
    "L": "model.L",
    "loss": "diffusion.loss",
}


def apply_flags(config, **flags):
    """``config`` with the command line's flags (None: unchanged): ``steps``,
    ``batch_size``, ``seed`` for every learned method; ``L`` and ``loss`` for LocDiff."""
    flags = {FLAGS[k]: v for k, v in flags.items() if v is not None}
    return assign(config, **flags)


def set_fields(config, assignments: list[str]):
    """``config`` with ``SECTION.KEY=VALUE`` assignments (``locdiff train --set``)."""
    settings = [text.partition("=") for text in assignments]
    bad = [k for k, eq, _ in settings if not eq]
    if bad:
        raise ValueError(f"--set takes SECTION.KEY=VALUE, got {bad[0]!r}")
    return assign(config, **{k: v for k, _, v in settings})


__all__ = [
    "METHODS",
    "REGISTRY",
    "BaselineConfig",
    "Locator",
    "apply_flags",
    "assign",
    "set_fields",
    "config_from_dict",
    "default_config",
    "load_locator",
    "module",
    "train_method",
    "train_or_load",
]

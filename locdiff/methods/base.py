"""The fixed surface every method shares: the locator base class, and the training data.

A method module (``locdiff/methods/<name>.py``) defines

* ``Config``: the dataclass of sections its ``--config`` file holds
  (:mod:`locdiff.methods.configs`; LocDiff's is :class:`locdiff.config.Config`);
* ``LEARNED``, ``CALIBRATED_MAPS``, ``TAKES_GALLERY``: what the method is (the registry and
  the command line read these, never the method's name); its locator's ``gives_maps`` and
  ``map_title`` say whether ``predict(maps=True)`` gives maps and what they are called;
* ``train(data_path, run, config, *, progress, on_eval) -> dict``: trains into the run
  directory and returns what ``method.json`` records about it (data rows, width,
  encoder, training budget, ...);
* ``objective_for(config, data_path)``, for a learned method: its network and loss for
  the one trainer (:class:`locdiff.training.step.Objective`);
* ``load(run, meta, **options) -> Locator``: restores the trained run.

:mod:`locdiff.methods` keeps the registry and writes ``method.json``; a locator's
``predict(embeddings, top_k=...)`` returns a :class:`locdiff.infer.prediction.Prediction`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from locdiff.data import datasets as data
from locdiff.infer.prediction import Prediction, check_embeddings


class Locator:
    """A trained method: ``predict(embeddings [N, E], top_k=k) -> Prediction``.

    Subclasses set ``method`` and ``embed_dim`` and implement :meth:`_predict` on checked
    float32 embeddings; ``meta`` is the run's ``method.json`` (training data, seconds).
    """

    method: str = ""
    embed_dim: int = 0
    meta: dict[str, Any] = {}
    gives_maps: bool = False  # whether predict(maps=True) gives probability maps
    map_title: str = ""  # what its maps are called on a drawn map (where gives_maps)

    def predict(
        self,
        embeddings,
        *,
        top_k: int = 1,
        seed: int = 0,
        maps: bool = False,
        progress: bool = False,
        map_resolution: float = 1.0,
        doubt: bool = False,
    ) -> Prediction:
        """Top-``top_k`` locations of each embedding, best first (deterministic per ``seed``).

        ``maps=True`` asks for probability maps of ``map_resolution`` degrees (LocDiff's,
        and GeoToken's of its decoded cells: where ``gives_maps``) and ``doubt=True`` for
        each answer's doubt (:mod:`locdiff.infer.reference`): only LocDiff gives a doubt.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if maps and not self.gives_maps:
            raise ValueError(f"{self.method} gives locations, not probability maps")
        if doubt:
            raise ValueError(f"{self.method} gives locations, not the doubt of its answers")
        embeddings = check_embeddings(embeddings, self.embed_dim)
        if maps:
            return self._predict_maps(embeddings, top_k=top_k, seed=seed,
                                      resolution_deg=map_resolution)  # fmt: skip
        return self._predict(embeddings, top_k=top_k, seed=seed)

    def locate(self, embeddings, *, top_k: int = 1, seed: int = 0) -> np.ndarray:
        """``[N, top_k, 2]`` degrees: ``predict(...).latlon``."""
        return self.predict(embeddings, top_k=top_k, seed=seed).latlon

    def _predict(self, embeddings: np.ndarray, *, top_k: int, seed: int) -> Prediction:
        raise NotImplementedError

    def _predict_maps(
        self, embeddings: np.ndarray, *, top_k: int, seed: int, resolution_deg: float
    ) -> Prediction:
        """:meth:`_predict` with ``maps`` and ``credible_km2``, where ``gives_maps``."""
        raise NotImplementedError


def read_training_data(data_path: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(embeddings [N, E] float32, latlon [N, 2] float64, info)`` of an ``.npz`` dataset;
    ``info`` is what ``method.json`` records about it."""
    arrays = data.load_npz(data_path)
    x, latlon = arrays["embeddings"], arrays["latlon"].astype(np.float64)
    info = {
        "data": os.path.abspath(data_path),
        "rows": len(x),
        "embed_dim": int(x.shape[1]),
        "encoder": str(arrays["encoder"]) if "encoder" in arrays else None,
    }
    return x, latlon, info


def no_options(method: str, options: dict) -> None:
    """Baselines take no sampling options: refuse any that is set (``batch_size`` is
    LocDiff's; the baselines batch as they need)."""
    given = sorted(k for k, v in options.items() if v is not None and k != "batch_size")
    if given:
        raise ValueError(f"{method} takes no sampling options, got {', '.join(given)}")

"""The run directory: one layout, written and read only through :class:`RunDir`.

    <workdir>/
      method.json          every finished run: method, training data, rows, embedding
                           width, image encoder, config, training seconds, versions
      params.npz           trained baselines: the best checkpoint's parameters, with the
                           standardisation (retrieval: its gallery; cells: its cells)
      gallery.npz          locdiff-h: a given gallery (unit embeddings, locations)
      hybrid.json          locdiff-h: the rule chosen on the validation split
      config.json          learned methods: the run's config (written at the start)
      versions.json        learned methods: package versions and devices (at the start)
      data.json            learned methods: the method, training data path, rows, width,
                           encoder (at the start)
      condition_stats.npz  learned methods: per-feature mean and std of the training
                           conditions
      metrics.jsonl        learned methods: one line of training metrics every log_every
                           steps
      training.json        learned methods: validation losses, best step, cumulative
                           seconds
      calibration.json     LocDiff: the guidance scale, the map rules (power, tail, by
                           bin of doubt) and the snapping radius chosen on validation
      decoding.json        geotoken: the decoding (beam width or sampling) chosen on
                           validation
      location_prior.npz   LocDiff: the training locations' occupied cells (centroids,
                           density) that modes snap to (locdiff.infer.snapping)
      reference.npz        LocDiff: training conditions and places, for the doubt of
                           each answer (locdiff.infer.reference)
      checkpoints/         learned methods: Orbax checkpoints (train state + data-iterator
                           state)

``method.json`` is written last, when training has finished: its presence is what makes
a run reusable (:func:`locdiff.methods.train_or_load`). A LocDiff run trained by
:func:`locdiff.training.trainer.train` alone has no ``method.json`` and is read as ``locdiff``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from locdiff.errors import RunError
from locdiff.io import files
from locdiff.io.provenance import versions


def _process_index() -> int:
    """This process's index among JAX's (0 without multi-host JAX)."""
    import jax

    return jax.process_index()


@dataclasses.dataclass(frozen=True)
class RunDir:
    """The files of the run in ``path`` (nothing is created until written)."""

    path: str

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    method = property(lambda self: self.file("method.json"))
    params = property(lambda self: self.file("params.npz"))
    gallery = property(lambda self: self.file("gallery.npz"))
    config = property(lambda self: self.file("config.json"))
    versions = property(lambda self: self.file("versions.json"))
    data = property(lambda self: self.file("data.json"))
    condition_stats = property(lambda self: self.file("condition_stats.npz"))
    location_prior = property(lambda self: self.file("location_prior.npz"))
    reference = property(lambda self: self.file("reference.npz"))
    metrics = property(lambda self: self.file("metrics.jsonl"))
    training = property(lambda self: self.file("training.json"))
    checkpoints = property(lambda self: os.path.abspath(self.file("checkpoints")))

    @property
    def finished(self) -> bool:
        """Whether training finished (``method.json`` was written)."""
        return os.path.exists(self.method)

    @property
    def started(self) -> bool:
        """Whether the trainer started this run (it has a ``config.json`` and ``data.json``)."""
        return os.path.exists(self.config) and os.path.exists(self.data)

    @property
    def trained_method(self) -> str | None:
        """The method the trainer started this run for (``data.json``; None: none)."""
        if not self.started:
            return None
        return files.read_json(self.data).get("method", "locdiff")  # LocDiff before 0.3

    @property
    def is_locdiff(self) -> bool:
        """Whether this is a LocDiff run started by the trainer."""
        return self.trained_method == "locdiff"

    def read_method(self) -> dict[str, Any]:
        """The run's ``method.json``; a LocDiff run without one reads as ``locdiff``.

        Raises:
          RunError: not a run directory, or training did not finish.
        """
        if self.finished:
            return files.read_json(self.method)
        if self.is_locdiff:
            return {**files.read_json(self.data), "method": "locdiff"}
        if not os.path.isdir(self.path):
            raise RunError(f"{self.path}: no such run directory")
        raise RunError(f"{self.path}: not a finished run (no method.json; did training finish?)")

    def clear(self) -> None:
        """Remove a finished run that has nothing to resume from (a baseline trained
        before the one trainer, or retrieval's gallery): ``method.json``, ``params.npz``
        and the experiments' ``curve.jsonl``; nothing else in the directory."""
        if _process_index() != 0:
            return
        for path in (self.method, self.params, self.file("curve.jsonl")):
            if os.path.exists(path):
                os.remove(path)

    def write_method(self, meta: dict[str, Any]) -> None:
        """Write ``method.json`` (with the package versions): the run is finished."""
        os.makedirs(self.path, exist_ok=True)
        files.write_json(self.method, {**meta, "versions": versions()})

    def require(self, path: str, what: str) -> str:
        """``path`` if it exists, else a :class:`RunError` saying ``what`` is missing."""
        if not os.path.exists(path):
            raise RunError(f"{self.path}: no {what} ({os.path.basename(path)})")
        return path

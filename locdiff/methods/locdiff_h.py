"""LocDiff-H: a LocDiff run plus a gallery of locations (:func:`locdiff.hybrid.locdiff_h`).

Trained as LocDiff; the gallery (``[G, 2]`` degrees, the training locations unless one
is given) is kept in the run directory's ``gallery.npy``.
"""

from __future__ import annotations

import numpy as np

from locdiff import data, files
from locdiff.config import Config
from locdiff.hybrid import locdiff_h
from locdiff.methods import locdiff as locdiff_method
from locdiff.prediction import Prediction


class LocDiffHLocator(locdiff_method.LocDiffLocator):
    """LocDiff's prediction with its first location snapped to the gallery."""

    method = "locdiff-h"

    def __init__(self, geolocator, gallery, meta=None, **kwargs):
        super().__init__(geolocator, meta, **kwargs)
        self.gallery = np.asarray(gallery, np.float64)

    def predict(self, embeddings, *, top_k: int = 1, **kwargs) -> Prediction:
        return locdiff_h(super().predict(embeddings, top_k=top_k, **kwargs), self.gallery, L=self.L)


def train(data_path: str, run, config: Config, *, progress: bool = True, gallery=None) -> dict:
    info = locdiff_method.train(data_path, run, config, progress=progress)
    if gallery is None:
        gallery = data.load_npz(data_path)["latlon"]
    with files.atomic_path(run.gallery) as tmp:
        np.save(tmp, np.asarray(gallery, np.float64))
    return info


def load(run, meta: dict, *, gallery=None, batch_size=None, **sampling) -> LocDiffHLocator:
    if gallery is None:
        gallery = np.load(run.require(run.gallery, "LocDiff-H gallery"))
    base = locdiff_method.load(run, meta, batch_size=batch_size, **sampling)
    return LocDiffHLocator(base.geolocator, gallery, meta, batch_size=base.batch_size, **sampling)

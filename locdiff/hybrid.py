"""LocDiff-H: LocDiff's answer snapped to a gallery of known locations.

The one implementation of the hybrid, called by the ``locdiff-h`` method, ``locdiff
evaluate --gallery``, the notebooks and every experiment. Today's rule: among the
``neighbours`` gallery points nearest each of LocDiff's modes, take the one where the
generated SHDD density (the mean of the K samples) is highest. It does not look at the
embeddings; a rule that also scores query-to-gallery similarity is the planned
reconstruction of the paper's hybrid (DESIGN.md section 6).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial import cKDTree

import shdd
from locdiff.prediction import Prediction


def locdiff_h(prediction: Prediction, gallery, *, L: int, neighbours: int = 64) -> Prediction:
    """``prediction`` with its first location replaced by the gallery point of highest
    density near its modes (the other fields unchanged).

    Args:
      prediction: LocDiff's, with ``coeffs [N, K, D]`` and modes ``latlon [N, k, 2]``.
      gallery: ``[G, 2]`` degrees (the training locations, or e.g. the 100K MP16 gallery).
      L: band limit of the coefficients.
      neighbours: gallery points considered around each mode.
    """
    if prediction.coeffs is None:
        raise ValueError("LocDiff-H needs LocDiff's sampled coefficients (prediction.coeffs)")
    gallery = np.asarray(gallery, np.float64)
    if gallery.ndim != 2 or gallery.shape[1] != 2 or len(gallery) == 0:
        raise ValueError(f"gallery must be [G, 2] degrees with G >= 1, got {list(gallery.shape)}")
    tree = cKDTree(shdd.sphere.latlon_to_xyz_np(gallery))
    modes = np.asarray(prediction.latlon, np.float64)  # [N, k, 2]
    n = min(neighbours, len(gallery))
    _, index = tree.query(shdd.sphere.latlon_to_xyz_np(modes), k=n)
    index = np.asarray(index).reshape(modes.shape[0], -1)  # [N, k*n]
    candidates = gallery[index]  # [N, k*n, 2]
    mean = prediction.coeffs.mean(axis=1)  # [N, D]
    values = np.asarray(shdd.evaluate(mean[:, None, :], candidates.astype(np.float32), L=L))
    best = candidates[np.arange(len(index)), np.argmax(values, axis=1)]  # [N, 2]
    latlon = modes.copy()
    latlon[:, 0] = best
    return dataclasses.replace(prediction, latlon=latlon)

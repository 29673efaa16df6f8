"""Evaluation of a trained run on a labelled embedding dataset, under the field's protocol.

``evaluate(checkpoint, data)`` predicts the top-1 location of every embedding with the
run's method and reports accuracy within 1/25/200/750/2500 km, median and mean error
and GeoScore (:mod:`locdiff.evaluation.metrics`); with scene labels (``scene`` in the ``.npz``)
the indoor/natural/urban breakdown; with a place index the country accuracy; on
request, for a method that gives probability maps, the coverage and size of its 50% and
90% credible regions (:mod:`locdiff.infer.calibration`). Any method is scored the same way,
through its :class:`locdiff.methods.Locator`.
"""

from __future__ import annotations

import numpy as np

from locdiff.data import datasets as data
from locdiff.evaluation import metrics
from locdiff.infer import calibration
from locdiff.methods import load_locator


def score(top1, truth, *, scene=None, places=None) -> dict:
    """:func:`metrics.summarize` of ``top1 [N, 2]`` against ``truth [N, 2]``, with
    ``country_acc`` (given a :class:`locdiff.viz.places.PlaceIndex`) and ``by_scene``
    (given ``scene [N]``)."""
    result = metrics.summarize(top1, truth)
    if places is not None:
        result["country_acc"] = metrics.country_accuracy(top1, truth, places)
    if scene is not None:
        result["by_scene"] = metrics.by_scene(top1, truth, scene)
    return result


def evaluate(
    checkpoint: str,
    data_path: str,
    *,
    gallery=None,
    places=None,
    progress: bool = True,
    seed: int = 0,
    coverage: bool = False,
    **options,
) -> dict:
    """Metrics of the run in ``checkpoint`` on ``data_path`` (an ``.npz`` with
    ``embeddings`` and ``latlon``).

    Args:
      checkpoint: any finished run directory (:func:`locdiff.methods.train_method`).
      gallery: a :class:`locdiff.infer.hybrid.Gallery`: score a LocDiff run as LocDiff-H
        searching this gallery.
      places: a :class:`locdiff.viz.places.PlaceIndex` for the country accuracy.
      coverage: also the coverage and median area of the 50% and 90% credible regions
        (``coverage_50``, ``area_50_km2``, ...; methods that give maps only).
      options: LocDiff's sampling options (``num_samples``, ``steps``, ``guidance``,
        ``batch_size``).

    Returns:
      ``{method, n, acc_1km, ..., acc_2500km, median_km, mean_km, geoscore}``, plus
      ``country_acc`` (with ``places``), ``by_scene`` (when the data has ``scene``) and
      the credible regions' figures (with ``coverage``).
    """
    locator = load_locator(checkpoint, gallery=gallery, **options)
    arrays = data.load_npz(data_path)
    prediction = locator.predict(arrays["embeddings"], top_k=1, seed=seed, progress=progress)
    truth = arrays["latlon"].astype(np.float64)
    scored = score(prediction.top1, truth, scene=arrays.get("scene"), places=places)
    if coverage:
        scored |= calibration.coverage(locator, arrays["embeddings"], truth, seed=seed)
    return {"method": locator.method, **scored}

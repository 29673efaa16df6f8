"""Evaluation of a trained run on a labelled embedding dataset, under the field's protocol.

``evaluate(checkpoint, data)`` predicts the top-1 location of every embedding, and
reports accuracy within 1/25/200/750/2500 km, median and mean error and GeoScore
(:mod:`locdiff.metrics`); with a gallery also LocDiff-H beside plain LocDiff; with
scene labels (``scene`` in the ``.npz``) the indoor/natural/urban breakdown; with
``reverse_geocoder`` installed the country accuracy.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from locdiff import data, metrics
from locdiff.inference import Geolocator, Prediction, rerank_gallery


def predict_all(
    geolocator: Geolocator,
    embeddings,
    *,
    batch_size: int = 256,
    progress: bool = True,
    **predict_kwargs,
) -> Prediction:
    """``Geolocator.predict`` over a large array in fixed-size batches (one compilation).

    The last batch is padded to ``batch_size`` so every call has the same shape.
    """
    embeddings = geolocator.check_embeddings(embeddings)  # before any progress is shown
    n = len(embeddings)
    seed = predict_kwargs.pop("seed", 0)
    parts = []
    for start in tqdm(range(0, n, batch_size), disable=not progress, desc="predict", unit="batch"):
        chunk = embeddings[start : start + batch_size]
        pad = batch_size - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        out = geolocator.predict(chunk, seed=seed + start, **predict_kwargs)
        parts.append(
            Prediction(
                out.latlon[: batch_size - pad],
                out.prob[: batch_size - pad],
                out.coeffs[: batch_size - pad],
            )
        )
    return Prediction(
        latlon=np.concatenate([p.latlon for p in parts]),
        prob=np.concatenate([p.prob for p in parts]),
        coeffs=np.concatenate([p.coeffs for p in parts]),
    )


def _scored(top1, truth, arrays, places) -> dict:
    result = metrics.summarize(top1, truth)
    if places is not None:
        result["country_acc"] = metrics.country_accuracy(top1, truth, places)
    if "scene" in arrays:
        result["by_scene"] = metrics.by_scene(top1, truth, arrays["scene"])
    return result


def evaluate(
    checkpoint: str,
    data_path: str,
    *,
    gallery=None,
    places=None,
    batch_size: int = 256,
    progress: bool = True,
    **predict_kwargs,
) -> dict:
    """Metrics of a run on ``data_path`` (an ``.npz`` with ``embeddings`` and ``latlon``).

    ``checkpoint`` is any run directory of :func:`locdiff.methods.train_method` or
    ``locdiff train``; the baselines are scored by their top-1 location.

    Returns:
      ``{method, n, acc_1km, ..., acc_2500km, median_km, mean_km, geoscore}``, plus
      ``country_acc`` (with ``places``), ``by_scene`` (when the data has ``scene``) and,
      for LocDiff, ``locdiff_h`` (with a ``gallery [G, 2]``, or a ``locdiff-h`` run's own).
    """
    from locdiff.methods import LocDiffLocator, load_locator

    locator = load_locator(checkpoint)
    arrays = data.load_npz(data_path)
    truth = arrays["latlon"].astype(np.float64)
    if not isinstance(locator, LocDiffLocator):
        top1 = locator.locate(arrays["embeddings"], top_k=1)[:, 0]
        return {"method": locator.method, **_scored(top1, truth, arrays, places)}
    prediction = predict_all(
        locator.geolocator,
        arrays["embeddings"],
        batch_size=batch_size,
        progress=progress,
        top_k=1,
        **predict_kwargs,
    )
    top1 = prediction.latlon[:, 0].astype(np.float64)
    result = {"method": "locdiff", **_scored(top1, truth, arrays, places)}
    gallery = locator.gallery if gallery is None else gallery
    if gallery is not None:
        L = locator.geolocator.config.model.L
        result["locdiff_h"] = metrics.summarize(rerank_gallery(prediction, gallery, L=L), truth)
    return result

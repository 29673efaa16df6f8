"""LocDiff-H: retrieval's candidates re-ranked by the density LocDiff generated.

The one implementation of the hybrid, called by the ``locdiff-h`` method, ``locdiff
evaluate --gallery``, the notebooks and every experiment. A gallery is a set of
``(embedding, location)`` pairs whose embeddings are comparable to the queries': the
training set by default (image-to-image retrieval, as IM2GPS), or e.g. GeoCLIP's GPS
gallery with its location-encoder embeddings. For a query with LocDiff's prediction
(the mean ``f`` of its K sampled SHDD functions):

    candidates = the ``candidates`` gallery rows most similar to the query (cosine)
    score(g)   = cos(query, g) + weight * log(max(f(g), 0) / max_candidates f, floored)
    answer     = the location of the best-scoring candidate

``weight = 0`` is plain retrieval; a large weight is "the most probable of the similar
places". The rule and its constants are our reconstruction (the paper's hybrid is not
public): :func:`choose_rule` picks them on a validation split, never the test set.
The other top-k locations stay LocDiff's modes.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

import shdd
from locdiff import metrics
from locdiff.neighbours import normalise, search
from locdiff.prediction import Prediction

FLOOR = 1e-4  # density ratio below which a candidate counts as off the map


@dataclasses.dataclass(frozen=True)
class Rule:
    """``candidates``: retrieval's top-N searched; ``weight``: of the log density."""

    candidates: int = 64
    weight: float = 0.1

    def __post_init__(self):
        if self.candidates < 1 or self.weight < 0:
            raise ValueError(f"need candidates >= 1 and weight >= 0, got {self}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Gallery:
    """``(embedding, location)`` pairs: ``unit [G, E]`` normalised once, ``latlon [G, 2]``."""

    unit: np.ndarray
    latlon: np.ndarray

    @classmethod
    def of(cls, embeddings, latlon) -> Gallery:
        embeddings, latlon = np.asarray(embeddings), np.asarray(latlon, np.float64)
        if embeddings.ndim != 2 or latlon.shape != (len(embeddings), 2) or not len(latlon):
            raise ValueError(
                "a gallery is embeddings [G, E] and locations [G, 2] with G >= 1, got "
                f"{list(embeddings.shape)} and {list(latlon.shape)}"
            )
        return cls(normalise(embeddings), latlon)


def candidates(query, gallery: Gallery, n: int):
    """``(locations [Q, n, 2], similarities [Q, n])`` of the ``n`` most similar rows."""
    query = normalise(query)
    index = search(query, gallery.unit, k=n)  # [Q, n]
    sim = np.einsum("qe,qne->qn", query, gallery.unit[index])
    return gallery.latlon[index], sim


def densities(prediction: Prediction, latlon, *, L: int) -> np.ndarray:
    """``[Q, n]``: the mean sampled SHDD function of each query at ``latlon [Q, n, 2]``."""
    if prediction.coeffs is None:
        raise ValueError("LocDiff-H needs LocDiff's sampled coefficients (prediction.coeffs)")
    mean = prediction.coeffs.mean(axis=1)[:, None, :]  # [Q, 1, D]
    return np.asarray(shdd.evaluate(mean, np.asarray(latlon, np.float32), L=L), np.float64)


def rerank(similarity, density, weight: float) -> np.ndarray:
    """Index ``[Q]`` of the best candidate by ``similarity + weight * log density ratio``."""
    peak = np.maximum(density.max(axis=1, keepdims=True), 1e-30)
    ratio = np.clip(density / peak, FLOOR, 1.0)
    return np.argmax(similarity + weight * np.log(ratio), axis=1)


def locdiff_h(
    prediction: Prediction, query, gallery: Gallery, *, L: int, rule: Rule = Rule()
) -> Prediction:
    """``prediction`` with its first location replaced by the hybrid's answer.

    Args:
      prediction: LocDiff's for ``query``, with ``coeffs [Q, K, D]``.
      query: the query embeddings ``[Q, E]``.
      gallery: the :class:`Gallery` searched.
      L: band limit of the coefficients.
      rule: candidates and weight (:func:`choose_rule`).
    """
    if prediction.coeffs is None:
        raise ValueError("LocDiff-H needs LocDiff's sampled coefficients (prediction.coeffs)")
    latlon, sim = candidates(query, gallery, min(rule.candidates, len(gallery.latlon)))
    best = rerank(sim, densities(prediction, latlon, L=L), rule.weight)
    out = np.asarray(prediction.latlon, np.float64).copy()
    out[:, 0] = latlon[np.arange(len(best)), best]
    return dataclasses.replace(prediction, latlon=out)


CANDIDATES = (1, 4, 16, 64, 256)
WEIGHTS = (0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def choose_rule(
    prediction: Prediction, query, truth, gallery: Gallery, *, L: int,
    candidates_grid=CANDIDATES, weights=WEIGHTS,
) -> tuple[Rule, list[dict]]:  # fmt: skip
    """The rule chosen on a validation split: ``prediction`` of ``query`` by a LocDiff
    that did not train on it, ``truth [Q, 2]``, and a ``gallery`` without the queries.

    Each rule is scored by its mean accuracy over the standard thresholds (1 to 2500 km).
    The choice is the one-standard-error rule: of the rules whose score is within one
    standard error (paired over the queries) of the best, the one closest to retrieval
    (smallest weight, then fewest candidates). ``weight = 0`` is retrieval, so the prior
    is used only where its gain on the validation split is larger than that noise.
    Returns the rule and every rule's scores (``mean_acc``, ``se``: of its difference
    to the best, ``acc_*``).
    """
    n_max = min(max(candidates_grid), len(gallery.latlon))
    latlon, sim = candidates(query, gallery, n_max)
    order = np.argsort(-sim, axis=1)
    latlon = np.take_along_axis(latlon, order[..., None], axis=1)
    sim = np.take_along_axis(sim, order, axis=1)
    density = densities(prediction, latlon, L=L)
    truth = np.asarray(truth, np.float64)
    rows, hits = [], []
    for n, w in itertools.product(candidates_grid, weights):
        n = min(n, n_max)
        pick = rerank(sim[:, :n], density[:, :n], w)
        top1 = latlon[np.arange(len(pick)), pick]
        km = metrics.distances_km(top1, truth)
        hit = np.mean([km <= t for t in metrics.THRESHOLDS_KM], axis=0)  # [Q] in [0, 1]
        hits.append(hit)
        rows.append({"candidates": n, "weight": w, **metrics.summarize_km(km)})
    hits = 100 * np.stack(hits)  # [rules, Q]
    means = hits.mean(axis=1)
    best = int(np.argmax(means))
    se = (hits[best] - hits).std(axis=1) / np.sqrt(hits.shape[1])
    for row, mean, err in zip(rows, means, se, strict=True):
        row.update(mean_acc=float(mean), se=float(err))
    close = [row for row in rows if row["mean_acc"] >= means[best] - row["se"]]
    pick = min(close, key=lambda row: (row["weight"], row["candidates"]))
    return Rule(pick["candidates"], pick["weight"]), rows

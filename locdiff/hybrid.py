"""LocDiff-H: retrieval's candidates re-ranked by the density LocDiff generated.

The one implementation of the hybrid, called by the ``locdiff-h`` method, ``locdiff
evaluate --gallery``, the notebooks and every experiment. A gallery is a set of
``(embedding, location)`` pairs whose embeddings are comparable to the queries': the
training set by default (image-to-image retrieval, as IM2GPS), or e.g. GeoCLIP's GPS
gallery with its location-encoder embeddings. For a query with LocDiff's prediction
(the mean ``f`` of its K sampled SHDD functions):

    candidates = the ``candidates`` gallery rows most similar to the query (cosine)
    score(g)   = cos(query, g) + weight * log(max(f(g), 0) / max_candidates f, floored)
    best       = the best-scoring candidate
    answer     = best's location if f(best) >= trust * f(LocDiff's answer), else LocDiff's

``weight = 0, trust = 0`` is plain retrieval; a large weight is "the most probable of
the similar places"; ``trust = inf`` is LocDiff. The trust test keeps LocDiff's own
answer where no similar gallery place is nearly as probable: far from every gallery
photo, where retrieval can only answer with somewhere else. The rule and its constants
are our reconstruction (the paper's hybrid is not public): :func:`choose_rule` picks them
on validation rows, in distribution and far from the gallery, so that the hybrid is not
worse than either parent on either; never on a test set. The other top-k locations
stay LocDiff's modes.
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
    """``candidates``: retrieval's top-N searched; ``weight``: of the log density;
    ``trust``: the least density of the best candidate, relative to that at LocDiff's
    answer, for the hybrid to answer with it (0: always; ``inf``: never, LocDiff)."""

    candidates: int = 64
    weight: float = 0.1
    trust: float = 0.0

    def __post_init__(self):
        if self.candidates < 1 or self.weight < 0 or not self.trust >= 0:
            raise ValueError(f"need candidates >= 1, weight >= 0 and trust >= 0, got {self}")

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
    """``[Q, n]``: the mean sampled SHDD function of each query at ``latlon [Q, n, 2]``
    (the last of them may be LocDiff's own answer, for the trust test)."""
    if prediction.coeffs is None:
        raise ValueError("LocDiff-H needs LocDiff's sampled coefficients (prediction.coeffs)")
    mean = prediction.coeffs.mean(axis=1)[:, None, :]  # [Q, 1, D]
    return np.asarray(shdd.evaluate(mean, np.asarray(latlon, np.float32), L=L), np.float64)


def rerank(similarity, density, weight: float) -> np.ndarray:
    """Index ``[Q]`` of the best candidate by ``similarity + weight * log density ratio``."""
    peak = np.maximum(density.max(axis=1, keepdims=True), 1e-30)
    ratio = np.clip(density / peak, FLOOR, 1.0)
    return np.argmax(similarity + weight * np.log(ratio), axis=1)


def answer(prediction, latlon, sim, density, rule: Rule) -> np.ndarray:
    """``[Q, 2]``: the hybrid's answers from ``n`` candidates' locations ``[Q, n, 2]``,
    similarities ``[Q, n]`` and densities ``[Q, n + 1]`` (the last: at LocDiff's answer)."""
    best = rerank(sim, density[:, :-1], rule.weight)
    rows = np.arange(len(best))
    chosen = latlon[rows, best]
    trusted = density[rows, best] >= rule.trust * np.maximum(density[:, -1], 0.0)
    trusted |= rule.trust == 0
    return np.where(trusted[:, None], chosen, prediction.top1)


def locdiff_h(
    prediction: Prediction, query, gallery: Gallery, *, L: int, rule: Rule = Rule()
) -> Prediction:
    """``prediction`` with its first location replaced by the hybrid's answer.

    Args:
      prediction: LocDiff's for ``query``, with ``coeffs [Q, K, D]``.
      query: the query embeddings ``[Q, E]``.
      gallery: the :class:`Gallery` searched.
      L: band limit of the coefficients.
      rule: candidates, weight and trust (:func:`choose_rule`).
    """
    if prediction.coeffs is None:
        raise ValueError("LocDiff-H needs LocDiff's sampled coefficients (prediction.coeffs)")
    latlon, sim = candidates(query, gallery, min(rule.candidates, len(gallery.latlon)))
    points = np.concatenate([latlon, prediction.top1[:, None, :]], axis=1)
    out = np.asarray(prediction.latlon, np.float64).copy()
    out[:, 0] = answer(prediction, latlon, sim, densities(prediction, points, L=L), rule)
    return dataclasses.replace(prediction, latlon=out)


CANDIDATES = (1, 4, 16, 64, 256)
WEIGHTS = (0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
TRUSTS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, float("inf"))
RETRIEVAL, LOCDIFF = Rule(1, 0.0, 0.0), Rule(1, 0.0, float("inf"))  # the parents


def choose_rule(
    prediction: Prediction, query, truth, gallery: Gallery, *, L: int, far=None,
    candidates_grid=CANDIDATES, weights=WEIGHTS, trusts=TRUSTS,
) -> tuple[Rule, list[dict]]:  # fmt: skip
    """The rule chosen on validation queries: ``prediction`` of ``query`` by a LocDiff
    that did not train on them, ``truth [Q, 2]``, a ``gallery`` without the queries, and
    ``far [Q]`` (optional): which queries are far from the gallery.

    A rule's score on a set of queries is its mean accuracy over the standard thresholds
    (1 to 2500 km). The hybrid must not be worse than its parents: on each part (the
    random queries and the far ones), a rule is admissible if its score is at least that
    of the better parent there (retrieval, or LocDiff: ``trust = inf``) minus one
    standard error of the difference (paired over the queries). Of the admissible rules,
    the one with the best mean of the parts' scores is chosen (ties: the first in the
    grid's order); if none is admissible, the one whose worst shortfall is smallest.
    Returns the rule and every rule's scores (``mean_acc`` per part, ``shortfall``).
    """
    n_max = min(max(candidates_grid), len(gallery.latlon))
    latlon, sim = candidates(query, gallery, n_max)
    order = np.argsort(-sim, axis=1)
    latlon = np.take_along_axis(latlon, order[..., None], axis=1)
    sim = np.take_along_axis(sim, order, axis=1)
    points = np.concatenate([latlon, prediction.top1[:, None, :]], axis=1)
    density = densities(prediction, points, L=L)  # [Q, n_max + 1]
    truth = np.asarray(truth, np.float64)
    far = np.zeros(len(truth), bool) if far is None else np.asarray(far, bool)
    parts = {"random": ~far, "far": far}
    parts = {name: sel for name, sel in parts.items() if sel.any()}

    def hits_of(rule):
        n = min(rule.candidates, n_max)
        dens = np.concatenate([density[:, :n], density[:, -1:]], axis=1)
        top1 = answer(prediction, latlon[:, :n], sim[:, :n], dens, rule)
        km = metrics.distances_km(top1, truth)
        return 100 * np.mean([km <= t for t in metrics.THRESHOLDS_KM], axis=0), km  # [Q]

    grid = [RETRIEVAL, LOCDIFF] + [
        Rule(min(n, n_max), w, t)
        for n, w, t in itertools.product(candidates_grid, weights, trusts)
        if t != float("inf") or (n, w) == (candidates_grid[0], weights[0])
    ]
    grid = list(dict.fromkeys(grid))  # unique, in order
    hits = {rule: hits_of(rule) for rule in grid}
    parent = {
        name: max((hits[RETRIEVAL][0][sel], hits[LOCDIFF][0][sel]), key=np.mean)
        for name, sel in parts.items()
    }
    rows = []
    for rule in grid:
        h, km = hits[rule]
        row = {**rule.to_dict(), **metrics.summarize_km(km)}
        shortfall = []
        for name, sel in parts.items():
            diff = h[sel] - parent[name]
            se = diff.std() / np.sqrt(sel.sum())
            row[f"mean_acc_{name}"] = float(h[sel].mean())
            row[f"vs_parents_{name}"] = float(diff.mean())
            row[f"se_{name}"] = float(se)
            shortfall.append(float(diff.mean() + se))
        row["shortfall"] = min(shortfall)  # < 0: worse than a parent by more than 1 SE
        row["mean_acc"] = float(np.mean([row[f"mean_acc_{name}"] for name in parts]))
        rows.append(row)
    admissible = [r for r in rows if r["shortfall"] >= 0]
    if admissible:
        pick = max(admissible, key=lambda r: r["mean_acc"])
    else:
        pick = max(rows, key=lambda r: r["shortfall"])
    return Rule(pick["candidates"], pick["weight"], pick["trust"]), rows

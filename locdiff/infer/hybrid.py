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
    answer     = best's location if spread <= gate or f(best) >= trust * f(LocDiff's
                 answer), else LocDiff's answer

``weight = 0, trust = 0`` is plain retrieval; a large weight is "the most probable of
the similar places"; ``trust = inf`` (without a gate) is LocDiff. The trust test keeps
LocDiff's own answer where no similar gallery place is nearly as probable: far from every
gallery photo, where retrieval can only answer with somewhere else. The gate spares the
confident answers from it: where LocDiff's answer is no more spread than ``gate`` km²
(:func:`locdiff.infer.calibration.spread_km2`, small in distribution), the best candidate is
taken as it is. The rule and its constants are our reconstruction (the paper's hybrid is
not public): :func:`choose_rule` picks them on validation rows, in distribution and far
from the gallery, aiming at a hybrid not worse than either parent on either, at any
threshold (where no rule of the grid is, the one that falls least short); never on a
test set. The other top-k locations stay LocDiff's modes.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

import shdd
from locdiff.evaluation import metrics
from locdiff.infer import calibration
from locdiff.infer.neighbours import normalise, search
from locdiff.infer.prediction import Prediction

FLOOR = 1e-4  # density ratio below which a candidate counts as off the map


@dataclasses.dataclass(frozen=True)
class Rule:
    """``candidates``: retrieval's top-N searched; ``weight``: of the log density;
    ``trust``: the least density of the best candidate, relative to that at LocDiff's
    answer, for the hybrid to answer with it (0: always; ``inf``: never, LocDiff);
    ``gate``: answers no more spread than this (km²) take the best candidate without
    the trust test (None: every answer takes the test)."""

    candidates: int = 64
    weight: float = 0.1
    trust: float = 0.0
    gate: float | None = None

    def __post_init__(self):
        if self.candidates < 1 or self.weight < 0 or not self.trust >= 0:
            raise ValueError(f"need candidates >= 1, weight >= 0 and trust >= 0, got {self}")
        if self.gate is not None and not self.gate >= 0:
            raise ValueError(f"the gate is a spread in km² >= 0 or None, got {self.gate}")

    def to_dict(self) -> dict:
        """The rule as JSON-safe values (an infinite trust as the string ``"inf"``)."""
        out = dataclasses.asdict(self)
        if not np.isfinite(self.trust):
            out["trust"] = "inf"
        return out

    @classmethod
    def from_dict(cls, values: dict) -> Rule:
        """The rule of :meth:`to_dict`'s values (``trust`` absent: 0, as rules before it)."""
        values = dict(values)
        values["trust"] = float(values.get("trust", 0.0))
        return cls(**values)


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


MAX_HARMONICS = 2**27  # harmonic values held at once by densities (512 MB of float32)


def densities(prediction: Prediction, latlon, *, L: int) -> np.ndarray:
    """``[Q, n]``: the mean sampled SHDD function of each query at ``latlon [Q, n, 2]``
    (the last of them may be LocDiff's own answer, for the trust test)."""
    if prediction.coeffs is None:
        raise ValueError("LocDiff-H needs LocDiff's sampled coefficients (prediction.coeffs)")
    mean = prediction.coeffs.mean(axis=1)[:, None, :]  # [Q, 1, D]
    latlon = np.asarray(latlon, np.float32)
    # the harmonics of a chunk's points are [q, n, D]: bounded, whatever Q
    chunk = max(1, MAX_HARMONICS // max(1, latlon.shape[1] * mean.shape[-1]))
    parts = [
        np.asarray(shdd.evaluate(mean[i : i + chunk], latlon[i : i + chunk], L=L), np.float64)
        for i in range(0, len(mean), chunk)
    ]
    return np.concatenate(parts) if parts else np.zeros(latlon.shape[:2])


def rerank(similarity, density, weight: float) -> np.ndarray:
    """Index ``[Q]`` of the best candidate by ``similarity + weight * log density ratio``."""
    peak = np.maximum(density.max(axis=1, keepdims=True), 1e-30)
    ratio = np.clip(density / peak, FLOOR, 1.0)
    return np.argmax(similarity + weight * np.log(ratio), axis=1)


def answer(prediction, latlon, sim, density, rule: Rule, spread=None) -> np.ndarray:
    """``[Q, 2]``: the hybrid's answers from ``n`` candidates' locations ``[Q, n, 2]``,
    similarities ``[Q, n]``, densities ``[Q, n + 1]`` (the last: at LocDiff's answer)
    and, for a rule with a gate, the spreads ``[Q]`` of LocDiff's answers."""
    best = rerank(sim, density[:, :-1], rule.weight)
    rows = np.arange(len(best))
    chosen = latlon[rows, best]
    if rule.trust == 0:
        return chosen
    if np.isfinite(rule.trust):
        trusted = density[rows, best] >= rule.trust * np.maximum(density[:, -1], 0.0)
    else:
        trusted = np.zeros(len(best), bool)
    if rule.gate is not None:
        if spread is None:
            raise ValueError("a rule with a gate needs the spreads of LocDiff's answers")
        trusted |= np.asarray(spread) <= rule.gate
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
    spread = None
    if rule.gate is not None and rule.trust > 0:
        spread = calibration.spread_km2(prediction.coeffs.mean(axis=1), L=L)
    out = np.asarray(prediction.latlon, np.float64).copy()
    density = densities(prediction, points, L=L)
    out[:, 0] = answer(prediction, latlon, sim, density, rule, spread)
    return dataclasses.replace(prediction, latlon=out)


CANDIDATES = (1, 4, 16, 64, 256)
WEIGHTS = (0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
TRUSTS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, float("inf"))
GATES = (0.25, 0.5, 0.75)  # quantiles of the validation queries' spreads (and no gate)
RETRIEVAL, LOCDIFF = Rule(1, 0.0, 0.0), Rule(1, 0.0, float("inf"))  # the parents
# A rule is admissible where, on validation, it is at least the better parent minus this
# many standard errors of the paired difference, at every threshold and on every part.
# 0: not below it at all; the test's target (within one standard error) then holds
# against the test's own noise, which a rule admitted at -1 standard error on
# validation meets only about half the time.
ADMISSIBLE_SE = 0.0


def choose_rule(
    prediction: Prediction, query, truth, gallery: Gallery, *, L: int, far=None,
    candidates_grid=CANDIDATES, weights=WEIGHTS, trusts=TRUSTS, gates=GATES,
) -> tuple[Rule, list[dict]]:  # fmt: skip
    """The rule chosen on validation queries: ``prediction`` of ``query`` by a LocDiff
    that did not train on them, ``truth [Q, 2]``, a ``gallery`` without the queries, and
    ``far [Q]`` (optional): which queries are far from the gallery.

    The hybrid must not be worse than its parents: a rule is admissible if on each part
    of the queries (the random ones and the far ones) and at each threshold from 1 to
    2500 km its accuracy is at least that of the better parent there (retrieval, or
    LocDiff: ``trust = inf``) minus :data:`ADMISSIBLE_SE` standard errors of the paired
    difference. Of the
    admissible rules, the one with the best mean over the parts of the mean accuracy
    over the thresholds is chosen (ties: the first in the grid's order), but an
    admissible parent is kept unless that rule beats it (the better of the admissible
    parents) by more than one standard error of their paired difference
    (``gain_over_parent`` in its row): the hybrid answers differently from its
    parent only for a clear gain. If none is
    admissible, the one whose worst shortfall, in standard errors, is smallest. Gates
    are the ``gates`` quantiles of the queries' spreads.
    Returns the rule and every rule's scores (``mean_acc`` per part, ``shortfall``: the
    smallest ``(difference + ADMISSIBLE_SE * SE) / SE`` over parts and thresholds, < 0
    where a parent is ahead by more than that).
    """
    n_max = min(max(candidates_grid), len(gallery.latlon))
    latlon, sim = candidates(query, gallery, n_max)
    order = np.argsort(-sim, axis=1)
    latlon = np.take_along_axis(latlon, order[..., None], axis=1)
    sim = np.take_along_axis(sim, order, axis=1)
    points = np.concatenate([latlon, prediction.top1[:, None, :]], axis=1)
    density = densities(prediction, points, L=L)  # [Q, n_max + 1]
    spread = calibration.spread_km2(prediction.coeffs.mean(axis=1), L=L)
    truth = np.asarray(truth, np.float64)
    far = np.zeros(len(truth), bool) if far is None else np.asarray(far, bool)
    parts = {name: sel for name, sel in (("random", ~far), ("far", far)) if sel.any()}
    thresholds = np.asarray(metrics.THRESHOLDS_KM, np.float64)

    def hits_of(rule):  # [Q, T] 0/100 per threshold
        n = min(rule.candidates, n_max)
        dens = np.concatenate([density[:, :n], density[:, -1:]], axis=1)
        top1 = answer(prediction, latlon[:, :n], sim[:, :n], dens, rule, spread)
        km = metrics.distances_km(top1, truth)
        return 100.0 * (km[:, None] <= thresholds), km

    limits = [None] + [float(np.quantile(spread, q)) for q in gates]
    grid = [RETRIEVAL, LOCDIFF] + [
        Rule(min(n, n_max), w, t, g)
        for n, w, t, g in itertools.product(candidates_grid, weights, trusts, limits)
        if (t != 0 or g is None) and (t != float("inf") or g is not None or (n, w) == (1, 0.0))
    ]
    grid = list(dict.fromkeys(grid))  # unique, in order
    hits = {rule: hits_of(rule) for rule in grid}
    parent = {  # the better parent at each threshold: [Q, T]
        name: np.where(
            hits[RETRIEVAL][0][sel].mean(0) >= hits[LOCDIFF][0][sel].mean(0),
            hits[RETRIEVAL][0][sel],
            hits[LOCDIFF][0][sel],
        )
        for name, sel in parts.items()
    }
    rows = []
    for rule in grid:
        h, km = hits[rule]
        row = {**rule.to_dict(), **metrics.summarize_km(km)}
        shortfall = []
        for name, sel in parts.items():
            diff = h[sel] - parent[name]  # [q, T]
            se = np.maximum(diff.std(axis=0) / np.sqrt(sel.sum()), 1e-9)
            row[f"mean_acc_{name}"] = float(h[sel].mean())
            row[f"vs_parents_{name}"] = [round(float(d), 3) for d in diff.mean(0)]
            shortfall.append(float(np.min((diff.mean(0) + ADMISSIBLE_SE * se) / se)))
        row["shortfall"] = min(shortfall)
        row["mean_acc"] = float(np.mean([row[f"mean_acc_{name}"] for name in parts]))
        rows.append(row)
    return grid[_pick(rows, grid, hits, parts)], rows


def _pick(rows, grid, hits, parts) -> int:
    """The index of :func:`choose_rule`'s choice in ``grid`` (``rows`` its scores,
    ``hits`` its rules' ``([Q, T] hits, km)``): the best admissible rule, unless an
    admissible parent is not clearly worse (its gain over that parent is added to its
    row); none admissible: the least shortfall."""
    admissible = [i for i, r in enumerate(rows) if r["shortfall"] >= 0]
    if not admissible:
        return max(range(len(rows)), key=lambda i: rows[i]["shortfall"])
    pick = max(admissible, key=lambda i: rows[i]["mean_acc"])
    parents = [i for i in admissible if grid[i] in (RETRIEVAL, LOCDIFF)]
    if parents and grid[pick] not in (RETRIEVAL, LOCDIFF):
        parent = max(parents, key=lambda i: rows[i]["mean_acc"])
        gain, se = _gain(hits[grid[pick]][0], hits[grid[parent]][0], parts)
        rows[pick] |= {"gain_over_parent": gain, "se_gain_over_parent": se}
        pick = pick if gain > se else parent  # a clear gain, or the parent
    return pick


def _gain(hits, parent_hits, parts: dict) -> tuple[float, float]:
    """The mean over ``parts`` of the mean accuracy over the thresholds of ``hits [Q, T]``
    minus that of ``parent_hits``, and its standard error (paired, per query)."""
    diff = (hits - parent_hits).mean(axis=1)  # [Q] per query, over the thresholds
    means = [diff[sel].mean() for sel in parts.values()]
    variances = [diff[sel].var() / sel.sum() for sel in parts.values()]
    return float(np.mean(means)), float(np.sqrt(np.sum(variances)) / len(parts))

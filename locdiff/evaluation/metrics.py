"""The field's standard geolocation metrics, computed in float64.

Accuracy within 1 / 25 / 200 / 750 / 2500 km (street, city, region, country, continent),
median and mean great-circle error in km, GeoScore ``5000 exp(-d / 1492.7)`` (OSV-5M),
country accuracy through offline reverse geocoding (:mod:`locdiff.viz.places`), and the
breakdown by scene type (0 indoor, 1 natural, 2 urban in the benchmark metadata).
"""

from __future__ import annotations

import numpy as np

import shdd

THRESHOLDS_KM = (1, 25, 200, 750, 2500)
GEOSCORE_SCALE_KM = 1492.7
SCENES = {0: "indoor", 1: "natural", 2: "urban"}


def distances_km(pred, true) -> np.ndarray:
    """Great-circle distances ``[N]`` in km between ``[N, 2]`` degree arrays, in float64."""
    pred = np.asarray(pred, np.float64)
    true = np.asarray(true, np.float64)
    if pred.shape != true.shape or pred.shape[-1:] != (2,):
        raise ValueError(
            f"pred and true must both be [N, 2] degrees, got {pred.shape} and {true.shape}"
        )
    return shdd.haversine_km_np(pred, true)


def geoscore(d_km) -> np.ndarray:
    """OSV-5M GeoScore ``5000 exp(-d / 1492.7)`` of distances in km."""
    return 5000.0 * np.exp(-np.asarray(d_km, np.float64) / GEOSCORE_SCALE_KM)


def summarize(pred, true, *, thresholds=THRESHOLDS_KM) -> dict[str, float]:
    """``{n, acc_<t>km (percent), median_km, mean_km, geoscore}`` of predictions ``[N, 2]``."""
    return summarize_km(distances_km(pred, true), thresholds=thresholds)


def summarize_km(d, *, thresholds=THRESHOLDS_KM) -> dict[str, float]:
    """:func:`summarize` of distances ``d [N]`` in km already computed."""
    d = np.asarray(d, np.float64)
    if d.size == 0:
        raise ValueError("no predictions to evaluate")
    out: dict[str, float] = {"n": int(d.size)}
    for t in thresholds:
        out[f"acc_{t:g}km"] = float(100.0 * np.mean(d <= t))
    out["median_km"] = float(np.median(d))
    out["mean_km"] = float(np.mean(d))
    out["geoscore"] = float(np.mean(geoscore(d)))
    return out


def bootstrap_se(pred, true, groups=None, *, n: int = 200, seed: int = 0) -> dict[str, float]:
    """Bootstrap standard errors of :func:`summarize`'s figures.

    Whole groups (``groups [N]``: held-out blocks or regions) are resampled with
    replacement, so the spread reflects how much the result depends on *which* places
    were held out; without groups every point is its own group.
    """
    d = distances_km(pred, true)
    groups = np.arange(len(d)) if groups is None else np.asarray(groups)
    ids, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(ids))]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n):
        pick = np.concatenate([members[g] for g in rng.integers(0, len(ids), len(ids))])
        draws.append(summarize(pred[pick], true[pick]))
    return {k: float(np.std([dr[k] for dr in draws], ddof=1)) for k in draws[0] if k != "n"}


def paired_difference(
    d_a, d_b, *, thresholds=THRESHOLDS_KM, n: int = 1000, seed: int = 0, groups=None
):
    """Accuracy of method ``a`` minus method ``b`` on the same points (errors ``d_a``,
    ``d_b [N]`` km) at each threshold, with a paired bootstrap standard error (the same
    resampled points for both; with ``groups [N]``, whole groups are resampled, e.g. the
    held-out blocks of a buffered split): ``{acc_<t>km: points, se_acc_<t>km: points}``."""
    d_a, d_b = np.asarray(d_a, np.float64), np.asarray(d_b, np.float64)
    if d_a.shape != d_b.shape or d_a.ndim != 1 or d_a.size == 0:
        raise ValueError(f"need two [N] error arrays of one length, got {d_a.shape}, {d_b.shape}")
    t = np.asarray(thresholds, np.float64)
    diff = 100.0 * ((d_a[:, None] <= t).astype(float) - (d_b[:, None] <= t))  # [N, T]
    rng = np.random.default_rng(seed)
    if groups is None:
        draws = np.stack([diff[rng.integers(0, len(diff), len(diff))].mean(0) for _ in range(n)])
    else:
        _, inverse = np.unique(np.asarray(groups), return_inverse=True)
        sums = np.stack([np.bincount(inverse, diff[:, i]) for i in range(len(t))], -1)
        counts = np.bincount(inverse).astype(float)
        picks = [rng.integers(0, len(counts), len(counts)) for _ in range(n)]
        draws = np.stack([sums[p].sum(0) / counts[p].sum() for p in picks])
    out = {}
    for i, k in enumerate(thresholds):
        out[f"acc_{k:g}km"] = float(diff[:, i].mean())
        out[f"se_acc_{k:g}km"] = float(draws[:, i].std(ddof=1))
    return out


def by_scene(pred, true, scene) -> dict[str, dict[str, float]]:
    """:func:`summarize` for each scene type present (``scene [N]`` of 0, 1, 2)."""
    scene = np.asarray(scene)
    pred, true = np.asarray(pred), np.asarray(true)
    return {
        name: summarize(pred[scene == code], true[scene == code])
        for code, name in SCENES.items()
        if np.any(scene == code)
    }


def country_accuracy(pred, true, places) -> float:
    """Percent of predictions in the same country as the truth (nearest GeoNames place)."""
    return float(100.0 * np.mean(places.country(pred) == places.country(true)))


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """A markdown table of several :func:`summarize` results, one row each."""
    keys = list(dict.fromkeys(k for row in rows.values() for k in row))
    lines = ["| | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, row in rows.items():
        cells = [
            "" if k not in row else f"{row[k]:.1f}" if isinstance(row[k], float) else str(row[k])
            for k in keys
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

"""Is a method's probability calibrated? Coverage of its credible regions.

A LocDiff prediction is a distribution; its 50% and 90% credible regions (the densest
cells holding that much mass, :func:`shdd.credible_area_km2`) are only worth their area
if about 50% and 90% of true locations fall inside them. :func:`coverage` measures that
over a labelled set, in batches (the maps of one batch at a time are held in memory).
The map rules that make them so are chosen in :mod:`locdiff.infer.map_rules` (re-exported
here); guidance and snapping are chosen here too.
"""

from __future__ import annotations

import itertools

import numpy as np

import shdd

# The map rules (re-exported: one namespace for everything chosen after training)
from locdiff.infer.map_choice import choose_map_rule  # noqa: F401
from locdiff.infer.map_rules import (  # noqa: F401
    FOLD_SEED,
    LEVELS,
    MAP_BIN_COUNTS,
    MAP_BINS,
    MAP_SIGNALS,
    MIN_BIN_ROWS,
    MISS_TOLERANCE,
    POWERS,
    SPREAD_CHUNK,
    SPREAD_RESOLUTION,
    TAILS,
    TEMPERATURES,
    bin_edges,
    bin_index,
    choose_map_signal,
    fold_halves,
    held_out_levels,
    map_cells,
    require_doubt,
    rule_levels,
    rule_map,
    rules_by_bin,
    spread_km2,
)


def coverage(
    locator,
    embeddings,
    truth,
    *,
    levels=LEVELS,
    resolution_deg: float = 1.0,
    batch_size: int = 256,
    seed: int = 0,
    also=None,
) -> dict:
    """Coverage and size of a locator's credible regions on ``embeddings [N, E]`` with
    true locations ``truth [N, 2]`` degrees.

    Returns:
      ``{"coverage_50": percent of truths inside the 50% region, ..., "area_50_km2":
      median area of the 50% regions, ...}`` for each of ``levels``.

      With ``also = {name: fn(maps [B, n_lat, n_lon], rows) -> [B]}``, each ``name``
      also holds ``fn``'s per-row values ``[N]`` over the same maps (computed once).

    Raises:
      ValueError: the locator gives no probability maps (``gives_maps``: LocDiff's,
        calibrated, and GeoToken's of its decoded cells, not calibrated).
    """
    if not getattr(locator, "gives_maps", False):
        raise ValueError(f"{locator.method} gives no probability maps: no credible regions")
    truth = np.asarray(truth, np.float64)
    if truth.ndim != 2 or truth.shape != (len(embeddings), 2):
        raise ValueError(f"truth must be [{len(embeddings)}, 2] degrees, got {truth.shape}")
    true_levels, areas = [], []
    also = also or {}
    extra = {name: [] for name in also}
    for start in range(0, len(truth), batch_size):
        rows = slice(start, start + batch_size)
        prediction = locator.predict(
            embeddings[rows], seed=seed + start, maps=True, map_resolution=resolution_deg
        )
        true_levels.append(
            shdd.credible_level(prediction.maps, truth[rows], resolution_deg=resolution_deg)
        )
        for name, fn in also.items():
            extra[name].append(np.asarray(fn(prediction.maps, rows)))
        if tuple(levels) == (0.5, 0.9) and prediction.credible_km2 is not None:
            areas.append(prediction.credible_km2)  # the prediction's own, computed already
        else:
            areas.append(
                shdd.credible_area_km2(
                    prediction.maps, resolution_deg=resolution_deg, levels=tuple(levels)
                )
            )
    true_levels, areas = np.concatenate(true_levels), np.concatenate(areas)
    out = {name: np.concatenate(values) for name, values in extra.items()}
    for j, level in enumerate(levels):
        name = f"{100 * level:g}"
        out[f"coverage_{name}"] = float(100 * np.mean(true_levels < level))
        out[f"area_{name}_km2"] = float(np.median(areas[:, j]))
    return out


GUIDANCE = (1.0, 1.5, 2.0, 3.0)
THRESHOLDS_KM = (25.0, 200.0, 750.0, 2500.0)


def accuracies(top1, truth) -> dict:
    """``{acc_<t>km: percent, ..., mean}`` of top-1 answers over :data:`THRESHOLDS_KM`."""
    from locdiff.evaluation.metrics import summarize

    scores = summarize(top1, np.asarray(truth, np.float64))
    row = {f"acc_{t:g}km": scores[f"acc_{t:g}km"] for t in THRESHOLDS_KM}
    return row | {"mean": float(np.mean(list(row.values())))}


def choose_guidance(
    geolocator, embeddings, truth, *, grid=GUIDANCE, seed: int = 0
) -> tuple[float, list[dict]]:
    """The classifier-free guidance scale with the highest mean top-1 accuracy over 25,
    200, 750 and 2500 km on a validation set (ties go to the smaller, cheaper scale:
    1 needs one network pass per step, more need two), and each scale's accuracies."""
    table = [
        {"guidance": g}
        | accuracies(geolocator.predict(embeddings, top_k=1, guidance=g, seed=seed).top1, truth)
        for g in sorted(grid)
    ]
    best = max(table, key=lambda r: (r["mean"], -r["guidance"]))
    return best["guidance"], table


SNAP_KM = (0.0, 25.0, 50.0, 100.0, 200.0)
SNAP_GATES = (1.0, 0.75, 0.5, 0.25)  # quantiles of the validation doubts


def choose_snap(
    geolocator, embeddings, truth, prior, *, grid=SNAP_KM, gates=SNAP_GATES, seed: int = 0,
    prediction=None,
) -> tuple[dict, list[dict]]:  # fmt: skip
    """The snapping radius (:meth:`locdiff.infer.snapping.LocationPrior.snap`, 0: none) and the
    largest doubt (:meth:`locdiff.infer.reference.Reference.doubt_km`) at which a mode is still
    snapped, with the highest mean top-1 accuracy over 25, 200, 750 and 2500 km on a
    validation set (ties go to the smaller move: the smaller radius, then the stricter
    gate), and each pair's accuracies.

    The gate is there for queries far from every training photo: their modes stand far
    from the nearest training condition's place, and snapping pulls them onto where the
    photos are; a gate at a quantile of the validation doubts snaps only the answers
    that agree with the training data (a geolocator without a reference has no gate).
    The modes are decoded once (``geolocator`` must not snap them itself), or taken from
    ``prediction``, the geolocator's own of ``embeddings`` at ``seed``.

    Returns:
      ``({"snap_km", "snap_max_doubt_km"}, table)``; ``snap_max_doubt_km`` None: no gate.
    """
    if prediction is None:
        prediction = geolocator.predict(embeddings, top_k=1, seed=seed, doubt=True)
    require_doubt(geolocator, prediction)
    modes = prediction.top1
    doubts = prediction.doubt_km
    quantiles = gates if doubts is not None else (1.0,)
    limits = sorted({None if q >= 1 else float(np.quantile(doubts, q)) for q in quantiles},
                    key=lambda x: -np.inf if x is None else -x)  # fmt: skip
    table = []
    for km, limit in itertools.product(sorted(grid), limits):
        if km == 0 and limit is not None:
            continue  # no snapping: the gate changes nothing
        snapped = prior.snap(modes, km)
        if limit is not None:
            snapped = np.where((doubts <= limit)[:, None], snapped, modes)
        table.append({"snap_km": km, "snap_max_doubt_km": limit} | accuracies(snapped, truth))
    best = max(enumerate(table), key=lambda r: (r[1]["mean"], -r[1]["snap_km"], r[0]))[1]
    return {k: best[k] for k in ("snap_km", "snap_max_doubt_km")}, table

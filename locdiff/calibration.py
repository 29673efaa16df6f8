"""Is a method's probability calibrated? Coverage of its credible regions.

A LocDiff prediction is a distribution; its 50% and 90% credible regions (the densest
cells holding that much mass, :func:`shdd.credible_area_km2`) are only worth their area
if about 50% and 90% of true locations fall inside them. :func:`coverage` measures that
over a labelled set, in batches (the maps of one batch at a time are held in memory).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

import shdd

LEVELS = (0.5, 0.9)


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
      ValueError: the locator gives no probability maps (only LocDiff does).
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
        areas.append(
            np.asarray(
                shdd.credible_area_km2(
                    prediction.maps, resolution_deg=resolution_deg, levels=tuple(levels)
                )
            )
        )
    true_levels, areas = np.concatenate(true_levels), np.concatenate(areas)
    out = {name: np.concatenate(values) for name, values in extra.items()}
    for j, level in enumerate(levels):
        name = f"{100 * level:g}"
        out[f"coverage_{name}"] = float(100 * np.mean(true_levels < level))
        out[f"area_{name}_km2"] = float(np.median(areas[:, j]))
    return out


POWERS = (0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0, 96.0, 128.0)
TAILS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
SPREAD_RESOLUTION = 2.0  # degrees: the grid of :func:`spread_km2`
SPREAD_BINS = 4  # map rules by how spread the answer is (at most; see choose_map_rule)
MIN_BIN_ROWS = 150  # validation rows each of those bins holds at least


def spread_km2(mean_coeffs, *, L: int) -> np.ndarray:
    """``[B]`` how spread LocDiff's answer is: the area (km²) of the 50% credible region
    of the plain positive-part map of the mean SHDD functions ``[B, D]``, on a 2-degree
    grid. Small: the K samples agree on a small place; large: a broad or split answer, as
    for conditions far from every training photo. It depends on the coefficients alone
    (no map rule), so the map rule can be chosen by it."""
    pmap = shdd.probability_map(mean_coeffs, L=L, resolution_deg=SPREAD_RESOLUTION)
    area = shdd.credible_area_km2(pmap, resolution_deg=SPREAD_RESOLUTION, levels=(0.5,))
    return np.asarray(area, np.float64)[..., 0]


def _bin_edges(spreads, bins: int, min_rows: int) -> list[float]:
    """Inner edges cutting ``spreads`` at quantiles into at most ``bins`` bins of at least
    ``min_rows`` rows each (as :func:`spread_bin` assigns them: equal spreads, which whole
    map cells make common, stay in one bin). Edges that would leave a bin short are
    dropped, merging it into its upper neighbour; the last bin merges downwards."""
    n = len(spreads)
    n_bins = max(1, min(bins, n // max(min_rows, 1)))
    edges = np.unique(np.quantile(spreads, np.arange(1, n_bins) / n_bins)) if n_bins > 1 else []
    kept, below = [], 0
    for edge in edges:
        count = int(np.sum(spreads < edge))  # rows below: spread_bin puts ties above
        if count - below >= min_rows and n - count >= min_rows:
            kept.append(float(edge))
            below = count
    return kept


def spread_bin(spread, edges) -> np.ndarray:
    """Index ``[B]`` of the bin of each spread, for bin ``edges`` (inner edges, sorted)."""
    return np.searchsorted(np.asarray(edges, np.float64), np.asarray(spread), side="right")


def choose_map_rule(
    geolocator, embeddings, truth, *, powers=POWERS, tails=TAILS, levels=LEVELS,
    resolution_deg=1.0, batch_size: int = 256, seed: int = 0, bins: int = SPREAD_BINS,
    min_bin_rows: int = MIN_BIN_ROWS, prediction=None,
) -> tuple[dict, list[dict]]:  # fmt: skip
    """The map rules whose credible regions' coverage is nearest the levels on a
    validation set, one for each bin of :func:`spread_km2`, and every rule's coverage.

    A rule's map is ``(1 - tail) * sharpened + tail * plain``: the positive part of the
    mean SHDD function raised to ``power`` (the core, :func:`shdd.probability_map`), mixed
    with weight ``tail`` with the plain positive part, whose broad lobes rank the cells
    far from every mode for this input. A rule's miss is the sum over ``levels`` of
    ``|coverage - level|`` (ties go to the plainer rule).

    One rule for every input over-promises where the model is out of its depth (a
    condition far from every training photo gets a sharp map at the wrong place). So the
    validation rows are cut at quantiles of their spread into up to ``bins`` bins of at
    least ``min_bin_rows`` rows, and each bin gets its own rule; with a validation set
    that holds far-from-training rows (:func:`locdiff.splits.far_validation`), the broad
    answers' bins learn how far to trust them. The K samples are drawn once and the mean
    function is put on the grid once; each rule then only reweights the cells (a truth's
    credible level is the mass of the cells denser than its own, as
    :func:`shdd.credible_level`). ``prediction``: the geolocator's own of ``embeddings``
    at ``seed``, drawn already (the samples of a row do not depend on its batch).

    Returns:
      ``{"map_power", "map_tail"}`` of all rows, with ``"map_bins": {"edges_km2":
      [inner edges], "rules": [{"map_power", "map_tail", "n"} per bin]}``; and the
      table of every rule's coverage (``bin``: -1 for all rows).
    """
    truth = np.asarray(truth, np.float64)
    L = geolocator.config.model.L
    grid = shdd.latlon_grid(resolution_deg)
    row, col = grid.cell_of(truth)  # the cell credible_level takes for the truth
    cell = row * grid.shape[1] + col  # [N] in the flattened grid
    area = np.repeat(np.asarray(grid.area, np.float64), grid.shape[1])  # [C]
    rules = np.asarray(powers, np.float64), np.asarray(tails, np.float64)
    found, spreads = [], []  # [P, T, B] per batch: each rule's credible level of each truth
    for start in range(0, len(truth), batch_size):
        rows = slice(start, start + batch_size)
        if prediction is None:
            coeffs = geolocator.predict(embeddings[rows], top_k=1, seed=seed + start).coeffs
        else:
            coeffs = prediction.coeffs[rows]
        mean = coeffs.mean(axis=1)
        spreads.append(spread_km2(mean, L=L))
        values = np.asarray(shdd.synthesize(mean, grid, L=L), np.float64)
        positive = np.maximum(values.reshape(len(values), -1), 0.0)  # [B, C]
        positive /= np.maximum(positive.max(axis=1, keepdims=True), 1e-300)
        with jax.enable_x64(True):  # float64: powers up to 128 of values below 1
            found.append(np.asarray(_rule_levels(positive, area, cell[rows], *rules)))
    found, spreads = np.concatenate(found, axis=2), np.concatenate(spreads)
    edges = _bin_edges(spreads, bins, min_bin_rows)
    which, n_bins = spread_bin(spreads, edges), len(edges) + 1
    table = []

    def best_for(sel, label):
        best = None
        for (i, p), (j, t) in itertools.product(enumerate(powers), enumerate(tails)):
            true_levels = found[i, j, sel]
            cover = {f"coverage_{100 * a:g}": float(100 * np.mean(true_levels < a)) for a in levels}
            miss = sum(abs(cover[f"coverage_{100 * a:g}"] - 100 * a) for a in levels)
            table.append({"bin": label, "map_power": p, "map_tail": t, **cover, "miss": miss})
            if best is None or miss < best[0]:
                best = (miss, {"map_power": p, "map_tail": t})
        return best[1]

    chosen = best_for(np.ones(len(truth), bool), -1)
    per_bin = [best_for(which == b, b) | {"n": int(np.sum(which == b))} for b in range(n_bins)]
    return chosen | {"map_bins": {"edges_km2": edges, "rules": per_bin}}, table


@jax.jit
def _rule_levels(positive, area, own, powers, tails):
    """Each rule's credible level of each truth: ``[P, T, B]``, the mass of the cells
    denser than the truth's cell ``own [B]`` under the map of power ``p`` and tail ``t``,
    from the max-normalised positive part ``[B, C]`` and the cells' areas ``[C]``. One
    fused pass over the cells per rule (call under ``jax.enable_x64``)."""
    index = jnp.arange(positive.shape[0])
    area = area[None, :]

    def per_area(weights):  # densities of total mass 1 (uniform where all are 0)
        total = (weights * area).sum(axis=1, keepdims=True)
        return jnp.where(total > 0, weights / jnp.where(total > 0, total, 1.0), 1 / area.sum())

    plain = per_area(positive)
    plain_own = plain[index, own][:, None]

    def for_power(p):
        powered = per_area(positive**p)
        powered_own = powered[index, own][:, None]

        def for_tail(t):  # the truth's density from its cell's: density is never stored
            density = (1 - t) * powered + t * plain  # [B, C] per unit area
            mine = (1 - t) * powered_own + t * plain_own
            return jnp.where(density > mine, density * area, 0.0).sum(axis=1)

        return jax.lax.map(for_tail, tails)

    return jax.lax.map(for_power, powers)


GUIDANCE = (1.0, 1.5, 2.0, 3.0)
THRESHOLDS_KM = (25.0, 200.0, 750.0, 2500.0)


def _accuracies(top1, truth) -> dict:
    """``{acc_<t>km: percent, ..., mean}`` of top-1 answers over :data:`THRESHOLDS_KM`."""
    from locdiff.metrics import summarize

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
        | _accuracies(geolocator.predict(embeddings, top_k=1, guidance=g, seed=seed).top1, truth)
        for g in sorted(grid)
    ]
    best = max(table, key=lambda r: (r["mean"], -r["guidance"]))
    return best["guidance"], table


SNAP_KM = (0.0, 25.0, 50.0, 100.0, 200.0)
SNAP_GATES = (1.0, 0.75, 0.5, 0.25)  # quantiles of the validation spreads


def choose_snap(
    geolocator, embeddings, truth, prior, *, grid=SNAP_KM, gates=SNAP_GATES, seed: int = 0,
    prediction=None,
) -> tuple[dict, list[dict]]:  # fmt: skip
    """The snapping radius (:meth:`locdiff.snapping.LocationPrior.snap`, 0: none) and the
    largest spread (:func:`spread_km2`) at which a mode is still snapped, with the highest
    mean top-1 accuracy over 25, 200, 750 and 2500 km on a validation set (ties go to the
    smaller move: the smaller radius, then the stricter gate), and each pair's accuracies.

    The gate is there for queries far from every training photo: their answers are
    spread, and snapping pulls them onto where the photos are; a gate at a quantile of
    the validation spreads snaps only the more confident answers. The modes are decoded
    once (``geolocator`` must not snap them itself), or taken from ``prediction``, the
    geolocator's own of ``embeddings`` at ``seed``.

    Returns:
      ``({"snap_km", "snap_max_spread_km2"}, table)``; ``snap_max_spread_km2`` None: no gate.
    """
    if prediction is None:
        prediction = geolocator.predict(embeddings, top_k=1, seed=seed)
    modes = prediction.top1
    spreads = spread_km2(prediction.coeffs.mean(axis=1), L=geolocator.config.model.L)
    limits = sorted({None if q >= 1 else float(np.quantile(spreads, q)) for q in gates},
                    key=lambda x: -np.inf if x is None else -x)  # fmt: skip
    table = []
    for km, limit in itertools.product(sorted(grid), limits):
        if km == 0 and limit is not None:
            continue  # no snapping: the gate changes nothing
        snapped = prior.snap(modes, km)
        if limit is not None:
            snapped = np.where((spreads <= limit)[:, None], snapped, modes)
        table.append({"snap_km": km, "snap_max_spread_km2": limit} | _accuracies(snapped, truth))
    best = max(enumerate(table), key=lambda r: (r[1]["mean"], -r[1]["snap_km"], r[0]))[1]
    return {k: best[k] for k in ("snap_km", "snap_max_spread_km2")}, table

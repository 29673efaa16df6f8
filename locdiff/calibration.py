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


def choose_map_rule(
    geolocator, embeddings, truth, *, powers=POWERS, tails=TAILS, levels=LEVELS,
    resolution_deg=1.0, batch_size: int = 256, seed: int = 0,
) -> tuple[dict, list[dict]]:  # fmt: skip
    """The map rule ``{"map_power", "map_tail"}`` whose credible regions' coverage is
    nearest the levels on a validation set (sum over ``levels`` of ``|coverage - level|``;
    ties go to the plainer rule), and every rule's coverage.

    A rule's map is ``(1 - tail) * sharpened + tail * plain``: the positive part of the
    mean SHDD function raised to ``power`` (the core, :func:`shdd.probability_map`), mixed
    with weight ``tail`` with the plain positive part, whose broad lobes rank the cells
    far from every mode for this input. The K samples are drawn once and the mean
    function is put on the grid once; each rule then only reweights the cells (a truth's
    credible level is the mass of the cells denser than its own, as
    :func:`shdd.credible_level`).
    """
    truth = np.asarray(truth, np.float64)
    L = geolocator.config.model.L
    grid = shdd.latlon_grid(resolution_deg)
    row, col = grid.cell_of(truth)  # the cell credible_level takes for the truth
    cell = row * grid.shape[1] + col  # [N] in the flattened grid
    area = np.repeat(np.asarray(grid.area, np.float64), grid.shape[1])  # [C]
    rules = np.asarray(powers, np.float64), np.asarray(tails, np.float64)
    found = []  # [P, T, B] per batch: each rule's credible level of each truth
    for start in range(0, len(truth), batch_size):
        rows = slice(start, start + batch_size)
        coeffs = geolocator.predict(embeddings[rows], top_k=1, seed=seed + start).coeffs
        values = np.asarray(shdd.synthesize(coeffs.mean(axis=1), grid, L=L), np.float64)
        positive = np.maximum(values.reshape(len(values), -1), 0.0)  # [B, C]
        positive /= np.maximum(positive.max(axis=1, keepdims=True), 1e-300)
        with jax.enable_x64(True):  # float64: powers up to 128 of values below 1
            found.append(np.asarray(_rule_levels(positive, area, cell[rows], *rules)))
    found = np.concatenate(found, axis=2)
    table, best = [], None
    for (i, p), (j, t) in itertools.product(enumerate(powers), enumerate(tails)):
        true_levels = found[i, j]
        cover = {f"coverage_{100 * a:g}": float(100 * np.mean(true_levels < a)) for a in levels}
        miss = sum(abs(cover[f"coverage_{100 * a:g}"] - 100 * a) for a in levels)
        table.append({"map_power": p, "map_tail": t, **cover, "miss": miss})
        if best is None or miss < best[0]:
            best = (miss, {"map_power": p, "map_tail": t})
    return best[1], table


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


def choose_snap(
    geolocator, embeddings, truth, prior, *, grid=SNAP_KM, seed: int = 0
) -> tuple[float, list[dict]]:
    """The snapping radius (:meth:`locdiff.snapping.LocationPrior.snap`, 0: none) with
    the highest mean top-1 accuracy over 25, 200, 750 and 2500 km on a validation set
    (ties go to the smaller move), and each radius's accuracies. The modes are decoded
    once (``geolocator`` must not snap them itself)."""
    modes = geolocator.predict(embeddings, top_k=1, seed=seed).top1
    table = [{"snap_km": km} | _accuracies(prior.snap(modes, km), truth) for km in sorted(grid)]
    best = max(table, key=lambda r: (r["mean"], -r["snap_km"]))
    return best["snap_km"], table

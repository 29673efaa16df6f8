"""Is a method's probability calibrated? Coverage of its credible regions.

A LocDiff prediction is a distribution; its 50% and 90% credible regions (the densest
cells holding that much mass, :func:`shdd.credible_area_km2`) are only worth their area
if about 50% and 90% of true locations fall inside them. :func:`coverage` measures that
over a labelled set, in batches (the maps of one batch at a time are held in memory).
"""

from __future__ import annotations

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


POWERS = (1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0)
FLOORS = (0.0, 1e-5, 2e-5, 3e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3)


def choose_map_rule(
    geolocator, embeddings, truth, *, powers=POWERS, floors=FLOORS, levels=LEVELS,
    resolution_deg=1.0, batch_size: int = 256, seed: int = 0,
) -> tuple[dict, list[dict]]:  # fmt: skip
    """The map rule ``{"map_power", "map_floor"}`` (``shdd.probability_map``'s ``power``
    and ``floor``) whose credible regions' coverage is nearest the levels on a validation
    set (sum over ``levels`` of ``|coverage - level|``; ties go to the plainer rule), and
    every rule's coverage. The K samples are drawn once and the mean function is put on
    the grid once; each rule then only reweights the cells (a truth's credible level is
    the mass of the cells denser than its own, as :func:`shdd.credible_level`)."""
    truth = np.asarray(truth, np.float64)
    L = geolocator.config.model.L
    grid = shdd.latlon_grid(resolution_deg)
    n_lat, n_lon = len(grid.lat), len(grid.lon)
    row = np.clip(((90.0 - truth[:, 0]) / resolution_deg).astype(int), 0, n_lat - 1)
    col = np.clip(((truth[:, 1] + 180.0) / resolution_deg).astype(int), 0, n_lon - 1)
    cell = row * n_lon + col  # [N] the truth's cell in the flattened grid
    area = np.repeat(np.asarray(grid.area, np.float64), n_lon)  # [C]
    rules = [(p, f) for p in powers for f in floors]
    found = {r: [] for r in rules}
    for start in range(0, len(truth), batch_size):
        rows = slice(start, start + batch_size)
        coeffs = geolocator.predict(embeddings[rows], top_k=1, seed=seed + start).coeffs
        values = np.asarray(shdd.synthesize(coeffs.mean(axis=1), grid, L=L), np.float64)
        positive = np.maximum(values.reshape(len(values), -1), 0.0)  # [B, C]
        positive /= np.maximum(positive.max(axis=1, keepdims=True), 1e-300)
        own = cell[rows]
        for p in powers:
            powered = positive**p
            for f in floors:
                density = powered + f  # [B, C] per unit area, up to a constant per row
                mass = density * area
                mine = density[np.arange(len(own)), own][:, None]
                level = (mass * (density > mine)).sum(axis=1) / mass.sum(axis=1)
                found[p, f].append(level)
    table, best = [], None
    for p, f in rules:
        true_levels = np.concatenate(found[p, f])
        cover = {f"coverage_{100 * a:g}": float(100 * np.mean(true_levels < a)) for a in levels}
        miss = sum(abs(cover[f"coverage_{100 * a:g}"] - 100 * a) for a in levels)
        table.append({"map_power": p, "map_floor": f, **cover, "miss": miss})
        if best is None or miss < best[0]:
            best = (miss, {"map_power": p, "map_floor": f})
    return best[1], table


GUIDANCE = (1.0, 1.5, 2.0, 3.0)
THRESHOLDS_KM = (25.0, 200.0, 750.0, 2500.0)


def choose_guidance(
    geolocator, embeddings, truth, *, grid=GUIDANCE, seed: int = 0
) -> tuple[float, list[dict]]:
    """The classifier-free guidance scale with the highest mean top-1 accuracy over 25,
    200, 750 and 2500 km on a validation set (ties go to the smaller, cheaper scale:
    1 needs one network pass per step, more need two), and each scale's accuracies."""
    from locdiff.metrics import summarize

    truth = np.asarray(truth, np.float64)
    table = []
    for g in sorted(grid):
        pred = geolocator.predict(embeddings, top_k=1, guidance=g, seed=seed).top1
        scores = summarize(pred, truth)
        row = {"guidance": g, **{f"acc_{t:g}km": scores[f"acc_{t:g}km"] for t in THRESHOLDS_KM}}
        row["mean"] = float(np.mean([row[f"acc_{t:g}km"] for t in THRESHOLDS_KM]))
        table.append(row)
    best = max(table, key=lambda r: (r["mean"], -r["guidance"]))
    return best["guidance"], table

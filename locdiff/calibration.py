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
) -> dict[str, float]:
    """Coverage and size of a locator's credible regions on ``embeddings [N, E]`` with
    true locations ``truth [N, 2]`` degrees.

    Returns:
      ``{"coverage_50": percent of truths inside the 50% region, ..., "area_50_km2":
      median area of the 50% regions, ...}`` for each of ``levels``.

    Raises:
      ValueError: the locator gives no probability maps (only LocDiff does).
    """
    if not getattr(locator, "gives_maps", False):
        raise ValueError(f"{locator.method} gives no probability maps: no credible regions")
    truth = np.asarray(truth, np.float64)
    if truth.ndim != 2 or truth.shape != (len(embeddings), 2):
        raise ValueError(f"truth must be [{len(embeddings)}, 2] degrees, got {truth.shape}")
    true_levels, areas = [], []
    for start in range(0, len(truth), batch_size):
        rows = slice(start, start + batch_size)
        prediction = locator.predict(
            embeddings[rows], seed=seed + start, maps=True, map_resolution=resolution_deg
        )
        true_levels.append(
            shdd.credible_level(prediction.maps, truth[rows], resolution_deg=resolution_deg)
        )
        areas.append(
            np.asarray(
                shdd.credible_area_km2(
                    prediction.maps, resolution_deg=resolution_deg, levels=tuple(levels)
                )
            )
        )
    true_levels, areas = np.concatenate(true_levels), np.concatenate(areas)
    out = {}
    for j, level in enumerate(levels):
        name = f"{100 * level:g}"
        out[f"coverage_{name}"] = float(100 * np.mean(true_levels < level))
        out[f"area_{name}_km2"] = float(np.median(areas[:, j]))
    return out

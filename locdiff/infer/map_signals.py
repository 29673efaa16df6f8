"""The signals LocDiff's map rules are binned by, and the bins.

:func:`spread_km2` is how spread an answer is (the doubt is
:meth:`locdiff.infer.reference.Reference.doubt_km`); :func:`bin_edges` cuts validation
rows at quantiles of a signal and :func:`bin_index` puts rows in those bins
(:mod:`locdiff.infer.map_rules`).
"""

from __future__ import annotations

import numpy as np

import shdd

SPREAD_RESOLUTION = 2.0  # degrees: the grid of :func:`spread_km2`
SPREAD_CHUNK = 2048  # answers whose maps spread_km2 holds at once


def spread_km2(mean_coeffs, *, L: int) -> np.ndarray:
    """``[B]`` how spread LocDiff's answer is: the area (km²) of the 50% credible region
    of the plain positive-part map of the mean SHDD functions ``[B, D]``, on a 2-degree
    grid. Small: the K samples agree on a small place; large: a broad or split answer.
    It depends on the coefficients alone (no map rule), so the map rules can be chosen
    by it (:data:`MAP_SIGNALS`); LocDiff-H's gate reads it too (:mod:`locdiff.infer.hybrid`)."""
    out = []
    for start in range(0, len(mean_coeffs), SPREAD_CHUNK):  # bounded memory, whatever B
        pmap = shdd.probability_map(
            mean_coeffs[start : start + SPREAD_CHUNK], L=L, resolution_deg=SPREAD_RESOLUTION
        )
        area = shdd.credible_area_km2(pmap, resolution_deg=SPREAD_RESOLUTION, levels=(0.5,))
        out.append(np.asarray(area, np.float64)[..., 0])
    return np.concatenate(out) if out else np.zeros(0)


def bin_edges(values, bins: int, min_rows: int) -> list[float]:
    """Inner edges cutting ``values`` at quantiles into at most ``bins`` bins of at least
    ``min_rows`` rows each (as :func:`bin_index` assigns them: equal values stay in one
    bin). Edges that would leave a bin short are dropped, merging it into its upper
    neighbour; the last bin merges downwards."""
    n = len(values)
    n_bins = max(1, min(bins, n // max(min_rows, 1)))
    edges = np.unique(np.quantile(values, np.arange(1, n_bins) / n_bins)) if n_bins > 1 else []
    kept, below = [], 0
    for edge in edges:
        count = int(np.sum(values < edge))  # rows below: bin_index puts ties above
        if count - below >= min_rows and n - count >= min_rows:
            kept.append(float(edge))
            below = count
    return kept


def bin_index(values, edges) -> np.ndarray:
    """Index ``[B]`` of the bin of each value, for bin ``edges`` (inner edges, sorted)."""
    return np.searchsorted(np.asarray(edges, np.float64), np.asarray(values), side="right")

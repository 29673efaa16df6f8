"""Predictions out of Python: CSV rows, GeoJSON points and regions, probability-map PNGs.

What ``locdiff predict`` writes; each function takes a :class:`Prediction`, the ids of
its inputs and, optionally, the names of the nearest places (``PlaceIndex.name``).
"""

from __future__ import annotations

import csv
import os
import sys

from locdiff.infer.prediction import Prediction
from locdiff.io import files


def write_csv(path: str | None, prediction: Prediction, ids, names=None) -> None:
    """One row per input and rank: ``id, rank, lat, lon, prob, place`` (``path`` None:
    standard output)."""
    out = open(path, "w", newline="") if path else sys.stdout
    try:
        writer = csv.writer(out)
        writer.writerow(["id", "rank", "lat", "lon", "prob", "place"])
        for i, row_id in enumerate(ids):
            for r, (lat, lon) in enumerate(prediction.latlon[i]):
                prob = "" if prediction.prob is None else f"{prediction.prob[i, r]:.4f}"
                place = names[i, r] if names is not None else ""
                writer.writerow([row_id, r + 1, f"{lat:.5f}", f"{lon:.5f}", prob, place])
    finally:
        if path:
            out.close()


def write_geojson(
    path: str, prediction: Prediction, ids, names=None, *, resolution_deg: float | None = None
) -> None:
    """:func:`geojson` of the prediction, written to ``path``."""
    files.write_json(path, geojson(prediction, ids, names, resolution_deg=resolution_deg))


def geojson(
    prediction: Prediction, ids, names=None, *, resolution_deg: float | None = None
) -> dict:
    """The locations as GeoJSON points (``[lon, lat]`` order) with id, rank, prob and place;
    with probability maps (of cell size ``resolution_deg``), each input's 50% and 90%
    credible regions too, as MultiPolygons with id, level and area
    (:mod:`locdiff.viz.regions`; ``resolution_deg`` defaults to the maps' own)."""
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [float(lon), float(lat)]},
            "properties": {
                "id": str(row_id),
                "rank": r + 1,
                "prob": None if prediction.prob is None else float(prediction.prob[i, r]),
                "place": str(names[i, r]) if names is not None else "",
            },
        }
        for i, row_id in enumerate(ids)
        for r, (lat, lon) in enumerate(prediction.latlon[i])
    ]
    if prediction.maps is not None:
        resolution_deg = resolution_deg or prediction.map_resolution
        from locdiff.viz.regions import LEVELS, region_geometry

        for i, row_id in enumerate(ids):
            for j, level in enumerate(LEVELS):
                geometry = region_geometry(
                    prediction.maps[i], level=level, resolution_deg=resolution_deg
                )
                properties = {"id": str(row_id), "region": f"{100 * level:g}%", "level": level}
                if prediction.credible_km2 is not None:
                    properties["area_km2"] = float(prediction.credible_km2[i, j])
                features.append(
                    {"type": "Feature", "geometry": geometry} | {"properties": properties}
                )
    return {"type": "FeatureCollection", "features": features}


def write_maps(
    path: str, prediction: Prediction, ids, *, resolution_deg: float, title: str = "LocDiff"
) -> list[str]:
    """One probability-map PNG per input: ``path`` for one input, ``<stem>_<i><ext>`` for
    several; returns the paths written."""
    from locdiff.viz.plots import plot_prediction

    if prediction.maps is None:
        raise ValueError("this prediction has no probability maps (predict(..., maps=True))")
    stem, ext = os.path.splitext(path)
    written = []
    for i, row_id in enumerate(ids):
        out = path if len(ids) == 1 else f"{stem}_{i}{ext or '.png'}"
        plot_prediction(
            prediction, i, resolution_deg=resolution_deg, path=out,
            title=f"{row_id}: {title} probability map",
        )  # fmt: skip
        written.append(out)
    return written

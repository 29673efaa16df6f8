"""Setting A's probability maps (:mod:`experiments.bluemarble`), each of a patch chosen by
place, not by outcome."""

from __future__ import annotations

import os

import numpy as np

import shdd
from locdiff.settings import bluemarble as bm
from locdiff.viz.plots import plot_prediction

MAP_PLACES = {
    "desert (Sahara)": (23.0, 12.0),
    "ocean (central Pacific)": (0.0, -150.0),
    "coast (Bay of Bengal)": (20.0, 88.0),
    "city region (Paris)": (48.86, 2.35),
}
FAR_PLACE = (0.0, 20.0)  # the buffered split's map: its test patch nearest to this place
MIXED = ("desert (Sahara)", "ocean (central Pacific)")  # the multimodal map's two patches


def write_maps(out: str, d: dict, split_of: dict, locdiff_runs: dict) -> list[str]:
    """Probability maps, each of a patch chosen by place, not by outcome: the random
    split's test patch nearest to each of ``MAP_PLACES`` (in distribution); the buffered
    split's test patch nearest to ``FAR_PLACE`` (far from every training patch; when
    that split ran); and a multimodal condition, the mean of the embeddings of the two
    ``MIXED`` patches."""
    os.makedirs(os.path.join(out, "maps"), exist_ok=True)
    emb = d["emb:efficientnet-lite0"]
    written, chosen = [], {}

    def draw(locator, x, name, title, truth, inset=None, truth_label="patch centre"):
        pred = locator.predict(x, top_k=3, maps=True)
        path = os.path.join(out, "maps", f"{name}.png")
        plot_prediction(pred, 0, resolution_deg=1.0, path=path, truth=truth, title=title,
                        truth_label=truth_label, inset=inset)  # fmt: skip
        written.append(path)

    def nearest(split, place) -> int:
        test = split.test
        return int(test[np.argmin(shdd.haversine_km_np(d["latlon"][test], np.array(place)))])

    random = locdiff_runs[("random", "efficientnet-lite0")]
    for label, place in MAP_PLACES.items():
        i = chosen[label] = nearest(split_of["random"], place)
        lat, lon = d["latlon"][i]
        title = (f"LocDiff, {label}: test patch at ({lat:.1f}, {lon:.1f}), "
                 f"{bm.KINDS[int(d['kind'][i])]}")  # fmt: skip
        draw(random, emb[i : i + 1], label.split(" ")[0], title, d["latlon"][i], d["patches"][i])
    if ("buffered", "efficientnet-lite0") in locdiff_runs:
        i = nearest(split_of["buffered"], FAR_PLACE)
        lat, lon = d["latlon"][i]
        title = (f"LocDiff, buffered split: test patch at ({lat:.1f}, {lon:.1f}), nothing in "
                 "training within 500 km")  # fmt: skip
        draw(locdiff_runs[("buffered", "efficientnet-lite0")], emb[i : i + 1], "far", title,
             d["latlon"][i], d["patches"][i])  # fmt: skip
    pair = [chosen[label] for label in MIXED]
    title = "LocDiff, a multimodal condition: the mean of a desert and an ocean patch's embeddings"
    draw(random, emb[pair].mean(axis=0, keepdims=True), "mixed", title, d["latlon"][pair],
         truth_label="the two patches")  # fmt: skip
    return written

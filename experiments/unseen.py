"""The unseen-location study: can a method place a photo in a region it never saw?

    python -m experiments.unseen [--profile demo|full|smoke] [--settings A B] [--out DIR]

Regions are held out of training (Iberia, Australia, Japan, California, the Sahara and
the Amazon in setting A; the first four in setting B; plus random 10-degree boxes in
both), with a buffer: no training point within ``buffer_km`` of a held-out box's test
points. Every method is trained once on what remains and scored on

* held-out: the test points inside the regions (accuracy, median error, and the share
  of predictions that land inside the right region: retrieval and cells cannot, by
  construction, since they only ever answer with training locations);
* in-distribution: test points outside the regions, for contrast.

Setting A: Blue Marble patches with EfficientNet-Lite0 embeddings (the data of
``experiments.bluemarble``); a random 5% of the remaining patches are the
in-distribution test. Setting B: the 100K MP16 gallery with GeoCLIP location embeddings
plus noise (``--noise``, default 0.1); test points are Im2GPS3k and YFCC26k. Writes
``unseen.md`` / ``.json`` into ``--out``. Whatever the outcome, it is reported.
Configs: ``experiments/configs/unseen.py``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from locdiff.data import splits
from locdiff.evaluation.metrics import distances_km
from locdiff.methods import train_or_load
from locdiff.settings import bluemarble as bm
from locdiff.settings.oracle import oracle_condition, oracle_data

from experiments.common import (
    budget,
    budget_table,
    decoding,
    log,
    parser,
    save_split,
    score,
    share_inside,
    write_report,
)
from experiments.configs.common import PROFILES
from experiments.configs.unseen import get_config

METHODS = (
    "retrieval", "cells", "regression", "coords-diffusion", "geotoken", "geotoken-rag", "locdiff",
)  # fmt: skip


def random_boxes(latlon, n: int, *, min_points: int, seed: int, avoid) -> dict:
    """``n`` random 10-degree boxes holding ``min_points`` or more of ``latlon``, apart
    from the boxes in ``avoid``."""
    rows = np.floor((latlon[:, 0] + 90) / 10).astype(int)
    cols = np.floor((latlon[:, 1] + 180) / 10).astype(int)
    ids, counts = np.unique(rows * 100 + cols, return_counts=True)
    rng = np.random.default_rng(seed)
    boxes = {}
    for b in rng.permutation(ids[counts >= min_points]):
        box = (b // 100 * 10 - 90, b // 100 * 10 - 80, b % 100 * 10 - 180, b % 100 * 10 - 170)
        corners = np.array([[box[0], box[2]], [box[0], box[3]], [box[1], box[2]], [box[1], box[3]]])
        if any(splits.in_box(corners, other).any() for other in avoid.values()):
            continue
        boxes[f"box {box[0]:+d},{box[2]:+d}"] = box
        if len(boxes) == n:
            break
    return boxes


def setting_data(setting: str, config, args) -> dict:
    """Training pool and test sets of a setting, with its held-out ``regions``."""
    if setting == "A":
        c = config.a
        d = bm.build_dataset(
            args.cache, n_land=c.n_land, n_ocean=c.n_ocean, seed=args.seed,
            progress=not args.no_progress,
        )  # fmt: skip
        latlon, emb = d["latlon"], d["emb:efficientnet-lite0"]
        named = {r: splits.REGIONS[r] for r in config.regions_a}
        boxes = random_boxes(
            latlon, config.random_boxes, min_points=config.min_box_points_a, seed=args.seed,
            avoid=named,
        )  # fmt: skip
        regions = {**named, **boxes}
        split = splits.region_split(latlon, regions, buffer_km=config.buffer_km_a)
        pool = split.train
        n_in = int(len(pool) * config.in_dist_fraction_a)
        in_dist = np.sort(np.random.default_rng(args.seed).permutation(pool)[:n_in])
        train = np.setdiff1d(pool, in_dist)
        return {
            "regions": regions,
            "train": (emb[train], latlon[train]),
            "encoder": bm.ENCODERS["efficientnet-lite0"],
            "held_out": (emb[split.test], latlon[split.test], split.groups),
            "in_dist": (emb[in_dist], latlon[in_dist]),
            "models": c.models,
        }
    c = config.b
    d = oracle_data(args.cache, yfcc_n=c.yfcc_n, gallery_n=c.gallery_n)
    g_latlon, g_emb = d["gallery"]
    named = {r: splits.REGIONS[r] for r in config.regions_b}
    boxes = random_boxes(
        g_latlon, config.random_boxes, min_points=config.min_box_points_b, seed=args.seed,
        avoid=named,
    )  # fmt: skip
    regions = {**named, **boxes}
    test_latlon = np.concatenate([d["im2gps3k"][0], d["yfcc26k"][0]])
    test_emb = np.concatenate([d["im2gps3k"][1], d["yfcc26k"][1]])
    groups = np.full(len(test_latlon), -1)
    for g, box in enumerate(regions.values()):
        groups[(groups < 0) & splits.in_box(test_latlon, box)] = g
    held = groups >= 0
    # Training: the gallery minus everything within buffer_km of a held-out test point
    # (and minus the boxes themselves).
    inside = np.zeros(len(g_latlon), bool)
    for box in regions.values():
        inside |= splits.in_box(g_latlon, box)
    all_points = np.concatenate([g_latlon, test_latlon[held]])
    far = splits.away_from(
        all_points, np.arange(len(g_latlon), len(all_points)), config.buffer_km_b
    )
    train = np.setdiff1d(far, np.flatnonzero(inside))
    noisy = oracle_condition(g_emb[train], args.noise, seed=args.seed + 1)
    test_cond = oracle_condition(test_emb, args.noise, seed=args.seed + 2)
    return {
        "regions": regions,
        "train": (noisy, g_latlon[train]),
        "encoder": "geoclip-location",
        "retrieval_train": (oracle_condition(g_emb[train], 0.0), g_latlon[train]),
        "held_out": (test_cond[held], test_latlon[held], groups[held]),
        "in_dist": (test_cond[~held], test_latlon[~held]),
        "models": c.models,
    }


def main() -> None:
    p = parser(__doc__, "unseen", PROFILES)
    p.add_argument("--settings", nargs="+", default=["A", "B"], choices=["A", "B"])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--noise", type=float, default=0.1, help="setting B's condition noise")
    args = p.parse_args()
    wall = time.perf_counter()
    config = get_config(args.profile)
    rows, region_rows, sections = [], [], []
    for setting in args.settings:
        s = setting_data(setting, config, args)
        names, boxes = list(s["regions"]), list(s["regions"].values())
        held_emb, held_latlon, groups = s["held_out"]
        log(
            f"setting {setting}: {len(s['train'][1])} training points; {len(held_latlon)} "
            f"held-out test points in {len(names)} regions; {len(s['in_dist'][1])} in-distribution"
        )
        runs = os.path.join(args.cache, f"unseen_runs_{setting}_{args.profile}_{args.seed}")
        encoder = s["encoder"]
        train_npz = save_split(f"{runs}/train.npz", *s["train"], slice(None), encoder=encoder)
        retrieval_npz = train_npz
        if "retrieval_train" in s:
            retrieval_npz = save_split(
                f"{runs}/retrieval.npz", *s["retrieval_train"], slice(None), encoder=encoder
            )
        for name in args.methods:
            log(f"setting {setting} / {name}")
            npz = retrieval_npz if name == "retrieval" else train_npz
            locator = train_or_load(
                name, npz, f"{runs}/{name}", s["models"].for_method(name),
                progress=not args.no_progress,
            )  # fmt: skip
            held = locator.locate(held_emb, top_k=1)[:, 0]
            in_dist = locator.locate(s["in_dist"][0], top_k=1)[:, 0]
            for part, pred, truth, g in (
                ("held-out", held, held_latlon, groups),
                ("in-distribution", in_dist, s["in_dist"][1], None),
            ):
                row = {"setting": setting, "method": name, "test": part}
                row.update(score(pred, truth, g, seed=args.seed), **budget(locator.meta))
                row.update(decoding(locator))
                row["inside_pct"] = (
                    share_inside(pred, boxes, groups) if part == "held-out" else None
                )
                rows.append(row)
            for g, region in enumerate(names):
                sel = groups == g
                if sel.sum() == 0:
                    continue
                region_rows.append(
                    {
                        "setting": setting,
                        "method": name,
                        "region": region,
                        "n": int(sel.sum()),
                        "median_km": float(np.median(distances_km(held[sel], held_latlon[sel]))),
                        "inside_pct": share_inside(held[sel], [boxes[g]], np.zeros(sel.sum(), int)),
                    }
                )
            last = rows[-2]
            log(
                f"  held-out: {last['acc_750km']:.1f}% <= 750 km, median "
                f"{last['median_km']:.0f} km, {last['inside_pct']:.1f}% inside the region"
            )
        sections.append(
            (f"Setting {setting}: held-out regions against in-distribution", _table(rows, setting))
        )
        sections.append(
            (
                f"Setting {setting}: by region (median km / % inside)",
                _region_table(region_rows, setting, names),
            )
        )
    sections.append(
        (
            "Training budgets",
            "Each learned method stops when its validation loss (5% of the training rows) "
            "has not improved for 4 evaluations, within the same cap in samples.\n\n"
            + budget_table(rows, ["setting", "method"]),
        )
    )
    wall_s = time.perf_counter() - wall
    payload = {"profile": args.profile, "noise_B": args.noise, "rows": rows, "regions": region_rows}
    write_report(args.out, "unseen", "Unseen-location study", sections, payload, wall_s)


def _table(rows, setting) -> str:
    head = "| method | test | n | % ≤ 200 km | % ≤ 750 km | % ≤ 2500 km | median km | % inside |"
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        if r["setting"] != setting:
            continue
        inside = "" if r["inside_pct"] is None else f"{r['inside_pct']:.1f}"
        lines.append(
            f"| {r['method']} | {r['test']} | {r['n']} | {r['acc_200km']:.1f} ± "
            f"{r['se_acc_200km']:.1f} | {r['acc_750km']:.1f} ± {r['se_acc_750km']:.1f} | "
            f"{r['acc_2500km']:.1f} ± {r['se_acc_2500km']:.1f} | {r['median_km']:.0f} | {inside} |"
        )
    return (
        "± is a bootstrap standard error (over regions for the held-out rows). "
        "% inside: predictions inside the held-out region of their test point.\n\n"
        + "\n".join(lines)
    )


def _region_table(region_rows, setting, names) -> str:
    methods_ = list(dict.fromkeys(r["method"] for r in region_rows if r["setting"] == setting))
    lines = ["| region | n | " + " | ".join(methods_) + " |", "|" + "---|" * (len(methods_) + 2)]
    for region in names:
        cells = {
            r["method"]: r for r in region_rows if r["setting"] == setting and r["region"] == region
        }
        if not cells:
            continue
        n = next(iter(cells.values()))["n"]
        values = [
            f"{cells[m]['median_km']:.0f} / {cells[m]['inside_pct']:.0f}" if m in cells else ""
            for m in methods_
        ]
        lines.append(f"| {region} | {n} | " + " | ".join(values) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

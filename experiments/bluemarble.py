"""Setting A: geolocate real satellite imagery of the whole Earth (NASA Blue Marble).

    python experiments/bluemarble.py [--profile demo|full] [--out DIR] [--cache DIR]

The main job behind ``make demo``. It builds (and caches) north-up azimuthal-equidistant
patches of the Blue Marble raster (side 500 km, 64 x 64 px) at random centres on land
and at sea, embeds them with the pretrained EfficientNet-Lite0 and with the colour-
statistics control, and trains LocDiff and every baseline on two splits:

* random: 10% of the centres held out, their neighbours in training (25 and 200 km);
* buffered: 20 random 10-degree blocks held out, no training centre within 500 km of a
  test centre (750 and 2500 km); spreads are bootstrap standard errors over blocks.

The colour-statistics control runs retrieval, cells and LocDiff.

Writes ``bluemarble.md`` / ``.json`` (the accuracy table, by patch kind too) and
``maps/*.png`` (probability maps of a desert, an ocean, a coast and a city-region test
patch, chosen by place, not by outcome) into ``--out``. The ``demo`` profile fits in
15 minutes on 2 CPU cores; ``full`` is the same study at a size for a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np

from locdiff import bluemarble as bm
from locdiff import methods, splits
from locdiff.config import Config, override

from _common import (
    SMOKE_BASELINE,
    SMOKE_LOCDIFF,
    log,
    save_split,
    score,
    table,
    train_or_load,
    write_report,
)

PROFILES = {
    "demo": {
        "n_land": 12000,
        "n_ocean": 3000,
        "locdiff": {
            "model.L": 16,
            "model.hidden": 256,
            "model.embed_dim": 128,
            "model.time_dim": 64,
            "train.steps": 1500,
            "train.learning_rate": 1e-3,
            "train.warmup_steps": 100,
            "train.ema_decay": 0.995,
            "train.checkpoint_every": 500,
            "diffusion.steps": 25,
        },
        "baseline": {"hidden": 256, "steps": 1500, "num_samples": 16, "flow_steps": 25},
        "blocks": (20, 10),
    },
    "smoke": {  # seconds, for the test suite: checks the script runs end to end
        "n_land": 600,
        "n_ocean": 150,
        "locdiff": SMOKE_LOCDIFF,
        "baseline": SMOKE_BASELINE,
        "blocks": (4, 3),
    },
    "full": {
        "n_land": 40000,
        "n_ocean": 10000,
        "locdiff": {"model.L": 32, "train.steps": 20000, "train.checkpoint_every": 2000},
        "baseline": {"steps": 20000},
        "blocks": (40, 10),
    },
}
PARTITIONS = ((10, 150), (40, 600))
METHODS = ("retrieval", "retrieval-densest", "cells", "regression", "coords-diffusion", "locdiff")
CONTROL_METHODS = ("retrieval", "cells", "locdiff")  # on the colour-statistics control
ENCODERS = ("efficientnet-lite0", "color-stats")
MAP_PLACES = {
    "desert (Sahara)": (23.0, 12.0),
    "ocean (central Pacific)": (0.0, -150.0),
    "coast (Bay of Bengal)": (20.0, 88.0),
    "city region (Paris)": (48.86, 2.35),
}


def build_data(cache: str, profile: dict, seed: int) -> dict:
    """Centres, kinds, patches and both encoders' embeddings (cached in ``cache``)."""
    path = os.path.join(cache, f"bluemarble_{profile['n_land']}_{profile['n_ocean']}_{seed}.npz")
    if os.path.exists(path):
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    log("building patches from the Blue Marble raster")
    centres = bm.random_centres(profile["n_land"], profile["n_ocean"], seed=seed)
    kinds = bm.kind_of(bm.land_fraction(centres))
    patches = bm.extract_patches(bm.load_image(), centres, progress=True)
    out = {"latlon": centres, "kind": kinds, "patches": patches}
    from tqdm.auto import tqdm

    from locdiff.encoders import load_encoder

    for name in ENCODERS:
        kwargs = {"image_size": 64} if name == "efficientnet-lite0" else {}
        encoder = load_encoder(name, **kwargs)
        start = time.perf_counter()
        parts = [
            encoder.embed(patches[i : i + 256])
            for i in tqdm(range(0, len(patches), 256), desc=f"embed {name}", unit="batch")
        ]
        out[f"emb:{name}"] = np.concatenate(parts)
        rate = len(patches) / (time.perf_counter() - start)
        log(f"{name}: {out[f'emb:{name}'].shape[1]}-d, {rate:.0f} patches/s")
    os.makedirs(cache, exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **out)
    os.replace(tmp, path)
    return out


def configs(profile: dict):
    locdiff_config = override(Config(), **profile["locdiff"])
    base = methods.BaselineConfig(partitions=PARTITIONS, **profile["baseline"])
    return locdiff_config, base


def run_method(name, train_npz, workdir, locdiff_config, base, progress):
    """Train (or reuse) one method; ``retrieval-densest`` is retrieval with a top-k rule."""
    if name == "retrieval-densest":
        config = dataclasses.replace(base, retrieval_k=16, radius_km=200.0)
        return train_or_load("retrieval", train_npz, workdir, config, progress=progress)
    config = locdiff_config if name == "locdiff" else base
    return train_or_load(name, train_npz, workdir, config, progress=progress)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=PROFILES, default="demo")
    parser.add_argument("--out", default="experiments/results/bluemarble")
    parser.add_argument("--cache", default="experiments/cache")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    wall = time.perf_counter()
    profile = PROFILES[args.profile]
    progress = not args.no_progress
    d = build_data(args.cache, profile, args.seed)
    latlon, kind = d["latlon"], d["kind"]
    counts = np.bincount(kind, minlength=3).tolist()
    log(
        f"{len(latlon)} patches: "
        + ", ".join(f"{n} {k}" for k, n in zip(bm.KINDS, counts, strict=True))
    )
    split_of = {
        "random": splits.random_split(len(latlon), test_fraction=0.1, seed=args.seed),
        "buffered": splits.buffered_split(
            latlon,
            n_blocks=profile["blocks"][0],
            min_points=profile["blocks"][1],
            block_deg=10.0,
            buffer_km=500.0,
            seed=args.seed,
        ),
    }
    locdiff_config, base = configs(profile)
    runs = os.path.join(args.cache, f"bluemarble_runs_{args.profile}_{args.seed}")
    rows, kind_rows, locators = [], [], {}
    for split_name, split in split_of.items():
        log(f"split {split_name}: {len(split.train)} train, {len(split.test)} test")
        groups = split.groups if split_name == "buffered" else None
        truth = latlon[split.test]
        for encoder in ENCODERS:
            emb = d[f"emb:{encoder}"]
            stem = os.path.join(runs, f"{split_name}_{encoder}")
            os.makedirs(stem, exist_ok=True)
            train_npz = save_split(f"{stem}/train.npz", emb, latlon, split.train)
            for name in args.methods:
                if encoder != ENCODERS[0] and name not in CONTROL_METHODS:
                    continue
                log(f"{split_name} / {encoder} / {name}")
                locator, seconds = run_method(
                    name, train_npz, f"{stem}/{name}", locdiff_config, base, progress
                )
                start = time.perf_counter()
                pred = locator.locate(emb[split.test], top_k=1)
                predict_s = time.perf_counter() - start
                variants = {name: pred[:, 0]}
                if name == "locdiff":  # LocDiff-H: snap to the training centres
                    locators[(split_name, encoder)] = locator
                    h = methods.LocDiffLocator(f"{stem}/{name}", gallery=latlon[split.train])
                    variants["locdiff-h"] = h.locate(emb[split.test], top_k=1)[:, 0]
                for variant, top1 in variants.items():
                    row = {"split": split_name, "encoder": encoder, "method": variant}
                    row.update(score(top1, truth, groups, seed=args.seed))
                    row.update(train_s=round(seconds, 1), predict_s=round(predict_s, 1))
                    rows.append(row)
                    log(
                        f"  {variant}: {row['acc_25km']:.1f} / {row['acc_200km']:.1f} / "
                        f"{row['acc_750km']:.1f} / {row['acc_2500km']:.1f} %, "
                        f"median {row['median_km']:.0f} km"
                    )
                    for k, kind_name in enumerate(bm.KINDS):
                        sel = kind[split.test] == k
                        if sel.sum() >= 10:
                            kind_rows.append(
                                {
                                    "split": split_name,
                                    "encoder": encoder,
                                    "method": variant,
                                    "kind": kind_name,
                                    "n": int(sel.sum()),
                                    **score(top1[sel], truth[sel], seed=args.seed),
                                }
                            )
    maps = write_maps(args.out, d, split_of["random"], locators.get(("random", ENCODERS[0])))
    wall_s = time.perf_counter() - wall
    sections = [
        (
            "Accuracy (top-1), by split and encoder",
            "Random split: test centres among training centres. Buffered split: 20 held-out "
            "10-degree blocks, nothing in training within 500 km of a test centre; ± is a "
            "bootstrap standard error (over blocks for the buffered split).\n\n"
            + table(rows, ["split", "encoder", "method"])
            + "\n\nTraining seconds: "
            + ", ".join(
                f"{r['split']}/{r['encoder']}/{r['method']} {r['train_s']:.0f}"
                for r in rows
                if r["method"] != "locdiff-h"
            ),
        ),
        (
            "By patch kind (EfficientNet-Lite0)",
            table(
                [r for r in kind_rows if r["encoder"] == ENCODERS[0]],
                ["split", "method", "kind", "n"],
            ),
        ),
        ("Probability maps", "\n".join(f"- `{m}`" for m in maps)),
    ]
    payload = {
        "profile": args.profile,
        "config": {"locdiff": locdiff_config.to_dict(), "baseline": dataclasses.asdict(base)},
        "rows": rows,
        "by_kind": kind_rows,
        "maps": maps,
    }
    write_report(
        args.out, "bluemarble", "Setting A: Blue Marble patches", sections, payload, wall_s
    )
    print(table(rows, ["split", "encoder", "method"]))
    log(f"done in {wall_s / 60:.1f} min")


def write_maps(out: str, d: dict, split, locator) -> list[str]:
    """Probability maps of the test patch nearest to each of ``MAP_PLACES``."""
    if locator is None:
        return []
    import shdd
    from locdiff.plots import plot_probability_map

    os.makedirs(os.path.join(out, "maps"), exist_ok=True)
    test = split.test
    emb = d["emb:efficientnet-lite0"]
    L = locator.geolocator.config.model.L
    written = []
    for label, place in MAP_PLACES.items():
        i = test[np.argmin(shdd.haversine_km_np(d["latlon"][test], np.array(place)))]
        pred = locator.predict(emb[i : i + 1], top_k=3)
        pmap = np.asarray(shdd.probability_map(pred.coeffs.mean(axis=1), L=L, resolution_deg=1.0))
        path = os.path.join(out, "maps", label.split(" ")[0] + ".png")
        kind = bm.KINDS[int(d["kind"][i])]
        lat, lon = d["latlon"][i]
        plot_probability_map(
            pmap[0],
            resolution_deg=1.0,
            path=path,
            modes=pred.latlon[0],
            truth=d["latlon"][i],
            truth_label="patch centre",
            title=f"LocDiff, {label}: test patch at ({lat:.1f}, {lon:.1f}), {kind}",
            inset=d["patches"][i],
        )
        written.append(path)
    return written


if __name__ == "__main__":
    main()

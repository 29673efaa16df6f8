"""Setting B: real photo locations with an oracle condition (an oracle study, not image accuracy).

    python experiments/oracle_mp16.py [--profile demo|full] [--noise 0 0.1 0.2] [--out DIR]

Training set: the 100K MP16 photo locations of the ``geoclip`` wheel. Test sets: the
Im2GPS3k and YFCC26k ground truth (``../shared/data``; the ``demo`` profile uses a fixed
random 5,000 of YFCC26k). The condition of a location is its embedding by GeoCLIP's
pretrained location encoder, L2-normalised, plus Gaussian noise of standard deviation
``--noise`` per coordinate, standing in for an imperfect image embedding (fresh noise
for every training and test row). Retrieval over the gallery's clean embeddings is then
exactly GeoCLIP's inference, so the comparison isolates what each method does with
the same condition. Writes ``oracle_mp16.md`` / ``.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np

from locdiff import data, methods
from locdiff.config import Config, override
from locdiff.encoders import oracle_condition

from _common import (
    SMOKE_BASELINE,
    SMOKE_LOCDIFF,
    log,
    oracle_data,
    score,
    table,
    train_or_load,
    write_report,
)

PROFILES = {
    "demo": {
        "gallery_n": None,
        "yfcc_n": 5000,
        "locdiff": {
            "model.L": 32,
            "model.hidden": 256,
            "model.embed_dim": 128,
            "model.time_dim": 64,
            "train.steps": 2000,
            "train.learning_rate": 1e-3,
            "train.warmup_steps": 100,
            "train.ema_decay": 0.995,
            "train.checkpoint_every": 500,
            "diffusion.steps": 25,
        },
        "baseline": {"hidden": 256, "steps": 2000, "num_samples": 16, "flow_steps": 25},
    },
    "smoke": {  # seconds, for the test suite: checks the script runs end to end
        "gallery_n": 3000,
        "yfcc_n": 200,
        "locdiff": SMOKE_LOCDIFF,
        "baseline": SMOKE_BASELINE,
    },
    "full": {
        "gallery_n": None,
        "yfcc_n": None,
        "locdiff": {"model.L": 64, "train.steps": 30000, "train.checkpoint_every": 2000},
        "baseline": {"steps": 30000},
    },
}
PARTITIONS = ((25, 1000), (100, 5000))  # cells of the MP16 gallery (PlaNet/ISN-sized)
METHODS = ("retrieval", "cells", "regression", "coords-diffusion", "locdiff")


def configs(profile: dict):
    locdiff_config = override(Config(), **profile["locdiff"])
    base = methods.BaselineConfig(partitions=PARTITIONS, **profile["baseline"])
    return locdiff_config, base


def training_sets(cache: str, gallery, noise: float, seed: int) -> dict[str, str]:
    """``{"clean": npz, "noisy": npz}``: the gallery with clean and with noisy conditions."""
    latlon, emb = gallery
    out = {}
    for kind, sigma in (("clean", 0.0), ("noisy", noise)):
        path = os.path.join(cache, f"mp16_{len(latlon)}_{kind}_{sigma:g}_{seed}.npz")
        if not os.path.exists(path):
            data.save_npz(
                path,
                oracle_condition(emb, sigma, seed=seed + 1),
                latlon,
                encoder=np.array("geoclip-location"),
            )
        out[kind] = path
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=PROFILES, default="demo")
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.1, 0.2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--out", default="experiments/results/oracle_mp16")
    parser.add_argument("--cache", default="experiments/cache")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    wall = time.perf_counter()
    profile = PROFILES[args.profile]
    d = oracle_data(args.cache, yfcc_n=profile["yfcc_n"], gallery_n=profile["gallery_n"])
    locdiff_config, base = configs(profile)
    gallery_latlon = d["gallery"][0]
    runs = os.path.join(args.cache, f"oracle_runs_{args.profile}_{args.seed}")
    rows = []
    for noise in args.noise:
        train = training_sets(args.cache, d["gallery"], noise, args.seed)
        tests = {
            name: (d[name][0], oracle_condition(d[name][1], noise, seed=args.seed + 2))
            for name in ("im2gps3k", "yfcc26k")
        }
        for name in args.methods:
            log(f"noise {noise:g} / {name}")
            workdir = os.path.join(runs, f"noise{noise:g}", name)
            # Retrieval searches the gallery's clean embeddings, as GeoCLIP does; the
            # trained methods learn from conditions as noisy as the test ones.
            train_npz = train["clean" if name == "retrieval" else "noisy"]
            config = locdiff_config if name == "locdiff" else base
            locator, seconds = train_or_load(
                name, train_npz, workdir, config, progress=not args.no_progress
            )
            for test_name, (truth, cond) in tests.items():
                start = time.perf_counter()
                pred = locator.locate(cond, top_k=1)[:, 0]
                variants = {"geoclip retrieval" if name == "retrieval" else name: pred}
                if name == "locdiff":
                    h = methods.LocDiffLocator(workdir, gallery=gallery_latlon)
                    variants["locdiff-h"] = h.locate(cond, top_k=1)[:, 0]
                predict_s = time.perf_counter() - start
                for variant, top1 in variants.items():
                    row = {"noise": noise, "test": test_name, "method": variant}
                    row.update(score(top1, truth, seed=args.seed))
                    row.update(train_s=round(seconds, 1), predict_s=round(predict_s, 1))
                    rows.append(row)
                    log(
                        f"  {test_name} {variant}: {row['acc_1km']:.1f} / {row['acc_25km']:.1f}"
                        f" / {row['acc_200km']:.1f} / {row['acc_750km']:.1f} / "
                        f"{row['acc_2500km']:.1f} %, median {row['median_km']:.0f} km"
                    )
    wall_s = time.perf_counter() - wall
    keys = ("acc_1km", "acc_25km", "acc_200km", "acc_750km", "acc_2500km")
    sections = [
        (
            "Top-1 accuracy with the oracle condition",
            "An oracle study: the condition is GeoCLIP's embedding of the true location "
            "plus noise, not an image. ± is a bootstrap standard error over test points.\n\n"
            + table(rows, ["noise", "test", "method"], keys),
        )
    ]
    payload = {
        "profile": args.profile,
        "config": {"locdiff": locdiff_config.to_dict(), "baseline": dataclasses.asdict(base)},
        "rows": rows,
    }
    title = "Setting B: MP16 locations, oracle GeoCLIP location embeddings"
    write_report(args.out, "oracle_mp16", title, sections, payload, wall_s)
    print(table(rows, ["noise", "test", "method"], keys))


if __name__ == "__main__":
    main()

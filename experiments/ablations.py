"""Ablations of LocDiff, each a table: band limit, loss, smoothing, K, sampling steps, guidance.

    python experiments/ablations.py [--profile demo|full] [--which L loss smoothing K ...]

All on setting B (``oracle_mp16.py``: MP16 training locations, GeoCLIP location
embeddings plus noise ``--noise``, default 0.1), tested on Im2GPS3k. One base model
(setting B's LocDiff configuration) is varied one factor at a time:

* ``L``: the band limit (16, 32, 64; and 100 in the ``full`` profile);
* ``loss``: MSE on ``x0`` against MSE plus the SHDD-KL term;
* ``smoothing``: the truncated delta against a heat-kernel-smoothed one (``sigma_km`` 700,
  about the narrowest that does not ring at L = 32: ``shdd.encoder``);
* ``K``, ``steps``, ``guidance``: sampling settings of the base model (no retraining).

Writes ``ablations.md`` / ``.json`` into ``--out``; ± is a bootstrap standard error.
"""

from __future__ import annotations

import argparse
import os
import time

from locdiff import methods
from locdiff.config import override
from locdiff.encoders import oracle_condition

import oracle_mp16 as setting_b
from _common import log, oracle_data, score, table, train_or_load, write_report

TRAINED = {
    "L": lambda p: [(f"L={L}", {"model.L": L}) for L in p["L"]],
    "loss": lambda p: [("mse", {}), ("mse+kl", {"diffusion.loss": "mse+kl"})],
    "smoothing": lambda p: [
        ("truncated", {}),
        (f"smoothed {p['sigma_km']:g} km", {"model.sigma_km": p["sigma_km"]}),
    ],
}
SAMPLING = {
    "K": ("num_samples", (1, 4, 16)),
    "steps": ("steps", (5, 10, 25, 50)),
    "guidance": ("guidance", (1.0, 1.5, 2.0, 3.0)),
}
PROFILES = {
    "demo": {"L": (16, 32, 64), "sigma_km": 700.0},
    "smoke": {"L": (4, 8), "sigma_km": 3000.0},
    "full": {"L": (16, 32, 64, 100), "sigma_km": 700.0},
}
KEYS = ("acc_1km", "acc_25km", "acc_200km", "acc_750km", "acc_2500km")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=PROFILES, default="demo")
    parser.add_argument(
        "--which", nargs="+", default=[*TRAINED, *SAMPLING], choices=[*TRAINED, *SAMPLING]
    )
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--out", default="experiments/results/ablations")
    parser.add_argument("--cache", default="experiments/cache")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    wall = time.perf_counter()
    profile = {**setting_b.PROFILES[args.profile], **PROFILES[args.profile]}
    d = oracle_data(args.cache, yfcc_n=profile["yfcc_n"], gallery_n=profile["gallery_n"])
    base_config, _ = setting_b.configs(profile)
    train_npz = setting_b.training_sets(args.cache, d["gallery"], args.noise, args.seed)["noisy"]
    truth, clean = d["im2gps3k"][0], d["im2gps3k"][1]
    cond = oracle_condition(clean, args.noise, seed=args.seed + 2)
    runs = os.path.join(args.cache, f"ablation_runs_{args.profile}_{args.seed}_{args.noise:g}")
    all_rows, sections = [], []

    def run(label: str, changes: dict, **predict_kwargs) -> dict:
        config = override(base_config, **changes)
        key = "_".join(f"{k}={v}" for k, v in sorted(changes.items()))
        key = "base" if config == base_config else key  # e.g. L=32 is the base model
        workdir = os.path.join(runs, key)
        _, seconds = train_or_load(
            "locdiff", train_npz, workdir, config, progress=not args.no_progress
        )
        locator = methods.LocDiffLocator(workdir, **predict_kwargs)
        start = time.perf_counter()
        pred = locator.locate(cond, top_k=1)[:, 0]
        row = {"setting": label, **score(pred, truth, seed=args.seed)}
        row.update(train_s=round(seconds, 1), predict_s=round(time.perf_counter() - start, 1))
        log(
            f"  {label}: {row['acc_25km']:.1f} / {row['acc_200km']:.1f} / "
            f"{row['acc_750km']:.1f} % , median {row['median_km']:.0f} km "
            f"(train {seconds:.0f} s, predict {row['predict_s']:.0f} s)"
        )
        return row

    for which in args.which:
        log(f"ablation: {which}")
        if which in TRAINED:
            rows = [run(label, changes) for label, changes in TRAINED[which](profile)]
            note = "Each row is its own training run; everything else as the base model."
        else:
            name, values = SAMPLING[which]
            rows = [run(f"{which}={v}", {}, **{name: v}) for v in values]
            note = f"One trained base model; only the sampler's `{name}` changes."
        for r in rows:
            r["ablation"] = which
        all_rows += rows
        timing = ", ".join(
            f"{r['setting']}: train {r['train_s']:.0f} s, predict {r['predict_s']:.0f} s"
            for r in rows
        )
        sections.append((which, f"{note}\n\n{table(rows, ['setting'], KEYS)}\n\n{timing}"))
    wall_s = time.perf_counter() - wall
    payload = {
        "profile": args.profile,
        "noise": args.noise,
        "base": base_config.to_dict(),
        "rows": all_rows,
    }
    title = f"LocDiff ablations (setting B, noise {args.noise:g}, Im2GPS3k)"
    write_report(args.out, "ablations", title, sections, payload, wall_s)


if __name__ == "__main__":
    main()

"""Ablations of LocDiff, each a table: band limit, loss, smoothing, K, sampling steps, guidance.

    python -m experiments.ablations [--profile demo|full|smoke] [--which L loss smoothing K ...]

All on setting B (:mod:`locdiff.oracle`: MP16 training locations, GeoCLIP location
embeddings plus noise ``--noise``, default 0.1), tested on Im2GPS3k. One base model
(setting B's LocDiff configuration) is varied one factor at a time:

* ``L``: the band limit (16, 32, 64; and 100 in the ``full`` profile);
* ``loss``: MSE on ``x0`` against MSE plus the SHDD-KL term;
* ``smoothing``: the truncated delta against a heat-kernel-smoothed one (``sigma_km`` 700,
  about the narrowest that does not ring at L = 32: ``shdd.encoder``);
* ``K``, ``steps``, ``guidance``: sampling settings of the base model (no retraining).

Writes ``ablations.md`` / ``.json`` into ``--out``; ± is a bootstrap standard error.
Configs: ``experiments/configs/ablations.py``.
"""

from __future__ import annotations

import os
import time

from locdiff.config import override
from locdiff.methods import load_locator, train_or_load
from locdiff.oracle import oracle_condition, oracle_data, training_set

from experiments import common
from experiments.configs.ablations import get_config
from experiments.configs.common import PROFILES

TRAINED = {
    "L": lambda c: [(f"L={L}", {"model.L": L}) for L in c.L],
    "loss": lambda c: [("mse", {}), ("mse+kl", {"diffusion.loss": "mse+kl"})],
    "smoothing": lambda c: [
        ("truncated", {}),
        (f"smoothed {c.sigma_km:g} km", {"model.sigma_km": c.sigma_km}),
    ],
}
SAMPLING = {"K": "num_samples", "steps": "steps", "guidance": "guidance"}
KEYS = ("acc_1km", "acc_25km", "acc_200km", "acc_750km", "acc_2500km")


def main() -> None:
    parser = common.parser(__doc__, "ablations", PROFILES)
    choices = [*TRAINED, *SAMPLING]
    parser.add_argument("--which", nargs="+", default=choices, choices=choices)
    parser.add_argument("--noise", type=float, default=0.1)
    args = parser.parse_args()
    wall = time.perf_counter()
    config = get_config(args.profile)
    base_config = config.base.models.locdiff
    d = oracle_data(args.cache, yfcc_n=config.base.yfcc_n, gallery_n=config.base.gallery_n)
    train_npz = training_set(args.cache, d["gallery"], args.noise, args.seed)
    truth, clean = d["im2gps3k"][0], d["im2gps3k"][1]
    cond = oracle_condition(clean, args.noise, seed=args.seed + 2)
    runs = os.path.join(args.cache, f"ablation_runs_{args.profile}_{args.seed}_{args.noise:g}")
    all_rows, sections = [], []

    def run(label: str, changes: dict, **sampling) -> dict:
        run_config = override(base_config, **changes)
        key = "_".join(f"{k}={v}" for k, v in sorted(changes.items()))
        key = "base" if run_config == base_config else key  # e.g. L=32 is the base model
        workdir = os.path.join(runs, key)
        trained = train_or_load(
            "locdiff", train_npz, workdir, run_config, progress=not args.no_progress
        )
        locator = load_locator(workdir, **sampling) if sampling else trained
        start = time.perf_counter()
        pred = locator.predict(cond, top_k=1).top1
        row = {"setting": label, **common.score(pred, truth, seed=args.seed)}
        seconds = trained.meta["train_seconds"]
        row.update(train_s=round(seconds, 1), predict_s=round(time.perf_counter() - start, 1))
        common.log(
            f"  {label}: {row['acc_25km']:.1f} / {row['acc_200km']:.1f} / "
            f"{row['acc_750km']:.1f} % , median {row['median_km']:.0f} km "
            f"(train {seconds:.0f} s, predict {row['predict_s']:.0f} s)"
        )
        return row

    for which in args.which:
        common.log(f"ablation: {which}")
        if which in TRAINED:
            rows = [run(label, changes) for label, changes in TRAINED[which](config)]
            note = "Each row is its own training run; everything else as the base model."
        else:
            name = SAMPLING[which]
            rows = [run(f"{which}={v}", {}, **{name: v}) for v in getattr(config, which)]
            note = f"One trained base model; only the sampler's `{name}` changes."
        for r in rows:
            r["ablation"] = which
        all_rows += rows
        timing = ", ".join(
            f"{r['setting']}: train {r['train_s']:.0f} s, predict {r['predict_s']:.0f} s"
            for r in rows
        )
        sections.append((which, f"{note}\n\n{common.table(rows, ['setting'], KEYS)}\n\n{timing}"))
    wall_s = time.perf_counter() - wall
    payload = {
        "profile": args.profile,
        "noise": args.noise,
        "base": base_config.to_dict(),
        "rows": all_rows,
    }
    title = f"LocDiff ablations (setting B, noise {args.noise:g}, Im2GPS3k)"
    common.write_report(args.out, "ablations", title, sections, payload, wall_s)


if __name__ == "__main__":
    main()

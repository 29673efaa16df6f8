"""Blue Marble's LocDiff target, chosen on validation: the truncated delta or a smoothed one.

    python -m experiments.bluemarble_target [--profile demo|full|smoke] [--out DIR]

LocDiff is trained on the random split of :mod:`experiments.bluemarble` (EfficientNet-
Lite0 features, the same patches, split, cap and early stopping) once per target: the
truncated delta at the setting's band limit and heat-kernel-smoothed deltas
(``model.sigma_km``, ``experiments/configs/bluemarble_target.py``). Each run is scored on
its validation rows (the 5% of training rows it held out) alone and as LocDiff-H (its
rule chosen on those rows, :mod:`locdiff.methods.shdd_hybrid`), and on the test patches.

The choice is made on validation: the target of the highest LocDiff-H mean accuracy over
25, 200, 750 and 2500 km. On Blue Marble the point answers come from LocDiff-H, which
beats LocDiff at every scale, and LocDiff's density is its prior; the table shows what
LocDiff alone gives up for it. The test rows are reported, never used to choose.
Writes ``bluemarble_target.md`` / ``.json`` into ``--out``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from locdiff.data import datasets as data
from locdiff.evaluation import metrics
from locdiff.infer.hybrid import Gallery, candidates, locdiff_h
from locdiff.io.rundir import RunDir
from locdiff.methods import shdd_hybrid as hybrid_method
from locdiff.methods import train_or_load
from locdiff.settings import bluemarble as bm
from locdiff.training.early_stopping import validation_split

from experiments import common
from experiments.bluemarble import make_splits
from experiments.configs import bluemarble as bluemarble_config
from experiments.configs.bluemarble_target import get_config
from experiments.configs.common import PROFILES

ENCODER = "efficientnet-lite0"
VAL_KEYS = ("acc_25km", "acc_200km", "acc_750km", "acc_2500km")


def label(sigma_km: float | None) -> str:
    return "truncated" if sigma_km is None else f"smoothed {sigma_km:g} km"


def validation_mean(scores: dict) -> float:
    return float(np.mean([scores[k] for k in VAL_KEYS]))


def main() -> None:
    args = common.parser(__doc__, "bluemarble_target", PROFILES).parse_args()
    wall = time.perf_counter()
    config = get_config(args.profile)
    setting = config.setting
    d = bm.build_dataset(
        args.cache,
        n_land=setting.n_land,
        n_ocean=setting.n_ocean,
        seed=args.seed,
        progress=not args.no_progress,
    )
    latlon, emb = d["latlon"], d[f"emb:{ENCODER}"]
    split = make_splits(latlon, setting, args.seed)["random"]
    runs = os.path.join(args.cache, f"bluemarble_target_runs_{args.profile}_{args.seed}")
    train_npz = common.save_split(
        f"{runs}/train.npz", emb, latlon, split.train, encoder=bm.ENCODERS[ENCODER]
    )
    arrays = data.load_npz(train_npz)
    base = setting.models.locdiff
    train_rows, val = validation_split(len(arrays["latlon"]), base.train.validation_fraction)
    val = val[: hybrid_method.MAX_TUNING_ROWS]  # the rows the hybrid's rule is chosen on
    val_x, val_truth = arrays["embeddings"][val], arrays["latlon"][val].astype(np.float64)
    val_gallery = Gallery.of(arrays["embeddings"][train_rows], arrays["latlon"][train_rows])
    gallery = Gallery.of(emb[split.train], latlon[split.train])
    truth = latlon[split.test]

    rows = []
    for sigma_km in config.sigmas_km:
        name = label(sigma_km)
        common.log(f"target: {name}")
        workdir = os.path.join(runs, "truncated" if sigma_km is None else f"sigma_{sigma_km:g}")
        run_config = bluemarble_config.with_target(base, sigma_km)
        locator = train_or_load(
            "locdiff", train_npz, workdir, run_config, progress=not args.no_progress
        )
        rule = hybrid_method.rule_for(RunDir(workdir), locator, train_npz)
        val_pred = locator.predict(val_x, top_k=1)
        val_hybrid = locdiff_h(val_pred, val_x, val_gallery, L=locator.L, rule=rule)
        test_pred = locator.predict(emb[split.test], top_k=1)
        test_hybrid = locdiff_h(test_pred, emb[split.test], gallery, L=locator.L, rule=rule)
        for method, v, t in (
            ("locdiff", val_pred.top1, test_pred.top1),
            ("locdiff-h", val_hybrid.top1, test_hybrid.top1),
        ):
            val_scores = metrics.summarize(v, val_truth)
            trained_sigma = locator.geolocator.config.model.sigma_km  # what the run learned
            row = {"target": name, "method": method, "sigma_km": trained_sigma}
            row.update({f"val_{k}": val_scores[k] for k in VAL_KEYS})
            row["val_mean"] = validation_mean(val_scores)
            row.update(common.score(t, truth, seed=args.seed), **common.budget(locator.meta))
            row.update(common.locdiff_choices(locator), rule=rule.to_dict())
            rows.append(row)
            common.log(
                f"  {method}: validation "
                + " / ".join(f"{row['val_' + k]:.1f}" for k in VAL_KEYS)
                + f" % (mean {row['val_mean']:.2f}); test "
                + " / ".join(f"{row[k]:.1f}" for k in VAL_KEYS)
                + " %"
            )
    hybrid_rows = [r for r in rows if r["method"] == "locdiff-h"]
    best = max(hybrid_rows, key=lambda r: r["val_mean"])
    nearest = candidates(emb[split.test], gallery, 1)[0][:, 0]  # plain retrieval
    retrieval = common.score(nearest, truth, seed=args.seed)
    wall_s = time.perf_counter() - wall
    sections = [
        (
            "Validation (the choice is made here)",
            f"{len(val)} validation rows of the random split's training patches, "
            "searched against the other training rows for LocDiff-H. Chosen: "
            f"**{best['target']}**, the highest LocDiff-H mean over 25-2500 km.\n\n"
            + _validation_table(rows),
        ),
        (
            "Test (reported, not used to choose)",
            f"The random split's {len(truth)} test patches; retrieval over the same "
            "training patches for reference: "
            + " / ".join(f"{retrieval[k]:.1f}" for k in VAL_KEYS)
            + " % within 25 / 200 / 750 / 2500 km.\n\n"
            + common.table(rows, ["target", "method"]),
        ),
        (
            "Budgets and validation choices",
            "Each run stops when its validation loss has not improved for 4 evaluations, "
            "within the setting's cap.\n\n"
            + common.budget_table(rows, ["target"])
            + "\n\n"
            + _choices_table(hybrid_rows),
        ),
    ]
    payload = {
        "profile": args.profile,
        "base": base.to_dict(),
        "chosen": best["target"],
        "chosen_sigma_km": best["sigma_km"],
        "retrieval": retrieval,
        "rows": rows,
    }
    title = "Blue Marble: LocDiff's target chosen on validation (random split, EfficientNet-Lite0)"
    common.write_report(args.out, "bluemarble_target", title, sections, payload, wall_s)


def _validation_table(rows: list[dict]) -> str:
    head = ["target", "method", *(f"val % ≤ {k[4:]}" for k in VAL_KEYS), "mean"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["target"], r["method"], *(f"{r['val_' + k]:.1f}" for k in VAL_KEYS)]
        lines.append("| " + " | ".join(cells + [f"{r['val_mean']:.2f}"]) + " |")
    return "\n".join(lines)


def _choices_table(rows: list[dict]) -> str:
    head = ["target", *common.CHOICES.values(), "hybrid candidates", "hybrid weight"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["target"], *common.choices_cells(r)]
        cells += [str(r["rule"]["candidates"]), f"{r['rule']['weight']:g}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

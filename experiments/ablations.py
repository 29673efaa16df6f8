"""Compute-matched ablations of LocDiff, each a table: what limits it beyond the budget.

    python -m experiments.ablations [--profile demo|full|smoke] [--which L loss ...]
                                    [--base ablations|recipe]

All on setting B (:mod:`locdiff.settings.oracle`: MP16 training locations, GeoCLIP location
embeddings plus noise ``--noise``, default 0.1), tested on Im2GPS3k. One base model
(setting B's LocDiff configuration) is varied one factor at a time; every trained
variant has the same cap in samples seen and the same early stopping on its validation
loss (:mod:`locdiff.training.early_stopping`), and its steps, epochs and seconds are reported:

* ``L``: the band limit (16, 32, 64; and 100 in the ``full`` profile);
* ``loss``: MSE on ``x0``, the SHDD-KL alone (the paper's loss) and MSE plus SHDD-KL;
* ``smoothing``: the truncated delta against a heat-kernel-smoothed one (``sigma_km`` 700,
  about the narrowest that does not ring at L = 32: ``shdd.encoder``);
* ``smoothed_L``: the band limit under the smoothed target (16, 24, 32): the 700 km heat
  kernel leaves little above degree 20 (``w_24`` = 0.03), and the step's cost grows
  with ``(L+1)**2``;
* ``bottleneck``: the U-Net's depth, hence its narrowest width (hidden / 2**depth);
* ``condition``: hidden layers of the MLP that turns the condition into FiLM;
* ``ema``: the parameters' moving average (decay of the demo profile) against none;
* ``noise_draw``: one noisy copy of every training condition, fixed for the run, against
  a fresh draw at every step (``train.condition_noise``, trained on the clean conditions);
* ``K``, ``steps``, ``guidance``: sampling settings of the base model (no retraining).

``--base recipe`` varies setting B's own LocDiff instead (``demo_models()`` of
``experiments/configs/oracle_mp16.py``: the smoothed target at L = 24 that the rule
below chose over the base, in runs of its own): the loss comparison at convergence
(``make experiments`` writes it to ``experiments/results/ablations/loss``).

Every trained variant samples at the guidance scale chosen on its own validation rows
(:func:`locdiff.infer.calibration.choose_guidance`), the ``guidance`` rows excepted.

Each row is scored on two validation sets, never on the test set: 1,000 validation
rows of the training data (their noisy conditions, the same rows for every variant) and
1,000 far-validation rows (land points farther than 100 km from every training location,
:func:`far_validation`), because a choice that helps in distribution can hurt away from
the training photos, the case LocDiff exists for. On each, a variant's mean accuracy over
25, 200, 750 and 2500 km and its paired difference from the group's incumbent (the base
run where the group has it, the row at the base's band limit in ``smoothed_L``, the
base's own sampler setting in the sampling groups, else the first row). The rule for
changing a recipe reads the two in equal shares: the score is the mean of the two mean
accuracies, and a variant replaces the incumbent when its score's difference exceeds
twice its standard error (the two row sets are independent: half the root sum of
squares of the two paired errors); smaller wins are noise.
Writes ``ablations.md`` / ``.json`` into ``--out``; ± is a bootstrap standard error.
Configs: ``experiments/configs/ablations.py``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from locdiff.config import override
from locdiff.data import datasets as data
from locdiff.data import splits
from locdiff.evaluation import metrics
from locdiff.methods import load_locator, train_or_load
from locdiff.settings.oracle import land_validation, oracle_condition, oracle_data, training_set
from locdiff.training.early_stopping import validation_split

from experiments import common
from experiments.configs import oracle_mp16
from experiments.configs.ablations import get_config
from experiments.configs.common import PROFILES

TRAINED = {
    "L": lambda c: [(f"L={L}", {"model.L": L}) for L in c.L],
    "loss": lambda c: [(loss, {"diffusion.loss": loss}) for loss in ("mse", "kl", "mse+kl")],
    "smoothing": lambda c: [
        ("truncated", {}),
        (f"smoothed {c.sigma_km:g} km", {"model.sigma_km": c.sigma_km}),
    ],
    "smoothed_L": lambda c: [
        (f"smoothed, L={L}", {"model.sigma_km": c.sigma_km} | _other_L(c, L)) for L in c.smoothed_L
    ],
    "bottleneck": lambda c: [
        (f"depth {d} ({c.base.models.locdiff.model.hidden // 2**d} units)", {"model.depth": d})
        for d in c.depths
    ],
    "condition": lambda c: [
        (f"{n} hidden layer{'s' * (n > 1)}", {"model.cond_layers": n}) for n in c.cond_layers
    ],
    "ema": lambda c: [
        (f"decay {c.base.models.locdiff.train.ema_decay:g}", {}),
        ("none", {"train.ema_decay": 0.0}),
    ],
    "noise_draw": lambda c: [("fixed per row", {}), ("fresh every step", {"fresh": True})],
}
SAMPLING = {"K": "num_samples", "steps": "sample_steps", "guidance": "guidance"}
RECIPE_GROUPS = {"loss", "L", *SAMPLING}  # the groups --base recipe can vary


def _other_L(c, L: int) -> dict:
    """``{"model.L": L}`` unless ``L`` is the base's (whose run the other groups share)."""
    return {} if L == c.base.models.locdiff.model.L else {"model.L": L}


KEYS = ("acc_1km", "acc_25km", "acc_200km", "acc_750km", "acc_2500km")
VAL_KEYS = ("acc_25km", "acc_200km", "acc_750km", "acc_2500km")
VALIDATION_ROWS = 1000


def mean_accuracy_difference(errors_km, incumbent_km, prefix: str = "val") -> dict:
    """A variant's mean validation accuracy over ``VAL_KEYS`` (percent), its difference
    from the incumbent's on the same rows, and the standard error of that paired
    difference (per-row accuracy averaged over the thresholds, then differenced); keys
    named ``<prefix>_mean...``."""
    thresholds = np.array([float(k[4:-2]) for k in VAL_KEYS])

    def per_row(d):
        return 100 * (np.asarray(d)[:, None] <= thresholds).mean(1)

    score, diff = per_row(errors_km), per_row(errors_km) - per_row(incumbent_km)
    return {
        f"{prefix}_mean": float(score.mean()),
        f"{prefix}_mean_diff": float(diff.mean()),
        f"{prefix}_mean_diff_se": float(diff.std(ddof=1) / np.sqrt(diff.size)),
    }


def far_validation(args, config, gallery_latlon) -> tuple[np.ndarray, np.ndarray]:
    """Setting B's far-validation rows (:func:`locdiff.settings.oracle.land_validation`
    points farther than ``splits.FAR_KM`` from the gallery, their conditions drawn as
    :func:`locdiff.settings.oracle.training_set` draws them): at most
    ``VALIDATION_ROWS``."""
    latlon, emb = land_validation(args.cache, n=config.base.far_land_n, seed=args.seed)
    held = splits.nearest_km(latlon, gallery_latlon) > splits.FAR_KM
    cond = oracle_condition(emb[held], args.noise, seed=args.seed + 3)
    return cond[:VALIDATION_ROWS], latlon[held][:VALIDATION_ROWS].astype(np.float64)


def equal_shares(row: dict) -> dict:
    """The rule's score: the mean of a row's validation and far-validation mean
    accuracies, its difference from the incumbent's and that difference's standard error
    (independent row sets)."""
    se = 0.5 * np.hypot(row["val_mean_diff_se"], row["far_mean_diff_se"])
    return {
        "score": 0.5 * (row["val_mean"] + row["far_mean"]),
        "score_diff": 0.5 * (row["val_mean_diff"] + row["far_mean_diff"]),
        "score_diff_se": float(se),
    }


def _verdict(rows: list[dict], incumbent: dict) -> str:
    """The rule applied to a group: which row scores highest, which replace the incumbent."""
    best = max(rows, key=lambda r: r["score"])
    adopted = [r for r in rows if r["score_diff"] > 2 * r["score_diff_se"]]
    lines = [
        "| setting | validation mean | far mean | score | score - incumbent's |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        diff = "(incumbent)" if r is incumbent else (
            f"{r['score_diff']:+.1f} ± {r['score_diff_se']:.1f}"
        )  # fmt: skip
        lines.append(
            f"| {r['setting']} | {r['val_mean']:.1f} | {r['far_mean']:.1f} | {r['score']:.1f} "
            f"| {diff} |"
        )
    winner = max(adopted, key=lambda r: r["score"]) if adopted else None
    verdict = (
        f"**{winner['setting']}** replaces **{incumbent['setting']}**: the highest score among "
        "the variants that beat the incumbent by more than twice the standard error"
        if winner
        else f"**{incumbent['setting']}** stays: no variant beats it by more than twice the "
        "standard error"
    )
    return (
        "The choice (score: the mean of the validation and far-validation mean accuracies "
        f"over 25, 200, 750 and 2500 km, in equal shares): {verdict}; **{best['setting']}** "
        "scores highest.\n\n" + "\n".join(lines)
    )


def _mean_table(rows: list[dict], incumbent: dict, prefix: str) -> str:
    """Each row's accuracy on the ``prefix`` rows (``val``, ``far``) at ``VAL_KEYS``, their
    mean, and its paired difference from the incumbent's."""
    head = "| setting | " + " | ".join(f"{prefix} % ≤ {k[4:]}" for k in VAL_KEYS)
    lines = [head + f" | mean | mean - {incumbent['setting']}'s |"]
    lines.append("|---|" + "---|" * (len(VAL_KEYS) + 2))
    for r in rows:
        diff = "(incumbent)" if r is incumbent else (
            f"{r[prefix + '_mean_diff']:+.1f} ± {r[prefix + '_mean_diff_se']:.1f}"
        )  # fmt: skip
        cells = " | ".join(f"{r[prefix + '_' + k]:.1f}" for k in VAL_KEYS)
        lines.append(f"| {r['setting']} | {cells} | {r[prefix + '_mean']:.1f} | {diff} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = common.parser(__doc__, "ablations", PROFILES)
    choices = [*TRAINED, *SAMPLING]
    parser.add_argument("--which", nargs="+", default=choices, choices=choices)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument(
        "--base", choices=("ablations", "recipe"), default="ablations",
        help="vary the ablations' base (L = 32, truncated) or setting B's LocDiff",
    )  # fmt: skip
    args = parser.parse_args()
    if args.base == "recipe" and set(args.which) - RECIPE_GROUPS:
        parser.error(
            f"--base recipe varies only {sorted(RECIPE_GROUPS)}: the other groups' variants "
            "are defined on the ablations' base (L = 32, truncated)"
        )
    wall = time.perf_counter()
    config = get_config(args.profile)
    base_config = config.base.models.locdiff
    if args.base == "recipe":
        base_config = oracle_mp16.get_config(args.profile).models.locdiff
    d = oracle_data(args.cache, yfcc_n=config.base.yfcc_n, gallery_n=config.base.gallery_n)
    train_npz = training_set(args.cache, d["gallery"], args.noise, args.seed)
    truth, clean = d["im2gps3k"][0], d["im2gps3k"][1]
    cond = oracle_condition(clean, args.noise, seed=args.seed + 2)
    runs = os.path.join(args.cache, f"ablation_runs_{args.profile}_{args.seed}_{args.noise:g}")
    runs += "_recipe" if args.base == "recipe" else ""
    runs += f"_cap{base_config.train.steps}"  # runs of another cap are never continued
    all_rows, sections = [], []

    clean_npz = training_set(args.cache, d["gallery"], 0.0, args.seed)
    arrays = data.load_npz(train_npz)
    val = validation_split(len(arrays["latlon"]), base_config.train.validation_fraction)[1]
    val = val[:VALIDATION_ROWS]
    val_x, val_truth = arrays["embeddings"][val], arrays["latlon"][val].astype(np.float64)
    far_x, far_truth = far_validation(args, config, d["gallery"][0])

    def run(label: str, changes: dict, **sampling) -> dict:
        changes = dict(changes)
        fresh = changes.pop("fresh", False)
        if fresh:  # the clean conditions, a new noise draw at every step
            changes["train.condition_noise"] = args.noise
        run_config = override(base_config, **changes)
        key = "_".join(f"{k}={v}" for k, v in sorted(changes.items()))
        key = "base" if run_config == base_config else key  # e.g. L=32 is the base model
        workdir = os.path.join(runs, key)
        trained = train_or_load(
            "locdiff", clean_npz if fresh else train_npz, workdir, run_config,
            progress=not args.no_progress,
        )  # fmt: skip
        locator = load_locator(workdir, **sampling) if sampling else trained
        val_pred = locator.predict(val_x, top_k=1).top1
        val_scores = metrics.summarize(val_pred, val_truth)
        start = time.perf_counter()
        pred = locator.predict(cond, top_k=1).top1
        row = {"setting": label, "run": key, **common.score(pred, truth, seed=args.seed)}
        row.update({f"val_{k}": val_scores[k] for k in VAL_KEYS})
        row.update(common.budget(trained.meta), predict_s=round(time.perf_counter() - start, 1))
        row["_val_km"] = metrics.distances_km(val_pred, val_truth)
        far_pred = locator.predict(far_x, top_k=1).top1
        row.update({f"far_{k}": v for k, v in metrics.summarize(far_pred, far_truth).items()
                    if k in VAL_KEYS})  # fmt: skip
        row["_far_km"] = metrics.distances_km(far_pred, far_truth)
        common.log(
            f"  {label}: validation {row['val_acc_200km']:.1f} / {row['val_acc_750km']:.1f} %, "
            f"test {row['acc_25km']:.1f} / {row['acc_200km']:.1f} / {row['acc_750km']:.1f} % "
            f"(train {row['train_s']:.0f} s, {row['steps']} steps, "
            f"predict {row['predict_s']:.0f} s)"
        )
        return row

    for which in args.which:
        common.log(f"ablation: {which}")
        if which in TRAINED:
            rows = [run(label, changes) for label, changes in TRAINED[which](config)]
            incumbent = next((r for r in rows if r["run"] == "base"), None)
            at_base_L = {} if which != "smoothed_L" else {"model.sigma_km": config.sigma_km}
            incumbent = incumbent or next(
                (
                    r
                    for r, (_, ch) in zip(rows, TRAINED[which](config), strict=True)
                    if ch == at_base_L
                ),
                rows[0],
            )
            note = (
                "Each row is its own training run; everything else as the base model. Each "
                "samples at the guidance scale its own validation rows chose "
                "(`calibration.json`)."
            )
        else:
            name = SAMPLING[which]
            rows = [run(f"{which}={v}", {}, **{name: v}) for v in getattr(config, which)]
            default = getattr(base_config.diffusion, name)  # the recipe's own setting
            values = list(getattr(config, which))
            incumbent = rows[values.index(default)] if default in values else rows[0]
            note = (
                f"One trained base model; only the sampler's `{name}` changes (the others "
                "at the base model's defaults, its guidance chosen on validation)."
            )
        for r in rows:
            r["ablation"] = which
            r.update(mean_accuracy_difference(r["_val_km"], incumbent["_val_km"]))
            r.update(mean_accuracy_difference(r["_far_km"], incumbent["_far_km"], "far"))
            r.update(equal_shares(r))
        for r in rows:
            del r["_val_km"], r["_far_km"]  # per-row errors: not for the report's JSON
        all_rows += rows
        text = (
            f"{note}\n\n{_verdict(rows, incumbent)}\n\n"
            f"Validation ({len(val)} rows of the training data):\n\n"
            f"{_mean_table(rows, incumbent, 'val')}\n"
            f"Far validation ({len(far_truth)} land points farther than {splits.FAR_KM:g} km from "
            f"every training location):\n\n{_mean_table(rows, incumbent, 'far')}\n"
            f"Test (Im2GPS3k):\n\n{common.table(rows, ['setting'], KEYS)}\n\n"
        )
        if which in TRAINED:
            text += "Budgets:\n\n" + common.budget_table(rows, ["setting"])
        else:
            text += ", ".join(f"{r['setting']}: predict {r['predict_s']:.0f} s" for r in rows)
        sections.append((which, text))
    wall_s = time.perf_counter() - wall
    payload = {
        "profile": args.profile,
        "noise": args.noise,
        "base": base_config.to_dict(),
        "base_name": args.base,
        "rows": all_rows,
    }
    title = f"LocDiff ablations (setting B, noise {args.noise:g}, Im2GPS3k)"
    if args.base == "recipe":
        title = f"LocDiff ablations of setting B's recipe (noise {args.noise:g}, Im2GPS3k)"
    common.write_report(args.out, "ablations", title, sections, payload, wall_s)


if __name__ == "__main__":
    main()

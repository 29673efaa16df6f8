"""Which signal tells LocDiff's map rules that the model is out of its depth.

    python -m experiments.doubt [--profile demo] [--noise 0.1 0.2] [--out DIR]

LocDiff's credible regions over-promise for conditions far from every training photo,
and one map rule for every input cannot fix that: the rules are chosen per bin of a
signal (:func:`locdiff.infer.calibration.choose_map_rule`). The candidates, each computable at
prediction time from the condition and the run alone:

- ``doubt_km``: km between LocDiff's mode and the place of the most similar training
  condition (:mod:`locdiff.infer.reference`);
- ``spread_km2``: the area of the plain map's 50% region
  (:func:`locdiff.infer.calibration.spread_km2`);
- ``dissimilarity``: one minus the cosine of the most similar training condition (no
  run bins by it).

Each run chooses its signal and number of bins itself, on its own validation queries
(:func:`locdiff.methods.shdd_diffusion.calibration_rows`: random and far-validation rows), by
the rule of :func:`locdiff.infer.calibration.choose_map_signal`: the least held-out miss of
2-fold calibration, random and far rows apart; against it, the mixture of two rules
weighted by a logistic model of P(far) from all three (:mod:`locdiff.infer.novelty`).
This study shows that choice for setting B's runs, every candidate's held-out coverage
beside it, and how well each signal separates far-validation rows from random ones
(AUC) and ranks LocDiff's error (Spearman). Every figure is on validation rows: no test
row is read. Runs: setting B's LocDiff runs on the full gallery (``python -m
experiments.oracle_mp16`` trains them).
Writes ``doubt.md`` / ``.json``.
"""

from __future__ import annotations

import os
import time

import numpy as np
from scipy.stats import rankdata, spearmanr

from locdiff.evaluation import metrics
from locdiff.infer import calibration, novelty
from locdiff.infer.geolocator import Geolocator
from locdiff.infer.reference import Reference
from locdiff.io.rundir import RunDir
from locdiff.methods import shdd_diffusion as locdiff_method

from experiments import common
from experiments.configs.common import PROFILES
from experiments.configs.oracle_mp16 import get_config

SIGNALS = ("doubt_km", "dissimilarity", "spread_km2")


def run_dir(cache: str, profile: str, seed: int, noise: float) -> str:
    """Setting B's LocDiff run on the full gallery at ``noise`` (as oracle_mp16 names it)."""
    tag = get_config(profile).runs_tag
    return os.path.join(
        cache, f"oracle_runs_{profile}_{seed}{tag}", "gallery1", f"noise{noise:g}", "locdiff"
    )


def auc(score, positive) -> float:
    """Probability that a random positive row scores above a random negative one."""
    r = rankdata(score)
    n1 = int(positive.sum())
    n0 = len(positive) - n1
    return float((r[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def reference_of(run: RunDir, data_path: str, fraction: float) -> Reference:
    """The run's reference, or (not calibrated yet) the same one built from its data."""
    if os.path.exists(run.reference):
        return Reference.load(run.reference)
    return locdiff_method.training_reference(data_path, fraction)


def study(run_path: str) -> dict:
    run = RunDir(run_path)
    meta = run.read_method()
    geo = Geolocator.from_checkpoint(run_path)
    fraction = geo.config.train.validation_fraction
    x, truth, far = locdiff_method.calibration_rows(meta["data"], fraction)
    reference = reference_of(run, meta["data"], fraction)
    geo = geo.with_snapping(None, 0.0).with_reference(reference)
    prediction = geo.predict(x, top_k=1, doubt=True)
    found, signals = calibration.rule_levels(geo, x, truth, prediction=prediction)
    similarity = reference.nearest(x)[1]
    values = signals | {"dissimilarity": 1.0 - similarity}
    error = metrics.distances_km(prediction.top1, truth)
    signals = {}
    for name in SIGNALS:
        v = values[name]
        signals[name] = {
            "auc_far": auc(v, far),
            "spearman_error": float(spearmanr(v, error)[0]),
            "spearman_error_random": float(spearmanr(v[~far], error[~far])[0]),
            "spearman_error_far": float(spearmanr(v[far], error[far])[0]),
        }
    candidates = {name: values[name] for name in calibration.MAP_SIGNALS}
    mixture, fitted = novelty.choose_for(geo, x, truth, prediction, found, values, far)
    signal, bins, choice = calibration.choose_map_signal(found, candidates, far, mixture=mixture)
    mixed = signal == novelty.MIXTURE
    sharpness = fitted["novelty"]["sharpness"] if mixed else None
    fit = fitted.get("fit") if mixed else None
    return {
        "run": run_path,
        "guidance": geo.config.diffusion.guidance,
        "n_random": int(np.sum(~far)),
        "n_far": int(np.sum(far)),
        "median_error_km_random": float(np.median(error[~far])),
        "median_error_km_far": float(np.median(error[far])),
        "signals": signals,
        "choice": choice,
        "chosen": {"signal": signal, "bins": bins, "sharpness": sharpness, "fit": fit},
    }


def table(runs: list[dict], noises) -> str:
    """The signals' AUC and Spearman correlation, per noise level."""
    lines = ["| noise | signal | AUC far vs random | Spearman with error (all / random / far) |"]
    lines.append("|" + "---|" * 4)
    keys = ("spearman_error", "spearman_error_random", "spearman_error_far")
    for noise, r in zip(noises, runs, strict=True):
        for name, s in r["signals"].items():
            rank = " / ".join(f"{s[k]:.2f}" for k in keys)
            lines.append(f"| {noise:g} | {name} | {s['auc_far']:.2f} | {rank} |")
    return "\n".join(lines)


def choice_table(runs: list[dict], noises) -> str:
    """Every candidate of the per-run choice: held-out coverage and miss."""
    lines = [
        "| noise | signal | bins | held-out coverage 50 / 90, random "
        "| held-out coverage 50 / 90, far | miss | chosen |"
    ]
    lines.append("|" + "---|" * 7)
    for noise, r in zip(noises, runs, strict=True):
        for c in r["choice"]:
            chosen = c["bins"] == r["chosen"]["bins"] and c["signal"] in (
                r["chosen"]["signal"],
                None,
            )
            chosen = chosen and c.get("sharpness") == r["chosen"].get("sharpness")
            chosen = chosen and c.get("fit") == r["chosen"].get("fit")
            name = c["signal"] or "(one rule)"
            if "sharpness" in c:
                name = f"mixture by novelty ({c.get('fit', 'separate')}), s = {c['sharpness']:g}"
            cells = [f"{noise:g}", name, str(c["bins"])]
            cells += [f"{c[f'coverage_50_{p}']:.1f} / {c[f'coverage_90_{p}']:.1f}"
                      for p in ("random", "far")]  # fmt: skip
            cells += [f"{c['miss']:.1f}", "**yes**" if chosen else ""]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = common.parser(__doc__, "doubt", PROFILES)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.1, 0.2])
    args = parser.parse_args()
    wall = time.perf_counter()
    runs = []
    for noise in args.noise:
        path = run_dir(args.cache, args.profile, args.seed, noise)
        if not RunDir(path).finished:
            raise SystemExit(f"{path}: no finished run; `python -m experiments.oracle_mp16` first")
        common.log(f"noise {noise:g}: {path}")
        runs.append(study(path) | {"noise": noise})
    n = ", ".join(f"{r['n_random']} random + {r['n_far']} far at noise {r['noise']:g}"
                  for r in runs)  # fmt: skip
    sections = [
        (
            "The signals on setting B's validation queries",
            f"Validation queries: {n}.\n\n" + table(runs, args.noise),
        ),
        (
            "Each run's choice",
            "Held-out coverage: each half of the queries (as many far rows in each) scored "
            "with the map rules chosen per bin (of at least "
            f"{calibration.MIN_BIN_ROWS // 2} rows) on the other half; miss: the sum over "
            "random and far rows and over the 50% and 90% levels of |coverage - level|. The "
            "run's choice (`calibration.choose_map_signal`): the fewest bins within "
            f"{calibration.MISS_TOLERANCE:g} points of the least miss, then the spread; "
            "the mixture of two rules by novelty (`locdiff.infer.novelty`: the random and "
            "the far rows' rules weighted by a logistic model of P(far), its model and "
            "rules fitted on the other half too) only where no binned candidate ties.\n\n"
            + choice_table(runs, args.noise),
        ),
    ]
    payload = {"runs": runs, "signals": list(SIGNALS)}
    title = "The doubt of an answer: which signal bins LocDiff's map rules"
    common.write_report(args.out, "doubt", title, sections, payload, time.perf_counter() - wall)


if __name__ == "__main__":
    main()

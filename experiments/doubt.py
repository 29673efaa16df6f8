"""Which signal tells LocDiff's map rules that the model is out of its depth.

    python -m experiments.doubt [--profile demo] [--noise 0.1 0.2] [--out DIR]

LocDiff's credible regions over-promise for conditions far from every training photo,
and one map rule for every input cannot fix that: the rules are chosen per bin of a
signal (:func:`locdiff.calibration.choose_map_rule`). The candidates, each computable at
prediction time from the condition and the run alone:

- ``doubt_km``: km between LocDiff's mode and the place of the most similar training
  condition (:mod:`locdiff.reference`);
- ``dissimilarity``: one minus the cosine of the most similar training condition;
- ``spread_km2``: the area of the plain map's 50% region
  (:func:`locdiff.calibration.spread_km2`).

Rule, stated before the runs: the signal with the highest Spearman correlation with
LocDiff's top-1 error over the calibration queries (:func:`locdiff.methods.locdiff.
calibration_rows`: random and far-validation rows together), averaged over setting B's
noise levels, bins the map rules. Also reported: how well each separates far-validation
rows from random ones (AUC), and the coverage of the 50% / 90% regions on each half of
the validation queries with the rules chosen by bin on the other half (the held-out
check of what binning by that signal buys). Every figure is on validation rows: no
test row is read. Runs: setting B's LocDiff runs on the full gallery
(``python -m experiments.oracle_mp16`` trains them). Writes ``doubt.md`` / ``.json``.
"""

from __future__ import annotations

import os
import time

import numpy as np
from scipy.stats import rankdata, spearmanr

from locdiff import calibration, metrics, neighbours
from locdiff.inference import Geolocator
from locdiff.methods import locdiff as locdiff_method
from locdiff.reference import Reference
from locdiff.rundir import RunDir

from experiments import common
from experiments.configs.common import PROFILES
from experiments.configs.oracle_mp16 import get_config

SIGNALS = ("doubt_km", "dissimilarity", "spread_km2")
FOLD_SEED = 1


def run_dir(cache: str, profile: str, seed: int, noise: float) -> str:
    """Setting B's LocDiff run on the full gallery at ``noise`` (as oracle_mp16 names it)."""
    far = get_config(profile).far_fraction
    tag = f"_far{far:g}" if far else ""
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


def held_out_coverage(found, values, far) -> dict:
    """Coverage (%) of the 50% / 90% regions on each half of the rows with the rules
    chosen per bin of ``values`` on the other half; ``values`` None: one rule."""
    order = np.random.default_rng(FOLD_SEED).permutation(len(far))
    halves = np.array_split(order, 2)
    levels = np.empty(len(far))
    for fit, score in (halves, halves[::-1]):
        v = np.zeros(len(far)) if values is None else values
        _, per_bin, edges, _ = calibration.rules_by_bin(found[..., fit], v[fit])
        which = calibration.bin_index(v[score], edges)
        for b, rule in enumerate(per_bin):
            i = calibration.POWERS.index(rule["map_power"])
            j = calibration.TAILS.index(rule["map_tail"])
            k = calibration.TEMPERATURES.index(rule["map_tail_temperature"])
            rows = score[which == b]
            levels[rows] = found[i, j, k, rows]
    out = {}
    for part, sel in (("random", ~far), ("far", far)):
        for a in calibration.LEVELS:
            out[f"coverage_{100 * a:g}_{part}"] = float(100 * np.mean(levels[sel] < a))
    return out


def study(run_path: str) -> dict:
    run = RunDir(run_path)
    meta = run.read_method()
    geo = Geolocator.from_checkpoint(run_path)
    fraction = geo.config.train.validation_fraction
    x, truth, far = locdiff_method.calibration_rows(meta["data"], fraction)
    reference = reference_of(run, meta["data"], fraction)
    geo = geo.with_snapping(None, 0.0).with_reference(reference)
    prediction = geo.predict(x, top_k=1)
    found, signals = calibration.rule_levels(geo, x, truth, prediction=prediction)
    nearest = neighbours.search(
        neighbours.normalise(x), np.asarray(reference.conditions, np.float32)
    )[:, 0]
    similarity = np.sum(
        neighbours.normalise(x) * np.asarray(reference.conditions[nearest], np.float32), axis=1
    )
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
            **held_out_coverage(found, v, far),
        }
    return {
        "run": run_path,
        "guidance": geo.config.diffusion.guidance,
        "n_random": int(np.sum(~far)),
        "n_far": int(np.sum(far)),
        "median_error_km_random": float(np.median(error[~far])),
        "median_error_km_far": float(np.median(error[far])),
        "one_rule": held_out_coverage(found, None, far),
        "signals": signals,
    }


def choose(runs: list[dict]) -> str:
    """The rule of the module docstring: the highest mean Spearman correlation."""
    mean = {s: np.mean([r["signals"][s]["spearman_error"] for r in runs]) for s in SIGNALS}
    return max(SIGNALS, key=lambda s: mean[s])


def table(runs: list[dict], noises) -> str:
    head = (
        "| noise | signal | AUC far vs random | Spearman with error (all / random / far) "
        "| held-out coverage 50 / 90, random | held-out coverage 50 / 90, far |"
    )
    lines = [head, "|" + "---|" * 6]
    for noise, r in zip(noises, runs, strict=True):
        rows = [("one rule", None, r["one_rule"])]
        rows += [(name, stats, stats) for name, stats in r["signals"].items()]
        for name, s, cov in rows:
            rank = "— | —"
            if s is not None:
                keys = ("spearman_error", "spearman_error_random", "spearman_error_far")
                rank = f"{s['auc_far']:.2f} | " + " / ".join(f"{s[k]:.2f}" for k in keys)
            cells = [f"{noise:g}", name, rank]
            cells += [f"{cov[f'coverage_50_{p}']:.1f} / {cov[f'coverage_90_{p}']:.1f}"
                      for p in ("random", "far")]  # fmt: skip
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
    chosen = choose(runs)
    n = ", ".join(f"{r['n_random']} random + {r['n_far']} far at noise {r['noise']:g}"
                  for r in runs)  # fmt: skip
    sections = [
        (
            "The signals on setting B's validation queries",
            f"Validation queries: {n}. Held-out coverage: each half of the queries scored "
            "with the map rules chosen per bin (at most 4, of at least 150 rows) on the "
            "other half; 'one rule': no bins.\n\n" + table(runs, args.noise),
        ),
        (
            "Chosen",
            f"`{chosen}`: the highest mean Spearman correlation with LocDiff's error "
            "(the rule stated in `experiments/doubt.py`).",
        ),
    ]
    payload = {"runs": runs, "chosen": chosen, "signals": list(SIGNALS)}
    title = "The doubt of an answer: which signal bins LocDiff's map rules"
    common.write_report(args.out, "doubt", title, sections, payload, time.perf_counter() - wall)


if __name__ == "__main__":
    main()

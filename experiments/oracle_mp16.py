"""Setting B: real photo locations with an oracle condition (an oracle study, not image accuracy).

    python -m experiments.oracle_mp16 [--profile demo|full|smoke] [--noise 0.1 0.2] [--confirm]
                                      [--out DIR]

Training set: the 100K MP16 photo locations of the ``geoclip`` wheel, and a thinned
variant (a fixed random 10% of them: sparse coverage). Test sets: the Im2GPS3k and
YFCC26k ground truth (shipped with the package; the ``demo`` profile uses a fixed random
5,000 of YFCC26k) and ``land``, a GWS-like test of 2,000 points uniform in area over land
north of 60 S (:func:`locdiff.settings.oracle.land_test`, seed ``--seed``): where a picture could
be taken rather than where photographers went. The condition of a location is its
embedding by GeoCLIP's pretrained location encoder, L2-normalised, plus Gaussian noise
of standard deviation ``--noise`` per coordinate (:mod:`locdiff.settings.oracle`; fresh noise for
every training and test row).

Every choice made after training (guidance, map rules, snapping, the hybrids' rules) is
made on the training data's random validation rows and on a far-validation set that
looks like the question of unseen places: points drawn on land like the land test but
with their own seed (:func:`locdiff.settings.oracle.land_validation`), those farther than 100 km
from every training location, conditioned the same way (``far_land_n`` in the config).

Rows: ``geoclip-retrieval`` searches GeoCLIP's clean GPS gallery (exactly GeoCLIP's
inference), ``retrieval`` the training set's own (noisy) embeddings; ``locdiff-h`` and
``locdiff-h-geoclip`` re-rank those two galleries' candidates by the same LocDiff
predictions, each with its rule chosen on the validation split. Every learned method
stops on its validation loss within the same cap in samples. Each test set is also
scored on its points farther than 100 km from every training location (``far``: the
sparse-coverage generalisation). LocDiff, LocDiff-H and LocDiff-H over GeoCLIP's gallery
are compared with the best baseline (by mean accuracy over 1-2500 km; for the last,
``geoclip-retrieval``) by paired bootstrap differences on every test set and subset.
LocDiff's 50% / 90% credible regions are scored for coverage and median area on Im2GPS3k
and the land test, all and far. No method's setting is chosen on a test set (the
comparator of the paired differences is the baseline best on that test, which favours
the baselines). ``--confirm`` also scores the full gallery's runs on the confirmation
set (``confirm``): the YFCC26k rows that the scored sample leaves out
(:func:`locdiff.settings.oracle.confirmation_set`), which no choice and no earlier report has
seen; it is run once a configuration is fixed. Writes
``oracle_mp16.md`` / ``.json`` and ``learning_curves.png`` into ``--out``. Configs:
``experiments/configs/oracle_mp16.py``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from locdiff.data import datasets as data
from locdiff.data import splits
from locdiff.evaluation import metrics
from locdiff.infer import calibration
from locdiff.infer.hybrid import Gallery, locdiff_h
from locdiff.methods import shdd_diffusion as locdiff_method
from locdiff.methods import shdd_hybrid as hybrid_method
from locdiff.methods import train_or_load
from locdiff.settings.oracle import (
    confirmation_set,
    land_test,
    land_validation,
    oracle_condition,
    oracle_data,
    training_set,
)

from experiments import common
from experiments.configs.common import PROFILES
from experiments.configs.oracle_mp16 import get_config

METHODS = (
    "retrieval", "cells", "regression", "coords-diffusion", "geotoken", "geotoken-rag", "locdiff",
)  # fmt: skip
# Paired comparisons: LocDiff's rows, each against the best of its baselines.
COMPARED = {
    "locdiff": METHODS[:-1],
    "locdiff-h": METHODS[:-1],
    "locdiff-h-geoclip": ("geoclip-retrieval",),
}
KEYS = ("acc_1km", "acc_25km", "acc_200km", "acc_750km", "acc_2500km")
FAR_KM = splits.FAR_KM


def main() -> None:
    parser = common.parser(__doc__, "oracle_mp16", PROFILES)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.1, 0.2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--confirm", action="store_true", help="also score the confirmation set (full gallery)"
    )
    args = parser.parse_args()
    wall = time.perf_counter()
    config = get_config(args.profile)
    d = oracle_data(args.cache, yfcc_n=config.yfcc_n, gallery_n=config.gallery_n)
    d["land"] = land_test(args.cache, n=config.land_n, seed=args.seed)
    if args.confirm:
        d["confirm"] = confirmation_set(args.cache, yfcc_n=config.yfcc_n, n=config.confirm_n)
    runs = os.path.join(args.cache, f"oracle_runs_{args.profile}_{args.seed}{config.runs_tag}")
    if config.far_land_n:
        validation_land = land_validation(args.cache, n=config.far_land_n, seed=args.seed)
    rows, coverage_rows, curves, errors, rules = [], [], {}, {}, []
    for label, share in (("100%", 1.0), *((f"{t:.0%}", t) for t in config.thinned)):
        latlon, emb = d["gallery"]
        if share < 1:
            keep = np.random.default_rng(args.seed).random(len(latlon)) < share
            latlon, emb = latlon[keep], emb[keep]
        far_set = None
        if config.far_fraction > 0:  # held-out blocks: the far-validation set
            kept, held = splits.far_validation(
                latlon, fraction=config.far_fraction, far_km=FAR_KM, seed=args.seed
            )
            far_set = (latlon[held], emb[held])
            latlon, emb = latlon[kept], emb[kept]
        elif config.far_land_n:  # land validation points far from this gallery
            held = splits.nearest_km(validation_land[0], latlon) > FAR_KM
            far_set = (validation_land[0][held], validation_land[1][held])
        for noise in args.noise:
            tests = {
                name: (d[name][0], oracle_condition(d[name][1], noise, seed=args.seed + 2))
                for name in ("im2gps3k", "yfcc26k", "land")
            }
            if "confirm" in d and share == 1:  # fresh noise for rows no one has seen
                latlon_c, emb_c = d["confirm"]
                tests["confirm"] = (latlon_c, oracle_condition(emb_c, noise, seed=args.seed + 5))
            far = {name: splits.nearest_km(t[0], latlon) > FAR_KM for name, t in tests.items()}
            stem = os.path.join(runs, f"gallery{share:g}", f"noise{noise:g}")
            for name in args.methods:
                common.log(f"gallery {label} / noise {noise:g} / {name}")
                train_npz = training_set(args.cache, (latlon, emb), noise, args.seed, far=far_set)
                variants = _train(name, train_npz, (latlon, emb), stem, config, args, rules)
                locator = variants[name][0]
                if share == 1 and noise == 0.1:
                    curves[name] = common.read_curve(f"{stem}/{name}", locator.meta)
                if name == "locdiff":
                    coverage_rows += _coverage(locator, tests, far, config, args, label, noise)
                for test_name, (truth, cond) in tests.items():
                    prediction = locator.predict(cond, top_k=1)
                    subsets = {"all": np.ones(len(truth), bool), "far": far[test_name]}
                    for variant, (_, answer) in variants.items():
                        top1 = answer(prediction, cond)
                        for subset, sel in subsets.items():
                            if not sel.any():
                                continue
                            row = {"gallery": label, "noise": noise, "test": test_name}
                            row |= {"subset": subset, "method": variant}
                            row |= common.score(top1[sel], truth[sel], seed=args.seed)
                            row |= common.budget(locator.meta) | common.decoding(locator)
                            rows.append(row)
                            key = (label, noise, test_name, subset, variant)
                            errors[key] = metrics.distances_km(top1[sel], truth[sel])
                            common.log(
                                f"  {test_name} {subset} (n={int(sel.sum())}) {variant}: "
                                + " / ".join(f"{row[k]:.1f}" for k in KEYS)
                                + f" %, median {row['median_km']:.0f} km"
                            )
    curve_png = common.write_curves(
        args.out, curves, "Setting B, MP16 100%, noise 0.1: validation accuracy"
    )
    paired = _paired(rows, errors, args.seed)
    parents = _parents(errors, args.seed)
    wall_s = time.perf_counter() - wall
    results = {"rows": rows, "coverage": coverage_rows, "paired": paired}
    results |= {"parents": parents, "rules": rules, "curves": curves}
    _report(args, config, results, curve_png, wall_s)


def _coverage(locator, tests, far, config, args, label, noise) -> list[dict]:
    """LocDiff's credible regions on Im2GPS3k (``coverage_n`` of it), YFCC26k and the
    confirmation set (2,000 of each at most) and the land test, all points and the far
    ones: one row each; first the same on the validation queries its map rules were
    chosen on (``validation``: ``random`` and ``far`` parts; in-sample, so it shows how
    well the rules could separate the two)."""
    out = []
    fraction = locator.geolocator.config.train.validation_fraction
    x, truth, far_part = locdiff_method.calibration_rows(locator.meta["data"], fraction)
    for subset, sel in (("random", ~far_part), ("far", far_part)):
        if sel.any():
            out.append(
                {"gallery": label, "noise": noise, "test": "validation", "subset": subset}
                | {"n": int(sel.sum())}
                | calibration.coverage(locator, x[sel], truth[sel], seed=args.seed)
                | common.locdiff_choices(locator)
            )
    for test_name in tests:
        truth, cond = tests[test_name]
        some = np.arange(len(truth))
        if test_name != "land":  # Im2GPS3k: coverage_n of it; YFCC, confirm: 2,000 at most
            n = (
                config.coverage_n
                if test_name == "im2gps3k"
                else min(config.coverage_n or 2000, 2000)
            )
            some = np.sort(np.random.default_rng(0).permutation(len(truth))[:n])
        for subset, sel in (("all", some), ("far", some[far[test_name][some]])):
            if not sel.size:
                continue
            out.append(
                {"gallery": label, "noise": noise, "test": test_name, "subset": subset}
                | {"n": int(sel.size)}
                | calibration.coverage(locator, cond[sel], truth[sel], seed=args.seed)
                | common.locdiff_choices(locator)
            )
    return out


def _paired(rows: list[dict], errors: dict, seed: int) -> list[dict]:
    """Each of ``COMPARED`` minus the best of its baselines (highest mean accuracy over
    ``KEYS`` on that test and subset), by :func:`locdiff.evaluation.metrics.paired_difference`."""
    out = []
    for key in errors:
        label, noise, test, subset, variant = key
        if variant not in COMPARED:
            continue
        same = {
            r["method"]: r
            for r in rows
            if (r["gallery"], r["noise"], r["test"], r["subset"]) == key[:4]
            and r["method"] in COMPARED[variant]
        }
        if not same:
            continue
        best = max(same.values(), key=lambda r: sum(r[k] for k in KEYS))["method"]
        diff = metrics.paired_difference(errors[key], errors[(*key[:4], best)], seed=seed)
        out.append(
            {"gallery": label, "noise": noise, "test": test, "subset": subset}
            | {"method": variant, "against": best, "n": len(errors[key])}
            | diff
        )
    return out


PARENTS = {"locdiff-h": ("locdiff", "retrieval"), "locdiff-h-geoclip": ("geoclip-retrieval",)}


def _parents(errors: dict, seed: int) -> list[dict]:
    """Each hybrid minus the better of its parents (:data:`PARENTS`) at each threshold
    (:func:`experiments.common.against_parents`)."""
    out = []
    for key in errors:
        *where, variant = key
        if variant not in PARENTS or any((*where, p) not in errors for p in PARENTS[variant]):
            continue
        theirs = {p: errors[(*where, p)] for p in PARENTS[variant]}
        row = dict(zip(("gallery", "noise", "test", "subset"), where, strict=True))
        row |= {"method": variant, "n": len(errors[key])}
        out.append(row | common.against_parents(errors[key], theirs, seed=seed))
    return out


def _train(name, train_npz, gallery, stem, config, args, rules) -> dict:
    """``{row name: (locator, answer(prediction, cond) -> top1 [N, 2])}`` of one method:
    retrieval also as GeoCLIP's (clean gallery), LocDiff also as its two hybrids, whose
    rules are appended to ``rules``."""
    progress = not args.no_progress
    models = config.models.for_method(name)
    workdir = f"{stem}/{name}"
    locator = common.train_with_curve(name, train_npz, workdir, models, progress=progress)
    out = {name: (locator, lambda p, c: p.top1)}
    latlon, emb = gallery
    if name == "retrieval":
        clean = training_set(args.cache, gallery, 0.0, args.seed)
        workdir = os.path.join(os.path.dirname(stem), "geoclip-retrieval")
        geoclip = train_or_load(name, clean, workdir, models, progress=False)
        out["geoclip-retrieval"] = (locator, lambda p, c: geoclip.predict(c, top_k=1).top1)
    if name == "locdiff":
        arrays = data.load_npz(train_npz)
        own = Gallery.of(arrays["embeddings"], arrays["latlon"])
        clean_emb = oracle_condition(emb, 0.0)
        (own_rule, _), (clean_rule, _) = hybrid_method.tune(  # one validation prediction
            locator, train_npz, None, (clean_emb, latlon)
        )
        clean = Gallery.of(clean_emb, latlon)
        common.log(f"  LocDiff-H rules: own gallery {own_rule}, GeoCLIP gallery {clean_rule}")
        rules.append({"stem": stem, "locdiff-h": own_rule.to_dict()})
        rules[-1]["locdiff-h-geoclip"] = clean_rule.to_dict()

        def hybrid(gallery, rule):
            return lambda p, c: locdiff_h(p, c, gallery, L=locator.L, rule=rule).top1

        out["locdiff-h"] = (locator, hybrid(own, own_rule))
        out["locdiff-h-geoclip"] = (locator, hybrid(clean, clean_rule))
    return out


def _coverage_table(rows: list[dict]) -> str:
    head = ["gallery", "noise", "test", "subset", "n", "coverage 50%", "coverage 90%"]
    head += ["area 50% (km²)", "area 90% (km²)", *common.CHOICES.values()]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["gallery"], f"{r['noise']:g}", r["test"], r["subset"], str(r["n"])]
        cells += [f"{r['coverage_50']:.1f}"]
        cells += [f"{r['coverage_90']:.1f}", f"{r['area_50_km2']:.3g}", f"{r['area_90_km2']:.3g}"]
        lines.append("| " + " | ".join(cells + common.choices_cells(r)) + " |")
    return "\n".join(lines)


def _paired_table(rows: list[dict]) -> str:
    head = ["gallery", "noise", "test", "subset", "n", "method", "against"]
    head += [k.replace("acc_", "Δ% ≤ ") for k in KEYS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["gallery"], f"{r['noise']:g}", r["test"], r["subset"], str(r["n"])]
        cells += [r["method"], r["against"]]
        cells += [f"{r[k]:+.1f} ± {r['se_' + k]:.1f}" for k in KEYS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report(args, config, results, curve_png, wall_s) -> None:
    rows, coverage_rows, paired = results["rows"], results["coverage"], results["paired"]
    columns = ["noise", "test", "method"]
    pick = lambda gallery, subset: [  # noqa: E731
        r for r in rows if r["gallery"] == gallery and r["subset"] == subset
    ]
    far_n = ", ".join(
        f"{r['test']} at noise {r['noise']:g}, gallery {r['gallery']}: n = {r['n']}"
        for r in rows
        if r["subset"] == "far" and r["method"] == rows[0]["method"]
    )
    sections = [
        (
            "Top-1 accuracy, MP16 100K gallery",
            "An oracle study: the condition is GeoCLIP's embedding of the true location "
            "plus noise, not an image. ± is a bootstrap standard error over test points.\n\n"
            + common.table(pick("100%", "all"), columns, KEYS),
        ),
        (
            f"Far from training (> {FAR_KM:.0f} km from every training location)",
            f"Test points: {far_n}.\n\n" + common.table(pick("100%", "far"), columns, KEYS),
        ),
    ]
    for t in config.thinned:
        label = f"{t:.0%}"
        sections.append(
            (
                f"Thinned gallery: trained on {label} of MP16",
                common.table(pick(label, "all"), columns, KEYS)
                + "\n\nFar from training:\n\n"
                + common.table(pick(label, "far"), columns, KEYS),
            )
        )
    sections += [
        (
            "Paired differences against the best baseline",
            "Accuracy of each LocDiff row minus that of the best baseline on the same test "
            "points (the highest mean accuracy over 1-2500 km among retrieval, cells, "
            "regression and coords-diffusion; for `locdiff-h-geoclip`, `geoclip-retrieval`),"
            " in points; ± is a paired bootstrap standard error (the same resampled points "
            "for both).\n\n" + _paired_table(paired),
        ),
        (
            "Each hybrid against its parents",
            "At each threshold, the hybrid's accuracy minus that of its better parent there "
            "(`locdiff-h`: LocDiff or retrieval over the training gallery; "
            "`locdiff-h-geoclip`: `geoclip-retrieval`), paired bootstrap ± standard error;"
            " `ok`: at or above the parent within one standard error at every threshold. "
            "The rules (chosen on the validation split and the far-validation set) are in "
            "the JSON's `rules`.\n\n"
            + common.parents_table(
                results["parents"], ["gallery", "noise", "test", "subset", "method"]
            ),
        ),
        (
            "LocDiff's credible regions",
            "Coverage: share of test points inside LocDiff's 50% / 90% credible region "
            "(1-degree maps); area: the regions' median area; first the validation queries "
            "the map rules were chosen on (in-sample: the random and the far-validation "
            "part), then Im2GPS3k, YFCC26k and the GWS-like land test, all points and those "
            "far from training. Then what each run chose on "
            "its validation split: guidance, the map rule and the radius its modes snap "
            "within (`calibration.json`).\n\n" + _coverage_table(coverage_rows),
        ),
        (
            "Training budgets",
            "Each learned method stops when its validation loss (5% of the training rows) "
            "has not improved for 4 evaluations, within the same cap in samples.\n\n"
            + common.budget_table(
                [r for r in rows if r["subset"] == "all"], ["gallery", "noise", "method"]
            ),
        ),
        ("Learning curves", f"`{curve_png}`: validation accuracy against samples seen."),
    ]
    payload = {"profile": args.profile, "config": config.models.to_dict(), **results}
    title = "Setting B: MP16 locations, oracle GeoCLIP location embeddings"
    common.write_report(args.out, "oracle_mp16", title, sections, payload, wall_s)
    print(common.table(pick("100%", "all"), columns, KEYS))


if __name__ == "__main__":
    main()

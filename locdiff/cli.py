"""The ``locdiff`` command line: thin sub-commands that call one library function each.

    locdiff train --train DATA --workdir DIR [--method METHOD] [--config FILE] [--L 32]
                  [--set SECTION.KEY=VALUE ...]
                  [--steps N] [--batch-size B] [--seed S] [--loss mse|kl|mse+kl]
                  [--gallery DATA]
    locdiff evaluate --checkpoint DIR --data DATA [--json OUT] [--gallery DATA]
                     [--num-samples K] [--sample-steps S] [--snap-km KM] [--coverage]
    locdiff predict --checkpoint DIR (--data DATA | --image PATH...) [--top-k K]
                    [--out preds.csv] [--map out.png] [--geojson out.geojson]
    locdiff embed --encoder SPEC --images DIR_OR_CSV --out DATA [--batch-size B]
                  [--dtype float32|float16]
    locdiff synthetic DIR --rows N [--dim 768] [--dtype float16] [--shard-rows R]
    locdiff serve --checkpoint DIR [--port 8000] [--top-k 5] [--max-mb 10]

``--method`` is ``locdiff`` (default), ``locdiff-h``, or a baseline: ``retrieval``,
``cells``, ``regression``, ``coords-diffusion``, ``geotoken``, ``geotoken-rag``
(:mod:`locdiff.methods`); ``evaluate`` and ``predict`` take a run of any of them.
``synthetic`` writes MP16-like shards of any size for trying the streamed data path
(:mod:`locdiff.data.synthetic`). ``--steps`` is
training steps; ``--sample-steps`` is the sampler's. Flags override the config file;
running ``train`` again on the same ``--workdir`` resumes its run. Errors print one
line and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from locdiff.config import LOSSES
from locdiff.errors import USER_ERRORS
from locdiff.methods import METHODS


def _train(args: argparse.Namespace) -> int:
    from locdiff import methods
    from locdiff.io import files

    config = methods.default_config(args.method)
    if args.config:
        config = methods.config_from_dict(args.method, files.read_json(args.config))
    config = methods.apply_flags(
        config, steps=args.steps, batch_size=args.batch_size, seed=args.seed, L=args.L,
        loss=args.loss,
    )  # fmt: skip
    config = methods.set_fields(config, args.set)
    if args.distributed:
        from locdiff.training import sharding

        cluster = {
            "coordinator_address": args.coordinator,
            "num_processes": args.num_processes,
            "process_id": args.process_id,
        }
        sharding.initialize_distributed(**{k: v for k, v in cluster.items() if v is not None})
    options = {}
    if args.gallery:
        if not methods.module(args.method).TAKES_GALLERY:
            raise ValueError("--gallery goes with --method locdiff-h")
        gallery = _gallery(args.gallery)
        options["gallery"] = (gallery.unit, gallery.latlon)
    methods.train_method(
        args.method, args.train, args.workdir, config=config, progress=not args.no_progress,
        **options,
    )  # fmt: skip
    print(f"done: {args.workdir}")
    return 0


def _gallery(path: str | None):
    """A LocDiff-H gallery from a dataset file (``embeddings`` and ``latlon``)."""
    from locdiff.data import datasets as data
    from locdiff.infer.hybrid import Gallery

    if path is None:
        return None
    arrays = data.load_npz(path)
    return Gallery.of(arrays["embeddings"], arrays["latlon"])


def _places():
    from locdiff.viz.places import default_index

    return default_index()


def _sampling(args: argparse.Namespace) -> dict:
    """LocDiff's sampling options from ``evaluate``/``predict``'s flags."""
    return {
        "num_samples": args.num_samples,
        "sample_steps": args.sample_steps,
        "batch_size": args.batch_size,
        "snap_km": args.snap_km,
    }


def _evaluate(args: argparse.Namespace) -> int:
    from locdiff.evaluation import metrics
    from locdiff.evaluation.protocol import evaluate
    from locdiff.io import files

    result = evaluate(
        args.checkpoint,
        args.data,
        gallery=_gallery(args.gallery),
        places=_places(),
        progress=not args.no_progress,
        seed=args.seed,
        coverage=args.coverage,
        **_sampling(args),
    )
    name = result["method"]
    rows = {name: {k: v for k, v in result.items() if not isinstance(v, (dict, str))}}
    for scene, row in result.get("by_scene", {}).items():
        rows[f"{name}, {scene}"] = row
    print(metrics.format_table(rows))
    if args.json:
        files.write_json(args.json, result)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from locdiff.data import datasets as data
    from locdiff.io import export
    from locdiff.methods import load_locator

    if bool(args.data) == bool(args.image):
        raise ValueError("give exactly one of --data and --image")
    locator = load_locator(args.checkpoint, **_sampling(args))
    if args.image:
        ids, embeddings = np.array(args.image), _embed_files(args, locator.meta.get("encoder"))
    else:
        arrays = data.load_npz(args.data, require_latlon=False)
        embeddings = arrays["embeddings"]
        ids = arrays.get("ids", np.arange(len(embeddings)))
    maps = bool(args.map) or (bool(args.geojson) and locator.gives_maps)  # regions
    prediction = locator.predict(
        embeddings,
        top_k=args.top_k,
        seed=args.seed,
        progress=not args.no_progress,
        **({"maps": True, "map_resolution": args.map_resolution} if maps else {}),
    )
    places = _places()
    names = places.name(prediction.latlon) if places is not None else None
    export.write_csv(args.out, prediction, ids, names)
    if args.geojson:
        export.write_geojson(
            args.geojson, prediction, ids, names, resolution_deg=args.map_resolution
        )
    if args.map:
        title = locator.map_title
        export.write_maps(
            args.map, prediction, ids, resolution_deg=args.map_resolution, title=title
        )
    return 0


def _embed_files(args: argparse.Namespace, encoder_spec: str | None) -> np.ndarray:
    """Embed ``--image`` files with the encoder that made the run's training data."""
    from locdiff.encoders import load_encoder
    from locdiff.encoders.embed import embed_files

    if encoder_spec is None:
        raise ValueError(
            "this run's training data do not name an image encoder; embed the images with "
            "`locdiff embed` and pass --data"
        )
    kwargs = {"path": args.model_path} if args.model_path else {}
    return embed_files(args.image, load_encoder(encoder_spec, **kwargs))


def _serve(args: argparse.Namespace) -> int:
    from locdiff.viz.serve import serve

    if args.top_k < 1 or args.max_mb <= 0:
        raise ValueError("--top-k must be >= 1 and --max-mb > 0")
    max_bytes = int(args.max_mb * 2**20)
    serve(args.checkpoint, host=args.host, port=args.port, top_k=args.top_k, max_bytes=max_bytes)
    return 0


def _embed(args: argparse.Namespace) -> int:
    from locdiff.encoders import load_encoder
    from locdiff.encoders.embed import embed_images

    kwargs = {"path": args.model_path} if args.model_path else {}
    result = embed_images(
        load_encoder(args.encoder, **kwargs),
        args.images,
        args.out,
        batch_size=args.batch_size,
        image_root=args.image_root,
        dtype=args.dtype,
        progress=not args.no_progress,
    )
    note = ""
    if result["skipped"]:
        note = f", {result['skipped']} unreadable (listed in {args.out}.skipped.txt)"
    print(f"embedded {result['embedded']} images into {args.out}{note}")
    return 0


def _synthetic(args: argparse.Namespace) -> int:
    from locdiff.data.synthetic import SHARD_ROWS, write_synthetic

    paths = write_synthetic(
        args.out, args.rows, dim=args.dim, dtype=args.dtype,
        shard_rows=SHARD_ROWS if args.shard_rows is None else args.shard_rows,
        seed=args.seed, progress=not args.no_progress,
    )  # fmt: skip
    print(f"{args.rows} rows of {args.dim}-d {args.dtype} in {len(paths)} shards in {args.out}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from locdiff import methods
    from locdiff.io.rundir import RunDir

    methods.calibrate_run(args.run_dir)
    chosen = RunDir(args.run_dir).file("calibration.json")
    print(f"{args.run_dir}: choices current" + (f" ({chosen})" if os.path.exists(chosen) else ""))
    return 0


def _inference_flags(p: argparse.ArgumentParser, data_required: bool = True) -> None:
    p.add_argument("--checkpoint", required=True, help="run directory written by locdiff train")
    p.add_argument("--data", required=data_required, help=".npz with embeddings (and latlon)")
    p.add_argument("--num-samples", type=int, help="LocDiff: K samples per condition")
    p.add_argument("--sample-steps", type=int, help="LocDiff: sampler steps")
    p.add_argument(
        "--snap-km", type=float,
        help="LocDiff: modes snap to the densest cell of training photos within this "
        "radius (default: the run's, chosen on validation; 0: the decoder's own modes)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="locdiff", description="LocDiff: geolocation by SHDD diffusion"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_calibrate(sub)
    _add_evaluate(sub)
    _add_predict(sub)
    _add_embed(sub)
    _add_serve(sub)
    _add_synthetic(sub)
    return parser


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train (or resume) LocDiff or a baseline on embeddings")
    p.add_argument("--train", required=True, help=".npz file or directory of shards")
    p.add_argument("--method", default="locdiff", choices=METHODS, help="default: locdiff")
    p.add_argument(
        "--gallery", help="locdiff-h: gallery dataset (embeddings, latlon; default: train)"
    )
    p.add_argument("--workdir", required=True, help="run directory (resumes if it holds a run)")
    p.add_argument("--config", help="JSON config of the method (locdiff.methods.configs)")
    p.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one config field, e.g. --set train.steps=20000 (repeatable)",
    )  # fmt: skip
    p.add_argument("--L", type=int, help="LocDiff: band limit of the SHDD vectors")
    p.add_argument("--steps", type=int, help="total training steps")
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--seed", type=int, help="run seed")
    p.add_argument("--loss", choices=LOSSES, help="LocDiff: training loss")
    p.add_argument("--distributed", action="store_true", help="jax.distributed first (hosts)")
    p.add_argument("--coordinator", help="--distributed: HOST:PORT of process 0")
    p.add_argument("--num-processes", type=int, help="--distributed: how many processes")
    p.add_argument("--process-id", type=int, help="--distributed: this process's index")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_train)


def _add_calibrate(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="choose a LocDiff run's guidance, map rules, snapping (and LocDiff-H's rule) "
        "again where an earlier version chose them (loading a run never writes to it)",
    )
    p.add_argument("run_dir", help="run directory written by locdiff train")
    p.set_defaults(run=_calibrate)


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="accuracy of a trained run on a labelled dataset")
    _inference_flags(p)
    p.add_argument("--json", help="also write the metrics as JSON here")
    p.add_argument("--gallery", help="gallery dataset (embeddings, latlon): score as LocDiff-H")
    p.add_argument(
        "--coverage",
        action="store_true",
        help="coverage of the credible regions (methods with maps: LocDiff, GeoToken)",
    )
    p.set_defaults(run=_evaluate)


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="top-k locations of each embedding or image, as CSV")
    _inference_flags(p, data_required=False)
    p.add_argument("--image", nargs="+", help="image files (embedded with the run's encoder)")
    p.add_argument("--model-path", help="local checkpoint directory of a CLIP-based encoder")
    p.add_argument("--map", help="LocDiff: probability-map PNGs (one per input: NAME_i.png)")
    p.add_argument("--map-resolution", type=float, default=1.0)
    p.add_argument(
        "--geojson",
        help="also write the locations as GeoJSON points (LocDiff: and its 50%% / 90%% "
        "credible regions as polygons)",
    )
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--out", help="CSV path (default: standard output)")
    p.set_defaults(run=_predict)


def _add_embed(sub) -> None:
    from locdiff.encoders import ENCODERS  # no torch import here

    p = sub.add_parser("embed", help="embed images into a dataset for train/predict")
    p.add_argument("--encoder", required=True, help=f"one of {', '.join(ENCODERS)}, or a spec")
    p.add_argument("--images", required=True, help="image directory, or a CSV of paths/ids")
    p.add_argument("--out", required=True, help="output .npz (resumes if interrupted)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--image-root", help="directory of the files a benchmark CSV names")
    p.add_argument("--model-path", help="local checkpoint directory (clip, geoclip)")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="stored embeddings (float16: half the disk and memory)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_embed)


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="a page on localhost: drop a photo, see its map")
    p.add_argument("--checkpoint", required=True, help="a LocDiff run directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0: any free port")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--max-mb", type=float, default=10.0, help="the largest upload accepted")
    p.set_defaults(run=_serve)


def _add_synthetic(sub) -> None:
    p = sub.add_parser("synthetic", help="synthetic MP16-like training shards of any size")
    p.add_argument("out", help="output directory of .npz shards (resumes if interrupted)")
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--dtype", choices=("float32", "float16"), default="float16")
    p.add_argument(
        "--shard-rows", type=int, help="rows per shard (default: synthetic.SHARD_ROWS, 250,000)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_synthetic)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as error:
        print(f"locdiff {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``locdiff`` command line: thin sub-commands that call one library function each.

    locdiff train --train DATA --workdir DIR [--config FILE] [--L 32] [--steps N]
                  [--batch-size B] [--seed S] [--loss mse|kl|mse+kl]

Flags override the config file; running ``train`` again on the same ``--workdir``
resumes. Errors print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"locdiff {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

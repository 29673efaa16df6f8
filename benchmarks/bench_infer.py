"""Inference throughput: conditions per second from embeddings to top-k modes.

    python -m benchmarks.bench_infer [--quick] [--batch-size 256]

The default model (L=32, hidden 512, depth 3) with freshly initialised weights (speed
does not depend on their values), ``Geolocator.predict`` at the run defaults: K=4
samples per condition, 50 DDIM steps, top-5 modes, no maps; then the same with maps
and credible regions. Timed after compilation; rewrites its section of
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from locdiff.config import Config
from locdiff.inference import Geolocator
from locdiff.train_step import init_state, make_optimizer

from benchmarks import _report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--report", default="docs/benchmarks.md")
    args = parser.parse_args()
    config = Config()
    cond_dim = 512
    tx, _ = make_optimizer(config)
    graphdef, state = init_state(config, cond_dim, tx)
    geo = Geolocator(graphdef, state.ema, config, cond_dim)
    d = config.diffusion
    embeddings = (
        np.random.default_rng(0).normal(size=(args.batch_size, cond_dim)).astype(np.float32)
    )
    repeats = 2 if args.quick else 3
    rows = {}
    for maps in (False, True):
        seconds = _report.median_seconds(
            lambda m=maps: geo.predict(embeddings, top_k=5, maps=m, batch_size=args.batch_size),
            repeats=repeats,
        )
        rows[f"predict, maps={maps}"] = {
            "conditions/s": args.batch_size / seconds,
            "batch (s)": seconds,
        }
    table = "| setting | conditions/s | batch (s) |\n|---|---|---|\n" + "\n".join(
        f"| {k} | {v['conditions/s']:.3g} | {v['batch (s)']:.3g} |" for k, v in rows.items()
    )
    print(table)
    backend = jax.default_backend()
    body = (
        f"## Inference throughput, {backend} (`python -m benchmarks.bench_infer`)\n\n"
        f"Command: `python -m benchmarks.bench_infer --batch-size {args.batch_size}"
        f"{' --quick' if args.quick else ''}` (revision {_report.git_revision()}).\n\n"
        f"Machine: {_report.machine()}.\n\n"
        f"Default model (L={config.model.L}), K={d.num_samples} samples per condition, "
        f"{d.steps} {d.sampler.upper()} steps, top-5 modes, batches of {args.batch_size} "
        "512-d embeddings, end to end (sampling, decoding; maps at 1 degree with 50%/90% "
        "credible regions in the second row). Median after compilation.\n\n" + table + "\n"
    )
    _report.write_section(args.report, f"bench-infer-{backend}", body)
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()

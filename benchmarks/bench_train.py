"""Training throughput: the experiments' runs end to end, and the default CS-UNet's step.

    python -m benchmarks.bench_train [--quick] [--batch-size 256]

1. End to end (what an experiment waits for): :func:`locdiff.trainer.train` on an
   in-memory dataset the size of the experiment's, with its model (``demo`` profiles of
   ``experiments/configs``: Blue Marble at L = 16 on 1280-d conditions, setting B at
   L = 32 on 512-d conditions), input pipeline, validation and checkpoints included;
   samples/s is the median of the logged windows after the first (compilation).
2. The jitted train step alone of the default model (hidden 512, depth 3, MSE on x0) at
   L = 16, 32 and 64 on random 512-d conditions: samples/s, the step's FLOPs from XLA's
   cost analysis and the achieved FLOP/s; on a GPU whose peak is known (H100, H200) also
   the fraction of the dense peak.

Rewrites its sections of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile

import jax
import numpy as np

from locdiff import data, sharding, trainer
from locdiff.config import Config, override
from locdiff.train_step import init_state, jit_train_step, make_optimizer

from benchmarks import _report

# Dense peak TFLOP/s (bf16 / fp32 without sparsity) for the fraction-of-peak column.
PEAK_TFLOPS = {"H100": (989.0, 67.0), "H200": (989.0, 67.0)}


def bench(L: int, batch_size: int, steps: int, cond_dim: int = 512) -> dict:
    config = override(Config(), **{"model.L": L, "train.batch_size": batch_size})
    mesh = sharding.make_mesh()
    tx, schedule = make_optimizer(config)
    graphdef, state = init_state(config, cond_dim, tx)
    state = jax.device_put(state, sharding.replicated(mesh))
    step = jit_train_step(
        graphdef, tx, schedule, config, sharding.replicated(mesh), sharding.batch_sharded(mesh)
    )
    rng = np.random.default_rng(0)
    batch = {
        "embedding": rng.normal(size=(batch_size, cond_dim)).astype(np.float32),
        "latlon": np.stack(
            [rng.uniform(-80, 80, batch_size), rng.uniform(-180, 180, batch_size)], -1
        ).astype(np.float32),
    }
    batch = sharding.global_batch(batch, mesh)
    key = jax.random.key(0)
    compiled = step.lower(state, batch, key).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", float("nan"))) if cost else float("nan")

    holder = {"state": state}

    def run():
        s = holder["state"]
        for _ in range(steps):
            s, metrics = step(s, batch, key)
        metrics["loss"].block_until_ready()
        holder["state"] = s

    seconds = _report.median_seconds(run, repeats=3) / steps
    params = sum(x.size for x in jax.tree.leaves(state.params))
    row = {
        "parameters": params,
        "samples/s": batch_size / seconds,
        "ms/step": 1e3 * seconds,
        "GFLOP/step": flops / 1e9,
        "achieved TFLOP/s": flops / seconds / 1e12,
    }
    kind = jax.devices()[0].device_kind
    for name, (bf16, fp32) in PEAK_TFLOPS.items():
        if name in kind:
            row["fraction of fp32 peak"] = row["achieved TFLOP/s"] / fp32
            row["fraction of bf16 peak"] = row["achieved TFLOP/s"] / bf16
    return row


# The experiments' LocDiff runs: (name, config module, conditions' width, training rows).
RUNS = (
    ("Blue Marble demo", "bluemarble", 1280, 13_500),
    ("setting B demo", "oracle_mp16", 512, 100_000),
)


def end_to_end(module: str, embed_dim: int, rows: int, steps: int, batch_size=None) -> dict:
    """Samples/s of ``trainer.train`` with the ``demo`` profile's LocDiff of ``module``."""
    import importlib

    from locdiff.config import override as replace

    config = importlib.import_module(f"experiments.configs.{module}").get_config("demo")
    locdiff = config.models.locdiff
    changes = {"train.steps": steps, "train.log_every": 25, "train.checkpoint_every": 10**6}
    if batch_size:
        changes["train.batch_size"] = batch_size
    locdiff = replace(locdiff, **changes)
    rng = np.random.default_rng(0)
    latlon = np.stack([rng.uniform(-80, 80, rows), rng.uniform(-180, 180, rows)], -1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "train.npz")
        data.save_npz(path, rng.normal(size=(rows, embed_dim)), latlon)
        trainer.train(locdiff, path, os.path.join(tmp, "run"), progress=False)
        with open(os.path.join(tmp, "run", "metrics.jsonl")) as f:
            lines = [json.loads(line) for line in f]
    rates = [line["samples_per_s"] for line in lines[1:]]
    return {
        "L": locdiff.model.L,
        "batch": locdiff.train.batch_size,
        "samples/s": statistics.median(rates),
        "ms/step": 1e3 * locdiff.train.batch_size / statistics.median(rates),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--L", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--report", default="docs/benchmarks.md")
    parser.add_argument("--e2e-steps", type=int, default=400)
    parser.add_argument("--e2e-batch", type=int, default=None, help="override the runs' batch")
    args = parser.parse_args()
    backend = jax.default_backend()
    e2e_steps = 60 if args.quick else args.e2e_steps
    e2e = {
        name: end_to_end(module, width, rows, e2e_steps, args.e2e_batch)
        for name, module, width, rows in RUNS
    }
    table = "| run | L | batch | samples/s | ms/step |\n|---|---|---|---|---|\n"
    for name, row in e2e.items():
        table += f"| {name} | {row['L']} | {row['batch']} | {row['samples/s']:.0f} | "
        table += f"{row['ms/step']:.1f} |\n"
    print(table)
    body = (
        f"## Training end to end, {backend} (`python -m benchmarks.bench_train`)\n\n"
        f"Command: `python -m benchmarks.bench_train{' --quick' if args.quick else ''}` "
        f"(revision {_report.git_revision()}); {e2e_steps} steps per run.\n\n"
        f"Machine: {_report.machine()}.\n\n"
        "`locdiff.trainer.train` with the experiments' demo LocDiff configs on random data of "
        "their size and width: input pipeline, train step, validation and logging "
        "included; median of the logged windows after the first.\n\n" + table
    )
    _report.write_section(args.report, f"bench-train-e2e-{backend}", body)
    steps = 3 if args.quick else 10
    rows = {L: bench(L, args.batch_size, steps) for L in args.L}
    keys = list(next(iter(rows.values())))
    table = "| L | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys) + "\n"
    for L, row in rows.items():
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()]
        table += f"| {L} | " + " | ".join(cells) + " |\n"
    print(table)
    body = (
        f"## Training throughput, {backend} (`python -m benchmarks.bench_train`)\n\n"
        f"Command: `python -m benchmarks.bench_train --batch-size {args.batch_size}"
        f"{' --quick' if args.quick else ''}` (revision {_report.git_revision()}).\n\n"
        f"Machine: {_report.machine()}.\n\n"
        "Default model (hidden 512, depth 3, FiLM-SIREN blocks), MSE on x0, float32, batch "
        f"{args.batch_size}, 512-d conditions; median over repeats after compilation. FLOPs "
        "from XLA's cost analysis of the whole step (forward, backward, AdamW, EMA).\n\n" + table
    )
    _report.write_section(args.report, f"bench-train-{backend}", body)
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()

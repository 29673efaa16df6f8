"""Training throughput of the default CS-UNet at L = 16, 32 and 64.

    python -m benchmarks.bench_train [--quick] [--batch-size 256]

For each band limit: the jitted train step of the default model (hidden 512, depth 3,
MSE loss on x0) on random 512-d conditions, timed after compilation. Prints samples/s,
the step's FLOPs from XLA's cost analysis and the achieved FLOP/s; on a GPU whose peak
is known (H100, H200) also the fraction of the dense bf16 peak. Rewrites its section of
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from locdiff import sharding
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--L", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--report", default="docs/benchmarks.md")
    args = parser.parse_args()
    steps = 3 if args.quick else 10
    rows = {L: bench(L, args.batch_size, steps) for L in args.L}
    keys = list(next(iter(rows.values())))
    table = "| L | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys) + "\n"
    for L, row in rows.items():
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()]
        table += f"| {L} | " + " | ".join(cells) + " |\n"
    print(table)
    backend = jax.default_backend()
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

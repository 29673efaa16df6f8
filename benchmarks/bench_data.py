"""Training on MP16-sized data streamed from disk: memory, loader speed, exact resumption.

    python -m benchmarks.bench_data [--rows 4700000] [--dim 768] [--data DIR] [--quick]

1. Writes (once; a rerun reuses or completes it) a synthetic data set of ``--rows`` rows
   of ``--dim``-d float16 embeddings in ``.npz`` shards (``locdiff synthetic``; 4.7 M x
   768 is MP16 with CLIP ViT-L/14, 7.2 GB).
2. Opens it streamed (:class:`locdiff.data.streaming.ShardedSource`, every row checked) and
   times the loader alone: batches of the training pipeline (shuffled rows gathered
   from disk), samples/s.
3. Trains each of ``--methods`` (setting B's demo LocDiff, and the baselines' demo
   configs) on it for ``--steps`` steps in a child process, through
   the one trainer as ``locdiff train`` would, twice: streamed from disk, and with the
   data on the device (``train.data_on_device``, filled block by block): samples/s of
   the train step, and the child's peak resident memory (``VmHWM``; on a CPU the
   "device" is the host, so the second includes the data set itself).
4. Resumption, streamed: a second child is killed (SIGKILL, no clean-up) in the middle
   of the first epoch, restarted, and run to the same step; its parameters must equal
   the uninterrupted run's, bit for bit (so every batch after the restart was the same).

Rewrites its section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

from benchmarks import _report

CHILD = """
import json, sys
import jax, numpy as np
from locdiff import methods
from locdiff.training import trainer
method, data = sys.argv[4], sys.argv[2]
config = methods.config_from_dict(method, json.loads(sys.argv[1]))
objective = methods.module(method).objective_for(config, data)
graphdef, state = trainer.train(config, data, sys.argv[3], objective=objective, progress=False)
leaves = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state.params))]
np.savez(sys.argv[3] + "/final_params.npz", *leaves)
with open("/proc/self/status") as f:
    peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss_mb": peak / 1024}), flush=True)
"""


def train_config(method: str, steps: int, batch_size: int, on_device: bool):
    """Setting B's demo config of ``method``, run for ``steps`` with frequent checkpoints."""
    from locdiff import methods

    from experiments.configs.oracle_mp16 import get_config

    return methods.assign(
        get_config("demo").models.for_method(method),
        **{
            "train.steps": steps,
            "train.batch_size": batch_size,
            "train.log_every": 10,
            "train.checkpoint_every": 20,
            "train.eval_every": 10**6,
            "train.data_on_device": on_device,
        },
    )


def run_child(
    method: str, config, data: str, workdir: str, *, kill_at_step: int | None = None
) -> dict:
    """Train in a child process; with ``kill_at_step``, SIGKILL it once a checkpoint past
    that step exists (watching ``training.json``) and return ``{"killed_at": step}``."""
    args = [sys.executable, "-c", CHILD, json.dumps(config.to_dict()), data, workdir, method]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    if kill_at_step is None:
        out = subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])
    child = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = os.path.join(workdir, "training.json")
    while child.poll() is None:
        if os.path.exists(progress):
            try:
                step = json.load(open(progress))["step"]
            except (ValueError, KeyError):
                step = 0
            if step >= kill_at_step:
                child.send_signal(signal.SIGKILL)
                child.wait()
                return {"killed_at": step}
        time.sleep(0.05)
    raise RuntimeError("the child finished before it could be killed")


def train_both_ways(method: str, args, folder: str, tmp: str) -> dict:
    """``{"streamed": ..., "on device": ...}``: samples/s and peak RSS of a child trained
    each way; streamed, also killed mid-epoch, resumed and compared bit for bit."""
    out = {}
    for placement, on_device in (("streamed", False), ("on device", True)):
        config = train_config(method, args.steps, args.batch_size, on_device)
        straight = os.path.join(tmp, f"{placement}-straight")
        run = run_child(method, config, folder, straight)
        with open(os.path.join(straight, "metrics.jsonl")) as f:
            rates = [json.loads(line)["samples_per_s"] for line in f][1:]
        run["samples_per_s"] = float(np.median(rates))
        print(f"{method}, {placement}: {run['samples_per_s']:,.0f} samples/s; "
              f"peak RSS {run['peak_rss_mb']:,.0f} MB")  # fmt: skip
        if not on_device:
            killed = os.path.join(tmp, f"{placement}-killed")
            cut = run_child(method, config, folder, killed, kill_at_step=args.steps // 2)
            run["killed_at"] = cut["killed_at"]
            run["resumed"] = run_child(method, config, folder, killed)
            a = np.load(os.path.join(straight, "final_params.npz"))
            b = np.load(os.path.join(killed, "final_params.npz"))
            run["same"] = all(np.array_equal(a[k], b[k]) for k in a.files)
            print(f"  killed at step {run['killed_at']}, resumed: parameters "
                  f"{'identical' if run['same'] else 'DIFFERENT'}")  # fmt: skip
        out[placement] = run
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=4_700_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument(
        "--data", default=None, help="default: experiments/cache/synthetic_ROWSxDIM"
    )
    parser.add_argument("--steps", type=int, default=200, help="train steps per child")
    parser.add_argument(
        "--methods", nargs="+", default=["locdiff", "cells", "coords-diffusion"],
        help="learned methods to train (default: LocDiff, cells, flow matching)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 60 steps")
    parser.add_argument("--report", default="docs/benchmarks.md")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.steps = 100_000, 60
    folder = args.data or f"experiments/cache/synthetic_{args.rows}x{args.dim}"

    from locdiff.data import datasets as data
    from locdiff.data.synthetic import SHARD_ROWS, write_synthetic

    shards = -(-args.rows // SHARD_ROWS)  # write_synthetic's default shard size
    reused = (
        os.path.isdir(folder)
        and len([name for name in os.listdir(folder) if name.endswith(".npz")]) >= shards
    )  # written by an earlier run: only checked here
    start = time.perf_counter()
    write_synthetic(folder, args.rows, dim=args.dim, dtype="float16")
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    source = data.open_dataset(folder, stream=True)
    open_s = time.perf_counter() - start
    gb = source.nbytes / 1e9
    print(f"{len(source):,} rows, {gb:.2f} GB of float16 embeddings; opened and checked in "
          f"{open_s:.1f} s")  # fmt: skip

    loader = {}
    for batch in sorted({256, args.batch_size, 4096}):
        it = iter(data.make_pipeline(source, batch_size=batch, seed=0))
        next(it)
        n = max(20, 200_000 // batch)
        start = time.perf_counter()
        for _ in range(n):
            next(it)
        loader[batch] = n * batch / (time.perf_counter() - start)
        print(f"loader, batch {batch}: {loader[batch]:,.0f} samples/s")
    del source

    import tempfile

    trained = {}
    for method in args.methods:
        with tempfile.TemporaryDirectory(dir="experiments/cache") as tmp:
            trained[method] = train_both_ways(method, args, folder, tmp)
    epoch_steps = int(args.rows * 0.95) // args.batch_size
    table = "| measure | value |\n|---|---|\n"
    table += f"| rows x width (float16) | {args.rows:,} x {args.dim} ({gb:.2f} GB) |\n"
    if reused:
        table += "| writing the synthetic shards (once) | reused, written by an earlier run |\n"
    else:
        table += f"| writing the synthetic shards (once) | {write_s:.0f} s |\n"
    table += f"| opening, every row checked | {open_s:.1f} s |\n"
    for batch, rate in loader.items():
        table += f"| loader alone, batch {batch} | {rate:,.0f} samples/s |\n"
    table += (
        f"\n| method (batch {args.batch_size}) | data | train step | peak resident memory "
        f"| SIGKILL at a step of epoch 0 ({epoch_steps:,} steps), resumed to {args.steps} |\n"
        "|---|---|---|---|---|\n"
    )
    for method, runs in trained.items():
        for placement, run in runs.items():
            resumed = run.get("resumed")
            check = "" if resumed is None else (
                f"step {run['killed_at']}: parameters "
                f"{'identical' if run['same'] else 'DIFFERENT'}, "
                f"{resumed['peak_rss_mb']:,.0f} MB after the restart"
            )  # fmt: skip
            table += (
                f"| {method} | {placement} | {run['samples_per_s']:,.0f} samples/s "
                f"| {run['peak_rss_mb']:,.0f} MB | {check} |\n"
            )
    print(table)
    body = (
        f"## Streamed training data (`python -m benchmarks.bench_data"
        f"{' --quick' if args.quick else ''}`)\n\n"
        f"Revision {_report.git_revision()}. Machine: {_report.machine()}.\n\n"
        "Synthetic MP16-like shards (`locdiff synthetic`) streamed from disk by "
        "`locdiff.data.streaming.ShardedSource`; each training process is a child running "
        "`locdiff.training.trainer.train` with setting B's demo config of its method, "
        "streamed from disk, or with the data on the device (filled block by block; on a "
        "CPU the device's memory is the process's, so its peak includes the data set).\n\n" + table
    )
    _report.write_section(args.report, "bench-data", body)
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()

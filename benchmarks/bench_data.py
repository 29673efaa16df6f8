"""Training on MP16-sized data streamed from disk: memory, loader speed, exact resumption.

    python -m benchmarks.bench_data [--rows 4700000] [--dim 768] [--data DIR] [--quick]

1. Writes (once; a rerun reuses or completes it) a synthetic data set of ``--rows`` rows
   of ``--dim``-d float16 embeddings in ``.npz`` shards (``locdiff synthetic``; 4.7 M x
   768 is MP16 with CLIP ViT-L/14, 7.2 GB).
2. Opens it streamed (:class:`locdiff.data.streaming.ShardedSource`, every row checked) and
   times the loader alone: batches of the training pipeline (shuffled rows gathered
   from disk), samples/s.
3. Trains setting B's demo LocDiff (L = 32) on it for ``--steps`` steps in a child
   process, as ``locdiff train`` would: samples/s of the train step, and the child's
   peak resident memory (``VmHWM``).
4. Resumption: a second child is killed (SIGKILL, no clean-up) in the middle of the
   first epoch, restarted, and run to the same step; its parameters must equal the
   uninterrupted run's, bit for bit (so every batch after the restart was the same).

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
from locdiff.training import trainer
from locdiff.config import Config
config = Config.from_dict(json.loads(sys.argv[1]))
graphdef, state = trainer.train(config, sys.argv[2], sys.argv[3], progress=False)
leaves = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state.params))]
np.savez(sys.argv[3] + "/final_params.npz", *leaves)
with open("/proc/self/status") as f:
    peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(json.dumps({"peak_rss_mb": peak / 1024}), flush=True)
"""


def train_config(steps: int, batch_size: int):
    """Setting B's demo LocDiff, run for ``steps`` with frequent checkpoints."""
    from locdiff.config import override

    from experiments.configs.oracle_mp16 import get_config

    return override(
        get_config("demo").models.locdiff,
        **{
            "train.steps": steps,
            "train.batch_size": batch_size,
            "train.log_every": 10,
            "train.checkpoint_every": 20,
            "train.eval_every": 10**6,
        },
    )


def run_child(config, data: str, workdir: str, *, kill_at_step: int | None = None) -> dict:
    """Train in a child process; with ``kill_at_step``, SIGKILL it once a checkpoint past
    that step exists (watching ``training.json``) and return ``{"killed_at": step}``."""
    args = [sys.executable, "-c", CHILD, json.dumps(config.to_dict()), data, workdir]
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
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="100,000 rows, 60 steps")
    parser.add_argument("--report", default="docs/benchmarks.md")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.steps = 100_000, 60
    folder = args.data or f"experiments/cache/synthetic_{args.rows}x{args.dim}"

    from locdiff.data import datasets as data
    from locdiff.data.synthetic import write_synthetic

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

    config = train_config(args.steps, args.batch_size)
    with tempfile.TemporaryDirectory(dir="experiments/cache") as tmp:
        straight = run_child(config, folder, os.path.join(tmp, "straight"))
        with open(os.path.join(tmp, "straight", "metrics.jsonl")) as f:
            rates = [json.loads(line)["samples_per_s"] for line in f][1:]
        step_rate = float(np.median(rates))
        print(f"train step: {step_rate:,.0f} samples/s; peak RSS {straight['peak_rss_mb']:.0f} MB")
        killed = run_child(
            config, folder, os.path.join(tmp, "killed"), kill_at_step=args.steps // 2
        )
        resumed = run_child(config, folder, os.path.join(tmp, "killed"))
        a = np.load(os.path.join(tmp, "straight", "final_params.npz"))
        b = np.load(os.path.join(tmp, "killed", "final_params.npz"))
        same = all(np.array_equal(a[k], b[k]) for k in a.files)
        print(f"killed at step {killed['killed_at']} of {args.steps}, resumed: "
              f"parameters {'identical' if same else 'DIFFERENT'}")  # fmt: skip
    epoch_steps = int(args.rows * (1 - config.train.validation_fraction)) // args.batch_size
    table = "| measure | value |\n|---|---|\n"
    table += f"| rows x width (float16) | {args.rows:,} x {args.dim} ({gb:.2f} GB) |\n"
    table += f"| writing the synthetic shards (once) | {write_s:.0f} s |\n"
    table += f"| opening, every row checked | {open_s:.1f} s |\n"
    for batch, rate in loader.items():
        table += f"| loader alone, batch {batch} | {rate:,.0f} samples/s |\n"
    table += f"| train step (L = 32, batch {args.batch_size}) | {step_rate:,.0f} samples/s |\n"
    table += (
        f"| peak resident memory of the training process | {straight['peak_rss_mb']:,.0f} MB |\n"
    )
    table += f"| peak resident memory after the restart | {resumed['peak_rss_mb']:,.0f} MB |\n"
    table += (
        f"| killed (SIGKILL) at step {killed['killed_at']} of epoch 0 ({epoch_steps:,} steps), "
        f"resumed to {args.steps} | parameters {'identical' if same else 'DIFFERENT'} |\n"
    )
    print(table)
    body = (
        f"## Streamed training data (`python -m benchmarks.bench_data"
        f"{' --quick' if args.quick else ''}`)\n\n"
        f"Revision {_report.git_revision()}. Machine: {_report.machine()}.\n\n"
        "Synthetic MP16-like shards (`locdiff synthetic`) streamed from disk by "
        "`locdiff.data.streaming.ShardedSource`; the training process is a child running "
        "`locdiff.training.trainer.train` with setting B's demo LocDiff.\n\n" + table
    )
    _report.write_section(args.report, "bench-data", body)
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()

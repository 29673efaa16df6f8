"""Training throughput: the experiments' runs end to end, the step of each loss, the
default CS-UNet's step, and mixed precision's accuracy.

    python -m benchmarks.bench_train [--quick] [--skip-grid | --skip-e2e] [--L 32 64]
                                     [--batch-sizes 256 ... 16384]
                                     [--dtypes float32 bfloat16]
                                     [--before REV | --before ''] [--rounds 2]
                                     [--losses | --skip-losses] [--loss-rounds 3]

1. End to end (what an experiment waits for): :func:`locdiff.training.trainer.train` on an
   in-memory dataset the size of the experiment's, with its model (``demo`` profiles of
   ``experiments/configs``: Blue Marble at L = 16 on 1280-d conditions, setting B at
   L = 24 on 512-d conditions), input pipeline, validation and checkpoints included;
   samples/s is the median of the logged windows after the first (compilation). With
   ``--before REV`` (default: 8efaab2, the code before the training-speed work) the
   same runs of that revision are measured in turn with this revision's, ``--rounds``
   times each (a git worktree of REV with this script copied in, in a subprocess), so
   that the ratio compares the two on the same machine at the same time.
2. The loss step: one jitted train step (batch 256) of setting B's demo LocDiff with
   ``diffusion.loss`` MSE, KL and MSE+KL, at L = 24 and 32 with setting B's smoothed
   target and at L = 32 with the ablations' truncated one; the same steps of revision
   2f3a397 (the SHDD-KL on the latitude-longitude grid of ``shdd.kl_divergence``) are
   measured in turn, ``--loss-rounds`` times each; then the SHDD-KL's agreement with
   ``shdd.kl_divergence`` (value and gradient, float64, L = 16 to 64). ``--losses``
   runs only this.
3. The jitted train step alone of the default model (hidden 512, depth 3, MSE on x0) at
   L = 32 and 64, batches of 256 to 16,384, float32 and bfloat16 compute, on 768-d
   float16 conditions (MP16 with CLIP ViT-L/14): samples/s, the step's FLOPs from XLA's
   cost analysis, the achieved FLOP/s and the model FLOPs utilisation against the
   device's peak (a datasheet's for a known GPU, an estimate for a CPU).
4. Mixed precision: one small task trained in float32 and in bfloat16; the gap between
   their final validation losses.

The same script runs unchanged on a CPU and on a GPU.

Rewrites its sections of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import jax
import numpy as np

from locdiff.config import Config, override

try:
    from locdiff.data import datasets as data
    from locdiff.training import sharding, trainer
    from locdiff.training.step import init_state, jit_train_step, make_optimizer
except ImportError:  # a revision before the subpackages: a "before" worktree runs this file
    from locdiff import data, sharding, trainer
    from locdiff.train_step import init_state, jit_train_step, make_optimizer

from benchmarks import _report


def bench(L: int, batch_size: int, dtype: str = "float32", cond_dim: int = 768) -> dict:
    """The default model's jitted train step at ``L``, ``batch_size`` and compute ``dtype``:
    samples/s, the step's FLOPs (XLA's cost analysis) and the model FLOPs utilisation
    against the device's peak for that dtype (:func:`_report.peak_flops`)."""
    config = override(
        Config(), **{"model.L": L, "train.batch_size": batch_size, "model.compute_dtype": dtype}
    )
    mesh = sharding.make_mesh()
    tx, schedule = make_optimizer(config)
    graphdef, state = init_state(config, cond_dim, tx)
    state = jax.device_put(state, sharding.replicated(mesh))
    step = jit_train_step(
        graphdef, tx, schedule, config, sharding.replicated(mesh), sharding.batch_sharded(mesh)
    )
    rng = np.random.default_rng(0)
    batch = {
        "embedding": rng.normal(size=(batch_size, cond_dim)).astype(np.float16),
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
    steps = max(2, min(20, 32768 // batch_size))
    holder = {"state": state}

    def run():
        s = holder["state"]
        for _ in range(steps):
            s, metrics = step(s, batch, key)
        metrics["loss"].block_until_ready()
        holder["state"] = s

    seconds = _report.median_seconds(run, repeats=2) / steps
    peak = _report.peak_flops()[dtype]
    return {
        "samples/s": batch_size / seconds,
        "ms/step": 1e3 * seconds,
        "GFLOP/step": flops / 1e9,
        "TFLOP/s": flops / seconds / 1e12,
        "MFU %": 100 * flops / seconds / peak,
    }


def precision_check(steps: int) -> dict:
    """Validation loss of one small task trained in float32 and in bfloat16 (same seed,
    same data: 20,000 synthetic MP16-like rows of 64-d, L = 16, hidden 128)."""
    from locdiff.data.synthetic import write_synthetic

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        (path,) = write_synthetic(
            os.path.join(tmp, "data"), 20_000, dim=64, shard_rows=20_000, dtype="float32",
            progress=False,
        )  # fmt: skip
        for dtype in ("float32", "bfloat16"):
            config = override(
                Config(),
                **{
                    "model.L": 16, "model.hidden": 128, "model.film_dim": 64,
                    "model.time_dim": 32, "model.compute_dtype": dtype, "train.steps": steps,
                    "train.learning_rate": 1e-3, "train.warmup_steps": 50,
                    "train.ema_decay": 0.99, "train.eval_every": 100, "train.patience": 0,
                    "train.checkpoint_every": 10**6,
                },
            )  # fmt: skip
            workdir = os.path.join(tmp, dtype)
            trainer.train(config, path, workdir, progress=False)
            progress = trainer.read_progress(workdir)
            out[dtype] = {
                "val_loss": progress["evals"][-1][1],
                "seconds": progress["train_seconds"],
            }
    return out


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
    changes = {"train.steps": steps, "train.log_every": 50, "train.checkpoint_every": 10**6}
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


# The loss comparison's recipes (setting B's demo LocDiff, the ablations' base): name,
# the changes to setting B's demo config.
LOSS_RECIPES = (
    ("setting B demo (smoothed 700 km)", {}),
    ("setting B recipe at L = 32 (smoothed 700 km)", {"model.L": 32}),
    ("ablations' base (truncated delta)", {"model.L": 32, "model.sigma_km": None}),
)
LOSSES = ("mse", "kl", "mse+kl")
KL_BEFORE = "2f3a397"  # the SHDD-KL synthesised on the latitude-longitude grid


def loss_step(changes: dict, loss: str, cond_dim: int = 512, repeats: int = 3) -> float:
    """Milliseconds of one jitted train step of setting B's demo LocDiff with ``changes``
    and ``loss`` (single steps, batch of the recipe, random 512-d conditions; the
    median of ``repeats`` timings of 20 steps after compilation)."""
    from experiments.configs import oracle_mp16

    smoothed = changes.get("model.sigma_km", 700.0) is not None  # override skips None
    config = oracle_mp16.demo_models(smoothed=smoothed).locdiff
    config = override(config, **changes, **{"diffusion.loss": loss})
    mesh = sharding.make_mesh()
    tx, schedule = make_optimizer(config)
    graphdef, state = init_state(config, cond_dim, tx)
    step = jit_train_step(
        graphdef, tx, schedule, config, sharding.replicated(mesh), sharding.batch_sharded(mesh)
    )
    B = config.train.batch_size
    rng = np.random.default_rng(0)
    batch = {
        "embedding": rng.normal(size=(B, cond_dim)).astype(np.float16),
        "latlon": np.stack([rng.uniform(-80, 80, B), rng.uniform(-180, 180, B)], -1).astype(
            np.float32
        ),
    }
    batch = sharding.global_batch(batch, mesh)
    key = jax.random.key(0)
    holder = {"state": jax.device_put(state, sharding.replicated(mesh))}

    def run(steps=20):
        s = holder["state"]
        for _ in range(steps):
            s, metrics = step(s, batch, key)
        metrics["loss"].block_until_ready()
        holder["state"] = s

    run(3)  # compile and warm up
    return 1e3 * _report.median_seconds(run, repeats=repeats) / 20


def loss_steps() -> dict:
    """:func:`loss_step` of every recipe and loss: ``{recipe: {loss: ms}}``."""
    return {name: {loss: loss_step(ch, loss) for loss in LOSSES} for name, ch in LOSS_RECIPES}


AGREEMENT_CASES = ((16, None), (24, 700.0), (32, None), (32, 700.0), (64, None))


def kl_agreement(n: int = 8, seed: int = 0) -> list[dict]:
    """``shdd.delta_kl_divergence`` against ``shdd.kl_divergence`` in float64, on its
    default grid and on one four times finer (converged), for ``n`` encoded deltas and
    two kinds of estimate: random vectors, and the ideal denoiser's (the posterior mean
    of 400 encoded locations given a noisy ``x_t`` at times spread over ``(0, 1)``).
    Relative differences of the batch-mean value and of its gradient."""
    with jax.enable_x64(True):
        return [r for L, s in AGREEMENT_CASES for r in _agreement_case(L, s, n, seed)]


def _agreement_case(L: int, sigma_km, n: int, seed: int) -> list[dict]:
    import jax.numpy as jnp

    import shdd
    from locdiff.model import diffusion

    scale = np.sqrt(4 * np.pi)
    rng = np.random.default_rng(seed)
    pool = np.stack([rng.uniform(-70, 75, 400), rng.uniform(-180, 180, 400)], -1)
    p = np.asarray(shdd.encode(pool[:n], L=L, sigma_km=sigma_km))
    e = np.asarray(shdd.encode(pool, L=L, sigma_km=sigma_km)) * scale
    t = np.linspace(0.02, 0.98, n)
    alpha, sigma = (np.asarray(v) for v in diffusion.alpha_sigma(jnp.asarray(t)))
    x_t = alpha[:, None] * p * scale + sigma[:, None] * rng.normal(size=p.shape)
    estimates = {
        "random": rng.normal(size=p.shape) / scale,
        "ideal denoiser": diffusion.ideal_x0(x_t, t, e) / scale,
    }
    fine = shdd.default_resolution(L) / 4
    kls = {
        "fast": lambda c: shdd.delta_kl_divergence(p, c, L=L, sigma_km=sigma_km),
        "fine": lambda c: shdd.kl_divergence(p, c, L=L, resolution_deg=fine),
        "grid": lambda c: shdd.kl_divergence(p, c, L=L),
    }
    rows = []
    for kind, q in estimates.items():
        out = {}
        for name, kl in kls.items():
            v, g = jax.value_and_grad(lambda c, kl=kl: jnp.mean(kl(c)))(jnp.asarray(q))
            out[name] = float(v), np.asarray(g)
        ref_v, ref_g = out["fine"]
        row = {"L": L, "sigma_km": sigma_km, "estimate": kind}
        for name in ("fast", "grid"):
            v, g = out[name]
            row[f"value_{name}"] = abs(v - ref_v) / abs(ref_v)
            row[f"grad_{name}"] = float(np.linalg.norm(g - ref_g) / np.linalg.norm(ref_g))
        print(row, flush=True)
        rows.append(row)
    return rows


def _agreement_section(rows: list[dict]) -> str:
    out = (
        "## SHDD-KL from a delta: agreement (`python -m benchmarks.bench_train`)\n\n"
        f"Revision {_report.git_revision()}; float64. `shdd.delta_kl_divergence` (the "
        "training loss) against `shdd.kl_divergence` on a grid four times finer than its "
        "default, where it has converged (`fast`), and `shdd.kl_divergence`'s own default "
        "grid against the same (`default grid`): relative difference of the mean over 8 "
        "deltas and of its gradient. Estimates: random vectors, and the ideal denoiser's "
        "(posterior mean of 400 encoded locations given a noisy `x_t`). "
        "`tests/shdd/test_kl.py` asserts `fast` within 1e-3.\n\n"
        "| L | target | estimate | fast: value | fast: gradient | default grid: value "
        "| default grid: gradient |\n|---|---|---|---|---|---|---|\n"
    )
    for r in rows:
        target = "truncated" if r["sigma_km"] is None else f"smoothed {r['sigma_km']:g} km"
        out += f"| {r['L']} | {target} | {r['estimate']} | {r['value_fast']:.1e} | "
        out += f"{r['grad_fast']:.1e} | {r['value_grid']:.1e} | {r['grad_grid']:.1e} |\n"
    return out


def _loss_section(after: list[dict], before: list[dict], command: str) -> str:
    """The report's loss section: medians over rounds, before and after."""
    backend = jax.default_backend()

    def median(rounds, name, loss):
        return statistics.median(r[name][loss] for r in rounds)

    out = (
        f"## Loss step: MSE, SHDD-KL, MSE+KL, {backend} (`python -m benchmarks.bench_train`)\n\n"
        f"Command: `{command}` (revision {_report.git_revision()}); revision {KL_BEFORE} "
        "(the SHDD-KL synthesised for target and estimate on the latitude-longitude grid "
        f"of `shdd.kl_divergence`) measured in turn, {len(after)} rounds each, medians. "
        f"Machine: {_report.machine()}.\n\n"
        "One jitted train step (batch 256, random 512-d conditions) of setting B's demo "
        "LocDiff (hidden 256) at each recipe's band limit and target; `x MSE` is the step's "
        "time over the MSE step's of the same revision and round set.\n\n"
        "| recipe | L | loss | ms/step before | x MSE before | ms/step | x MSE |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    for name, changes in LOSS_RECIPES:
        L = changes.get("model.L", 24)
        for loss in LOSSES:
            b, a = median(before, name, loss), median(after, name, loss)
            out += (
                f"| {name} | {L} | {loss} | {b:.1f} | {b / median(before, name, 'mse'):.2f} | "
                f"{a:.1f} | {a / median(after, name, 'mse'):.2f} |\n"
            )
    return out


BEFORE = "8efaab2"  # the revision before the input-pipeline, train-state and step changes


@contextlib.contextmanager
def _worktree(revision: str):
    """A temporary git worktree of ``revision`` with this script and ``_report.py``
    copied in (None when ``revision`` is empty)."""
    if not revision:
        yield None
        return
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        tree = os.path.join(tmp, "before")
        git = ["git", "-C", root]
        subprocess.run(
            [*git, "worktree", "add", "--detach", tree, revision], check=True, capture_output=True
        )
        try:
            for name in ("bench_train.py", "_report.py"):
                shutil.copy(
                    os.path.join(root, "benchmarks", name), os.path.join(tree, "benchmarks")
                )
            yield tree
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", tree], capture_output=True)


def _measure_revision(tree: str, steps: int) -> dict:
    """:func:`end_to_end` of every run with the code of the worktree ``tree``."""
    out = os.path.join(tree, "e2e.json")
    env = {**os.environ, "PYTHONPATH": tree}
    command = [sys.executable, "-m", "benchmarks.bench_train", "--e2e-json", out]
    command += ["--e2e-steps", str(steps)]
    subprocess.run(command, cwd=tree, env=env, check=True, capture_output=True)
    with open(out) as f:
        return json.load(f)


def _measure_losses(tree: str) -> dict:
    """:func:`loss_steps` with the code of the worktree ``tree``."""
    out = os.path.join(tree, "losses.json")
    env = {**os.environ, "PYTHONPATH": tree}
    command = [sys.executable, "-m", "benchmarks.bench_train", "--loss-json", out]
    subprocess.run(command, cwd=tree, env=env, check=True, capture_output=True)
    with open(out) as f:
        return json.load(f)


def _e2e_sections(after: list[dict], before: list[dict], args, steps: int) -> dict:
    """The report's end-to-end sections: medians over the rounds of each revision."""
    backend = jax.default_backend()

    def median(rounds, name):
        return statistics.median(r[name]["samples/s"] for r in rounds)

    def table(rounds, reference=None):
        out = "| run | L | batch | samples/s | ms/step |" + (" x before |" if reference else "")
        out += "\n|---|---|---|---|---|" + ("---|" if reference else "") + "\n"
        for name, row in rounds[0].items():
            rate = median(rounds, name)
            out += f"| {name} | {row['L']} | {row['batch']} | {rate:.0f} | "
            out += f"{1e3 * row['batch'] / rate:.1f} |"
            out += f" {rate / median(reference, name):.2f} |\n" if reference else "\n"
        return out

    about = (
        f"Machine: {_report.machine()}.\n\n"
        "`locdiff.training.trainer.train` with the experiments' demo LocDiff configs on random "
        "data of their size and width: input pipeline, train step, validation and logging "
        "included; samples/s is the median of the logged windows after the first, then the "
        f"median over {args.rounds} rounds"
    )
    command = "`" + " ".join(["python -m benchmarks.bench_train", *sys.argv[1:]]) + "`"
    after_table = table(after, before or None)
    print(after_table)
    sections = {
        f"bench-train-e2e-{backend}": (
            f"## Training end to end, {backend} (`python -m benchmarks.bench_train`)\n\n"
            f"Command: {command} (revision {_report.git_revision()}); {steps} steps per "
            f"run.\n\n{about}"
            + (
                f", each round followed by one of revision {args.before} (`x before`: "
                "samples/s over that revision's, in the section below)"
                if before
                else ""
            )
            + ".\n\n"
            + after_table
        )
    }
    if before:
        sections[f"bench-train-e2e-{backend}-before"] = (
            f"## Training end to end, {backend}, revision {args.before} (before the pipeline, "
            "train-state and step changes)\n\n"
            f"Measured by {command} in turn with the section above: a git worktree of "
            f"{args.before} with this benchmark script copied in (the per-row Grain pipeline, "
            "standardisation in NumPy, `nnx.State` train state; setting B then trained at "
            f"L = 32).\n\n{about}.\n\n" + table(before)
        )
    return sections


def _compare_losses(args) -> None:
    """The loss section: this revision's loss steps and ``KL_BEFORE``'s, in turn."""
    after, before = [], []
    with _worktree(KL_BEFORE) as tree:
        for _ in range(args.loss_rounds):
            after.append(loss_steps())
            before.append(_measure_losses(tree))
    command = " ".join(["python -m benchmarks.bench_train", *sys.argv[1:]])
    text = _loss_section(after, before, command)
    print(text)
    _report.write_section(args.report, f"bench-train-loss-{jax.default_backend()}", text)
    text = _agreement_section(kl_agreement())
    print(text)
    _report.write_section(args.report, "bench-train-kl-agreement", text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    parser.add_argument("--L", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--precision-steps", type=int, default=600, help="0: skip that check")
    parser.add_argument("--skip-e2e", action="store_true", help="only the step grid")
    parser.add_argument("--skip-grid", action="store_true", help="only the end-to-end runs")
    parser.add_argument("--report", default="docs/benchmarks.md")
    parser.add_argument("--e2e-steps", type=int, default=400)
    parser.add_argument("--e2e-batch", type=int, default=None, help="override the runs' batch")
    parser.add_argument("--before", default=BEFORE, help="revision to measure in turn ('': none)")
    parser.add_argument("--rounds", type=int, default=2, help="end-to-end rounds per revision")
    parser.add_argument("--e2e-json", help=argparse.SUPPRESS)
    parser.add_argument("--losses", action="store_true", help="only the loss comparison")
    parser.add_argument("--skip-losses", action="store_true", help="no loss comparison")
    parser.add_argument("--loss-rounds", type=int, default=3)
    parser.add_argument("--loss-json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    backend = jax.default_backend()
    e2e_steps = 60 if args.quick else args.e2e_steps
    if args.quick:
        args.precision_steps = min(args.precision_steps, 100)
    if args.e2e_json:  # the measurement of one revision, for --before's subprocess
        with open(args.e2e_json, "w") as f:
            json.dump({name: end_to_end(m, w, r, e2e_steps) for name, m, w, r in RUNS}, f)
        return
    if args.loss_json:  # the loss steps of one revision, for the loss comparison
        with open(args.loss_json, "w") as f:
            json.dump(loss_steps(), f)
        return
    if args.losses or not args.skip_losses:
        _compare_losses(args)
    if args.losses:
        print(f"wrote {args.report}")
        return
    body = None
    if not args.skip_e2e:
        after, before = [], []
        with _worktree(args.before) as tree:
            for _ in range(args.rounds):
                after.append(
                    {n: end_to_end(m, w, r, e2e_steps, args.e2e_batch) for n, m, w, r in RUNS}
                )
                if tree:
                    before.append(_measure_revision(tree, e2e_steps))
        body = _e2e_sections(after, before, args, e2e_steps)
    for name, text in (body or {}).items():
        _report.write_section(args.report, name, text)
    if args.skip_grid:
        print(f"wrote {args.report}")
        return
    peak = _report.peak_flops()
    batches = [256, 1024] if args.quick else args.batch_sizes
    rows = []
    for L in args.L:
        for batch in batches:
            for dtype in args.dtypes:
                row = {"L": L, "batch": batch, "dtype": dtype, **bench(L, batch, dtype)}
                print(row, flush=True)
                rows.append(row)
    table = _report.markdown_table(rows)
    print(table)
    body = (
        f"## Training throughput, {backend} (`python -m benchmarks.bench_train`)\n\n"
        f"Command: `python -m benchmarks.bench_train{' --quick' if args.quick else ''}` "
        f"(revision {_report.git_revision()}).\n\n"
        f"Machine: {_report.machine()}. Peak used for MFU: float32 {peak['float32'] / 1e12:.3g} "
        f"TFLOP/s, bfloat16 {peak['bfloat16'] / 1e12:.3g} TFLOP/s ({peak['source']}).\n\n"
        "The jitted train step of the default model (hidden 512, depth 3, FiLM-SIREN blocks, "
        "MSE on x0) on 768-d float16 conditions; `bfloat16` is mixed precision "
        "(`model.compute_dtype`: float32 parameters, optimiser state, SHDD target and loss). "
        "Median over repeats after compilation. FLOPs from XLA's cost analysis of the whole "
        "step (forward, backward, AdamW, EMA); MFU = achieved / peak of the dtype.\n\n" + table
    )
    _report.write_section(args.report, f"bench-train-{backend}", body)
    if args.precision_steps:
        check = precision_check(args.precision_steps)
        f32, bf16 = check["float32"]["val_loss"], check["bfloat16"]["val_loss"]
        gap = 100 * (bf16 - f32) / f32
        text = (
            f"## Mixed precision, {backend} (`python -m benchmarks.bench_train`)\n\n"
            f"Revision {_report.git_revision()}. One small task (20,000 synthetic MP16-like "
            f"rows, 64-d, L = 16, hidden 128, {args.precision_steps} steps, the same seed) "
            "trained twice; validation loss at the end (EMA parameters):\n\n"
            "| compute | validation loss | train s |\n|---|---|---|\n"
            + "".join(
                f"| {k} | {v['val_loss']:.5f} | {v['seconds']:.0f} |\n" for k, v in check.items()
            )
            + f"\nbfloat16 - float32: {gap:+.2f} % of the float32 loss.\n"
        )
        print(text)
        _report.write_section(args.report, f"bench-precision-{backend}", text)
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()

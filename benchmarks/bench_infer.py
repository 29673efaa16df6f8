"""Inference throughput: conditions per second from embeddings to top-k modes.

    python -m benchmarks.bench_infer [--quick] [--L 32 64] [--batch-sizes ...]
                                     [--dtypes float32 bfloat16] [--num-samples 8]

The default model (hidden 512, depth 3) at L = 32 and 64 with freshly initialised
weights (speed does not depend on their values), ``Geolocator.predict`` end to end:
K = 8 samples per condition, 50 DDIM steps, decoding and top-5 modes, without and with
maps (1 degree, 50 % / 90 % credible regions); float32 and bfloat16 compute
(``model.compute_dtype``), batches of 256 to 16,384 conditions on an accelerator (256
on a CPU, where one batch of 16,384 at L = 64 takes most of an hour; ``--batch-sizes``
chooses). The model FLOPs are the denoiser's forward passes (XLA's cost analysis of one
pass over K x batch samples, times the steps); MFU is against the device's peak for the
dtype. Timed after compilation; rewrites its section of ``docs/benchmarks.md``. Runs
unchanged on a CPU and on a GPU.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from locdiff.config import Config, override
from locdiff.infer.geolocator import Geolocator
from locdiff.training.step import init_state, make_optimizer

from benchmarks import _report

COND_DIM = 768


def forward_flops(graphdef, params, n: int, config) -> float:
    """FLOPs of one denoiser pass over ``n`` samples (XLA's cost analysis)."""

    def forward(params, x, t, cond):
        return nnx.merge(graphdef, params)(x, t, cond)

    x = jnp.zeros((n, config.model.num_coeffs))
    cost = jax.jit(forward).lower(params, x, jnp.zeros(n), jnp.zeros((n, COND_DIM))).compile()
    cost = cost.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def bench(L: int, batch: int, dtype: str, num_samples: int, steps: int, repeats: int) -> list:
    config = override(
        Config(),
        **{"model.L": L, "model.compute_dtype": dtype, "diffusion.num_samples": num_samples,
           "diffusion.sample_steps": steps},
    )  # fmt: skip
    tx, _ = make_optimizer(config)
    graphdef, state = init_state(config, COND_DIM, tx)
    geo = Geolocator(graphdef, state.ema, config, COND_DIM)
    guided = 2 if config.diffusion.guidance != 1 else 1
    flops = forward_flops(graphdef, state.ema, batch * num_samples, config) * steps * guided
    peak = _report.peak_flops()[dtype]
    embeddings = np.random.default_rng(0).normal(size=(batch, COND_DIM)).astype(np.float32)
    rows = []
    for maps in (False, True):
        seconds = _report.median_seconds(
            lambda m=maps: geo.predict(embeddings, top_k=5, maps=m, batch_size=batch),
            repeats=repeats,
        )
        rows.append({
            "L": L, "batch": batch, "dtype": dtype, "maps": maps,
            "conditions/s": batch / seconds, "batch s": seconds,
            "MFU %": 100 * flops / seconds / peak,
        })  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="L = 32, batch 256, 10 steps")
    parser.add_argument("--L", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--num-samples", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--report", default="docs/benchmarks.md")
    args = parser.parse_args()
    backend = jax.default_backend()
    batches = args.batch_sizes or ([256] if backend == "cpu" else [256, 1024, 4096, 16384])
    if args.quick:
        args.L, batches, args.steps = [32], [256], 10
    rows = []
    for L in args.L:
        for batch in batches:
            for dtype in args.dtypes:
                rows += bench(L, batch, dtype, args.num_samples, args.steps, 1 if args.quick else 2)
    table = _report.markdown_table(rows)
    print(table)
    peak = _report.peak_flops()
    command = "python -m benchmarks.bench_infer" + (" --quick" if args.quick else "")
    body = (
        f"## Inference throughput, {backend} (`python -m benchmarks.bench_infer`)\n\n"
        f"Command: `{command}` (revision {_report.git_revision()}).\n\n"
        f"Machine: {_report.machine()}. Peak used for MFU: float32 "
        f"{peak['float32'] / 1e12:.3g} TFLOP/s, bfloat16 {peak['bfloat16'] / 1e12:.3g} "
        f"TFLOP/s ({peak['source']}).\n\n"
        f"Default model, K = {args.num_samples} samples per condition, {args.steps} DDIM "
        f"steps, top-5 modes, {COND_DIM}-d embeddings, end to end (sampling, decoding; "
        "with maps: 1 degree, 50 % / 90 % credible regions). Median after compilation.\n\n" + table
    )
    _report.write_section(args.report, f"bench-infer-{backend}", body)
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()

"""Speed of the SHDD core against references, side by side in one run.

    make bench-shdd        # or: python -m benchmarks.bench_shdd [--quick]

* ``shdd.harmonics`` at L=100 on 10,000 points in float32, against the scipy float64
  oracle (``shdd.reference.harmonics_scipy``) and e3nn-jax when installed;
* ``shdd.probability_map`` at L=100 and 0.25 degrees, against ``ducc0.sht.synthesis_2d``
  on the same coefficients (the map adds the density rule on top of the synthesis);
* ``shdd.decode`` at L=64 in batches of 256, k = 1 and 5.

Prints a table and rewrites its section of ``docs/benchmarks.md``. Timings are medians
of repeated runs after a warm-up (compilation excluded).
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import numpy as np

import shdd
from shdd import reference

from benchmarks import _report


def bench_harmonics(n: int, L: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    latlon = np.stack([np.rad2deg(np.arcsin(rng.uniform(-1, 1, n))), rng.uniform(-180, 180, n)], -1)
    x32 = jax.device_put(latlon.astype(np.float32))
    row = {
        "shdd.harmonics float32 (s)": _report.median_seconds(
            lambda: shdd.harmonics(x32, L=L).block_until_ready(), repeats=repeats
        ),
        "scipy oracle float64 (s)": _report.median_seconds(
            lambda: reference.harmonics_scipy(latlon, L=L), repeats=max(1, repeats // 2)
        ),
    }
    try:
        import e3nn_jax as e3nn

        xyz = jax.device_put(np.asarray(shdd.sphere.latlon_to_xyz(x32)))
        irreps = e3nn.Irreps([(1, (l, (-1) ** l)) for l in range(L + 1)])
        sh = jax.jit(lambda v: e3nn.spherical_harmonics(irreps, v, True, "integral").array)
        row["e3nn-jax float32 (s)"] = _report.median_seconds(
            lambda: sh(xyz).block_until_ready(), repeats=repeats
        )
    except ImportError:
        row["e3nn-jax float32 (s)"] = None
    row["speed-up over scipy"] = row["scipy oracle float64 (s)"] / row["shdd.harmonics float32 (s)"]
    return row


def bench_map(L: int, res: float, repeats: int) -> dict:
    rng = np.random.default_rng(1)
    coeffs = shdd.encode(rng.uniform(-60, 60, 2), L=L) + 0.01 * rng.normal(size=(L + 1) ** 2)
    coeffs = np.asarray(coeffs, np.float64)
    c32 = jax.device_put(coeffs.astype(np.float32))
    grid = shdd.latlon_grid(res)
    row = {
        "shdd.probability_map float32 (s)": _report.median_seconds(
            lambda: shdd.probability_map(c32, L=L, resolution_deg=res).block_until_ready(),
            repeats=repeats,
        ),
        "shdd.synthesize float32 (s)": _report.median_seconds(
            lambda: shdd.synthesize(c32, grid, L=L).block_until_ready(), repeats=repeats
        ),
    }
    try:
        import ducc0  # noqa: F401

        threads = os.cpu_count() or 1
        row["ducc0 synthesis_2d float64 (s)"] = _report.median_seconds(
            lambda: reference.synthesis_ducc(coeffs, L, *grid.shape, nthreads=threads),
            repeats=repeats,
        )
        row["map / ducc0"] = (
            row["shdd.probability_map float32 (s)"] / row["ducc0 synthesis_2d float64 (s)"]
        )
        ours = np.asarray(shdd.synthesize(c32, grid, L=L))
        theirs = reference.synthesis_ducc(coeffs, L, *grid.shape)
        row["max abs(ours - ducc0) / max abs(f)"] = float(
            np.abs(ours - theirs).max() / np.abs(theirs).max()
        )
    except ImportError:
        row["ducc0 synthesis_2d float64 (s)"] = None
    return row


def bench_decode(L: int, batch: int, k: int, repeats: int) -> dict:
    rng = np.random.default_rng(2)
    points = np.stack(
        [np.rad2deg(np.arcsin(rng.uniform(-1, 1, batch))), rng.uniform(-180, 180, batch)], -1
    )
    coeffs = jax.device_put(np.asarray(shdd.encode(points.astype(np.float32), L=L)))
    seconds = _report.median_seconds(
        lambda: shdd.decode(coeffs, L=L, k=k)[0].block_until_ready(), repeats=repeats
    )
    latlon, _ = shdd.decode(coeffs, L=L, k=k)
    error = shdd.haversine_km_np(np.asarray(latlon[:, 0], np.float64), points)
    return {
        "ms per vector": 1e3 * seconds / batch,
        "batch (s)": seconds,
        "max round-trip error (km)": float(error.max()),
    }


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--out", default=None, help="also write the figures as JSON here")
    parser.add_argument("--report", default="docs/benchmarks.md", help="markdown report to update")
    args = parser.parse_args()
    repeats = 2 if args.quick else 5

    results = {
        "harmonics L=100, 10,000 points": bench_harmonics(10_000, 100, repeats),
        "probability_map L=100, 0.25 deg (720 x 1440)": bench_map(100, 0.25, repeats),
        "decode L=64, batch 256, k=1": bench_decode(64, 256, 1, repeats),
        "decode L=64, batch 256, k=5": bench_decode(64, 256, 5, repeats),
    }
    lines = []
    for name, row in results.items():
        lines.append(f"| {name} | " + "; ".join(f"{k}: {_fmt(v)}" for k, v in row.items()) + " |")
    table = "| benchmark | figures |\n|---|---|\n" + "\n".join(lines)
    print(table)

    body = (
        "## SHDD core (`make bench-shdd`)\n\n"
        f"Command: `python -m benchmarks.bench_shdd{' --quick' if args.quick else ''}` "
        f"(revision {_report.git_revision()}).\n\n"
        f"Machine: {_report.machine()}.\n\n"
        f"Versions: {_report.versions('jax', 'numpy', 'scipy', 'ducc0', 'e3nn-jax')}.\n\n"
        "Medians of repeated runs after a warm-up; compilation excluded.\n\n" + table + "\n"
    )
    _report.write_section(args.report, "bench-shdd", body)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": _report.machine(), "results": results}, f, indent=2)
    print(f"\nwrote {args.report}")


if __name__ == "__main__":
    main()

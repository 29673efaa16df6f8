"""Shared helpers of the benchmark scripts: timing, machine description, report sections."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

from locdiff.io.provenance import git_revision, machine  # noqa: F401  (re-exported for the scripts)
from locdiff.io.provenance import versions as package_versions


def median_seconds(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` (which must block until its result is ready)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# Dense peak FLOP/s (no sparsity) of the accelerators we know: float32 and bfloat16.
GPU_PEAKS = {"H100": (67e12, 989e12), "H200": (67e12, 989e12), "A100": (19.5e12, 312e12)}


def peak_flops() -> dict:
    """``{"float32": FLOP/s, "bfloat16": FLOP/s, "source": how it was found}`` of device 0.

    Accelerators from the table above, by name. A CPU's peak is estimated as cores x
    clock x FLOPs per cycle of its vector units (two FMA pipes: 32 float32 FLOPs a
    cycle with AVX2, 64 with AVX-512); bfloat16 counts the same unless the CPU has
    AVX-512 BF16 or AMX (then twice).
    """
    import jax

    device = jax.devices()[0]
    if device.platform != "cpu":
        for name, (fp32, bf16) in GPU_PEAKS.items():
            if name in device.device_kind:
                return {"float32": fp32, "bfloat16": bf16, "source": f"{name} datasheet, dense"}
        return {"float32": float("nan"), "bfloat16": float("nan"), "source": "unknown device"}
    flags, mhz = set(), float("nan")
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                elif line.startswith("cpu MHz") and mhz != mhz:
                    mhz = float(line.split(":", 1)[1])
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= flags else 16
    fp32 = (os.cpu_count() or 1) * mhz * 1e6 * per_cycle
    bf16 = fp32 * (2 if flags & {"avx512_bf16", "amx_bf16"} else 1)
    return {
        "float32": fp32,
        "bfloat16": bf16,
        "source": (
            f"estimated: {os.cpu_count()} cores x {mhz / 1e3:.2f} GHz x {per_cycle} FLOP/cycle"
        ),
    }


def markdown_table(rows: list[dict]) -> str:
    """The rows (dicts with the same keys) as a markdown table; floats to 3 digits."""
    keys = list(rows[0])
    table = "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n"
    for row in rows:
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()]
        table += "| " + " | ".join(cells) + " |\n"
    return table


def versions(*packages: str) -> str:
    found = package_versions(packages)
    return ", ".join(f"{name} {found[name]}" for name in packages)


def write_section(path: str, name: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    text = _read(path) or "# Benchmarks\n\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail.lstrip("\n")
    else:
        text = text.rstrip() + "\n\n" + block
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def _read(path: str) -> str:
    """The text of ``path`` ('' when it does not exist)."""
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        return f.read()

"""Where a result came from: package versions, the machine, the code revision.

Every run directory records :func:`versions`; every report and benchmark names
:func:`machine` and :func:`git_revision`.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from importlib import metadata

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy", "scipy")
# What counts as the code for "+uncommitted" (results and caches do not).
CODE_PATHS = ("shdd", "locdiff", "experiments", "benchmarks", "pyproject.toml")
NOT_CODE = (":(exclude)experiments/results",)  # reports written by other runs meanwhile


def versions(packages=PACKAGES) -> dict[str, str]:
    """Python and package versions (``"not installed"`` where absent)."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine() -> str:
    """One line: CPU model, cores, memory, Python and the JAX backend."""
    import jax

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            found = re.search(r"model name\s*:\s*(.*)", f.read())
        cpu = found.group(1).strip() if found else cpu
    except OSError:
        pass
    mem = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages / 2**30:.0f} GiB"
    except (ValueError, OSError):
        pass
    devices = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}; Python {platform.python_version()}, "
        f"jax {jax.__version__} on {jax.default_backend()} ({devices})"
    )


def git_revision() -> str:
    """The short commit hash, with ``+uncommitted`` when the code differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", *CODE_PATHS, *NOT_CODE],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+uncommitted" if changed else "")

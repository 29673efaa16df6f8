"""Files that are never half-written: every file the project writes goes through here.

``atomic_path(path)`` yields a temporary name beside ``path`` and moves it into place
only when the block finishes without an exception, so a crash or Ctrl-C leaves either
the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path to write instead of ``path``; moved onto ``path`` on success.

    The temporary name keeps ``path``'s extension (``np.savez`` appends ``.npz`` to a
    name without it).
    """
    stem, ext = os.path.splitext(path)
    tmp = f"{stem}.tmp{os.getpid()}{ext}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path: str, value: Any) -> None:
    """Write ``value`` as indented JSON, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def read_json(path: str) -> Any:
    """Read a JSON file; ``ValueError`` naming the file if it is not valid JSON."""
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None


def save_npz(path: str, **arrays) -> None:
    """``np.savez(path, **arrays)``, atomically (``path`` should end in ``.npz``)."""
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)


def load_npz(path: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read into memory."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}

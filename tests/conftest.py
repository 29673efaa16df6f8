"""Shared fixtures and strictness for the LocDiff test suite.

* ``jax_numpy_rank_promotion="raise"``: a ``[B]`` against ``[B, 1]`` mix-up fails loudly.
* Warnings are errors (``pyproject.toml``), so deprecated APIs fail the tests.
* ``x64``: run a test with float64 enabled; ``key`` / ``rng``: seeded randomness.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.fixture
def seed() -> int:
    return 0


@pytest.fixture
def key(seed):
    return jax.random.key(seed)


@pytest.fixture
def rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture
def x64():
    """Enable float64 for the duration of one test."""
    with jax.enable_x64(True):
        yield


@pytest.fixture
def shared_data() -> str:
    """Path of the benchmark metadata beside the checkout; skips when it is absent."""
    if not os.path.isdir(SHARED_DATA):
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def uniform_points(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` points uniform on the sphere, plus both poles and points on the antimeridian."""
    lat = np.rad2deg(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    lon = rng.uniform(-180.0, 180.0, n)
    special = np.array(
        [
            [90.0, 0.0],
            [-90.0, 45.0],
            [0.0, -180.0],
            [12.5, 179.9999],
            [-47.0, -179.9999],
            [89.9999, 180.0 - 1e-4],
            [-89.99, -180.0],
        ]
    )
    return np.concatenate([special, np.stack([lat, lon], axis=-1)])


def pytest_collection_modifyitems(config, items):
    if jax.default_backend() != "cpu":
        return
    skip_gpu = pytest.mark.skip(reason="needs an accelerator")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)

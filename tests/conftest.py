"""Shared fixtures and strictness for the LocDiff test suite.

* ``jax_numpy_rank_promotion="raise"``: a ``[B]`` against ``[B, 1]`` mix-up fails loudly.
* Warnings are errors (``pyproject.toml``), so deprecated APIs fail the tests.
* ``x64``: run a test with float64 enabled; ``key`` / ``rng``: seeded randomness.
* ``clusters`` and ``tiny_locdiff``: four well-separated clusters of synthetic
  embeddings, and a tiny LocDiff trained on them once per session, shared by every test
  that needs a trained model.
* Compilation is most of the suite's time (tiny models, many shapes), so for the whole
  run (test workers, and the experiment scripts and notebook kernels they start) JAX
  keeps a persistent compilation cache in one directory, and XLA compiles without its
  backend optimisations (``--xla_backend_optimization_level=0``): the same results,
  compiled faster (measured: the suite in 6.8 instead of 8.0 minutes on 2 cores).
* One CPU device; the multi-device test starts its own process with 8 simulated ones.
"""

import os
import tempfile

os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "locdiff-tests-jax-cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
QUICK_COMPILE = "--xla_backend_optimization_level=0"
if QUICK_COMPILE not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {QUICK_COMPILE}".strip()

import dataclasses  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

# A LocDiff small enough to train in seconds, big enough to learn four clusters.
TINY = {
    "model.L": 8,
    "model.hidden": 64,
    "model.depth": 2,
    "model.film_dim": 32,
    "model.time_dim": 16,
    "train.batch_size": 64,
    "train.learning_rate": 2e-3,
    "train.warmup_steps": 10,
    "train.steps": 200,
    "train.ema_decay": 0.9,
    "train.log_every": 50,
    "train.checkpoint_every": 100,
    "diffusion.sample_steps": 10,
    "diffusion.num_samples": 2,
}


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


@pytest.fixture(scope="session")
def subprocess_env() -> dict[str, str]:
    """The environment for a Python process a test starts (a script, a notebook kernel):
    this one's, the compilation cache and XLA's quick compilation included."""
    return dict(os.environ)


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


@pytest.fixture
def sphere_points(rng):
    """``sphere_points(n)``: ``n`` uniform points plus both poles and the antimeridian."""
    return lambda n: uniform_points(rng, n)


@dataclasses.dataclass(frozen=True)
class Clusters:
    """Train/test ``.npz`` files of four clusters, and the test arrays."""

    root: str
    train: str
    test: str
    test_emb: np.ndarray
    test_latlon: np.ndarray


@pytest.fixture(scope="session")
def clusters(tmp_path_factory) -> Clusters:
    """Four clusters ~50 km wide, thousands of km apart, 8-d embeddings: 1000 train, 200
    test (with scene labels and ids)."""
    from locdiff.data import datasets as data

    root = tmp_path_factory.mktemp("clusters")
    emb, latlon = data.synthetic_clustered(1200, n_clusters=4, embed_dim=8, spread_km=50, seed=1)
    data.save_npz(str(root / "train.npz"), emb[:1000], latlon[:1000])
    ids = np.array([f"img{i}" for i in range(200)])
    data.save_npz(
        str(root / "test.npz"), emb[1000:], latlon[1000:], scene=np.arange(200) % 3, ids=ids
    )
    return Clusters(
        str(root), str(root / "train.npz"), str(root / "test.npz"), emb[1000:], latlon[1000:]
    )


@pytest.fixture(scope="session")
def tiny_config():
    """The config of the tiny LocDiff (``TINY``)."""
    from locdiff.config import Config, override

    return override(Config(), **TINY)


@pytest.fixture(scope="session")
def tiny_locdiff(clusters, tmp_path_factory) -> str:
    """The run directory of a tiny LocDiff trained on ``clusters`` (once per session)."""
    from locdiff import methods
    from locdiff.config import Config, override

    workdir = str(tmp_path_factory.mktemp("tiny_locdiff") / "run")
    methods.train_method(
        "locdiff", clusters.train, workdir, config=override(Config(), **TINY), progress=False
    )
    return workdir


def pytest_collection_modifyitems(config, items):
    if jax.default_backend() != "cpu":
        return
    skip_gpu = pytest.mark.skip(reason="needs an accelerator")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)

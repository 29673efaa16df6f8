"""Every method's config: a frozen, validated dataclass of sections, like LocDiff's.

A learned baseline's config has a ``model`` section (its network and what it needs to
answer) and a ``train`` section, LocDiff's own :class:`locdiff.config.TrainConfig`: the
one trainer (:mod:`locdiff.training.trainer`) reads it for every method. Retrieval
learns nothing and has a ``search`` section only. Fields are overridden by dotted name
(``locdiff train --set train.steps=20000 --set model.hidden=256``).

:class:`BaselineConfig` is the experiments' shorthand: one set of settings for all the
baselines, from which :meth:`BaselineConfig.for_method` makes each method's config (it is
also the format of baseline runs written before locdiff 0.3).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from locdiff.config import Sections, TrainConfig

# The baselines' training defaults: no EMA of the parameters; no gradient clipping, as in
# their own loop before the one trainer (clipped at 1.0, flow matching stopped at 2,250
# steps of Blue Marble's random split with 20.1% of its validation rows within 750 km;
# unclipped at 3,500 with 33.1%); a higher learning rate than LocDiff's; 2,000 steps,
# with early stopping on a 5% validation split as LocDiff's. The warm-up is in steps
# (100: 5% of the default cap); BaselineConfig sets it to 5% of its cap, as that loop did.
BASELINE_TRAIN = TrainConfig(
    steps=2000,
    learning_rate=1e-3,
    warmup_steps=100,
    grad_clip=None,
    ema_decay=0.0,
    log_every=100,
    keep=2,
)


def _check(checks: dict[str, bool], what: str) -> None:
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"bad {what}: need {', '.join(bad)}")


@dataclasses.dataclass(frozen=True)
class MLPConfig:
    """The MLP trunk of the learned baselines: ``depth`` GELU layers of width ``hidden``."""

    hidden: int = 512
    depth: int = 2

    def __post_init__(self):
        _check({"hidden >= 1 and depth >= 1": self.hidden >= 1 and self.depth >= 1}, "model")


@dataclasses.dataclass(frozen=True)
class CellsModelConfig(MLPConfig):
    """``partitions``: ``(min_count, max_count)`` of each adaptive partition (ISN-style
    hierarchy when there are several)."""

    partitions: tuple[tuple[int, int], ...] = ((20, 400),)

    def __post_init__(self):
        super().__post_init__()
        ok = bool(self.partitions) and all(1 <= lo <= hi for lo, hi in self.partitions)
        _check({"partitions non-empty, 1 <= min <= max": ok}, "model")
        object.__setattr__(self, "partitions", tuple(tuple(p) for p in self.partitions))


@dataclasses.dataclass(frozen=True)
class FlowModelConfig(MLPConfig):
    """``num_samples`` per input, Euler ``flow_steps``, and the kernel width ``kde_km``
    that ranks the samples."""

    num_samples: int = 32
    flow_steps: int = 50
    kde_km: float = 150.0

    def __post_init__(self):
        super().__post_init__()
        checks = {
            "num_samples >= 1 and flow_steps >= 1": self.num_samples >= 1 and self.flow_steps >= 1,
            "kde_km > 0": self.kde_km > 0,
        }
        _check(checks, "model")


DECODERS = ("beam", "sample")


@dataclasses.dataclass(frozen=True)
class TokenModelConfig(MLPConfig):
    """GeoToken's decoder (:class:`locdiff.model.token_decoder.TokenDecoder`).

    The condition goes through the MLP trunk (``hidden``, ``depth``) into ``memory``
    tokens of ``width``; ``layers`` pre-norm blocks of ``heads`` heads (their MLPs
    ``feedforward`` times as wide) predict a
    location's S2 cell of level ``levels`` as tokens of ``per_token`` levels each
    (:mod:`locdiff.data.s2`; 20 in pairs: GeoToken's 11). The loss weights the
    positions linearly from ``coarse_weight`` (the face) to 1 (the finest), as GeoToken's
    public code does from 2 (normalised to mean 1; 1: every position alike). Decoding:
    ``"beam"`` search of ``beam_width``, or ``"sample"``: ``samples`` sequences at
    ``temperature``, the most probable kept.
    ``neighbours``: ``geotoken-rag``'s nearest training photos read as memory (0 for
    ``geotoken``).
    """

    hidden: int = 256
    width: int = 128
    layers: int = 2
    heads: int = 4
    feedforward: int = 4
    memory: int = 2
    levels: int = 20
    per_token: int = 2
    coarse_weight: float = 2.0
    decode: str = "beam"
    beam_width: int = 5
    samples: int = 16
    temperature: float = 1.0
    neighbours: int = 0

    def __post_init__(self):
        super().__post_init__()
        levels_ok = 1 <= self.per_token <= self.levels <= 30 and self.levels % self.per_token == 0
        checks = {
            "width, layers, heads, feedforward, memory >= 1": min(
                self.width, self.layers, self.heads, self.feedforward, self.memory
            )
            >= 1,
            "width a multiple of heads": self.width % max(self.heads, 1) == 0,
            "1 <= per_token <= levels <= 30, levels a multiple of per_token": levels_ok,
            "coarse_weight >= 1": self.coarse_weight >= 1,
            f"decode one of {DECODERS}": self.decode in DECODERS,
            "1 <= beam_width <= 96": 1 <= self.beam_width <= 96,  # 6 faces x 16 at most
            "samples >= 1 and temperature > 0": self.samples >= 1 and self.temperature > 0,
            "neighbours >= 0": self.neighbours >= 0,
        }
        _check(checks, "model")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """``k`` neighbours searched and the cluster ``radius_km`` of the densest-of-top-k
    rule (``k = 1``: plain nearest neighbour)."""

    k: int = 1
    radius_km: float = 200.0

    def __post_init__(self):
        _check({"k >= 1 and radius_km > 0": self.k >= 1 and self.radius_km > 0}, "search")


def _train_default() -> TrainConfig:
    return BASELINE_TRAIN


class _Baseline(Sections):
    method = ""

    @classmethod
    def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        flat = {f.name for f in dataclasses.fields(BaselineConfig)}
        if data and set(data) <= flat:  # a flat BaselineConfig (before locdiff 0.3)
            return BaselineConfig.from_dict(data).for_method(cls.method).to_dict()
        return data


@dataclasses.dataclass(frozen=True)
class RegressionConfig(_Baseline):
    method = "regression"
    model: MLPConfig = dataclasses.field(default_factory=MLPConfig)
    train: TrainConfig = dataclasses.field(default_factory=_train_default)


@dataclasses.dataclass(frozen=True)
class CellsConfig(_Baseline):
    method = "cells"
    model: CellsModelConfig = dataclasses.field(default_factory=CellsModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=_train_default)


@dataclasses.dataclass(frozen=True)
class FlowConfig(_Baseline):
    method = "coords-diffusion"
    model: FlowModelConfig = dataclasses.field(default_factory=FlowModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=_train_default)


@dataclasses.dataclass(frozen=True)
class GeoTokenConfig(Sections):
    method = "geotoken"
    model: TokenModelConfig = dataclasses.field(default_factory=TokenModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=_train_default)

    def __post_init__(self):
        _check({"model.neighbours = 0 (geotoken-rag reads neighbours)":
                self.model.neighbours == 0}, "config")  # fmt: skip


def _rag_model() -> TokenModelConfig:
    return TokenModelConfig(neighbours=15)  # GeoToken's public code retrieves 15


@dataclasses.dataclass(frozen=True)
class GeoTokenRagConfig(Sections):
    method = "geotoken-rag"
    model: TokenModelConfig = dataclasses.field(default_factory=_rag_model)
    train: TrainConfig = dataclasses.field(default_factory=_train_default)

    def __post_init__(self):
        _check({"model.neighbours >= 1": self.model.neighbours >= 1}, "config")


@dataclasses.dataclass(frozen=True)
class RetrievalConfig(_Baseline):
    method = "retrieval"
    search: SearchConfig = dataclasses.field(default_factory=SearchConfig)


@dataclasses.dataclass(frozen=True)
class BaselineConfig:
    """One set of settings for all the baselines (each method reads only its own).

    Attributes:
      hidden, depth: width and number of hidden layers of the MLP trunk.
      steps, batch_size, learning_rate, weight_decay, seed: the training (AdamW, a warm-up
        of 5% of ``steps`` then cosine decay), as :data:`BASELINE_TRAIN` otherwise.
      retrieval_k, radius_km: ``retrieval``'s :class:`SearchConfig`.
      partitions: ``cells``: ``(min_count, max_count)`` of each adaptive partition.
      num_samples, flow_steps, kde_km: ``coords-diffusion``: samples per input, Euler
        steps, and the kernel width that ranks the samples.
      validation_fraction, eval_every, patience: early stopping, as LocDiff's
        (:mod:`locdiff.training.early_stopping`): ``steps`` is then a cap.
    """

    hidden: int = 512
    depth: int = 2
    steps: int = 2000
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    retrieval_k: int = 1
    radius_km: float = 200.0
    partitions: tuple[tuple[int, int], ...] = ((20, 400),)
    num_samples: int = 32
    flow_steps: int = 50
    kde_km: float = 150.0
    validation_fraction: float = 0.05
    eval_every: int = 250
    patience: int = 4

    def __post_init__(self):
        object.__setattr__(self, "partitions", tuple(tuple(p) for p in self.partitions))
        for method in CONFIGS:  # every method's checks, with their messages
            self.for_method(method)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> BaselineConfig:
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown baseline config keys: {sorted(unknown)}")
        return cls(**values)

    def train_section(self) -> TrainConfig:
        """The ``train`` section of every learned baseline."""
        names = ("steps", "batch_size", "learning_rate", "weight_decay", "seed")
        names += ("validation_fraction", "eval_every", "patience")
        values = {k: getattr(self, k) for k in names}
        warmup = max(1, self.steps // 20)  # 5% of the cap
        return dataclasses.replace(BASELINE_TRAIN, warmup_steps=warmup, **values)

    def for_method(self, method: str) -> Sections:
        """The config of baseline ``method`` with these settings."""
        if method == "retrieval":
            return RetrievalConfig(SearchConfig(self.retrieval_k, self.radius_km))
        mlp, train = {"hidden": self.hidden, "depth": self.depth}, self.train_section()
        if method == "cells":
            return CellsConfig(CellsModelConfig(**mlp, partitions=self.partitions), train)
        if method == "coords-diffusion":
            flow = {"num_samples": self.num_samples, "flow_steps": self.flow_steps}
            model = FlowModelConfig(**mlp, **flow, kde_km=self.kde_km)
            return FlowConfig(model, train)
        if method == "regression":
            return RegressionConfig(MLPConfig(**mlp), train)
        raise ValueError(f"{method!r} is not a baseline; choose one of {tuple(CONFIGS)}")


CONFIGS = {c.method: c for c in (RetrievalConfig, CellsConfig, RegressionConfig, FlowConfig)}

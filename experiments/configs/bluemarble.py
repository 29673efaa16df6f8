"""Setting A (Blue Marble patches): ``get_config(profile) -> BlueMarbleConfig``."""

from __future__ import annotations

import dataclasses

from locdiff.config import Config, override
from locdiff.methods import BaselineConfig

from experiments.configs.common import (
    FULL_TOKENS,
    SMOKE_BASELINE,
    SMOKE_LOCDIFF,
    SMOKE_TOKENS,
    Methods,
    check_profile,
    cpu_models,
)

PARTITIONS = ((10, 150), (40, 600))  # adaptive cells of the patch centres


@dataclasses.dataclass(frozen=True)
class BlueMarbleConfig:
    """Patches on land and at sea, the buffered split's blocks, and the models.

    Attributes:
      n_land, n_ocean: patch centres drawn on land and at sea.
      n_blocks, min_points: the buffered split's held-out 10-degree blocks, each with at
        least ``min_points`` centres.
      models: LocDiff's and the baselines' configs.
      control_methods: the methods also run on the colour-statistics control.
      buffered_methods: the methods run on the buffered split (None: all).
      far_fraction: share of the random split's training centres held out in whole
        5-degree blocks as its far-validation set (:func:`locdiff.data.splits.far_validation`),
        where LocDiff's choices after training are also made (0: none).
      far_blocks: the buffered split's far-validation set is held out like its test:
        this many more 10-degree blocks of its training centres, with the same 500 km
        buffer (0: 5-degree blocks as the random split's).
      confirm_land, confirm_ocean: the confirmation set's patch centres (``--confirm``):
        new random centres, drawn with another seed, on which nothing is chosen.
    """

    n_land: int
    n_ocean: int
    n_blocks: int
    min_points: int
    models: Methods
    control_methods: tuple[str, ...] = ("retrieval", "cells", "locdiff")
    buffered_methods: tuple[str, ...] | None = None
    far_fraction: float = 0.05
    far_blocks: int = 6
    confirm_land: int = 1600
    confirm_ocean: int = 400


def get_config(profile: str = "demo") -> BlueMarbleConfig:
    check_profile(profile)
    if profile == "smoke":
        models = Methods(
            SMOKE_LOCDIFF,
            dataclasses.replace(SMOKE_BASELINE, partitions=((10, 150),)),
            SMOKE_TOKENS,
        )
        return BlueMarbleConfig(
            400, 100, 3, 3, models, ("retrieval",), buffered_methods=("retrieval", "locdiff"),
            confirm_land=40, confirm_ocean=10, far_blocks=2,
        )  # fmt: skip
    if profile == "full":
        locdiff = override(
            Config(), **{"model.L": 32, "train.steps": 20000, "train.checkpoint_every": 2000}
        )
        baseline = BaselineConfig(partitions=PARTITIONS, steps=20000)
        return BlueMarbleConfig(40000, 10000, 40, 10, Methods(locdiff, baseline, FULL_TOKENS))
    return BlueMarbleConfig(12000, 3000, 20, 10, demo_models())


SIGMA_KM = 1000.0  # LocDiff's target: the heat-kernel width chosen on validation


def demo_models(steps: int = 6000, sigma_km: float | None = SIGMA_KM) -> Methods:
    """The ``demo`` profile's models, L = 16: ``steps`` is the cap of every method (6,000
    of 256, 120 epochs of the random split; at 1,500 LocDiff's validation loss was still
    falling, under this cap it stops by itself after 2,000-3,500); ``sigma_km`` smooths
    LocDiff's target deltas (None: the truncated delta), chosen on the random split's
    validation rows by ``experiments.bluemarble_target``
    (``experiments/results/bluemarble_target``)."""
    models = cpu_models(L=16, steps=steps, partitions=PARTITIONS)
    return dataclasses.replace(models, locdiff=with_target(models.locdiff, sigma_km))


def with_target(config: Config, sigma_km: float | None) -> Config:
    """``config`` with LocDiff's target deltas smoothed by ``sigma_km`` (None: truncated;
    ``override`` would skip a None)."""
    return dataclasses.replace(config, model=dataclasses.replace(config.model, sigma_km=sigma_km))

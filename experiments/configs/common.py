"""Typed experiment configs, and the smallest models that still exercise every path.

Each ``configs/<experiment>.py`` has ``get_config(profile) -> <its config>`` (big_vision
style): ``demo`` is what ``make demo`` / ``make experiments`` run on 2 CPU cores,
``full`` the same study at a size for a GPU, ``smoke`` seconds of work for the tests.
"""

from __future__ import annotations

import dataclasses

from locdiff.config import Config, override
from locdiff.methods import BaselineConfig
from locdiff.methods.configs import (
    CONFIGS,
    GeoTokenConfig,
    GeoTokenRagConfig,
    TokenModelConfig,
)

PROFILES = ("demo", "smoke", "full")

# The smoke profiles' models: a few steps each, only to check that a script runs.
SMOKE_LOCDIFF = override(
    Config(),
    **{
        "model.L": 4,
        "model.hidden": 16,
        "model.depth": 1,
        "model.film_dim": 8,
        "model.time_dim": 4,
        "train.steps": 4,
        "train.batch_size": 64,
        "train.checkpoint_every": 4,
        "train.warmup_steps": 1,
        "diffusion.sample_steps": 2,
        "diffusion.num_samples": 2,
    },
)
SMOKE_BASELINE = BaselineConfig(
    hidden=8, depth=1, steps=4, batch_size=64, num_samples=4, flow_steps=2
)
SMOKE_TOKENS = TokenModelConfig(width=8, layers=1, heads=2, memory=1, levels=4, beam_width=2)
# GeoToken's decoder in the full profiles: its public code's (d_model 512, 10 layers of 8
# heads, feed-forward twice d_model)
FULL_TOKENS = TokenModelConfig(width=512, layers=10, heads=8, feedforward=2, memory=4)


@dataclasses.dataclass(frozen=True)
class Methods:
    """The models of an experiment: LocDiff's config, the baselines' shared one, and
    GeoToken's decoder (its trunk and its training are the baselines'; ``geotoken-rag``
    reads its default number of neighbours)."""

    locdiff: Config
    baseline: BaselineConfig
    geotoken: TokenModelConfig = TokenModelConfig()

    def for_method(self, method: str):
        """``method``'s config: LocDiff's, or the baselines' settings for ``method``."""
        if method in ("geotoken", "geotoken-rag"):
            b = self.baseline
            model = dataclasses.replace(self.geotoken, hidden=b.hidden, depth=b.depth)
            if method == "geotoken":
                return GeoTokenConfig(model, b.train_section())
            model = dataclasses.replace(model, neighbours=GeoTokenRagConfig().model.neighbours)
            return GeoTokenRagConfig(model, b.train_section())
        return self.baseline.for_method(method) if method in CONFIGS else self.locdiff

    def to_dict(self) -> dict:
        return {
            "locdiff": self.locdiff.to_dict(),
            "baseline": self.baseline.to_dict(),
            "geotoken": dataclasses.asdict(self.geotoken),
        }


def check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")


def cpu_models(*, L: int, steps: int, partitions) -> Methods:
    """The ``demo`` profiles' models: sized for minutes of training on 2 CPU cores."""
    locdiff = override(
        Config(),
        **{
            "model.L": L,
            "model.hidden": 256,
            "model.film_dim": 128,
            "model.time_dim": 64,
            "train.steps": steps,
            "train.learning_rate": 1e-3,
            "train.warmup_steps": 100,
            "train.ema_decay": 0.995,
            "train.checkpoint_every": 500,
            "train.data_on_device": True,  # the data sets are small: rows gathered in the step
            "train.steps_per_call": 10,  # less host work per step on 2 cores, the same steps
            "diffusion.sample_steps": 25,
        },
    )
    baseline = BaselineConfig(
        partitions=partitions, hidden=256, steps=steps, num_samples=16, flow_steps=25
    )
    return Methods(locdiff, baseline)

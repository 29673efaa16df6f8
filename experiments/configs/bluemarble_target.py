"""Blue Marble's target study: ``get_config(profile) -> TargetConfig``."""

from __future__ import annotations

import dataclasses

from experiments.configs import bluemarble
from experiments.configs.common import check_profile


@dataclasses.dataclass(frozen=True)
class TargetConfig:
    """``setting``: Blue Marble's config (patches, split, models); ``sigmas_km``: the
    targets compared (None: the truncated delta), each trained as the setting's LocDiff."""

    setting: bluemarble.BlueMarbleConfig
    sigmas_km: tuple[float | None, ...]


def get_config(profile: str = "demo") -> TargetConfig:
    check_profile(profile)
    setting = bluemarble.get_config(profile)
    if profile == "smoke":
        return TargetConfig(setting, (None, 3000.0))
    if profile == "full":  # L = 32: about the narrowest width that does not ring is 700 km
        return TargetConfig(setting, (None, 500.0, 700.0, 1000.0))
    # L = 16: a heat kernel stops ringing at about 22,000 / L = 1,400 km (shdd.encoder)
    return TargetConfig(setting, (None, 700.0, 1000.0, 1400.0))

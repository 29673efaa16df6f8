"""The unseen-location study: ``get_config(profile) -> UnseenConfig`` (settings A and B)."""

from __future__ import annotations

import dataclasses

from experiments.configs import bluemarble, oracle_mp16
from experiments.configs.common import check_profile


@dataclasses.dataclass(frozen=True)
class UnseenConfig:
    """Both settings' data and models, the held-out regions and their buffers.

    Attributes:
      a, b: setting A's and setting B's configs (the same data and models).
      regions_a, regions_b: named regions held out (``locdiff.data.splits.REGIONS``).
      random_boxes: random 10-degree boxes held out besides, in each setting.
      min_box_points_a, min_box_points_b: points a random box must hold.
      buffer_km_a, buffer_km_b: no training point this close to a held-out test point.
      in_dist_fraction_a: share of setting A's remaining patches kept as in-distribution test.
    """

    a: bluemarble.BlueMarbleConfig
    b: oracle_mp16.OracleConfig
    regions_a: tuple[str, ...] = ("iberia", "australia", "japan", "california", "sahara", "amazon")
    regions_b: tuple[str, ...] = ("iberia", "australia", "japan", "california")
    random_boxes: int = 4
    min_box_points_a: int = 30
    min_box_points_b: int = 300
    buffer_km_a: float = 500.0
    buffer_km_b: float = 200.0
    in_dist_fraction_a: float = 0.05


def get_config(profile: str = "demo") -> UnseenConfig:
    check_profile(profile)
    config = UnseenConfig(a=bluemarble.get_config(profile), b=oracle_mp16.get_config(profile))
    if profile == "smoke":
        config = dataclasses.replace(
            config, random_boxes=1, min_box_points_a=3, min_box_points_b=10, in_dist_fraction_a=0.1
        )
    return config

"""LocDiff's ablations on setting B: ``get_config(profile) -> AblationConfig``."""

from __future__ import annotations

import dataclasses

from experiments.configs import oracle_mp16
from experiments.configs.common import check_profile

CAP_STEPS = oracle_mp16.CAP_STEPS  # the cap of setting B's every method


@dataclasses.dataclass(frozen=True)
class AblationConfig:
    """The base (setting B's LocDiff) and the values each ablation tries.

    Attributes:
      base: setting B's config; its LocDiff is the base model.
      L: band limits (each its own training run).
      sigma_km: the heat-kernel width of the smoothed target.
      smoothed_L: band limits tried under the smoothed target.
      depths: U-Net depths (the bottleneck is hidden / 2**depth units wide).
      cond_layers: hidden layers of the condition's MLP into FiLM.
      K, steps, guidance: sampler settings tried on the base model (no retraining).
    """

    base: oracle_mp16.OracleConfig  # in ``demo``: see ``get_config``
    L: tuple[int, ...] = (16, 32, 64)
    sigma_km: float = 700.0
    smoothed_L: tuple[int, ...] = (16, 24, 32)
    depths: tuple[int, ...] = (1, 2, 3)
    cond_layers: tuple[int, ...] = (1, 3)
    K: tuple[int, ...] = (1, 4, 16)
    steps: tuple[int, ...] = (5, 10, 25, 50)
    guidance: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0)


def get_config(profile: str = "demo") -> AblationConfig:
    check_profile(profile)
    base = oracle_mp16.get_config(profile)
    if profile == "demo":
        # The base is the truncated delta at L = 32 (setting B's LocDiff before the
        # rule read far validation), with early stopping under the cap of CAP_STEPS
        # steps of 256 for every variant (its learning rate's cosine decays over the cap).
        models = oracle_mp16.demo_models(steps=CAP_STEPS, smoothed=False)
        base = dataclasses.replace(base, models=models)
    config = AblationConfig(base=base)
    if profile == "smoke":
        return dataclasses.replace(
            config, L=(2, 4), sigma_km=3000.0, smoothed_L=(2,), depths=(1,), cond_layers=(2,),
            K=(1, 2),
            steps=(2,), guidance=(1.0, 2.0),
        )  # fmt: skip
    if profile == "full":
        return dataclasses.replace(config, L=(16, 32, 64, 100))
    return config

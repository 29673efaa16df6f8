"""Frozen, validated configuration of a LocDiff run, written beside every run's checkpoints.

Each component receives only its own sub-config: ``ModelConfig`` (the CS-UNet and the
SHDD representation it works in), ``DiffusionConfig`` (schedule, target, loss, sampler)
and ``TrainConfig`` (optimisation, batching, checkpoints). Variants are made with
``dataclasses.replace`` or :func:`override`; files are JSON.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from locdiff.io import files

PREDICTIONS = ("x0", "eps", "v")
COMPUTE_DTYPES = ("float32", "bfloat16")
LOSSES = ("mse", "kl", "mse+kl")
SAMPLERS = ("ddim", "ddpm")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The CS-UNet and the SHDD space it denoises in.

    Attributes:
      L: band limit of the SHDD vectors; ``D = (L+1)**2`` coefficients.
      sigma_km: heat-kernel smoothing of the target deltas (None: truncated delta).
      hidden: width of the first U-Net level; level ``i`` has ``hidden / 2**i``.
      depth: number of encoder levels (and of decoder levels).
      w0: SIREN frequency ``sin(w0 (W x + b))``.
      film_dim: width of the condition/timestep embedding that drives FiLM (the
        condition's own width comes from the data).
      time_dim: width of the sinusoidal timestep embedding.
      cond_layers: hidden layers (width ``film_dim``, SiLU) of the MLP that maps the
        condition and the timestep embedding to the FiLM driver (1: one hidden layer).
      dropout: dropout rate inside the blocks during training.
      compute_dtype: the network's arithmetic: ``float32``, or ``bfloat16`` (mixed
        precision: parameters, optimiser state, the SHDD target, the loss and the
        decoder stay float32; the layers compute in bfloat16 and the output is float32).
      cond_drop: probability of replacing the condition by the learned null
        embedding during training (classifier-free guidance).
    """

    L: int = 32
    sigma_km: float | None = None
    hidden: int = 512
    depth: int = 3
    w0: float = 1.0
    film_dim: int = 256
    time_dim: int = 128
    cond_layers: int = 1
    dropout: float = 0.0
    cond_drop: float = 0.1
    compute_dtype: str = "float32"

    def __post_init__(self):
        _check(
            isinstance(self.L, int) and self.L >= 1,
            f"model.L must be an integer >= 1, got {self.L}",
        )
        _check(
            self.sigma_km is None or self.sigma_km > 0,
            f"model.sigma_km must be > 0 or None, got {self.sigma_km}",
        )
        _check(self.depth >= 1, f"model.depth must be >= 1, got {self.depth}")
        _check(
            self.hidden >= 2**self.depth and self.hidden % 2 ** (self.depth - 1) == 0,
            f"model.hidden must be divisible by 2**(depth-1) and >= 2**depth, got {self.hidden}",
        )
        _check(self.w0 > 0, f"model.w0 must be > 0, got {self.w0}")
        _check(self.time_dim % 2 == 0 and self.time_dim > 0, "model.time_dim must be even and > 0")
        _check(self.film_dim > 0, "model.film_dim must be > 0")
        _check(self.cond_layers >= 1, f"model.cond_layers must be >= 1, got {self.cond_layers}")
        _check(0 <= self.dropout < 1, f"model.dropout must be in [0, 1), got {self.dropout}")
        _check(0 <= self.cond_drop < 1, f"model.cond_drop must be in [0, 1), got {self.cond_drop}")
        _check(
            self.compute_dtype in COMPUTE_DTYPES,
            f"model.compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}",
        )

    @property
    def num_coeffs(self) -> int:
        return (self.L + 1) ** 2


@dataclasses.dataclass(frozen=True)
class DiffusionConfig:
    """Forward process, network target, loss and sampler.

    Attributes:
      timesteps: 0 for continuous time ``t ~ U(0, 1)``; ``T > 0`` for ``t = i / T``.
      prediction: what the network predicts: ``x0``, ``eps`` or ``v``.
      loss: ``mse`` (on the prediction target), ``kl`` (SHDD-KL from the target's
        delta to the predicted ``x0``, :func:`shdd.delta_kl_divergence`) or ``mse+kl``
        (MSE plus ``kl_weight`` times SHDD-KL).
      kl_weight, kl_temperature: weight and softmax temperature of the SHDD-KL term.
      scale: multiplies the SHDD vector before diffusion; ``sqrt(4 pi)`` gives the
        truncated delta unit mean-square entries.
      sampler, sample_steps, guidance: defaults for sampling (DDIM, 50 sampler steps,
        guidance 1 = plain conditional); ``train.steps`` are optimiser steps.
      num_samples: default K, the samples drawn per condition.
    """

    timesteps: int = 0
    prediction: str = "x0"
    loss: str = "mse"
    kl_weight: float = 0.1
    kl_temperature: float = 0.1
    scale: float = math.sqrt(4 * math.pi)
    sampler: str = "ddim"
    sample_steps: int = 50
    guidance: float = 1.0
    num_samples: int = 4

    def __post_init__(self):
        _check(self.timesteps >= 0, f"diffusion.timesteps must be >= 0, got {self.timesteps}")
        _check(
            self.prediction in PREDICTIONS,
            f"diffusion.prediction must be one of {PREDICTIONS}, got {self.prediction!r}",
        )
        _check(self.loss in LOSSES, f"diffusion.loss must be one of {LOSSES}, got {self.loss!r}")
        _check(self.kl_weight >= 0, "diffusion.kl_weight must be >= 0")
        _check(self.kl_temperature > 0, "diffusion.kl_temperature must be > 0")
        _check(self.scale > 0, "diffusion.scale must be > 0")
        _check(
            self.sampler in SAMPLERS,
            f"diffusion.sampler must be one of {SAMPLERS}, got {self.sampler!r}",
        )
        _check(self.sample_steps >= 1, "diffusion.sample_steps must be >= 1")
        _check(self.guidance >= 0, "diffusion.guidance must be >= 0")
        _check(self.num_samples >= 1, "diffusion.num_samples must be >= 1")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, batching and checkpointing.

    Attributes:
      steps: the cap on optimiser steps (the learning-rate schedule spans them); the cap
        in samples seen is ``steps * batch_size``.
      batch_size: global batch size (divisible by the number of devices).
      learning_rate, warmup_steps, weight_decay, grad_clip: AdamW with linear warm-up
        and cosine decay, gradients clipped by global norm (None: not clipped).
      ema_decay: exponential moving average of the parameters (0: none; the EMA is then
        the parameters themselves).
      condition_noise: standard deviation of Gaussian noise added to every training
        condition, drawn afresh at every step (0: the conditions as stored). For data
        whose test conditions are noisy versions of clean training ones (setting B):
        train on the clean conditions and let every visit of a row see a new draw. The
        validation loss adds one fixed draw, and the standardisation's deviation is
        ``sqrt(std**2 + condition_noise**2)``.
      data_on_device: hold the whole training data on every device (replicated, in its
        stored dtype) and gather each batch there by row number: no host-to-device copy
        per step, for accelerators with the memory (MP16 at 768-d float16: 7.2 GB) and
        for data sets small enough to copy (the experiments' demo models on 2 CPU cores).
        The same batches in the same order as from the host.
      steps_per_call: optimiser steps run by one call of the jitted step (a
        ``lax.scan`` over that many batches); the trainer falls back to single steps
        where a log line, an evaluation or a checkpoint falls inside. The same steps,
        less host work per step: on 2 CPU cores, where the Python loop shares the cores
        with the computation, 10 per call made Blue Marble's training 10% faster.
      seed: the one seed of the run (initialisation, data order, noise).
      log_every: steps between metric lines in ``metrics.jsonl``.
      checkpoint_every: steps between (asynchronous) checkpoints; one is also written
        at the end and on Ctrl-C.
      keep: checkpoints kept (besides the best one).
      validation_fraction: share of the training rows held out to decide when to stop
        (:func:`locdiff.training.early_stopping.validation_split`; 0: no validation, train to
        ``steps``).
      eval_every: steps between validation losses (each is also a checkpoint).
      patience: evaluations without improvement before training stops (0: never); the
        run's model is then the one of its best evaluation.
    """

    steps: int = 10_000
    batch_size: int = 256
    learning_rate: float = 3e-4
    warmup_steps: int = 200
    weight_decay: float = 1e-4
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    condition_noise: float = 0.0
    data_on_device: bool = False
    steps_per_call: int = 1
    seed: int = 0
    log_every: int = 50
    checkpoint_every: int = 1000
    keep: int = 3
    validation_fraction: float = 0.05
    eval_every: int = 250
    patience: int = 4

    def __post_init__(self):
        _check(self.steps >= 1, f"train.steps must be >= 1, got {self.steps}")
        _check(self.batch_size >= 1, f"train.batch_size must be >= 1, got {self.batch_size}")
        _check(self.learning_rate > 0, "train.learning_rate must be > 0")
        _check(self.warmup_steps >= 0, "train.warmup_steps must be >= 0")
        _check(self.weight_decay >= 0, "train.weight_decay must be >= 0")
        _check(self.grad_clip is None or self.grad_clip > 0, "train.grad_clip must be > 0 or None")
        _check(0 <= self.ema_decay < 1, "train.ema_decay must be in [0, 1)")
        _check(self.condition_noise >= 0, "train.condition_noise must be >= 0")
        _check(self.steps_per_call >= 1, "train.steps_per_call must be >= 1")
        _check(
            self.log_every >= 1 and self.checkpoint_every >= 1,
            "log_every and checkpoint_every must be >= 1",
        )
        _check(self.keep >= 1, "train.keep must be >= 1")
        _check(0 <= self.validation_fraction < 1, "train.validation_fraction must be in [0, 1)")
        _check(self.eval_every >= 1, "train.eval_every must be >= 1")
        _check(self.patience >= 0, "train.patience must be >= 0")


class Sections:
    """A config made of sections, each a frozen validated dataclass: ``to_dict``,
    ``from_dict`` (unknown sections and keys refused), ``save`` and ``load`` (JSON).
    LocDiff's :class:`Config` and every baseline's config are such configs."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` in the current format (a config written by an earlier version)."""
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        data = cls.upgrade(data)
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        _check(not unknown, f"unknown config sections: {sorted(unknown)}")
        parts = {}
        for field in dataclasses.fields(cls):
            sub_cls = typing.get_type_hints(cls)[field.name]
            values = dict(data.get(field.name, {}))
            names = {f.name for f in dataclasses.fields(sub_cls)}
            bad = set(values) - names
            _check(not bad, f"unknown keys in config section {field.name!r}: {sorted(bad)}")
            parts[field.name] = sub_cls(**values)
        return cls(**parts)

    def save(self, path: str) -> None:
        files.write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str):
        return cls.from_dict(files.read_json(path))


@dataclasses.dataclass(frozen=True)
class Config(Sections):
    """A whole LocDiff run: ``model``, ``diffusion`` and ``train`` sub-configs."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = dataclasses.field(default_factory=DiffusionConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    @classmethod
    def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        model = data.get("model", {})
        if "embed_dim" in model:  # its name before 0.2
            model = {**model, "film_dim": model["embed_dim"]}
            del model["embed_dim"]
            data = {**data, "model": model}
        diffusion = data.get("diffusion", {})
        if "steps" in diffusion:  # its name before 0.3
            diffusion = {**diffusion, "sample_steps": diffusion["steps"]}
            del diffusion["steps"]
            data = {**data, "diffusion": diffusion}
        return data


def override(config, **changes: Any):
    """Replace fields of a :class:`Sections` config by dotted name, e.g. ``override(c,
    **{"model.L": 16})``; None is skipped."""
    sections: dict[str, dict[str, Any]] = {}
    for name, value in changes.items():
        if value is None:
            continue
        section, _, key = name.partition(".")
        _check(hasattr(config, section) and key, f"unknown config field {name!r}")
        _check(hasattr(getattr(config, section), key), f"unknown config field {name!r}")
        sections.setdefault(section, {})[key] = value
    return dataclasses.replace(
        config,
        **{s: dataclasses.replace(getattr(config, s), **kv) for s, kv in sections.items()},
    )


def assign(config: Sections, **changes: Any) -> Sections:
    """``config`` with fields replaced by dotted name (``assign(c, **{"train.steps":
    20000})``). A value given as text (the command line's ``--set``) is read as the
    field's type: ``true``/``false`` for a flag, an integer, a float, ``null`` for an
    optional field, JSON for a tuple (``[[25, 1000]]``).

    Raises:
      ValueError: a field the config does not have, or a value its type cannot take.
    """
    _check(isinstance(config, Sections), f"assign takes a method's config, not {config!r}")
    sections: dict[str, dict[str, Any]] = {}
    for name, value in changes.items():
        section, _, key = name.partition(".")
        fields = {}
        if section in {f.name for f in dataclasses.fields(config)}:
            part = getattr(config, section)
            fields = {f.name: f for f in dataclasses.fields(part)}
            hints = typing.get_type_hints(type(part))
        if key not in fields:
            known = [f"{f.name}.{g.name}" for f in dataclasses.fields(config)
                     for g in dataclasses.fields(getattr(config, f.name))]  # fmt: skip
            raise ValueError(
                f"{name!r} is not a setting of {type(config).__name__}; it has {', '.join(known)}"
            )
        if isinstance(value, str):
            value = _parse(value, hints[key], name)
        sections.setdefault(section, {})[key] = value
    return dataclasses.replace(
        config,
        **{s: dataclasses.replace(getattr(config, s), **kv) for s, kv in sections.items()},
    )


def _parse(text: str, kind, name: str):
    """``text`` as a value of type ``kind`` (the field ``name``'s)."""
    import json

    options = (
        typing.get_args(kind)
        if typing.get_origin(kind) in (typing.Union, types.UnionType)
        else (kind,)
    )
    if type(None) in options and text.strip().lower() in ("null", "none"):
        return None
    kind = next(k for k in options if k is not type(None))
    text = text.strip()
    try:
        if kind is bool:
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return text
        return json.loads(text)  # tuples and the rest: JSON
    except ValueError:
        what = getattr(kind, "__name__", str(kind))
        raise ValueError(f"{name}={text!r} cannot be read as {what}") from None

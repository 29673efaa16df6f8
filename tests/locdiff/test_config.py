import dataclasses

import pytest

from locdiff.config import Config, DiffusionConfig, ModelConfig, TrainConfig, override


def test_json_round_trip(tmp_path):
    config = override(
        Config(), **{"model.L": 16, "model.sigma_km": 250.0, "diffusion.loss": "mse+kl"}
    )
    path = tmp_path / "c.json"
    config.save(str(path))
    assert Config.load(str(path)) == config


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ModelConfig(L=0), "model.L"),
        (lambda: ModelConfig(hidden=100, depth=4), "model.hidden"),
        (lambda: ModelConfig(dropout=1.0), "model.dropout"),
        (lambda: DiffusionConfig(prediction="score"), "diffusion.prediction"),
        (lambda: DiffusionConfig(loss="l1"), "diffusion.loss"),
        (lambda: TrainConfig(batch_size=0), "train.batch_size"),
        (lambda: override(Config(), **{"model.width": 3}), "unknown config field"),
        (lambda: Config.from_dict({"model": {"hiden": 3}}), "unknown keys"),
        (lambda: Config.from_dict({"optim": {}}), "unknown config sections"),
    ],
)
def test_invalid_configs_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_frozen_and_override_skips_none():
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.model.L = 3
    assert override(config, **{"model.L": None}) == config


def test_old_name_of_the_film_width_is_read(tmp_path):
    """Run directories written before the rename (``model.embed_dim``) still load."""
    old = {"model": {"L": 8, "embed_dim": 48}, "train": {"steps": 5}}
    config = Config.from_dict(old)
    assert config.model.film_dim == 48 and config.model.L == 8 and config.train.steps == 5
    with pytest.raises(ValueError, match="unknown keys"):
        Config.from_dict({"model": {"film_width": 3}})


def test_old_name_of_the_sampler_steps_is_read():
    """``diffusion.steps`` (before the sampler's steps were named apart from training's)
    still loads, as ``diffusion.sample_steps``; the new name is what is written."""
    config = Config.from_dict({"diffusion": {"steps": 7}, "train": {"steps": 5}})
    assert config.diffusion.sample_steps == 7 and config.train.steps == 5
    assert "steps" not in config.to_dict()["diffusion"]
    with pytest.raises(ValueError, match="diffusion.sample_steps must be >= 1"):
        Config.from_dict({"diffusion": {"sample_steps": 0}})


def test_the_mp16_recipe_is_a_valid_config():
    """The README's recipe for MP16-sized runs loads as it is documented."""
    import os

    from locdiff import methods
    from locdiff.io import files

    root = os.path.join(os.path.dirname(__file__), "..", "..")
    path = os.path.join(root, "experiments", "configs", "mp16.json")
    config = methods.config_from_dict("locdiff", files.read_json(path))
    assert config.model.compute_dtype == "bfloat16" and config.train.batch_size == 4096
    epoch = 4_700_000 * (1 - config.train.validation_fraction) / config.train.batch_size
    assert config.train.eval_every == round(epoch, -2)  # one validation per MP16 epoch

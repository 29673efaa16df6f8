import importlib.util

import numpy as np
import pytest
from PIL import Image

from locdiff.encoders import ColorStatsEncoder, load_encoder, parse_spec

torch = pytest.importorskip("torch")


def _images(rng, n, size=(48, 40)):
    return [Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)) for _ in range(n)]


def test_efficientnet_lite0_real_weights(rng):
    encoder = load_encoder("efficientnet-lite0(image_size=64)")
    assert encoder.image_size == 64 and encoder.spec == "efficientnet-lite0(image_size=64)"
    images = _images(rng, 3)
    e = encoder.embed(images)
    assert e.shape == (3, 1280) and e.dtype == np.float32 and np.all(np.isfinite(e))
    np.testing.assert_array_equal(e, encoder.embed(images))  # deterministic
    assert not np.allclose(e[0], e[1])
    gray = Image.fromarray(np.full((30, 30), 128, np.uint8))  # any mode is converted to RGB
    assert encoder.embed([gray]).shape == (1, 1280)


@pytest.fixture
def tiny_clip(tmp_path):
    """A tiny randomly initialised CLIP saved to a local directory (no hub anywhere)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tiny = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, projection_dim=768)
    config = CLIPConfig(
        projection_dim=768,
        text_config=dict(**tiny, num_hidden_layers=1, vocab_size=100),
        vision_config=dict(**tiny, num_hidden_layers=2, patch_size=8, image_size=32),
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(tmp_path / "clip")
    processor = CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    processor.save_pretrained(tmp_path / "clip")
    return str(tmp_path / "clip")


def test_clip_and_geoclip_from_a_local_directory(rng, tiny_clip, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    images = _images(rng, 2)
    clip = load_encoder("clip", path=tiny_clip)
    assert clip.embed(images).shape == (2, 768)
    if importlib.util.find_spec("geoclip") is None:  # read as files, never imported
        pytest.skip("GeoCLIP's head weights come from its wheel: pip install --no-deps geoclip")
    geo = load_encoder("geoclip", path=tiny_clip)
    e = geo.embed(images)
    assert e.shape == (2, 512) and np.all(np.isfinite(e))
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        load_encoder("clip", path="openai/clip-vit-large-patch14")


def test_specs_name_an_encoder_and_its_options():
    assert parse_spec("efficientnet-lite0(image_size=64)") == (
        "efficientnet-lite0",
        {"image_size": 64},
    )
    assert parse_spec("clip") == ("clip", {})
    assert ColorStatsEncoder().spec == "color-stats"
    with pytest.raises(ValueError, match="key=value"):
        parse_spec("efficientnet-lite0(64)")


def test_color_stats_and_unknown_encoder(rng):
    e = ColorStatsEncoder().embed(_images(rng, 2))
    assert e.shape == (2, 30)
    np.testing.assert_allclose(e[:, 6:14].sum(1), 1.0, rtol=1e-5)  # a histogram per channel
    with pytest.raises(ValueError, match="unknown encoder"):
        load_encoder("resnet")


def _wheel_location_encoder():
    """GeoCLIP's own location-encoder module file, loaded without its package's imports."""
    import importlib
    import sys
    import types
    import warnings

    from locdiff.encoders import geoclip_file

    root = geoclip_file("model")
    shell = types.ModuleType("_geoclip_model")
    shell.__path__ = [root]
    misc = types.ModuleType("_geoclip_model.misc")
    misc.file_dir = root  # the only name location_encoder takes from misc (which needs pandas)
    sys.modules.update({"_geoclip_model": shell, "_geoclip_model.misc": misc})
    try:
        with warnings.catch_warnings():  # the wheel's rff module uses torch.jit.script
            warnings.simplefilter("ignore", DeprecationWarning)
            return importlib.import_module("_geoclip_model.location_encoder").LocationEncoder()
    finally:
        for name in [n for n in sys.modules if n.startswith("_geoclip_model")]:
            del sys.modules[name]


def test_geoclip_location_encoder_matches_the_wheels_module():
    torch = pytest.importorskip("torch")
    from locdiff.encoders import GeoCLIPLocationEncoder

    latlon = np.array([[48.8566, 2.3522], [-33.9, 151.2], [0.0, -179.9], [89.0, 10.0]])
    ours = GeoCLIPLocationEncoder().embed_locations(latlon, batch_size=3)
    with torch.inference_mode():
        theirs = _wheel_location_encoder()(torch.tensor(latlon, dtype=torch.float32)).numpy()
    assert ours.shape == (4, 512)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4 * np.abs(theirs).max())
    # Nearby places embed closer than distant ones.
    e = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    near = GeoCLIPLocationEncoder().embed_locations(np.array([[48.9, 2.4]]))
    near /= np.linalg.norm(near)
    assert (near @ e.T)[0, 0] > (near @ e.T)[0, 1:].max()

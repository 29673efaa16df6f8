import importlib.util

import numpy as np
import pytest
from PIL import Image

from locdiff import cli, data
from locdiff.embed import embed_images
from locdiff.encoders import ColorStatsEncoder, load_encoder

torch = pytest.importorskip("torch")


def _images(rng, n, size=(48, 40)):
    return [Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)) for _ in range(n)]


def test_efficientnet_lite0_real_weights(rng):
    encoder = load_encoder("efficientnet-lite0", image_size=64)
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


def test_color_stats_and_unknown_encoder(rng):
    e = ColorStatsEncoder().embed(_images(rng, 2))
    assert e.shape == (2, 30)
    np.testing.assert_allclose(e[:, 6:14].sum(1), 1.0, rtol=1e-5)  # a histogram per channel
    with pytest.raises(ValueError, match="unknown encoder"):
        load_encoder("resnet")


def test_embed_skips_corrupt_images_and_resumes(tmp_path, rng):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, image in enumerate(_images(rng, 7)):
        image.save(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"not an image")
    with open(tmp_path / "list.csv", "w") as f:
        f.write("path,lat,lon\n")
        for i in range(7):
            f.write(f"photos/{i}.png,{10 * i},{-20 * i}\n")
        f.write("photos/broken.jpg,1,1\n")

    class Crashing(ColorStatsEncoder):
        calls = 0

        def embed(self, images):
            Crashing.calls += 1
            if Crashing.calls == 3:
                raise RuntimeError("simulated crash")
            return super().embed(images)

    out = str(tmp_path / "emb.npz")
    with pytest.raises(RuntimeError, match="simulated crash"):
        embed_images(
            Crashing(), str(tmp_path / "list.csv"), out, batch_size=2, save_every=1, progress=False
        )
    counted = []

    class Counting(ColorStatsEncoder):
        def embed(self, images):
            counted.append(len(images))
            return super().embed(images)

    result = embed_images(Counting(), str(tmp_path / "list.csv"), out, batch_size=2, progress=False)
    assert result == {"embedded": 7, "skipped": 1, "out": out}
    assert sum(counted) == 3  # the first 4 images were kept from before the crash
    arrays = data.load_npz(out)
    assert arrays["embeddings"].shape == (7, 30) and str(arrays["encoder"]) == "color-stats"
    np.testing.assert_allclose(arrays["latlon"][3], [30, -60])
    np.testing.assert_array_equal(
        arrays["embeddings"],
        ColorStatsEncoder().embed([Image.open(folder / f"{i}.png") for i in range(7)]),
    )
    assert "photos/broken.jpg" in (tmp_path / "emb.npz.skipped.txt").read_text()


def test_cli_embed_directory_without_locations(tmp_path, rng, capsys):
    for i, image in enumerate(_images(rng, 3)):
        image.save(tmp_path / f"{i}.jpg")
    out = str(tmp_path / "e.npz")
    assert (
        cli.main(
            [
                "embed",
                "--encoder",
                "color-stats",
                "--images",
                str(tmp_path),
                "--out",
                out,
                "--no-progress",
            ]
        )
        == 0
    )
    assert "embedded 3 images" in capsys.readouterr().out
    arrays = data.load_npz(out, require_latlon=False)
    assert "latlon" not in arrays and arrays["embeddings"].shape == (3, 30)
    with pytest.raises(data.DataError, match="missing key 'latlon'"):
        data.load_npz(out)
    assert (
        cli.main(
            ["embed", "--encoder", "color-stats", "--images", str(tmp_path / "none"), "--out", out]
        )
        == 2
    )


def test_predict_from_image_files_with_maps(tmp_path, rng, capsys):
    from locdiff import trainer
    from locdiff.config import Config, override

    folder = tmp_path / "photos"
    folder.mkdir()
    with open(tmp_path / "list.csv", "w") as f:
        f.write("path,lat,lon\n")
        for i, image in enumerate(_images(rng, 64, size=(16, 16))):
            image.save(folder / f"{i}.png")
            f.write(f"photos/{i}.png,{(i % 4) * 30 - 45},{(i % 4) * 80 - 120}\n")
    embedded = str(tmp_path / "emb.npz")
    embed_images(ColorStatsEncoder(), str(tmp_path / "list.csv"), embedded, progress=False)
    config = override(
        Config(),
        **{
            "model.L": 4,
            "model.hidden": 32,
            "model.depth": 2,
            "train.steps": 5,
            "train.batch_size": 16,
            "diffusion.steps": 3,
            "diffusion.num_samples": 1,
        },
    )
    trainer.train(config, embedded, str(tmp_path / "run"), progress=False)
    args = ["predict", "--checkpoint", str(tmp_path / "run"), "--top-k", "2", "--no-progress"]
    images = [str(folder / "0.png"), str(folder / "1.png")]
    assert cli.main([*args, "--image", *images, "--map", str(tmp_path / "map.png")]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "id,rank,lat,lon,prob,place" and len(rows) == 5
    assert rows[1].startswith(images[0] + ",1,")
    for i in range(2):
        with Image.open(tmp_path / f"map_{i}.png") as png:
            assert png.size[0] > 500
    # an unreadable image: one clear line and a non-zero exit
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    assert cli.main([*args, "--image", str(tmp_path / "bad.jpg")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.jpg: unreadable image" in err[0]
    assert cli.main([*args]) == 2
    assert "exactly one of --data and --image" in capsys.readouterr().err


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


def test_oracle_condition_is_normalised_plus_noise():
    from locdiff.encoders import oracle_condition

    x = np.random.default_rng(0).normal(size=(2000, 64)) * 7
    clean = oracle_condition(x, 0.0)
    np.testing.assert_allclose(np.linalg.norm(clean, axis=1), 1.0, rtol=1e-5)
    noisy = oracle_condition(x, 0.2, seed=1)
    assert np.std(noisy - clean) == pytest.approx(0.2, rel=0.02)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        oracle_condition(x, -1.0)

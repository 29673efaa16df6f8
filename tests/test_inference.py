import json

import numpy as np
import pytest

import shdd
from locdiff import cli, data, trainer
from locdiff.config import Config, override
from locdiff.inference import Geolocator, rerank_gallery

TINY = {
    "model.L": 8,
    "model.hidden": 64,
    "model.depth": 2,
    "model.embed_dim": 32,
    "model.time_dim": 16,
    "train.batch_size": 64,
    "train.learning_rate": 2e-3,
    "train.warmup_steps": 10,
    "train.steps": 200,
    "train.ema_decay": 0.9,
    "train.log_every": 50,
    "train.checkpoint_every": 100,
    "diffusion.steps": 10,
    "diffusion.num_samples": 2,
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny model trained on 4 well-separated clusters, and a held-out test set."""
    root = tmp_path_factory.mktemp("inference")
    emb, latlon = data.synthetic_clustered(1200, n_clusters=4, embed_dim=8, spread_km=50, seed=0)
    data.save_npz(str(root / "train.npz"), emb[:1000], latlon[:1000])
    scene = np.arange(200) % 3
    data.save_npz(
        str(root / "test.npz"),
        emb[1000:],
        latlon[1000:],
        scene=scene,
        ids=np.array([f"img{i}" for i in range(200)]),
    )
    trainer.train(
        override(Config(), **TINY), str(root / "train.npz"), str(root / "run"), progress=False
    )
    return root


def test_predict_shapes_determinism_maps_and_credible_regions(run):
    geo = Geolocator.from_checkpoint(str(run / "run"))
    test = data.load_npz(str(run / "test.npz"))
    out = geo.predict(test["embeddings"][:8], top_k=3, seed=1, maps=True, map_resolution=5.0)
    assert out.latlon.shape == (8, 3, 2) and out.prob.shape == (8, 3)
    assert out.coeffs.shape == (8, 2, 81) and out.maps.shape == (8, 36, 72)
    np.testing.assert_allclose(out.maps.sum(axis=(1, 2)), 1.0, rtol=1e-4)
    again = geo.predict(test["embeddings"][:8], top_k=3, seed=1)
    np.testing.assert_array_equal(out.latlon, again.latlon)
    area50, area90 = out.credible_km2[:, 0], out.credible_km2[:, 1]
    assert np.all(area50 > 0) and np.all(area90 > area50)
    assert np.all(area90 < 4 * np.pi * 6371.0088**2)
    # the model learnt the clusters: top-1 within the L=8 kernel's half-width
    error = shdd.haversine_km_np(out.latlon[:, 0].astype(np.float64), test["latlon"][:8])
    assert np.median(error) < shdd.kernel_width_km(8)


def test_embedding_width_mismatch_is_a_clear_error(run):
    geo = Geolocator.from_checkpoint(str(run / "run"))
    with pytest.raises(ValueError, match=r"embeddings must be \[B, 8\] for this checkpoint"):
        geo.predict(np.zeros((2, 5)))


def test_credible_area_of_a_uniform_map_is_the_level_times_the_sphere():
    grid = shdd.latlon_grid(2.0)
    pmap = np.broadcast_to(grid.area[:, None] / (4 * np.pi), grid.shape)
    area = np.asarray(shdd.credible_area_km2(pmap, resolution_deg=2.0, levels=(0.5, 0.9)))
    sphere_km2 = 4 * np.pi * 6371.0088**2
    np.testing.assert_allclose(area, [0.5 * sphere_km2, 0.9 * sphere_km2], rtol=0.02)


def test_rerank_snaps_to_the_densest_gallery_point_near_the_mode(run):
    geo = Geolocator.from_checkpoint(str(run / "run"))
    test = data.load_npz(str(run / "test.npz"))
    out = geo.predict(test["embeddings"][:4], top_k=1)
    gallery = np.concatenate([test["latlon"][:4].astype(np.float64), [[0.0, 0.0], [-60, 100]]])
    snapped = rerank_gallery(out, gallery, L=8, neighbours=3)
    mean = out.coeffs.mean(axis=1)
    for i in range(4):
        values = np.asarray(shdd.evaluate(mean[i], gallery.astype(np.float32), L=8))
        assert values[np.argmin(np.abs(gallery - snapped[i]).sum(-1))] >= np.sort(values)[-3]


def test_cli_evaluate_and_predict(run, tmp_path, capsys):
    out_json = tmp_path / "metrics.json"
    args = ["--checkpoint", str(run / "run"), "--data", str(run / "test.npz"), "--no-progress"]
    assert cli.main(["evaluate", *args, "--json", str(out_json), "--batch-size", "64"]) == 0
    table = capsys.readouterr().out
    assert "acc_2500km" in table and "LocDiff, urban" in table
    with open(out_json) as f:
        result = json.load(f)
    keys = {
        "n",
        "acc_1km",
        "acc_25km",
        "acc_200km",
        "acc_750km",
        "acc_2500km",
        "median_km",
        "mean_km",
        "geoscore",
    }
    assert keys <= set(result) and result["n"] == 200
    assert result["acc_2500km"] > 50  # four well-separated clusters
    preds, points = tmp_path / "preds.csv", tmp_path / "modes.geojson"
    assert (
        cli.main(["predict", *args, "--top-k", "2", "--out", str(preds), "--geojson", str(points)])
        == 0
    )
    with open(points) as f:
        features = json.load(f)["features"]
    assert len(features) == 400 and features[0]["properties"]["rank"] == 1
    first = lines_of(preds)[1].split(",")
    assert features[0]["geometry"]["coordinates"] == pytest.approx(
        [float(first[3]), float(first[2])], abs=1e-4
    )  # GeoJSON is [lon, lat]
    lines = preds.read_text().splitlines()
    assert lines[0] == "id,rank,lat,lon,prob,place"
    assert (
        len(lines) == 1 + 2 * 200
        and lines[1].startswith("img0,1,")
        and lines[2].startswith("img0,2,")
    )


def lines_of(path) -> list[str]:
    return path.read_text().splitlines()


def _one_error_line(capsys, args) -> str:
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_cli_errors_are_one_line(run, tmp_path, capsys):
    missing = ["evaluate", "--checkpoint", str(tmp_path / "none"), "--data", "x.npz"]
    assert "not a LocDiff run directory" in _one_error_line(capsys, missing)
    data.save_npz(str(tmp_path / "wide.npz"), np.zeros((3, 5)), np.zeros((3, 2)))
    wide = ["predict", "--checkpoint", str(run / "run"), "--data", str(tmp_path / "wide.npz")]
    assert "embeddings must be [B, 8] for this checkpoint" in _one_error_line(capsys, wide)
    (tmp_path / "empty.csv").write_text("")
    empty = [
        "embed",
        "--encoder",
        "color-stats",
        "--images",
        str(tmp_path / "empty.csv"),
        "--out",
        str(tmp_path / "e.npz"),
    ]
    assert "empty.csv: empty file" in _one_error_line(capsys, empty)

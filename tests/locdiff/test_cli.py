"""The command line: each sub-command on a real run, and one-line errors."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from locdiff import cli, methods
from locdiff.data import datasets as data
from locdiff.infer import calibration


def _one_error_line(capsys, args) -> str:
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_evaluate_and_predict(tiny_locdiff, clusters, tmp_path, capsys):
    out_json = tmp_path / "metrics.json"
    args = ["--checkpoint", tiny_locdiff, "--data", clusters.test, "--no-progress"]
    assert cli.main(["evaluate", *args, "--json", str(out_json), "--batch-size", "64"]) == 0
    table = capsys.readouterr().out
    assert "acc_2500km" in table and "locdiff, urban" in table
    result = json.loads(out_json.read_text())
    keys = {"n", "acc_1km", "acc_25km", "acc_200km", "acc_750km", "acc_2500km", "median_km"}
    assert keys | {"mean_km", "geoscore", "country_acc"} <= set(result) and result["n"] == 200
    assert result["method"] == "locdiff" and result["acc_2500km"] > 50  # four clusters
    preds, points = tmp_path / "preds.csv", tmp_path / "modes.geojson"
    predict = ["predict", *args, "--top-k", "2", "--out", str(preds), "--geojson", str(points)]
    assert cli.main([*predict, "--map-resolution", "5"]) == 0
    collection = json.loads(points.read_text())["features"]
    features = [f for f in collection if f["geometry"]["type"] == "Point"]
    assert len(features) == 400 and features[0]["properties"]["rank"] == 1
    # LocDiff's 50% and 90% credible regions beside the modes, as valid polygons
    regions = [f for f in collection if f["geometry"]["type"] == "MultiPolygon"]
    assert [r["properties"]["region"] for r in regions[:2]] == ["50%", "90%"]
    assert len(regions) == 2 * 200 and len(collection) == 400 + 400
    from shapely.geometry import Point, shape

    first_mode = Point(features[0]["geometry"]["coordinates"])
    assert shape(regions[1]["geometry"]).is_valid
    assert shape(regions[1]["geometry"]).buffer(5.0).contains(first_mode)
    lines = preds.read_text().splitlines()
    first = lines[1].split(",")
    assert features[0]["geometry"]["coordinates"] == pytest.approx(
        [float(first[3]), float(first[2])], abs=1e-4
    )  # GeoJSON is [lon, lat]
    assert lines[0] == "id,rank,lat,lon,prob,place"
    assert len(lines) == 1 + 2 * 200
    assert lines[1].startswith("img0,1,") and lines[2].startswith("img0,2,")


def test_predict_snaps_modes_within_the_radius_asked(tiny_locdiff, clusters, tmp_path, capsys):
    """``--snap-km 0`` writes the decoder's own modes; a radius moves them onto the
    densest cell of training photos in reach (locdiff.infer.snapping)."""
    from locdiff.infer.snapping import LocationPrior

    args = ["predict", "--checkpoint", tiny_locdiff, "--data", clusters.test, "--no-progress"]
    modes = {}
    for km in ("0", "300"):
        out = tmp_path / f"snap{km}.csv"
        assert cli.main([*args, "--snap-km", km, "--out", str(out)]) == 0
        rows = [line.split(",") for line in out.read_text().splitlines()[1:]]
        modes[km] = np.array([[float(r[2]), float(r[3])] for r in rows])
    prior = LocationPrior.load(os.path.join(tiny_locdiff, "location_prior.npz"))
    np.testing.assert_allclose(modes["300"], prior.snap(modes["0"], 300.0), atol=1e-3)
    assert not np.allclose(modes["300"], modes["0"], atol=1e-3)
    retrieval = str(tmp_path / "retrieval")
    train = ["train", "--method", "retrieval", "--train", clusters.train, "--workdir", retrieval]
    assert cli.main([*train, "--no-progress"]) == 0
    capsys.readouterr()
    snap = ["predict", "--checkpoint", retrieval, "--data", clusters.test, "--snap-km", "5"]
    assert cli.main(snap) == 2  # baselines take no sampling options
    assert "takes no sampling options, got snap_km" in capsys.readouterr().err


def test_evaluate_with_a_gallery_is_locdiff_h_with_its_coverage(tiny_locdiff, clusters, tmp_path):
    gallery = tmp_path / "gallery.npz"
    train = data.load_npz(clusters.train)
    data.save_npz(str(gallery), train["embeddings"][:300], train["latlon"][:300])
    out = tmp_path / "h.json"
    args = ["evaluate", "--checkpoint", tiny_locdiff, "--data", clusters.test, "--no-progress"]
    assert cli.main([*args, "--gallery", str(gallery), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["method"] == "locdiff-h" and result["n"] == 200
    few = str(tmp_path / "few.npz")
    data.save_npz(few, clusters.test_emb[:16], clusters.test_latlon[:16])
    args = ["evaluate", "--checkpoint", tiny_locdiff, "--data", few, "--no-progress"]
    assert cli.main([*args, "--json", str(out), "--coverage"]) == 0
    result = json.loads(out.read_text())
    assert result["method"] == "locdiff" and result["n"] == 16
    direct = calibration.coverage(  # the same figures as the library's, for the same rows
        methods.load_locator(tiny_locdiff), clusters.test_emb[:16],
        clusters.test_latlon[:16].astype(np.float64),
    )  # fmt: skip
    for key in ("coverage_50", "coverage_90", "area_50_km2", "area_90_km2"):
        assert result[key] == pytest.approx(direct[key]), key


def test_errors_are_one_line(tiny_locdiff, tmp_path, capsys):
    missing = ["evaluate", "--checkpoint", str(tmp_path / "none"), "--data", "x.npz"]
    assert "no such run directory" in _one_error_line(capsys, missing)
    data.save_npz(str(tmp_path / "wide.npz"), np.zeros((3, 5)), np.zeros((3, 2)))
    wide = ["predict", "--checkpoint", tiny_locdiff, "--data", str(tmp_path / "wide.npz")]
    assert "embeddings must be [N, 8] for this run" in _one_error_line(capsys, wide)
    (tmp_path / "empty.csv").write_text("")
    empty = ["embed", "--encoder", "color-stats", "--images", str(tmp_path / "empty.csv")]
    assert "empty.csv: empty file" in _one_error_line(capsys, [*empty, "--out", "e.npz"])
    np.savez(tmp_path / "bad.npz", embeddings=np.zeros((4, 3)))
    bad = ["train", "--train", str(tmp_path / "bad.npz"), "--workdir", str(tmp_path / "r")]
    assert _one_error_line(capsys, [*bad, "--no-progress"]) == (
        "locdiff train: bad.npz: missing key 'latlon' (has ['embeddings'])"
    )
    both = ["predict", "--checkpoint", tiny_locdiff]
    assert "exactly one of --data and --image" in _one_error_line(capsys, both)


def test_predict_from_image_files(tmp_path, capsys):
    """A run trained on embedded images answers ``predict --image`` with the same encoder
    (its spec is recorded in the data and the run). Maps from images: the demo's test
    (tests/experiments)."""
    from locdiff import methods
    from locdiff.config import Config, override
    from locdiff.encoders import ColorStatsEncoder
    from locdiff.encoders.embed import embed_images

    rng = np.random.default_rng(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    with open(tmp_path / "list.csv", "w") as f:
        f.write("path,lat,lon\n")
        for i in range(64):
            pixels = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
            f.write(f"photos/{i}.png,{(i % 4) * 30 - 45},{(i % 4) * 80 - 120}\n")
    embedded = str(tmp_path / "emb.npz")
    embed_images(ColorStatsEncoder(), str(tmp_path / "list.csv"), embedded, progress=False)
    config = override(
        Config(),
        **{"model.L": 4, "model.hidden": 16, "model.depth": 1, "model.film_dim": 8},
        **{"model.time_dim": 4, "train.steps": 2, "train.batch_size": 16},
        **{"diffusion.sample_steps": 2, "diffusion.num_samples": 1},
    )
    run = str(tmp_path / "run")
    methods.train_method("locdiff", embedded, run, config=config, progress=False)
    assert methods.load_locator(run).meta["encoder"] == "color-stats"
    args = ["predict", "--checkpoint", run, "--top-k", "2", "--no-progress"]
    images = [str(folder / "0.png"), str(folder / "1.png")]
    assert cli.main([*args, "--image", *images]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "id,rank,lat,lon,prob,place" and len(rows) == 5
    assert rows[1].startswith(images[0] + ",1,")
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    assert "bad.jpg: unreadable image" in _one_error_line(
        capsys, [*args, "--image", str(tmp_path / "bad.jpg")]
    )

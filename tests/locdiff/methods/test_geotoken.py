"""GeoToken on the one surface: it learns the clusters, merges repeated cells, checks its config."""

import json

import numpy as np
import pytest

import shdd
from locdiff import cli, methods
from locdiff.infer import calibration
from locdiff.infer.neighbours import normalise
from locdiff.io import export, files
from locdiff.methods import geotoken, geotoken_rag
from locdiff.training.early_stopping import validation_split

SMALL = {
    "model.hidden": 64, "model.depth": 1, "model.width": 32, "model.layers": 1,
    "model.heads": 2, "model.memory": 1, "model.levels": 8, "model.beam_width": 4,
    "model.samples": 8, "train.steps": 300, "train.batch_size": 64,
    "train.validation_fraction": 0.1,
}  # fmt: skip


def test_geotoken_learns_the_clusters_by_beam_and_by_sampling(clusters, tmp_path, monkeypatch):
    config = methods.assign(geotoken.Config(), **SMALL)
    locator = methods.train_method("geotoken", clusters.train, str(tmp_path / "gt"),
                                   config=config, progress=False)  # fmt: skip
    prediction = locator.predict(clusters.test_emb, top_k=3)
    assert prediction.latlon.shape == (200, 3, 2)
    assert np.all(np.diff(prediction.prob, axis=1) <= 0) and (prediction.prob[:, 0] > 0).all()
    error = shdd.haversine_km_np(prediction.top1, clusters.test_latlon)
    assert np.mean(error < 1000) > 0.95, np.median(error)  # clusters ~50 km wide, far apart
    seqs, scores = locator.sequences(clusters.test_emb[:20], decode="sample", width=8)
    assert seqs.shape == (20, 8, 5) and np.all(np.diff(scores, axis=1) <= 0)
    again = methods.load_locator(str(tmp_path / "gt")).predict(clusters.test_emb, top_k=3)
    np.testing.assert_allclose(again.latlon, prediction.latlon, atol=1e-6)
    # the decoding was chosen on the validation split, and the run decodes so
    chosen = files.read_json(str(tmp_path / "gt" / geotoken.DECODING_FILE))
    assert len(chosen["validation"]) == len(geotoken.DECODINGS)
    best = max(row["mean"] for row in chosen["validation"])
    first = next(row for row in chosen["validation"] if row["mean"] == best)
    assert {k: chosen[k] for k in geotoken.DECODING_KEYS} == {
        k: first[k] for k in geotoken.DECODING_KEYS
    }
    model = methods.load_locator(str(tmp_path / "gt")).config.model
    assert {k: getattr(model, k) for k in geotoken.DECODING_KEYS} == {
        k: chosen[k] for k in geotoken.DECODING_KEYS
    }
    # its maps: the decoded cells' probabilities, renormalised, with their regions' areas
    width = model.beam_width if model.decode == "beam" else model.samples
    mapped = locator.predict(clusters.test_emb[:20], top_k=width, maps=True, map_resolution=2.0)
    np.testing.assert_allclose(mapped.top1, prediction.top1[:20], atol=1e-6)
    assert mapped.maps.shape == (20, 90, 180) and mapped.credible_km2.shape == (20, 2)
    np.testing.assert_allclose(mapped.maps.sum(axis=(1, 2)), 1.0)
    grid = shdd.latlon_grid(2.0)
    row, col = grid.cell_of(mapped.latlon)  # [20, width]: every decoded cell's map cell
    np.testing.assert_allclose(mapped.prob.sum(axis=1), 1.0)  # every decoded cell's share
    k = min(3, width)  # the same shares as without maps
    np.testing.assert_allclose(mapped.prob[:, :k], prediction.prob[:20, :k], rtol=1e-6)
    for i in range(20):  # all the mass on the answers' map cells, each at least its share
        on = np.zeros(grid.shape, bool)
        on[row[i], col[i]] = True
        assert mapped.maps[i][~on].sum() == 0
        assert np.all(mapped.maps[i][row[i], col[i]] >= mapped.prob[i] - 1e-9)
    largest = grid.area.max() * shdd.EARTH_RADIUS_KM**2  # km², a 2-degree cell at the equator
    assert np.all(mapped.credible_km2[:, 1] <= width * largest * (1 + 1e-6))
    out = calibration.coverage(locator, clusters.test_emb[:40], clusters.test_latlon[:40],
                               resolution_deg=2.0)  # fmt: skip
    assert out["coverage_90"] > 50  # the clusters were learnt: most truths in the answer's cell
    # the command line draws them under GeoToken's name, with their regions in the GeoJSON
    drawn = {}
    monkeypatch.setattr(export, "write_maps", lambda *a, title, **kw: drawn.update(title=title))
    points = tmp_path / "gt.geojson"
    args = ["predict", "--checkpoint", str(tmp_path / "gt"), "--data", clusters.test,
            "--no-progress", "--map", str(tmp_path / "maps"), "--geojson", str(points),
            "--map-resolution", "5"]  # fmt: skip
    assert cli.main(args) == 0 and drawn == {"title": "GeoToken"}
    kinds = {f["geometry"]["type"] for f in json.loads(points.read_text())["features"]}
    assert kinds == {"Point", "MultiPolygon"}


def test_cell_maps_put_each_cells_share_where_its_centre_is():
    latlon = np.array([[[10.5, 20.5], [10.6, 20.6], [-45.0, 170.0]],
                       [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]])  # fmt: skip
    prob = np.array([[0.2, 0.2, 0.1], [0.3, 0.0, 0.0]])  # repeats carry probability 0
    maps = geotoken.cell_maps(latlon, prob, resolution_deg=1.0)
    grid = shdd.latlon_grid(1.0)
    assert maps.shape == (2, *grid.shape)
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0)
    (r0, r1), (c0, c1) = grid.cell_of(latlon[0, :2])
    assert (r0, c0) == (r1, c1) and maps[0, r0, c0] == pytest.approx(0.8)  # one map cell
    r, c = grid.cell_of(latlon[0, 2])
    assert maps[0, r, c] == pytest.approx(0.2)
    r, c = grid.cell_of(latlon[1, 0])
    assert maps[1, r, c] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="positive probability"):
        geotoken.cell_maps(latlon, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\[N, W, 2\]"):
        geotoken.cell_maps(latlon[:, :2], prob)


def test_repeated_sequences_are_merged():
    seqs = np.array([[[0, 1], [0, 1], [2, 3], [0, 1]]])
    scores = np.array([[-1.0, -1.0, -2.0, -1.0]])
    merged, merged_scores = geotoken.distinct(seqs, scores)
    np.testing.assert_array_equal(merged[0], [[0, 1], [2, 3], [2, 3], [2, 3]])
    np.testing.assert_array_equal(merged_scores[0], [-1.0, -2.0, -np.inf, -np.inf])


def test_position_weights_and_bad_configs():
    np.testing.assert_allclose(geotoken.position_weights(11, 1.0), np.ones(11))
    w = geotoken.position_weights(11, 4.0)
    assert w.mean() == pytest.approx(1.0) and w[0] / w[-1] == pytest.approx(4.0)
    for bad, message in (
        ({"model.levels": 7}, "multiple of per_token"),
        ({"model.decode": "greedy"}, "decode one of"),
        ({"model.beam_width": 0}, "beam_width"),
        ({"model.width": 30, "model.heads": 4}, "multiple of heads"),
    ):
        with pytest.raises(ValueError, match=message):
            methods.assign(geotoken.Config(), **bad)


def test_geotoken_rag_reads_neighbours_that_are_never_the_row_itself(clusters, tmp_path):
    config = methods.assign(geotoken_rag.Config(), **SMALL, **{"model.neighbours": 3})
    memory = geotoken_rag.retrieval_memory(clusters.train, config)
    n = len(memory["unit"])
    near = memory["neighbours"]
    assert near.shape == (n, 3) and not (near == np.arange(n)[:, None]).any()
    train_rows, val_rows = validation_split(n, 0.1)
    assert np.isin(near, train_rows).all()  # validation rows are never retrieved
    assert np.all(np.diff(memory["similarity"], axis=1) <= 0)
    sims = normalise(memory["unit"]) @ normalise(memory["unit"])[train_rows].T
    sims[train_rows[None, :] == np.arange(n)[:, None]] = -np.inf  # not itself
    np.testing.assert_allclose(memory["similarity"][:, 0], sims.max(axis=1), atol=2e-3)
    locator = methods.train_method("geotoken-rag", clusters.train, str(tmp_path / "rag"),
                                   config=config, progress=False)  # fmt: skip
    assert locator.method == "geotoken-rag" and locator.gallery.unit.shape[0] == len(train_rows)
    error = shdd.haversine_km_np(locator.predict(clusters.test_emb).top1, clusters.test_latlon)
    assert np.mean(error < 1000) > 0.95, np.median(error)
    some = clusters.test_emb[:20]
    again = methods.load_locator(str(tmp_path / "rag")).predict(some, top_k=2).latlon
    np.testing.assert_allclose(again, locator.predict(some, top_k=2).latlon, atol=1e-6)


def test_geotoken_configs_keep_neighbours_apart():
    with pytest.raises(ValueError, match="geotoken-rag reads neighbours"):
        methods.assign(geotoken.Config(), **{"model.neighbours": 2})
    with pytest.raises(ValueError, match="neighbours >= 1"):
        methods.assign(geotoken_rag.Config(), **{"model.neighbours": 0})
    assert geotoken_rag.Config().model.neighbours == 15


def test_shares_renormalise_log_probabilities_without_underflow():
    scores = np.array([[-1000.0, -1000.0 - np.log(3.0), -np.inf], [-1.0, -2.0, -3.0]])
    out = geotoken.shares(scores)  # exp(-1000) is 0 in float64: shares from the largest
    np.testing.assert_allclose(out[0], [0.75, 0.25, 0.0])
    np.testing.assert_allclose(out[1], np.exp([-1.0, -2.0, -3.0]) / np.exp([-1, -2, -3.0]).sum())
    with pytest.raises(ValueError, match="finite log-probability"):
        geotoken.shares(np.full((1, 2), -np.inf))

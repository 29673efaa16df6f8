"""Location metadata: the shipped benchmarks, a user's own lists, bad files."""

import numpy as np
import pytest

from locdiff.data.readers import benchmark_file, read_benchmark, read_locations


def test_the_shipped_benchmark_metadata():
    im2gps3k = read_benchmark("im2gps3k")
    assert len(im2gps3k) == 2997 and im2gps3k.format == "geoestimation"
    np.testing.assert_allclose(im2gps3k.latlon[0], [32.325436, -64.764404])
    assert set(np.unique(im2gps3k.scene)) == {0, 1, 2}
    assert len(read_benchmark("im2gps")) == 237
    yfcc = read_benchmark("yfcc26k")
    assert len(yfcc) == 25600 and yfcc.ids[0] == "45/77/3228511372.jpg"
    cells = read_benchmark("mp16_cells")
    assert cells.format == "mp16_cells" and len(cells) == 3298
    assert cells.weights.sum() > 4e6  # photos over all cells
    with pytest.raises(ValueError, match="unknown benchmark"):
        read_benchmark("im2gps4k")


def test_a_users_own_copy_and_plain_csv_read_alike(tmp_path):
    """``path=`` reads the user's file; a gzip file and its plain text read the same."""
    import gzip
    import shutil

    plain = tmp_path / "im2gps.csv"
    with gzip.open(benchmark_file("im2gps"), "rb") as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    mine, shipped = read_benchmark("im2gps", path=str(plain)), read_benchmark("im2gps")
    np.testing.assert_array_equal(mine.latlon, shipped.latlon)
    np.testing.assert_array_equal(mine.ids, shipped.ids)


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

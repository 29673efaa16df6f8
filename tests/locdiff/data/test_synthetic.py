import os

import numpy as np

from locdiff import cli
from locdiff.data import datasets as data
from locdiff.data.synthetic import LocationFeatures, mp16_locations, write_synthetic
from shdd.sphere import haversine_km


def test_embeddings_have_spatial_structure_and_locations_follow_mp16():
    rng = np.random.default_rng(0)
    latlon = mp16_locations(4000, rng)
    assert np.all(np.abs(latlon[:, 0]) <= 90) and np.all(np.abs(latlon[:, 1]) <= 180)
    # MP16 is mostly Europe and North America: most points in the northern mid-latitudes.
    assert np.mean((latlon[:, 0] > 20) & (latlon[:, 0] < 65)) > 0.6
    features = LocationFeatures(64, seed=0)
    emb = features(latlon, rng)
    a, b = emb[:2000], emb[2000:]
    cos = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    km = haversine_km(latlon[:2000], latlon[2000:])
    assert cos[km < 300].mean() > cos[km > 5000].mean() + 0.3


def test_write_is_resumable_and_the_cli_writes_float16_shards(tmp_path, capsys):
    out = str(tmp_path / "syn")
    assert cli.main(["synthetic", out, "--rows", "1000", "--dim", "12", "--shard-rows", "400",
                     "--no-progress"]) == 0  # fmt: skip
    assert "1000 rows of 12-d float16 in 3 shards" in capsys.readouterr().out
    paths = sorted(os.listdir(out))
    assert paths == ["part_00000.npz", "part_00001.npz", "part_00002.npz"]
    with np.load(os.path.join(out, "part_00002.npz")) as f:
        assert f["embeddings"].shape == (200, 12) and f["embeddings"].dtype == np.float16
        last = f["embeddings"].copy()
    # A rerun keeps what exists and rewrites a lost shard identically (seeded per shard).
    os.remove(os.path.join(out, "part_00002.npz"))
    mtime = os.path.getmtime(os.path.join(out, "part_00000.npz"))
    write_synthetic(out, 1000, dim=12, shard_rows=400, progress=False)
    assert os.path.getmtime(os.path.join(out, "part_00000.npz")) == mtime
    with np.load(os.path.join(out, "part_00002.npz")) as f:
        np.testing.assert_array_equal(f["embeddings"], last)
    source = data.open_dataset(out, stream=True)
    assert len(source) == 1000 and source.encoder == "synthetic"

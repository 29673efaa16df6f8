import numpy as np
import pytest

from locdiff.data import datasets as data
from locdiff.data import splits
from locdiff.errors import DataError


@pytest.fixture
def arrays():
    return data.synthetic_clustered(50, embed_dim=4, seed=1)


def test_npz_file_and_directory_of_shards(tmp_path, arrays):
    emb, latlon = arrays
    data.save_npz(str(tmp_path / "a.npz"), emb[:20], latlon[:20])
    data.save_npz(str(tmp_path / "b.npz"), emb[20:], latlon[20:], ids=np.arange(30))
    whole = data.open_dataset(str(tmp_path))
    assert len(whole) == 50 and whole.embed_dim == 4
    np.testing.assert_array_equal(whole[25]["latlon"], latlon[25])
    assert len(data.open_dataset(str(tmp_path / "a.npz"))) == 20


def test_array_record_shards(tmp_path, arrays):
    emb, latlon = arrays
    (tmp_path / "ar").mkdir()
    data.write_array_record(str(tmp_path / "ar" / "0.arrayrecord"), emb[:30], latlon[:30])
    data.write_array_record(str(tmp_path / "ar" / "1.arrayrecord"), emb[30:], latlon[30:])
    source = data.open_dataset(str(tmp_path / "ar"))
    assert len(source) == 50 and source.embed_dim == 4
    np.testing.assert_array_equal(source[40]["embedding"], emb[40])


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda a: a.pop("latlon"), r"bad.npz: missing key 'latlon'"),
        (
            lambda a: a.update(latlon=a["latlon"][:, :1]),
            r"bad.npz: 'latlon' must have shape \[N, 2\]",
        ),
        (lambda a: a["embeddings"].__setitem__((7, 2), np.nan), "bad.npz: row 7 has a NaN"),
        (lambda a: a["latlon"].__setitem__((11, 0), -91.0), r"bad.npz: row 11 has latitude -91.0"),
        (
            lambda a: a.update(embeddings=a["embeddings"][0]),
            r"'embeddings' must have shape \[N, E\]",
        ),
    ],
)
def test_bad_files_are_reported_with_name_and_row(tmp_path, arrays, change, match):
    emb, latlon = arrays
    contents = {"embeddings": emb.copy(), "latlon": latlon.copy()}
    change(contents)
    np.savez(tmp_path / "bad.npz", **contents)
    with pytest.raises(data.DataError, match=match):
        data.open_dataset(str(tmp_path / "bad.npz"))


def test_missing_and_mismatched(tmp_path, arrays):
    emb, latlon = arrays
    with pytest.raises(data.DataError, match="no such file"):
        data.open_dataset(str(tmp_path / "nope.npz"))
    data.save_npz(str(tmp_path / "a.npz"), emb, latlon)
    data.save_npz(str(tmp_path / "b.npz"), emb[:, :3], latlon)
    with pytest.raises(data.DataError, match="different embedding widths"):
        data.open_dataset(str(tmp_path))
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(data.DataError, match="junk.npz: cannot be read"):
        data.load_npz(str(tmp_path / "junk.npz"))


def _batches(source, n, **kw):
    it = iter(data.make_pipeline(source, **kw))
    return [next(it) for _ in range(n)]


def test_pipeline_is_deterministic_reshuffles_and_shards(arrays):
    source = data.InMemorySource(*arrays)
    a = _batches(source, 6, batch_size=10, seed=3)
    b = _batches(source, 6, batch_size=10, seed=3)
    c = _batches(source, 6, batch_size=10, seed=4)
    assert all(np.array_equal(x["latlon"], y["latlon"]) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0]["latlon"], c[0]["latlon"])
    epoch1 = np.concatenate([x["latlon"] for x in a[:5]])
    epoch2 = np.concatenate([x["latlon"] for x in _batches(source, 10, batch_size=10, seed=3)[5:]])
    assert not np.array_equal(epoch1, epoch2)  # a new order each epoch ...
    np.testing.assert_array_equal(np.sort(epoch1[:, 0]), np.sort(epoch2[:, 0]))  # ... same rows
    shards = [
        np.concatenate(
            [
                x["latlon"]
                for x in _batches(source, 5, batch_size=5, seed=0, process_index=i, process_count=2)
            ]
        )
        for i in range(2)
    ]
    together = np.concatenate(shards)
    assert len(np.unique(together[:, 0])) == len(together)  # the processes see disjoint rows


def test_a_data_file_may_carry_a_far_validation_set(tmp_path, arrays):
    emb, latlon = arrays
    plain = str(tmp_path / "plain.npz")
    data.save_npz(plain, emb, latlon)
    assert splits.far_validation_set(plain) is None
    both = str(tmp_path / "far.npz")
    data.save_npz(both, emb[:40], latlon[:40], far_embeddings=emb[40:], far_latlon=latlon[40:])
    far_emb, far_latlon = splits.far_validation_set(both)
    np.testing.assert_array_equal(far_emb, emb[40:])
    np.testing.assert_allclose(far_latlon, latlon[40:], atol=1e-5)
    assert len(data.open_dataset(both)) == 40  # not rows of the data
    bad = str(tmp_path / "bad.npz")
    data.save_npz(bad, emb, latlon, far_embeddings=emb[:5], far_latlon=latlon[:4])
    with pytest.raises(DataError, match="far_embeddings"):
        splits.far_validation_set(bad)

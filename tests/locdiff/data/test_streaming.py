"""Streamed ``.npz`` shards: the same rows as in memory, bounded resident memory, checks."""

import os

import numpy as np
import pytest

from locdiff.data import datasets as data
from locdiff.data.streaming import ShardedSource, npz_member
from locdiff.errors import DataError


@pytest.fixture
def shards(tmp_path):
    emb, latlon = data.synthetic_clustered(300, embed_dim=6, seed=2)
    folder = tmp_path / "shards"
    folder.mkdir()
    for i, (a, b) in enumerate([(0, 120), (120, 121), (121, 300)]):  # one of a single row
        data.save_npz(str(folder / f"part_{i}.npz"), emb[a:b], latlon[a:b], dtype=np.float16,
                      ids=np.arange(a, b), encoder=np.array("tiny"))  # fmt: skip
    return str(folder), emb, latlon


def test_rows_match_the_stored_arrays_in_any_order_across_shards(shards):
    folder, emb, latlon = shards
    source = data.open_dataset(folder, stream=True)
    assert isinstance(source, ShardedSource)
    assert len(source) == 300 and source.embed_dim == 6 and source.dtype == np.float16
    assert source.encoder == "tiny"
    rows = np.random.default_rng(0).permutation(300)[:77]
    rows[:3] = [120, 0, 299]  # the one-row shard and both ends
    batch = source.take(rows)
    assert batch["embedding"].dtype == np.float16 and batch["latlon"].dtype == np.float32
    np.testing.assert_array_equal(batch["embedding"], emb[rows].astype(np.float16))
    np.testing.assert_array_equal(batch["latlon"], latlon[rows])
    np.testing.assert_array_equal(source[121]["latlon"], latlon[121])
    # In memory (the default below STREAM_BYTES): the same values, as float32.
    held = data.open_dataset(folder)
    assert isinstance(held, data.InMemorySource)
    np.testing.assert_array_equal(
        held.take(rows)["embedding"], batch["embedding"].astype(np.float32)
    )
    with pytest.raises(IndexError):
        source.take(np.array([300]))
    # Every row's location, without the embeddings, from either source.
    for opened in (source, held):
        np.testing.assert_array_equal(data.locations(opened), latlon.astype(np.float32))


def test_member_offsets_are_those_numpy_reads(tmp_path):
    path = str(tmp_path / "x.npz")
    arrays = {
        "embeddings": np.arange(12, dtype=np.float32).reshape(3, 4),
        "latlon": np.ones((3, 2)),
    }
    np.savez(path, **arrays)
    for key, want in arrays.items():
        dtype, shape, offset = npz_member(path, key)
        got = np.fromfile(path, dtype, int(np.prod(shape)), offset=offset).reshape(shape)
        np.testing.assert_array_equal(got, want)


def test_compressed_missing_and_bad_rows_are_refused_by_name(tmp_path):
    emb, latlon = data.synthetic_clustered(20, embed_dim=3, seed=0)
    np.savez_compressed(str(tmp_path / "zipped.npz"), embeddings=emb, latlon=latlon)
    with pytest.raises(DataError, match="zipped.npz: 'embeddings' is compressed"):
        ShardedSource([str(tmp_path / "zipped.npz")])
    np.savez(str(tmp_path / "nolatlon.npz"), embeddings=emb)
    with pytest.raises(DataError, match="nolatlon.npz: missing key 'latlon'"):
        ShardedSource([str(tmp_path / "nolatlon.npz")])
    emb[13, 1] = np.nan
    np.savez(str(tmp_path / "nan.npz"), embeddings=emb, latlon=latlon)
    with pytest.raises(DataError, match="nan.npz: row 13 has a NaN"):
        ShardedSource([str(tmp_path / "nan.npz")])


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux /proc")
def test_resident_memory_does_not_grow_with_the_rows_read(tmp_path):
    """Reading every row of a 48 MB shard, 256 random rows at a time, leaves the
    process's resident set where it was (a memory map would have added the file)."""
    n, dim = 32_768, 768
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(n, dim)).astype(np.float16)
    latlon = np.stack([rng.uniform(-80, 80, n), rng.uniform(-180, 180, n)], -1)
    path = str(tmp_path / "big.npz")
    data.save_npz(path, emb, latlon, dtype=np.float16)
    source = ShardedSource([path])
    del emb  # the reference copy: 48 MB of the test's own
    reference = np.load(path)["embeddings"]
    source.take(np.arange(256))  # first-call allocations
    before = _rss_kb()
    for rows in np.array_split(rng.permutation(n), n // 256):
        np.testing.assert_array_equal(source.take(rows)["embedding"], reference[rows])
    grown = _rss_kb() - before
    assert grown < 8 << 10, f"resident memory grew by {grown} kB reading a 48 MB shard"

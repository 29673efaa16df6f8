"""The device mesh's helpers: data on the devices without a whole host copy."""

import numpy as np

from locdiff.data import datasets as data
from locdiff.training import sharding


def test_replicate_blocks_fills_the_devices_one_block_at_a_time():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(1000, 6)).astype(np.float16)
    latlon = rng.uniform(-60, 60, size=(1000, 2)).astype(np.float32)
    source = data.InMemorySource(emb, latlon)
    calls = []

    def take(start, stop):
        calls.append(stop - start)
        return source.take(np.arange(start, stop))

    table = sharding.replicate_blocks(len(source), take, sharding.make_mesh(), block=300)
    assert calls == [300, 300, 300, 100]  # never more than a block on the host
    np.testing.assert_array_equal(np.asarray(table["embedding"]), emb)
    np.testing.assert_array_equal(np.asarray(table["latlon"]), latlon)
    assert table["embedding"].dtype == np.float16  # the stored dtype, on the device
    assert table["embedding"].sharding.is_fully_replicated

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


EIGHT_DEVICES = """
import json
import numpy as np
from locdiff.training import sharding
rng = np.random.default_rng(0)
rows = {"embedding": rng.normal(size=(1000, 6)).astype(np.float16),
        "latlon": rng.uniform(-60, 60, size=(1000, 2)).astype(np.float32)}
take = lambda a, b: {k: v[a:b] for k, v in rows.items()}
table = sharding.replicate_blocks(1000, take, sharding.make_mesh(), block=300)
shards = [s for v in table.values() for s in v.addressable_shards]
same = all(np.array_equal(np.asarray(s.data), rows[k]) for k, v in table.items()
           for s in v.addressable_shards)
print(json.dumps({"devices": len({s.device for s in shards}), "same": same}))
"""


def test_replicate_blocks_puts_the_whole_set_on_each_of_8_devices(subprocess_env):
    import json
    import subprocess
    import sys

    flags = subprocess_env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    result = subprocess.run(
        [sys.executable, "-c", EIGHT_DEVICES], capture_output=True, text=True,
        env={**subprocess_env, "XLA_FLAGS": flags}, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"devices": 8, "same": True}

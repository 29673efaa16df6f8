"""Retrieval over a gallery of MP16 size: queries/s and the memory a batch of queries takes.

    python -m benchmarks.bench_retrieval [--gallery 100000] [--queries 3000] [--dim 512]

A random gallery of ``--gallery`` unit embeddings (the size of GeoCLIP's 100K MP16 GPS
gallery) and ``--queries`` queries; the locator normalises its gallery once, and scores
queries in chunks of at most ``locdiff.infer.neighbours.MAX_SCORES`` similarities. The
peak of the memory allocated during prediction (numpy allocations, ``tracemalloc``) is
printed beside the size of the full ``[queries, gallery]`` similarity matrix that an
unchunked search would hold.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from locdiff.infer.neighbours import MAX_SCORES
from locdiff.methods.configs import RetrievalConfig
from locdiff.methods.retrieval import RetrievalLocator


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gallery", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--dim", type=int, default=512)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((args.gallery, args.dim), dtype=np.float32)
    latlon = np.stack([rng.uniform(-90, 90, args.gallery), rng.uniform(-180, 180, args.gallery)], 1)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    start = time.perf_counter()
    locator = RetrievalLocator(gallery, latlon, RetrievalConfig())
    setup_s = time.perf_counter() - start
    locator.predict(queries[:10])  # warm up
    tracemalloc.start()
    start = time.perf_counter()
    prediction = locator.predict(queries, top_k=1)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full = args.queries * args.gallery * 4
    print(
        f"gallery {args.gallery} x {args.dim}: normalised once in {setup_s:.2f} s; "
        f"{args.queries} queries in {seconds:.2f} s ({args.queries / seconds:.0f} queries/s); "
        f"peak {peak / 2**20:.0f} MiB during prediction (chunks of <= {MAX_SCORES} scores, "
        f"{MAX_SCORES * 4 / 2**20:.0f} MiB), against {full / 2**20:.0f} MiB for the whole "
        f"similarity matrix; {prediction.latlon.shape[0]} answers"
    )


if __name__ == "__main__":
    main()

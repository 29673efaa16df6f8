"""Retrieval: nearest neighbour, densest of the top k, chunked over a large gallery."""

import numpy as np
import pytest

import shdd
from locdiff.data import datasets as data
from locdiff.infer import neighbours
from locdiff.methods import retrieval
from locdiff.methods.configs import RetrievalConfig


def test_retrieval_top1_and_densest_cluster():
    emb, latlon = data.synthetic_clustered(400, n_clusters=5, embed_dim=16, noise=0.05, seed=3)
    pred = retrieval.retrieval(emb[:50], emb[50:], latlon[50:], k=1)
    error = shdd.haversine_km_np(pred, latlon[:50])
    assert np.median(error) < 300  # the right cluster (100 km spread)
    dense = retrieval.retrieval(emb[:50], emb[50:], latlon[50:], k=16, radius_km=250)
    assert np.median(shdd.haversine_km_np(dense, latlon[:50])) < np.median(error)
    # an exact copy of a gallery row retrieves its own location
    np.testing.assert_allclose(
        retrieval.retrieval(emb[60:61], emb[50:], latlon[50:]), latlon[60:61]
    )
    with pytest.raises(ValueError, match="width"):
        retrieval.retrieval(emb[:2, :3], emb, latlon)


def test_chunked_search_is_exact_and_the_gallery_is_normalised_once(rng):
    gallery = rng.normal(size=(1000, 12)).astype(np.float32)
    query = rng.normal(size=(37, 12)).astype(np.float32)
    q, g = neighbours.normalise(query), neighbours.normalise(gallery)
    whole = np.argmax(q @ g.T, axis=1)
    chunked = neighbours.search(q, g, k=1, max_scores=3000)  # 3 queries at a time
    np.testing.assert_array_equal(chunked[:, 0], whole)
    top5 = neighbours.search(q, g, k=5, max_scores=3000)
    np.testing.assert_array_equal(np.sort(top5, 1), np.sort(np.argsort(-(q @ g.T), 1)[:, :5], 1))
    locator = retrieval.RetrievalLocator(gallery * 7.0, np.zeros((1000, 2)), RetrievalConfig())
    np.testing.assert_allclose(np.linalg.norm(locator.gallery_unit, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(locator.neighbours(query, 1)[:, 0], whole)

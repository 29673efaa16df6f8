"""LocDiff-H: the one implementation of the hybrid, and its rule chosen on validation."""

import numpy as np
import pytest

from locdiff import data
from locdiff.hybrid import Gallery, Rule, choose_rule, densities, locdiff_h, rerank
from locdiff.inference import Geolocator
from locdiff.prediction import Prediction


def test_rerank_trades_similarity_for_density():
    sim = np.array([[0.9, 0.8, 0.1]])
    density = np.array([[1e-3, 1.0, 2.0]])
    assert rerank(sim, density, 0.0)[0] == 0  # weight 0: retrieval
    assert rerank(sim, density, 0.1)[0] == 1  # a little density: the likelier neighbour
    assert rerank(sim, density, 10.0)[0] == 2  # much density: the likeliest candidate
    negative = np.array([[-5.0, -1.0, 0.5]])  # negative values count as off the map
    assert rerank(np.zeros((1, 3)), negative, 1.0)[0] == 2


def test_locdiff_h_answers_a_candidate_and_keeps_the_rest(tiny_locdiff, clusters):
    geo = Geolocator.from_checkpoint(tiny_locdiff)
    train = data.load_npz(clusters.train)
    gallery = Gallery.of(train["embeddings"], train["latlon"])
    query = clusters.test_emb[:6]
    out = geo.predict(query, top_k=2)
    retrieval = locdiff_h(out, query, gallery, L=8, rule=Rule(candidates=1, weight=1.0))
    nearest = np.argmax(gallery.unit @ (query / np.linalg.norm(query, axis=1)[:, None]).T, 0)
    np.testing.assert_allclose(retrieval.latlon[:, 0], gallery.latlon[nearest])
    hybrid = locdiff_h(out, query, gallery, L=8, rule=Rule(candidates=32, weight=1e6))
    np.testing.assert_array_equal(hybrid.latlon[:, 1], out.latlon[:, 1])  # others unchanged
    np.testing.assert_array_equal(hybrid.coeffs, out.coeffs)
    for i in range(6):  # with a huge weight: the densest of the 32 most similar
        sims = gallery.unit @ (query[i] / np.linalg.norm(query[i]))
        top = np.argsort(-sims)[:32]
        dens = densities(out[i : i + 1], gallery.latlon[top][None], L=8)[0]
        chosen = np.flatnonzero((gallery.latlon[top] == hybrid.latlon[i, 0]).all(1))
        assert len(chosen) and dens[chosen[0]] >= dens.max() * (1 - 1e-5)


def test_choose_rule_takes_the_rule_closest_to_retrieval_within_one_se(tiny_locdiff, clusters):
    geo = Geolocator.from_checkpoint(tiny_locdiff)
    train = data.load_npz(clusters.train)
    gallery = Gallery.of(train["embeddings"][:800], train["latlon"][:800])
    query, truth = train["embeddings"][800:], train["latlon"][800:].astype(np.float64)
    rule, rows = choose_rule(geo.predict(query, top_k=1), query, truth, gallery, L=8)
    best = max(r["mean_acc"] for r in rows)
    key = (rule.weight, rule.candidates)
    chosen = next(r for r in rows if (r["weight"], r["candidates"]) == key)
    assert chosen["mean_acc"] >= best - chosen["se"]
    closer = [r for r in rows if (r["weight"], r["candidates"]) < key]
    assert all(r["mean_acc"] < best - r["se"] for r in closer)  # none of them within 1 SE
    retrieval = next(r for r in rows if r["weight"] == 0)
    best_row = next(r for r in rows if r["mean_acc"] == best)
    assert best_row["se"] == 0 and retrieval["candidates"] == 1
    # the prior is used here: on these clusters it beats retrieval by more than the noise
    assert rule.weight > 0 and chosen["mean_acc"] > retrieval["mean_acc"] + retrieval["se"]


def test_needs_coefficients_and_a_proper_gallery():
    bare = Prediction(latlon=np.zeros((2, 1, 2)))
    gallery = Gallery.of(np.ones((3, 4)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="coefficients"):
        locdiff_h(bare, np.ones((2, 4)), gallery, L=4)
    with pytest.raises(ValueError, match=r"embeddings \[G, E\] and locations \[G, 2\]"):
        Gallery.of(np.ones((3, 4)), np.zeros((3,)))
    with pytest.raises(ValueError, match="candidates >= 1"):
        Rule(candidates=0)

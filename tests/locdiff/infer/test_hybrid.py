"""LocDiff-H: the one implementation of the hybrid, and its rule chosen on validation."""

import numpy as np
import pytest

from locdiff.data import datasets as data
from locdiff.evaluation import metrics
from locdiff.infer.geolocator import Geolocator
from locdiff.infer.hybrid import Gallery, Rule, answer, choose_rule, densities, locdiff_h, rerank
from locdiff.infer.neighbours import normalise
from locdiff.infer.prediction import Prediction


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


def test_trust_keeps_locdiffs_answer_unless_a_candidate_is_nearly_as_probable():
    prediction = Prediction(latlon=np.array([[[10.0, 20.0]], [[30.0, 40.0]]]))
    latlon = np.array([[[0.0, 0.0]], [[1.0, 1.0]]])
    sim = np.ones((2, 1))
    density = np.array([[0.5, 1.0], [0.95, 1.0]])  # candidate's, then at LocDiff's answer
    out = answer(prediction, latlon, sim, density, Rule(1, 0.0, trust=0.9))
    np.testing.assert_array_equal(out, [[10.0, 20.0], [1.0, 1.0]])
    negative = np.array([[-0.1, 1.0], [-0.1, 1.0]])
    always = answer(prediction, latlon, sim, negative, Rule(1, 0.0, trust=0.0))
    np.testing.assert_array_equal(always, latlon[:, 0])  # trust 0: retrieval's candidate
    for d in (density, negative, np.array([[0.5, -1.0], [0.5, 0.0]])):
        never = answer(prediction, latlon, sim, d, Rule(1, 0.0, trust=float("inf")))
        np.testing.assert_array_equal(never, prediction.top1)  # trust inf: LocDiff
    # where LocDiff's own density is not positive, any candidate of positive density is
    # at least as probable
    off_map = np.array([[0.5, -1.0], [-0.2, 0.0]])
    out = answer(prediction, latlon, sim, off_map, Rule(1, 0.0, trust=0.5))
    np.testing.assert_array_equal(out, [[0.0, 0.0], [30.0, 40.0]])
    gated = Rule(1, 0.0, trust=float("inf"), gate=5.0)  # confident answers: the candidate
    out = answer(prediction, latlon, sim, density, gated, spread=np.array([6.0, 4.0]))
    np.testing.assert_array_equal(out, [[10.0, 20.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="spreads"):
        answer(prediction, latlon, sim, density, gated)
    assert Rule.from_dict(Rule(4, 0.1, float("inf")).to_dict()) == Rule(4, 0.1, float("inf"))
    assert Rule(4, 0.1, float("inf")).to_dict()["trust"] == "inf"  # JSON-safe


def test_choose_rule_is_not_worse_than_either_parent_on_either_part(tiny_locdiff, clusters):
    """Queries of a cluster the gallery lacks (far) are answered right by LocDiff and
    wrong by every gallery candidate: rules that always answer a candidate are refused,
    and the chosen rule is within one SE of the better parent on both parts."""
    geo = Geolocator.from_checkpoint(tiny_locdiff)
    train = data.load_npz(clusters.train)
    emb, latlon = train["embeddings"], train["latlon"].astype(np.float64)
    row0 = np.repeat(latlon[:1], len(latlon), 0)
    missing = metrics.distances_km(latlon, row0) < 1000  # row 0's cluster
    gallery = Gallery.of(emb[:800][~missing[:800]], latlon[:800][~missing[:800]])
    query, truth, far = emb[800:], latlon[800:], missing[800:]
    assert 5 < far.sum() < len(far) - 5
    prediction = geo.predict(query, top_k=1)
    rule, rows = choose_rule(prediction, query, truth, gallery, L=8, far=far)
    by_rule = {Rule.from_dict({k: r[k] for k in ("candidates", "weight", "trust", "gate")}): r
               for r in rows}  # fmt: skip
    chosen = by_rule[rule]
    assert chosen["shortfall"] >= 0 and rule.trust > 0
    retrieval = by_rule[Rule(1, 0.0, 0.0)]
    assert retrieval["shortfall"] < 0  # retrieval alone fails the far queries
    assert all(r["shortfall"] < 0 for r in rows if r["trust"] == 0)
    # on every part and at every threshold within one SE of the better parent
    for part in ("random", "far"):
        assert len(chosen[f"vs_parents_{part}"]) == len(metrics.THRESHOLDS_KM)
    admissible = [r for r in rows if r["shortfall"] >= 0]
    best = max(admissible, key=lambda r: r["mean_acc"])
    if chosen is not best:  # an admissible parent kept: the best rule's gain is not clear
        assert chosen["candidates"] == 1 and chosen["weight"] == 0
        assert best["gain_over_parent"] <= best["se_gain_over_parent"]
        parents = [r for r in admissible if r["candidates"] == 1 and r["weight"] == 0]
        assert chosen["mean_acc"] == max(r["mean_acc"] for r in parents if r["gate"] is None)
    # Independently of the table: on each part and at each threshold, the chosen rule's
    # hits are within one SE of the better parent's (retrieval: the nearest gallery row)
    top1 = locdiff_h(prediction, query, gallery, L=8, rule=rule).top1
    nearest = gallery.latlon[np.argmax(gallery.unit @ normalise(query).T, axis=0)]
    for sel in (far, ~far):
        mine = metrics.distances_km(top1[sel], truth[sel])
        parents = [metrics.distances_km(a[sel], truth[sel]) for a in (nearest, prediction.top1)]
        for t in metrics.THRESHOLDS_KM:
            hits = [100.0 * (d <= t) for d in parents]
            better = max(hits, key=np.mean)
            diff = 100.0 * (mine <= t) - better
            assert diff.mean() >= -diff.std() / np.sqrt(sel.sum()) - 1e-9, (t, diff.mean())
    km = metrics.distances_km(top1[far], truth[far])
    mine = metrics.distances_km(prediction.top1[far], truth[far])
    assert np.mean(km <= 2500) >= np.mean(mine <= 2500) - 0.1


def test_needs_coefficients_and_a_proper_gallery():
    bare = Prediction(latlon=np.zeros((2, 1, 2)))
    gallery = Gallery.of(np.ones((3, 4)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="coefficients"):
        locdiff_h(bare, np.ones((2, 4)), gallery, L=4)
    with pytest.raises(ValueError, match=r"embeddings \[G, E\] and locations \[G, 2\]"):
        Gallery.of(np.ones((3, 4)), np.zeros((3,)))
    with pytest.raises(ValueError, match="candidates >= 1"):
        Rule(candidates=0)
    with pytest.raises(ValueError, match="trust >= 0"):
        Rule(trust=float("nan"))


def test_densities_and_spreads_are_the_same_in_chunks(monkeypatch):
    """Large query sets are evaluated in chunks of bounded memory, with the same values."""
    from locdiff.infer import calibration, hybrid, map_rules
    from locdiff.infer.prediction import Prediction

    rng = np.random.default_rng(0)
    coeffs = rng.standard_normal((7, 3, 25)).astype(np.float32)  # L = 4
    prediction = Prediction(np.zeros((7, 1, 2)), coeffs=coeffs)
    points = np.c_[rng.uniform(-80, 80, 7 * 5), rng.uniform(-180, 180, 7 * 5)].reshape(7, 5, 2)
    whole = hybrid.densities(prediction, points, L=4)
    spreads = calibration.spread_km2(coeffs.mean(axis=1), L=4)
    monkeypatch.setattr(hybrid, "MAX_HARMONICS", 2 * 5 * 25)  # two queries a chunk
    monkeypatch.setattr(map_rules, "SPREAD_CHUNK", 3)  # where spread_km2 reads it
    np.testing.assert_allclose(hybrid.densities(prediction, points, L=4), whole, rtol=1e-6)
    np.testing.assert_allclose(calibration.spread_km2(coeffs.mean(axis=1), L=4), spreads)


def test_a_rule_replaces_its_parent_only_for_a_clear_gain():
    from locdiff.infer.hybrid import _gain

    parts = {"random": np.arange(100) < 50, "far": np.arange(100) >= 50}
    parent = np.zeros((100, 5))
    hits = parent.copy()
    hits[:10] = 100.0  # ten random queries right at every threshold, the rest alike
    gain, se = _gain(hits, parent, parts)
    # the random part gains 20 points (variance 1600 / 50 queries), the far part none
    assert gain == pytest.approx(10.0) and se == pytest.approx(np.sqrt(1600 / 50) / 2)
    assert gain > se
    hits, parent = np.zeros((100, 5)), np.zeros((100, 5))
    hits[:3], parent[3:5] = 100.0, 100.0  # three queries won, two lost: not clear
    gain, se = _gain(hits, parent, parts)
    assert gain == pytest.approx(1.0) and se == pytest.approx(np.sqrt((10000 / 10 - 4) / 50) / 2)
    assert gain <= se

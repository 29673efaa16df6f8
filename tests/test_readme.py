"""The README's and docs/results.md's result blocks say what the result files say (no
figure typed by hand)."""

import json
import os

import numpy as np

from experiments import readme


def test_result_blocks_match_the_result_files():
    names = []
    for document in readme.DOCUMENTS:
        with open(os.path.join(readme.ROOT, document)) as f:
            text = f.read()
        names += [match.group(2) for match in readme.BLOCK.finditer(text)]
        assert readme.render(text) == text, f"{document}: run `python -m experiments.readme`"
    assert sorted(names) == sorted(readme.WRITERS)  # each writer's block once, none orphan


def _write(root, name, payload):
    os.makedirs(root / name, exist_ok=True)
    with open(root / name / f"{name}.json", "w") as f:
        json.dump(payload, f)


def _parents(ok: bool, **where):
    row = {"method": "locdiff-h", "n": 100, "ok": ok, **where}
    for t in ("1", "25", "200", "750", "2500"):
        row |= {f"acc_{t}km": 0.0, f"se_acc_{t}km": 0.5, f"parent_acc_{t}km": "retrieval"}
    if not ok:
        row |= {"acc_25km": -2.0, "se_acc_25km": 0.5}
    return row


def test_shortfalls_lists_exactly_the_targets_the_results_miss(tmp_path):
    coverage = [
        {"gallery": "100%", "noise": 0.1, "test": "im2gps3k", "subset": "all", "n": 10,
         "coverage_50": 50.0, "coverage_90": 90.0},
        {"gallery": "100%", "noise": 0.1, "test": "land", "subset": "far", "n": 10,
         "coverage_50": 20.0, "coverage_90": 85.0},
        {"gallery": "100%", "noise": 0.2, "test": "im2gps3k", "subset": "all", "n": 10,
         "coverage_50": 30.0, "coverage_90": 86.0},
    ]  # fmt: skip
    b = {
        "parents": [
            _parents(True, gallery="100%", noise=0.1, test="land", subset="all"),
            _parents(False, gallery="100%", noise=0.1, test="im2gps3k", subset="all"),
            _parents(False, gallery="10%", noise=0.1, test="land", subset="all"),  # not shown
        ],
        "coverage": coverage,
        "paired": [],
    }
    calibration = [  # Blue Marble: in distribution on the random split, far on the buffered
        {"split": "random", "encoder": "efficientnet-lite0", "coverage_50": 50.0,
         "coverage_90": 96.0},
        {"split": "buffered", "encoder": "efficientnet-lite0", "coverage_50": 60.0,
         "coverage_90": 85.0},
        {"split": "buffered", "encoder": "color-stats", "coverage_50": 0.0,
         "coverage_90": 0.0},  # not the headline encoder: not checked
    ]  # fmt: skip
    a = {
        "parents": [_parents(True, split="random", encoder="efficientnet-lite0")],
        "calibration": calibration,
    }
    _write(tmp_path, "oracle_mp16", b)
    _write(tmp_path, "bluemarble", a)
    lines = readme.shortfalls(str(tmp_path)).splitlines()
    assert len(lines) == 3, lines
    assert "Im2GPS3k (all, noise 0.1)" in lines[0] and "-2.0 ± 0.5 within 25 km" in lines[0]
    assert "20.0 / 85.0% of setting B's land (far" in lines[1]  # 50% below its 40% floor
    assert "50.0 / 96.0% of Blue Marble's random split; target 45-55 / 85-95%" in lines[2]
    b["parents"], b["coverage"] = b["parents"][:1], coverage[:1]
    a["calibration"] = calibration[1:]
    _write(tmp_path, "oracle_mp16", b)
    _write(tmp_path, "bluemarble", a)
    assert readme.shortfalls(str(tmp_path)) == "- none of the checked targets is missed\n"
    # ablation runs stopped by their cap (a run shared by two rows is counted once)
    run = {"steps": 100, "setting": "L=16", "run": "model.L=16", "stopped_early": False}
    rows = [run, run | {"setting": "L=32", "run": "base", "stopped_early": True}]
    rows += [rows[1] | {"setting": "K=4", "stopped_early": False}]  # named by its first row
    os.makedirs(tmp_path / "ablations")
    with open(tmp_path / "ablations" / "ablations.json", "w") as f:
        json.dump({"rows": rows}, f)
    (line,) = readme.shortfalls(str(tmp_path)).splitlines()
    assert line == (
        "- 1 of 2 runs of `ablations` stopped at their cap, not on their validation loss: L=16"
    )


def test_the_readmes_python_tour_runs(tiny_locdiff, clusters):
    """The README's "Predict from Python" snippet, on a tiny LocDiff run."""
    import re

    import matplotlib.figure

    with open(os.path.join(readme.ROOT, "README.md")) as f:
        text = f.read()
    tour = text[text.index("**Predict from Python.**") :]
    code = re.search(r"```python\n(.*?)```", tour, re.S).group(1)
    assert '"runs/my-run"' in code
    scope = {"embeddings": clusters.test_emb[:3]}
    exec(code.replace('"runs/my-run"', repr(tiny_locdiff)), scope)  # noqa: S102
    out = scope["out"]
    assert out.latlon.shape == (3, 5, 2) and out.maps.shape == (3, 180, 360)
    assert out.doubt_km.shape == (3,) and np.all(out.doubt_km >= 0)
    assert isinstance(scope["fig"], matplotlib.figure.Figure)

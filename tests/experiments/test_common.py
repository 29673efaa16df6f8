"""The reports' shared formatting."""

from experiments import common


def test_accuracy_cells_give_a_bound_where_the_bootstrap_cannot():
    assert common.accuracy_cell(33.4, 0.84, 2997) == "33.4 ± 0.8"
    # 0 of 36: no bootstrap spread; the exact one-sided 95% bound 1 - 0.05**(1/36).
    assert common.accuracy_cell(0.0, 0.0, 36) == "0.0 (≤ 8.0)"
    assert common.accuracy_cell(100.0, 0.0, 36) == "100.0 (≥ 92.0)"
    # Rounded outwards: 0 of 2,000 is below 0.15%, shown as at most 0.2.
    assert common.accuracy_cell(0.0, 0.0, 2000) == "0.0 (≤ 0.2)"
    assert common.accuracy_cell(12.5, None, 8) == "12.5"
    row = {"method": "x", "n": 36, "acc_25km": 0.0, "se_acc_25km": 0.0, "median_km": 5.0}
    row |= {"geoscore": 1.0}
    assert "0.0 (≤ 8.0)" in common.table([row], ["method"], ("acc_25km",))


def test_command_line_names_default_places_by_leaving_them_out(tmp_path, monkeypatch):
    shared = tmp_path / "shared_cache"
    shared.mkdir()
    checkout = tmp_path / "checkout"
    (checkout / "experiments").mkdir(parents=True)
    (checkout / "experiments" / "cache").symlink_to(shared)  # a worktree's linked cache
    monkeypatch.chdir(checkout)
    argv = ["-m", "experiments.doubt", "--cache", str(shared), "--no-progress",
            f"--out={checkout}/experiments/results/doubt"]  # fmt: skip
    assert common.command_line("doubt", argv) == "python -m experiments.doubt --no-progress"
    # elsewhere in the checkout: relative; outside it: as given
    argv = ["-m", "experiments.ablations", "--out", str(checkout / "experiments/results/far"),
            "--cache", "/somewhere/else"]  # fmt: skip
    assert common.command_line("ablations", argv) == (
        "python -m experiments.ablations --out experiments/results/far --cache /somewhere/else"
    )
    # a flag without its value stays as it was
    assert common.command_line("doubt", ["-m", "x", "--out"]) == "python -m x --out"


def test_budget_table_names_the_decoding_a_token_run_chose():
    import dataclasses
    from types import SimpleNamespace

    from locdiff.methods.configs import GeoTokenConfig

    model = GeoTokenConfig().model
    beam = SimpleNamespace(config=SimpleNamespace(model=model))
    sample = dataclasses.replace(model, decode="sample", samples=16, temperature=0.7)
    assert common.decoding(beam) == {"decoding": f"beam {model.beam_width}"}
    assert common.decoding(SimpleNamespace(config=SimpleNamespace(model=sample))) == {
        "decoding": "16 samples at T 0.7"
    }
    assert common.decoding(SimpleNamespace(config=SimpleNamespace())) == {}  # no decoder
    run = {"steps": 10, "best_step": 5, "epochs": 1.0, "samples_seen": 2560,
           "stopped_early": True, "train_s": 3.0}  # fmt: skip
    rows = [{"method": "cells"} | run, {"method": "geotoken"} | run | common.decoding(beam)]
    table = common.budget_table(rows, ["method"]).splitlines()
    assert table[0].endswith("| decoding |")
    assert table[2].endswith("| 3 | — |") and table[3].endswith(f"| beam {model.beam_width} |")
    assert "decoding" not in common.budget_table(rows[:1], ["method"])

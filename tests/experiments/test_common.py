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

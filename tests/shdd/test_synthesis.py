import numpy as np
import pytest

import shdd
from shdd import reference


@pytest.mark.parametrize("L, res", [(8, 10.0), (20, 5.0), (40, 2.0), (60, 6.0)])
def test_separable_synthesis_matches_dense_evaluation(x64, rng, L, res):
    # (60, 6.0) has 60 columns <= 2L: orders are folded onto their aliases, still exact.
    coeffs = rng.normal(size=(2, (L + 1) ** 2))
    grid = shdd.latlon_grid(res)
    fast = np.asarray(shdd.synthesize(coeffs, grid, L=L))
    dense = np.asarray(shdd.evaluate(coeffs[:, None, None, :], grid.latlon()[None], L=L))
    assert fast.shape == (2, *grid.shape)
    np.testing.assert_allclose(fast, dense, atol=1e-10)


def test_matches_ducc0(x64, rng):
    pytest.importorskip("ducc0")
    L = 30
    coeffs = rng.normal(size=(L + 1) ** 2)
    grid = shdd.latlon_grid(2.5)
    ours = np.asarray(shdd.synthesize(coeffs, grid, L=L))
    theirs = reference.synthesis_ducc(coeffs, L, *grid.shape)
    np.testing.assert_allclose(ours, theirs, atol=1e-10)


def test_grid_areas_and_cells():
    grid = shdd.latlon_grid(0.5)
    assert grid.shape == (360, 720)
    assert grid.area.sum() * grid.lon.size == pytest.approx(4 * np.pi)
    row, col = grid.cell_of(np.array([[89.9, -179.9], [-89.9, 179.9], [0.1, 0.1]]))
    np.testing.assert_array_equal(row, [0, 359, 179])
    np.testing.assert_array_equal(col, [0, 719, 360])
    with pytest.raises(ValueError, match="divide 180"):
        shdd.latlon_grid(0.7)


def test_fibonacci_lattice_is_nearly_equal_area():
    points = shdd.fibonacci_lattice(2000)
    assert points.shape == (2000, 2)
    # equal area: about half of the points in the northern hemisphere, a tenth above 53.13 N
    assert np.mean(points[:, 0] > 0) == pytest.approx(0.5, abs=1e-3)
    assert np.mean(np.sin(np.deg2rad(points[:, 0])) > 0.8) == pytest.approx(0.1, abs=2e-3)

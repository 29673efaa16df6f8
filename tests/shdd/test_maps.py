import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shdd


@pytest.mark.parametrize("L, res", [(8, 5.0), (32, 1.0), (64, 0.5)])
def test_map_is_a_distribution_whose_densest_cell_holds_the_point(rng, L, res, sphere_points):
    points = sphere_points(60)
    pmap = np.asarray(shdd.probability_map(shdd.encode(points, L=L), L=L, resolution_deg=res))
    grid = shdd.latlon_grid(res)
    assert pmap.shape == (len(points), *grid.shape)
    assert np.all(pmap >= 0)
    np.testing.assert_allclose(pmap.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    density = pmap / grid.area[None, :, None]
    best = np.unravel_index(density.reshape(len(points), -1).argmax(-1), grid.shape)
    best_value = density[np.arange(len(points)), best[0], best[1]]
    # The densest cell is the one whose centre is nearest the point, which is the cell
    # that contains it (at a pole: any cell of the polar row, all touch the pole).
    # A point on a cell edge belongs to the cells on both sides.
    own_value = np.zeros(len(points))
    for shift in ([0, 0], [1e-9, 0], [-1e-9, 0], [0, 1e-9], [0, -1e-9]):
        nudged = points + shift
        nudged[:, 0] = np.clip(nudged[:, 0], -90, 90)
        row, col = grid.cell_of(nudged)
        own_value = np.maximum(own_value, density[np.arange(len(points)), row, col])
    polar = np.abs(points[:, 0]) > 90 - res
    assert np.all(polar | (own_value >= best_value * (1 - 1e-5)))
    assert np.all(best[0][polar] == np.where(points[polar, 0] > 0, 0, grid.lat.size - 1))


def test_mixture_map_is_the_mixture_of_maps(x64, rng):
    # Where f > 0 the positive rule is linear: well-separated deltas average exactly.
    L, res = 24, 2.0
    a, b = np.array([40.0, -100.0]), np.array([-30.0, 140.0])
    mean = (shdd.encode(a, L=L) + shdd.encode(b, L=L)) / 2
    pmap = np.asarray(shdd.probability_map(mean, L=L, resolution_deg=res))
    grid = shdd.latlon_grid(res)
    near_a = shdd.haversine_km_np(grid.latlon(), a) < 2000
    near_b = shdd.haversine_km_np(grid.latlon(), b) < 2000
    assert pmap[near_a].sum() == pytest.approx(pmap[near_b].sum(), rel=1e-3)


def test_uniform_when_nothing_is_positive():
    negative_constant = np.zeros(25)
    negative_constant[0] = -1.0  # f = -1/sqrt(4 pi) everywhere
    pmap = np.asarray(shdd.probability_map(negative_constant, L=4, resolution_deg=10.0))
    grid = shdd.latlon_grid(10.0)
    np.testing.assert_allclose(
        pmap, np.broadcast_to(grid.area[:, None] / (4 * np.pi), grid.shape), rtol=1e-5
    )


def test_softmax_rule_is_positive_everywhere():
    pmap = np.asarray(
        shdd.probability_map(
            shdd.encode(np.zeros(2), L=8), L=8, resolution_deg=5.0, rule="softmax", temperature=0.2
        )
    )
    assert np.all(pmap > 0)
    assert pmap.sum() == pytest.approx(1.0, rel=1e-5)


def test_power_sharpens_and_floor_adds_tails():
    coeffs = shdd.encode(np.array([10.0, 20.0]), L=16)
    grid = shdd.latlon_grid(2.0)
    plain = np.asarray(shdd.probability_map(coeffs, L=16, resolution_deg=2.0))
    same = shdd.probability_map(coeffs, L=16, resolution_deg=2.0, power=1.0, floor=0.0)
    np.testing.assert_array_equal(plain, np.asarray(same))
    sharp = np.asarray(shdd.probability_map(coeffs, L=16, resolution_deg=2.0, power=8.0))
    assert sharp.max() > 2 * plain.max() and sharp.sum() == pytest.approx(1.0, rel=1e-5)
    # The same cells, in the same order of density: only their weights change.
    assert np.argmax(sharp) == np.argmax(plain)
    areas = np.asarray(shdd.credible_area_km2(np.stack([plain, sharp]), resolution_deg=2.0))
    assert np.all(areas[1] < areas[0])
    tails = np.asarray(
        shdd.probability_map(coeffs, L=16, resolution_deg=2.0, power=8.0, floor=1e-3)
    )
    far = shdd.haversine_km_np(grid.latlon(), np.array([10.0, 20.0])) > 5000
    assert np.all(tails[far] > 0) and tails[far].sum() > sharp[far].sum()
    with pytest.raises(ValueError, match="power > 0 and floor >= 0"):
        shdd.probability_map(coeffs, L=16, power=0.0)


def test_kl_is_zero_on_itself_and_grows_with_distance():
    L = 16
    origin = shdd.encode(np.array([0.0, 0.0]), L=L)
    # within the main lobe (half-width 7.5 degrees at L=16); beyond it a side lobe of q
    # may sit on the peak of p, and the KL is not monotone in the distance
    others = shdd.encode(np.array([[0.0, 0.0], [0.0, 2.0], [0.0, 5.0], [0.0, 10.0]]), L=L)
    kl = np.asarray(shdd.kl_divergence(origin, others, L=L))
    assert kl.shape == (4,)
    assert abs(kl[0]) < 1e-6
    assert np.all(np.diff(kl) > 0)
    for rule in ("positive", "softmax"):
        assert float(shdd.kl_divergence(origin, others[2], L=L, rule=rule)) > 0


def test_kl_gradient_matches_finite_differences(x64, rng):
    L = 8
    p = shdd.encode(np.array([10.0, 20.0]), L=L)
    q = p + 0.05 * rng.normal(size=p.shape)
    kl = lambda q: shdd.kl_divergence(p, q, L=L)
    grad = np.asarray(jax.grad(kl)(q))
    direction = rng.normal(size=q.shape)
    h = 1e-6
    fd = (kl(q + h * direction) - kl(q - h * direction)) / (2 * h)
    assert float(jnp.dot(grad, direction)) == pytest.approx(float(fd), rel=1e-5)


def test_kl_under_jit():
    L = 8
    p = shdd.encode(np.array([10.0, 20.0], np.float32), L=L)
    value = jax.jit(lambda a, b: shdd.kl_divergence(a, b, L=L))(p, p * 0.5)
    assert np.isfinite(float(value))


def test_bad_inputs():
    c = np.zeros(25)
    with pytest.raises(ValueError, match=r"coeffs must have shape \[..., \(L\+1\)\*\*2\]"):
        shdd.probability_map(c, L=5)
    with pytest.raises(ValueError, match="divide 180"):
        shdd.probability_map(c, L=4, resolution_deg=0.7)
    with pytest.raises(ValueError, match="rule"):
        shdd.probability_map(c, L=4, rule="relu")
    with pytest.raises(ValueError, match="q_coeffs"):
        shdd.kl_divergence(c, np.zeros(16), L=4)
    with pytest.raises(ValueError, match="finite"):
        shdd.probability_map(np.full(25, np.nan), L=4)


def test_credible_level_is_uniform_for_points_drawn_from_the_map(rng):
    """Calibration's identity: a map covers a share a of points drawn from itself."""
    L, res = 8, 5.0
    coeffs = shdd.encode(np.array([30.0, -40.0]), L=L, sigma_km=1500.0)
    pmap = np.asarray(shdd.probability_map(coeffs, L=L, resolution_deg=res), np.float64)
    grid = shdd.latlon_grid(res)
    centres = grid.latlon().reshape(-1, 2)
    per_cell = shdd.credible_level(  # the level of each cell's centre, under this map
        np.broadcast_to(pmap, (len(centres), *grid.shape)), centres, resolution_deg=res
    )
    draws = rng.choice(pmap.size, 50000, p=pmap.ravel() / pmap.sum())  # cells, by mass
    levels = per_cell[draws]
    for a in (0.1, 0.5, 0.9):
        # a, plus at most the mass of the one cell that crosses the level
        assert a - 0.01 < np.mean(levels < a) < a + pmap.max() + 0.01


def test_credible_level_marks_the_cells_of_the_credible_region():
    """The cells whose centres have level < a are the region whose area
    ``credible_area_km2`` reports."""
    L, res = 6, 10.0
    coeffs = shdd.encode(np.array([[10.0, 100.0], [-60.0, 0.0]]), L=L).mean(axis=0)
    pmap = np.asarray(shdd.probability_map(coeffs, L=L, resolution_deg=res), np.float64)
    grid = shdd.latlon_grid(res)
    centres = grid.latlon().reshape(-1, 2)
    levels = shdd.credible_level(
        np.broadcast_to(pmap, (len(centres), *grid.shape)), centres, resolution_deg=res
    ).reshape(grid.shape)
    areas = np.broadcast_to(grid.area[:, None], grid.shape) * shdd.EARTH_RADIUS_KM**2
    for a in (0.5, 0.9):
        area = float(shdd.credible_area_km2(pmap, resolution_deg=res, levels=(a,))[0])
        assert areas[levels < a].sum() == pytest.approx(area, rel=1e-4)
    # cell_levels gives every cell's level at once: the same as credible_level's.
    np.testing.assert_allclose(shdd.cell_levels(pmap, resolution_deg=res), levels, atol=1e-12)
    with pytest.raises(ValueError, match=r"latlon must be \[1, 2\]"):
        shdd.credible_level(pmap[None], np.zeros((2, 2)), resolution_deg=res)


def test_credible_area_is_the_stable_highest_density_region(rng):
    """Against a plain reference: cells by decreasing density, equal densities in the
    grid's order, accumulated until the cell that crosses the level (counted whole), on
    maps with many cells of equal density (where the order among them matters) and
    without."""
    res = 10.0
    grid = shdd.latlon_grid(res)
    area = np.repeat(grid.area, grid.shape[1])
    dens = rng.integers(0, 4, size=(7, area.size)).astype(np.float64)  # ties, and zeros
    dens[3:6] = rng.random((3, area.size))  # no ties
    dens[6] = 10.0 ** rng.uniform(-40, 0, area.size)  # beyond the log-density bins' span
    pmap = dens * area
    pmap /= pmap.sum(axis=1, keepdims=True)
    got = shdd.credible_area_km2(pmap.reshape(7, *grid.shape), resolution_deg=res)
    density = pmap / area  # as the maps' own: equal within a row, where areas are
    assert (np.diff(np.sort(density[:3]), axis=1) == 0).sum() > 100
    for i in range(7):
        order = sorted(range(area.size), key=lambda c: (-density[i, c], c))
        for j, level in enumerate((0.5, 0.9)):
            mass, region = 0.0, 0.0
            for c in order:
                mass, region = mass + pmap[i, c], region + area[c]
                if mass >= level:
                    break
            assert got[i, j] == pytest.approx(region * shdd.EARTH_RADIUS_KM**2, rel=1e-9)

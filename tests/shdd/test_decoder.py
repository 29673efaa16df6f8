import jax
import numpy as np
import pytest

import shdd
from shdd import decoder, synthesis


@pytest.mark.parametrize("L, n", [(8, 2000), (32, 2000), (100, 400)])
def test_round_trip_within_a_tenth_of_a_km(rng, L, n, sphere_points):
    points = sphere_points(n)  # includes both poles and the antimeridian
    latlon, mass = shdd.decode(shdd.encode(points.astype(np.float32), L=L), L=L)
    assert latlon.shape == (len(points), 1, 2) and mass.shape == (len(points), 1)
    error_km = shdd.haversine_km_np(np.asarray(latlon[:, 0], np.float64), points)
    assert error_km.max() < 0.1, points[error_km.argmax()]
    assert np.all((np.asarray(mass) > 0) & (np.asarray(mass) <= 1))


def test_round_trip_float64(x64, rng, sphere_points):
    points = sphere_points(300)
    latlon, _ = shdd.decode(shdd.encode(points, L=48), L=48)
    error_km = shdd.haversine_km_np(np.asarray(latlon[:, 0]), points)
    assert error_km.max() < 1e-3


def test_smoothed_delta_round_trip(rng, sphere_points):
    points = sphere_points(200)
    coeffs = shdd.encode(points, L=32, sigma_km=200.0)
    latlon, _ = shdd.decode(coeffs, L=32)
    assert shdd.haversine_km_np(np.asarray(latlon[:, 0], np.float64), points).max() < 0.1


def test_bimodal_mixture_gives_both_modes_with_their_weights(x64):
    L = 32
    a, b = np.array([48.85, 2.35]), np.array([-33.87, 151.21])
    coeffs = 0.7 * shdd.encode(a, L=L) + 0.3 * shdd.encode(b, L=L)
    latlon, mass = shdd.decode(coeffs, L=L, k=3)
    latlon, mass = np.asarray(latlon), np.asarray(mass)
    # The other component's side lobes tilt each peak by about a km: the modes are the
    # maxima of the mixture, so f there is at least f at the components' centres and
    # its gradient vanishes.
    tilt_km = 0.05 * shdd.kernel_width_km(L)
    assert shdd.haversine_km_np(latlon[0], a) < tilt_km
    assert shdd.haversine_km_np(latlon[1], b) < tilt_km
    f = lambda x: shdd.evaluate(coeffs, x, L=L)
    assert f(latlon[0]) >= f(a) and f(latlon[1]) >= f(b)
    c_cos, c_sin = synthesis.square_coeffs(coeffs, L)
    _, grad, lap, _ = decoder._value_grad_laplacian(c_cos, c_sin, latlon[:2], L)
    step_km = np.linalg.norm(grad, axis=-1) / np.abs(lap / 2) * shdd.EARTH_RADIUS_KM
    assert np.all(step_km < 1e-3)  # a Newton step from the mode moves it by under a metre
    # each mode's disc also holds a little of the other's tails: the ratio is 0.7/0.3 to 1%
    assert mass[0] / mass[1] == pytest.approx(0.7 / 0.3, rel=1e-2)
    assert mass.sum() <= 1 + 1e-9 and mass[2] < mass[1]


def test_batched_shapes_and_sorted_values(rng, sphere_points):
    L = 12
    points = sphere_points(5)[:6].reshape(2, 3, 2)
    coeffs = shdd.encode(points, L=L) + 0.02 * rng.normal(size=(2, 3, (L + 1) ** 2))
    latlon, mass = shdd.decode(coeffs.astype(np.float32), L=L, k=4)
    assert latlon.shape == (2, 3, 4, 2) and mass.shape == (2, 3, 4)
    values = np.asarray(shdd.evaluate(coeffs[..., None, :], np.asarray(latlon), L=L))
    assert np.all(np.diff(values, axis=-1) <= 1e-4)  # sorted by the value of f
    assert np.all(np.asarray(mass).sum(-1) <= 1 + 1e-6)
    assert np.all(np.abs(np.asarray(latlon)[..., 1]) <= 180)


def test_refinement_gradient_matches_autodiff(x64, rng):
    L = 20
    coeffs = rng.normal(size=(L + 1) ** 2)
    x = np.array([[35.0, 139.0], [-89.0, 10.0], [0.0, -179.5]])
    c_cos, c_sin = synthesis.square_coeffs(coeffs, L)
    f, grad, lap, _ = decoder._value_grad_laplacian(c_cos, c_sin, x, L)
    np.testing.assert_allclose(f, shdd.evaluate(coeffs, x, L=L), atol=1e-10)
    auto = np.asarray(jax.vmap(jax.grad(lambda p: shdd.evaluate(coeffs, p, L=L)))(x))
    auto = np.rad2deg(auto)  # per radian
    auto[:, 1] /= np.cos(np.deg2rad(x[:, 0]))
    np.testing.assert_allclose(grad, auto, rtol=1e-8, atol=1e-8)
    l, _ = shdd.degree_order(L)
    np.testing.assert_allclose(lap, shdd.evaluate(-l * (l + 1) * coeffs, x, L=L), atol=1e-8)


def test_bad_inputs():
    with pytest.raises(ValueError, match="k must be"):
        shdd.decode(np.zeros(16), L=3, k=0)
    with pytest.raises(ValueError, match=r"\[..., 16\]"):
        shdd.decode(np.zeros(17), L=3)
    with pytest.raises(ValueError, match="L must be"):
        shdd.decode(np.zeros(1), L=0)

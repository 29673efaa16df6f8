import jax
import numpy as np
import pytest

import shdd


def test_truncated_delta_is_the_harmonics(x64, rng, sphere_points):
    x = sphere_points(10)
    np.testing.assert_array_equal(shdd.encode(x, L=12), shdd.harmonics(x, L=12))


@pytest.mark.parametrize("sigma_km", [None, 300.0])
def test_encoded_function_is_the_kernel_profile(x64, rng, sigma_km, sphere_points):
    # f(x) = sum_k e_k(x0) Y_k(x) depends only on the angle between x and x0 (addition theorem).
    L = 30
    x0 = sphere_points(5)
    x = sphere_points(5)
    f = np.asarray(shdd.evaluate(shdd.encode(x0, L=L, sigma_km=sigma_km), x, L=L))
    gamma = shdd.haversine_km_np(x0, x) / shdd.EARTH_RADIUS_KM
    np.testing.assert_allclose(f, shdd.kernel_profile(gamma, L=L, sigma_km=sigma_km), atol=1e-10)
    assert shdd.kernel_profile(0.0, L=L, sigma_km=sigma_km) == pytest.approx(
        shdd.delta_peak(L, sigma_km)
    )


def test_delta_integrates_to_one(x64):
    # f integrates to sqrt(4 pi) * c_00 = 1 over the unit sphere.
    e = shdd.encode(np.array([12.0, 34.0]), L=8)
    assert float(e[0]) * np.sqrt(4 * np.pi) == pytest.approx(1.0)


@pytest.mark.parametrize("L, hwhm_km", [(10, 1287), (50, 277), (100, 140), (400, 35)])
def test_kernel_widths_match_the_design_notes(L, hwhm_km):
    assert shdd.kernel_width_km(L) == pytest.approx(hwhm_km, rel=0.01)


def test_truncated_kernel_rings_and_heat_kernel_does_not():
    gamma = np.linspace(0, np.pi, 4001)
    truncated = shdd.kernel_profile(gamma, L=20)
    assert truncated.min() / truncated.max() == pytest.approx(-0.13, abs=0.03)  # first side lobe
    # sigma = 1500 km makes w_20 = 1e-5: the truncation no longer rings
    smooth = shdd.kernel_profile(gamma, L=20, sigma_km=1500.0)
    assert smooth.min() > -1e-5 * smooth.max()
    assert np.all(np.diff(smooth) <= 1e-5 * smooth.max())  # monotone in the angle


def test_heat_kernel_width_follows_sigma():
    # A spherical Gaussian of width sigma has HWHM sqrt(2 ln 2) sigma when L is large enough.
    assert shdd.kernel_width_km(200, 100.0) == pytest.approx(np.sqrt(2 * np.log(2)) * 100, rel=0.02)
    assert shdd.kernel_width_km(16, 800.0) > shdd.kernel_width_km(16)


def test_degree_weights():
    w = shdd.degree_weights(5, 1000.0)
    sigma = 1000.0 / shdd.EARTH_RADIUS_KM
    l = np.arange(6)
    np.testing.assert_allclose(w, np.exp(-l * (l + 1) * sigma**2 / 2))
    assert shdd.coefficient_weights(5, 1000.0).shape == (36,)
    with pytest.raises(ValueError, match="sigma_km"):
        shdd.encode(np.zeros(2), L=4, sigma_km=-1.0)


def test_encode_is_differentiable_and_jittable():
    f = jax.jit(lambda x: shdd.encode(x, L=8).sum())
    g = jax.grad(f)(np.array([10.0, 20.0], np.float32))
    assert np.all(np.isfinite(np.asarray(g)))

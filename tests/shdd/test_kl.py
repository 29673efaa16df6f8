"""The fast SHDD-KL from a delta (``shdd.delta_kl_divergence``) against the grid one.

The reference is ``shdd.kl_divergence`` on the same pair of vectors: on a grid four times
finer than its default (where it has converged) the two must agree to 1e-3 in value and
gradient; on its default grid they differ by that grid's own discretisation error.

Estimates are random vectors and what a trained x0-predictor converges to: the
posterior mean of the encoded training locations given a noisy ``x_t`` (the ideal
denoiser of a finite training set), at times spread over ``(0, 1)``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shdd
from locdiff.model import diffusion

SCALE = np.sqrt(4 * np.pi)  # the diffusion's scaling of SHDD vectors


def _targets(rng, L, sigma_km, n):
    pool = np.stack([rng.uniform(-70, 75, 400), rng.uniform(-180, 180, 400)], -1)
    latlon = pool[rng.choice(len(pool), n, replace=False)]
    return pool, latlon, np.asarray(shdd.encode(latlon, L=L, sigma_km=sigma_km))


def _ideal_estimates(rng, pool, p, L, sigma_km):
    """``E[x0 | x_t]`` over the encoded ``pool`` for ``x_t`` drawn around each ``p``."""
    e = np.asarray(shdd.encode(pool, L=L, sigma_km=sigma_km)) * SCALE  # [P, D]
    t = np.linspace(0.02, 0.98, len(p))
    alpha, sigma = (np.asarray(v) for v in diffusion.alpha_sigma(jnp.asarray(t)))
    x_t = alpha[:, None] * p * SCALE + sigma[:, None] * rng.normal(size=p.shape)
    return diffusion.ideal_x0(x_t, t, e) / SCALE


def _value_and_grad(fn, q):
    value, grad = jax.value_and_grad(lambda c: jnp.mean(fn(c)))(jnp.asarray(q))
    return float(value), np.asarray(grad)


CASES = [(16, None, 12), (24, 700.0, 12), (32, None, 8), (32, 700.0, 8), (64, None, 4)]


@pytest.mark.parametrize("L, sigma_km, n", CASES)
@pytest.mark.parametrize("estimate", ["random", "trained"])
def test_agrees_with_the_grid_kl_where_the_grid_has_converged(x64, rng, L, sigma_km, n, estimate):
    pool, _, p = _targets(rng, L, sigma_km, n)
    if estimate == "random":
        q = rng.normal(size=p.shape) / SCALE
    else:
        q = _ideal_estimates(rng, pool, p, L, sigma_km)
    fine = shdd.default_resolution(L) / 4
    kl, grad = _value_and_grad(lambda c: shdd.kl_divergence(p, c, L=L, resolution_deg=fine), q)
    fast, fast_grad = _value_and_grad(
        lambda c: shdd.delta_kl_divergence(p, c, L=L, sigma_km=sigma_km), q
    )
    assert fast == pytest.approx(kl, rel=1e-3)
    assert np.linalg.norm(fast_grad - grad) < 1e-3 * np.linalg.norm(grad)
    # On the default grid the reference moves by its own discretisation error, and the
    # fast value sits where the converged grid does.
    coarse = float(jnp.mean(shdd.kl_divergence(p, q, L=L)))
    assert abs(fast - coarse) <= 1.1 * abs(kl - coarse) + 1e-4 * abs(kl)


def test_is_zero_with_no_gradient_at_the_target(x64, rng):
    L, sigma_km = 24, 700.0
    _, _, p = _targets(rng, L, sigma_km, 8)
    value, grad = _value_and_grad(
        lambda c: shdd.delta_kl_divergence(p, c, L=L, sigma_km=sigma_km), p
    )
    q = p + 0.05 * rng.normal(size=p.shape) / SCALE
    _, moved = _value_and_grad(lambda c: shdd.delta_kl_divergence(p, c, L=L, sigma_km=sigma_km), q)
    assert abs(value) < 1e-6
    assert np.linalg.norm(grad) < 1e-3 * np.linalg.norm(moved)


def test_against_the_uniform_map_it_is_the_targets_entropy_gap(x64):
    """``q = 0`` is the uniform density: ``KL = int p log p + log(4 pi)``, and the grid
    reference gives the same on a fine grid."""
    L = 16
    p = np.asarray(shdd.encode(np.array([[35.0, 139.0]]), L=L))
    fast = float(shdd.delta_kl_divergence(p, np.zeros_like(p), L=L)[0])
    terms = shdd.target_terms(L)
    assert fast == pytest.approx(terms.neg_entropy + np.log(4 * np.pi), rel=1e-10)
    fine = float(shdd.kl_divergence(p[0], np.zeros(p.shape[1]), L=L, resolution_deg=0.5)[()])
    assert fast == pytest.approx(fine, rel=1e-4)
    assert terms.response[0] == pytest.approx(1.0, abs=1e-12)


def test_float32_under_jit_matches_float64(rng):
    L, sigma_km = 24, 700.0
    _, latlon, _ = _targets(rng, L, sigma_km, 16)
    p32 = shdd.encode(latlon.astype(np.float32), L=L, sigma_km=sigma_km)
    q32 = p32 * 0.7 + 0.02 * jnp.asarray(rng.normal(size=p32.shape), jnp.float32)
    fn = jax.jit(lambda a, b: shdd.delta_kl_divergence(a, b, L=L, sigma_km=sigma_km))
    value32 = np.asarray(fn(p32, q32))
    assert value32.dtype == np.float32
    with jax.enable_x64(True):
        value64 = np.asarray(
            shdd.delta_kl_divergence(
                np.asarray(p32, np.float64), np.asarray(q32, np.float64), L=L, sigma_km=sigma_km
            )
        )
    np.testing.assert_allclose(value32, value64, rtol=1e-3, atol=1e-5)


def test_quadrature_grows_with_the_targets_sharpness():
    smooth = shdd.quadrature_size(24, 700.0)
    sharp = shdd.quadrature_size(24, None)
    assert sharp[0] > smooth[0]
    for L, sigma_km in ((24, 700.0), (24, None), (32, 700.0)):  # exact for q Y_k
        n_lat, n_lon = shdd.quadrature_size(L, sigma_km)
        need = max(shdd.target_terms(L, sigma_km).bandwidth, shdd.kl.ROUGH_BANDWIDTH * L) + L
        assert n_lon % 2 == 0 and n_lon >= need + 1 and 2 * n_lat >= n_lon
    # The truncated delta's softmax is far sharper than the smoothed one's.
    assert shdd.target_terms(24, None).bandwidth > 2 * shdd.target_terms(24, 700.0).bandwidth


def test_bad_inputs():
    p = np.zeros((2, 25))
    with pytest.raises(ValueError, match="q_coeffs"):
        shdd.delta_kl_divergence(p, np.zeros((2, 16)), L=4)
    with pytest.raises(ValueError, match="one shape"):
        shdd.delta_kl_divergence(p, np.zeros((3, 25)), L=4)
    with pytest.raises(ValueError, match="temperature"):
        shdd.delta_kl_divergence(p, p, L=4, temperature=0.0)

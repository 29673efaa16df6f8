import jax
import jax.numpy as jnp
import numpy as np
import pytest

import shdd
from locdiff.model import diffusion


def test_cosine_schedule_identities():
    t = jnp.linspace(0, 1, 1001)
    alpha, sigma = diffusion.alpha_sigma(t)
    np.testing.assert_allclose(alpha**2 + sigma**2, 1.0, atol=1e-6)
    assert float(alpha[0]) == pytest.approx(1.0) and float(sigma[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(alpha[-1]) == pytest.approx(1e-4, rel=1e-3)
    assert np.all(np.diff(np.asarray(alpha)) < 0)  # signal falls monotonically
    # the log signal-to-noise ratio is finite and decreasing on (0, 1]
    logsnr = np.log(np.asarray(alpha[1:]) ** 2 / np.asarray(sigma[1:]) ** 2)
    assert np.all(np.isfinite(logsnr)) and np.all(np.diff(logsnr) < 0)


def test_sample_time(key):
    t = diffusion.sample_time(key, 10_000)
    assert float(t.min()) > 0 and float(t.max()) <= 1
    ti = diffusion.sample_time(key, 10_000, timesteps=1000)
    np.testing.assert_allclose(np.asarray(ti) * 1000, np.round(np.asarray(ti) * 1000), atol=1e-3)


@pytest.mark.parametrize("prediction", ["x0", "eps", "v"])
def test_targets_convert_back(key, prediction):
    k1, k2, k3 = jax.random.split(key, 3)
    x0 = jax.random.normal(k1, (16, 9))
    eps = jax.random.normal(k2, (16, 9))
    t = jax.random.uniform(k3, (16,), minval=0.05, maxval=0.95)
    x_t = diffusion.q_sample(x0, t, eps)
    x0_hat, eps_hat = diffusion.to_x0_eps(
        prediction, diffusion.target(prediction, x0, eps, t), x_t, t
    )
    np.testing.assert_allclose(x0_hat, x0, atol=1e-4)
    np.testing.assert_allclose(eps_hat, eps, atol=1e-4)


def _oracle(x0, prediction):
    """A 'network' that knows the answer: the exact target given x_t."""

    def model_fn(x_t, t, conditional):
        alpha, sigma = diffusion.alpha_sigma(t)
        eps = (x_t - alpha[:, None] * x0) / sigma[:, None]
        return diffusion.target(prediction, x0, eps, t)

    return model_fn


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
@pytest.mark.parametrize("prediction", ["x0", "eps", "v"])
def test_sampler_recovers_a_point_mass_with_the_exact_network(key, sampler, prediction):
    L = 16
    points = np.array([[48.85, 2.35], [-33.9, 151.2], [89.0, 10.0]], np.float32)
    x0 = shdd.encode(points, L=L) * np.sqrt(4 * np.pi)
    out = diffusion.sample(
        _oracle(x0, prediction), key, x0.shape, steps=25, prediction=prediction, sampler=sampler
    )
    tolerance = 1e-5 if prediction == "x0" else 2e-2  # eps/v divide by alpha near t = 1
    np.testing.assert_allclose(out, x0, atol=tolerance * float(jnp.abs(x0).max()))
    latlon, _ = shdd.decode(out / np.sqrt(4 * np.pi), L=L)
    assert shdd.haversine_km_np(np.asarray(latlon[:, 0], np.float64), points).max() < 1.0


def test_guidance_combines_conditional_and_null_outputs(key):
    x0 = jnp.ones((2, 4))

    def model_fn(x_t, t, conditional):
        return x0 if conditional else jnp.zeros_like(x0)

    plain = diffusion.sample(model_fn, key, x0.shape, steps=5)
    guided = diffusion.sample(model_fn, key, x0.shape, steps=5, guidance=3.0)
    np.testing.assert_allclose(plain, x0, atol=1e-6)
    np.testing.assert_allclose(guided, 3.0 * x0, atol=1e-5)  # null + 3 (cond - null)

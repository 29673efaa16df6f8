import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from locdiff.config import ModelConfig
from locdiff.model.csunet import CSUNet, count_parameters, sine, timestep_embedding


def _model(**kw):
    config = ModelConfig(**{"L": 4, "hidden": 32, "depth": 2, "film_dim": 16, "time_dim": 8, **kw})
    return CSUNet(config, cond_dim=6, rngs=nnx.Rngs(0)), config


def _linear(n_in, n_out, bias=True):
    return n_in * n_out + (n_out if bias else 0)


def test_shapes_and_parameter_count():
    model, config = _model()
    D, E, C, T = 25, 16, 6, 8
    out = model(jnp.zeros((3, D)), jnp.full((3,), 0.5), jnp.ones((3, C)))
    assert out.shape == (3, D)
    w = [32, 16, 8]
    expected = (
        C  # null condition
        + _linear(C + T, E)
        + _linear(E, E)  # condition/time embedding
        + _linear(D, w[0])
        + _linear(w[0], D)  # input and output projections
        # down blocks: linear, FiLM, residual projection (widths change)
        + sum(
            _linear(w[i], w[i + 1]) + _linear(E, 2 * w[i + 1]) + _linear(w[i], w[i + 1], False)
            for i in range(2)
        )
        + _linear(w[2], w[2])
        + _linear(E, 2 * w[2])  # bottleneck, identity residual
        # up blocks take [h, skip] of width 2 w[i+1] = w[i]: identity residual
        + sum(_linear(2 * w[i + 1], w[i]) + _linear(E, 2 * w[i]) for i in range(2))
    )
    assert count_parameters(model) == expected


def test_siren_initialisation_bounds():
    model, config = _model(w0=2.0)
    first = np.asarray(model.input.kernel[...])
    assert np.abs(first).max() <= 1 / 25 and np.abs(first).max() > 0.8 / 25
    later = np.asarray(model.down[0].linear.kernel[...])
    bound = np.sqrt(6 / 32) / 2.0
    assert np.abs(later).max() <= bound and np.abs(later).max() > 0.8 * bound


def test_film_starts_at_zero_so_the_condition_enters_through_training():
    model, _ = _model()
    x = jax.random.normal(jax.random.key(0), (2, 25))
    t = jnp.array([0.3, 0.3])
    a = model(x, t, jnp.zeros((2, 6)))
    b = model(x, t, jnp.ones((2, 6)) * 5)
    np.testing.assert_allclose(a, b, atol=1e-6)
    # after perturbing a FiLM layer, the condition matters
    model.down[0].film.kernel[...] = jnp.ones_like(model.down[0].film.kernel[...]) * 0.1
    assert not np.allclose(model(x, t, jnp.zeros((2, 6))), model(x, t, jnp.ones((2, 6)) * 5))


def test_null_condition_and_dropout():
    model, _ = _model(dropout=0.5)
    model.down[0].film.kernel[...] = jnp.ones_like(model.down[0].film.kernel[...]) * 0.1
    x = jax.random.normal(jax.random.key(0), (2, 25))
    t = jnp.array([0.3, 0.7])
    drop = jnp.array([True, True])
    a = model(x, t, jnp.zeros((2, 6)), drop=drop)
    b = model(x, t, jnp.ones((2, 6)) * 3, drop=drop)
    np.testing.assert_allclose(a, b, atol=1e-6)  # the condition is replaced by the null one
    np.testing.assert_array_equal(
        model(x, t, b[:, :6]), model(x, t, b[:, :6])
    )  # no key: deterministic
    assert not np.allclose(
        model(x, t, b[:, :6], dropout_key=jax.random.key(1)),
        model(x, t, b[:, :6], dropout_key=jax.random.key(2)),
    )


def test_deeper_condition_path_adds_hidden_layers_and_uses_the_condition():
    base, _ = _model()
    deep, _ = _model(cond_layers=3)
    E = 16
    assert count_parameters(deep) - count_parameters(base) == 2 * _linear(E, E)
    x, t = jnp.zeros((2, 25)), jnp.full((2,), 0.5)
    e1 = deep.embed(t, jnp.ones((2, 6)), jnp.zeros(2, bool))
    e2 = deep.embed(t, -jnp.ones((2, 6)), jnp.zeros(2, bool))
    assert e1.shape == (2, E) and not np.allclose(e1, e2)
    assert deep(x, t, jnp.ones((2, 6))).shape == (2, 25)


def test_bfloat16_compute_keeps_float32_parameters_and_output():
    """Mixed precision: the layers compute in bfloat16 (the output moves by about
    bfloat16's rounding), the parameters and the output stay float32."""
    x = jax.random.normal(jax.random.key(1), (4, 25))
    t, cond = jnp.full((4,), 0.3), jax.random.normal(jax.random.key(2), (4, 6))
    full, _ = _model()
    mixed, _ = _model(compute_dtype="bfloat16")
    params = jax.tree.leaves(nnx.state(mixed, nnx.Param))
    assert all(p.dtype == jnp.float32 for p in params)
    a, b = full(x, t, cond), mixed(x, t, cond)
    assert b.dtype == jnp.float32
    gap = float(jnp.abs(a - b).max() / jnp.abs(a).max())
    assert 1e-4 < gap < 0.05, gap  # rounded (so really bfloat16), and only rounded


def test_sine_is_sin_to_a_few_float32_ulps_and_its_derivative_is_cos():
    x = np.concatenate([np.linspace(-400, 400, 400_001), [0.0, np.pi / 2, -np.pi, 1e4]])
    x = x.astype(np.float32)
    exact = x.astype(np.float64)
    assert np.abs(np.asarray(sine(x)) - np.sin(exact)).max() < 4e-7
    derivative = jax.vmap(jax.grad(sine))(jnp.asarray(x))
    assert np.abs(np.asarray(derivative) - np.cos(exact)).max() < 4e-7
    assert float(jnp.abs(sine(jnp.asarray(x)) - jnp.sin(x)).max()) > 0  # not jnp.sin itself
    assert sine(jnp.ones(3, jnp.bfloat16)).dtype == jnp.bfloat16


def test_condition_embedding_is_the_linear_layer_on_the_chosen_condition():
    """``embed`` applies ``embed_in`` to ``[drop ? null : condition, time]`` (computed
    with the null condition entering after the product); values and gradients agree
    with the plain formula."""
    model, config = _model(cond_layers=2)
    model.null_cond[...] = jnp.linspace(-1.0, 1.0, 6)
    t = jnp.array([0.1, 0.5, 0.9])
    cond = jax.random.normal(jax.random.key(3), (3, 6))
    drop = jnp.array([False, True, False])

    def plain(model):
        c = jnp.where(drop[:, None], model.null_cond[...][None, :], cond)
        h = jax.nn.silu(model.embed_in(jnp.concatenate([c, timestep_embedding(t, 8)], -1)))
        for layer in model.embed_hidden:
            h = jax.nn.silu(layer(h))
        return model.embed_out(h)

    np.testing.assert_allclose(model.embed(t, cond, drop), plain(model), rtol=1e-5, atol=1e-6)
    grad = nnx.grad(lambda m: jnp.sum(m.embed(t, cond, drop) ** 2))(model)
    expected = nnx.grad(lambda m: jnp.sum(plain(m) ** 2))(model)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert float(jnp.abs(grad.null_cond[...]).max()) > 0  # the dropped row trains null

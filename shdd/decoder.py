"""Learning-free mode-seeking decoder: coefficient vectors -> top-k locations and their mass.

1. Evaluate ``f = sum_k c_k Y_k`` on a latitude-longitude grid of cells (separable
   synthesis) whose spacing is about half the half-width of the truncated delta
   (``shdd.default_resolution``); keep the grid's local maxima.
2. Greedy non-maximum suppression by great-circle distance (``nms_km``, by default the
   full width at half maximum of the truncated delta) keeps the ``k`` best.
3. Refine each by Riemannian Newton ascent on the sphere: the gradient of ``f`` comes
   from ``jax.grad`` through the Legendre recurrence, the curvature from the isotropic
   model ``Hessian ≈ (Laplacian f / 2) I`` (exact at the centre of an isotropic peak;
   ``Laplacian Y_lm = -l(l+1) Y_lm``), inside a trust region that accepts a step when
   it increases ``f`` (or, at the top of a peak, where ``f`` is flat to rounding, when
   it keeps ``f`` within rounding noise and shrinks the gradient).
4. Modes are sorted by ``f``; a mode that refined onto a better one is moved to the end
   with zero mass. ``mass`` is the probability (``shdd.probability_map``'s rule on the
   search grid) of the cells within ``nms_km`` of the mode and nearer to it than to
   any other returned mode.

The grid avoids a cached dense basis: at ``L = 64`` a Fibonacci lattice fine enough
needs about ``5e4 x 4225`` basis entries (860 MB) and a matmul 100x costlier per vector
than the separable synthesis; where the grid over-samples (near the poles) it only
spends a few more candidates.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from shdd import encoder, grids, maps, sphere, synthesis
from shdd.harmonics import recurrence


def decode(
    coeffs,
    *,
    L: int,
    k: int = 1,
    resolution_deg: float | None = None,
    nms_km: float | None = None,
    steps: int = 10,
    rule: str = "positive",
    temperature: float = 0.1,
):
    """Top-``k`` modes of the function that each coefficient vector defines.

    Args:
      coeffs: ``[..., (L+1)**2]`` coefficient vectors (float32 or float64).
      L: band limit.
      k: number of modes per vector.
      resolution_deg: spacing of the candidate grid (``180/res`` an integer); default
        ``shdd.default_resolution(L)``.
      nms_km: suppression radius in km; default the full width at half maximum of the
        truncated delta at ``L`` (``2 * shdd.kernel_width_km(L)``).
      steps: Newton refinement steps.
      rule, temperature: how ``f`` becomes a probability for ``mass`` (``shdd.maps``).

    Returns:
      ``(latlon [..., k, 2] degrees, mass [..., k])``, modes sorted by the value of ``f``,
      ``mass`` in ``[0, 1]`` with ``sum(mass) <= 1``.
    """
    L = sphere.check_band_limit(L)
    sphere.check_coeffs(coeffs, L)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    maps._check_rule(rule, temperature)
    nms_km = 2 * encoder.kernel_width_km(L) if nms_km is None else float(nms_km)
    if not nms_km > 0:
        raise ValueError(f"nms_km must be positive, got {nms_km}")
    grid = grids.latlon_grid(resolution_deg or grids.default_resolution(L))

    coeffs = jnp.asarray(coeffs)
    if not jnp.issubdtype(coeffs.dtype, jnp.floating):
        coeffs = coeffs.astype(jnp.float32)
    batch_shape = coeffs.shape[:-1]
    flat = coeffs.reshape(-1, coeffs.shape[-1])  # [B, D]
    table = synthesis._row_table(L, tuple(grid.lat.tolist()), flat.dtype.name)
    latlon, mass = _decode(
        flat,
        table,
        jnp.asarray(grid.area, flat.dtype),
        jnp.asarray(grid.latlon().reshape(-1, 2), flat.dtype),
        L=L,
        k=int(k),
        n_lon=grid.lon.size,
        lon0_deg=float(grid.lon[0]),
        nms_rad=sphere.km_to_radians(nms_km),
        max_step_rad=float(np.deg2rad(grid.resolution_deg)),
        steps=int(steps),
        rule=rule,
        temperature=float(temperature),
    )
    return latlon.reshape(*batch_shape, k, 2), mass.reshape(*batch_shape, k)


@functools.partial(
    jax.jit,
    static_argnames=(
        "L",
        "k",
        "n_lon",
        "lon0_deg",
        "nms_rad",
        "max_step_rad",
        "steps",
        "rule",
        "temperature",
    ),
)
def _decode(
    coeffs,
    table,
    area,
    cells,
    *,
    L,
    k,
    n_lon,
    lon0_deg,
    nms_rad,
    max_step_rad,
    steps,
    rule,
    temperature,
):
    A, B = synthesis.fourier_rows(coeffs, table, L)
    values = synthesis.fourier_to_grid(A, B, n_lon, lon0_deg)  # [B, R, C]
    start, valid = _grid_modes(values, cells, k=k, nms_rad=nms_rad)  # [B, k, 2], [B, k]
    latlon, f = jax.vmap(lambda c, x: _refine(c, x, L=L, steps=steps, max_step_rad=max_step_rad))(
        coeffs, start
    )  # [B, k, 2], [B, k]
    latlon, f = _sort_unique(latlon, jnp.where(valid, f, -jnp.inf), nms_rad)
    prob = maps.density(values, area, L=L, rule=rule, temperature=temperature)
    mass = _mode_mass(prob.reshape(prob.shape[0], -1), cells, latlon, f, nms_rad)
    return latlon, mass


def _grid_modes(values, cells, *, k: int, nms_rad: float):
    """Best ``k`` local maxima of ``values [B, R, C]`` after greedy NMS: ``([B, k, 2], [B, k])``."""
    neg = jnp.full_like(values[:, :1], -jnp.inf)
    rows = {
        -1: jnp.concatenate([neg, values[:, :-1]], axis=1),  # the row to the north
        0: values,
        1: jnp.concatenate([values[:, 1:], neg], axis=1),  # the row to the south
    }
    is_max = jnp.ones(values.shape, bool)
    for dr, shifted in rows.items():
        for dc in (-1, 0, 1):
            if dr == 0 and dc == 0:
                continue
            is_max &= values >= jnp.roll(shifted, dc, axis=2)  # longitude wraps
    score = jnp.where(is_max, values, -jnp.inf).reshape(values.shape[0], -1)  # [B, R*C]
    n = min(4 * k + 16, score.shape[-1])
    top, index = jax.lax.top_k(score, n)  # [B, n]
    candidates = cells[index]  # [B, n, 2]
    close = sphere.central_angle(candidates[:, :, None], candidates[:, None, :]) < nms_rad

    def suppress(i, keep):  # keep [B, n]: candidate i survives unless a kept better one is close
        hit = jnp.any(keep & close[:, i, :], axis=-1)
        return keep.at[:, i].set(jnp.isfinite(top[:, i]) & ~hit)

    keep = jax.lax.fori_loop(0, n, suppress, jnp.zeros(top.shape, bool))
    order = jnp.argsort(jnp.where(keep, 0, 1) * n + jnp.arange(n)[None, :], axis=-1)[:, :k]
    start = jnp.take_along_axis(candidates, order[..., None], axis=1)
    return start, jnp.take_along_axis(keep, order, axis=1)


def _local_sums(c_cos, c_sin, eig, lat_rad, L: int):
    """Longitude Fourier coefficients of ``f`` and of its Laplacian at the given latitudes.

    ``c_cos, c_sin``: ``[L+1, M]`` coefficients in the square layout (``sqrt 2`` included);
    ``lat_rad``: ``[k]``. Returns ``(A, B, A_lap, B_lap, bound)``, each ``[k, M]``, where
    ``bound`` is ``sum_l |Pbar_lm| (|c_lm| + |c_l,-m|)``, a scale for rounding errors.
    """

    def fold(acc, row, x):  # row [k, M]
        A, B, A_lap, B_lap, bound = acc
        cc, cs, ev = x  # [M], [M], scalar l(l+1)
        cc, cs = cc[None, :], cs[None, :]  # [1, M]
        A, B = A + row * cc, B + row * cs
        A_lap, B_lap = A_lap + ev * row * cc, B_lap + ev * row * cs
        return (A, B, A_lap, B_lap, bound + jnp.abs(row) * (jnp.abs(cc) + jnp.abs(cs))), None

    zeros = jnp.zeros((lat_rad.shape[0], L + 1), c_cos.dtype)
    acc, _ = recurrence(
        jnp.sin(lat_rad),
        jnp.abs(jnp.cos(lat_rad)),
        L=L,
        fold=fold,
        init=(zeros,) * 5,
        xs=(c_cos, c_sin, eig),
    )
    return acc


def _value_grad_laplacian(c_cos, c_sin, latlon, L: int):
    """``f``, its Riemannian gradient, its Laplacian and a rounding scale at points ``[k, 2]``.

    The gradient ``[k, 2]`` holds the (north, east) components per radian: the latitude
    derivative by forward-mode differentiation of the recurrence, the longitude
    derivative analytically (``d/dphi`` of the Fourier series).
    """
    dtype = c_cos.dtype
    eig = jnp.asarray(np.arange(L + 1) * (np.arange(L + 1) + 1), dtype)  # [L+1]
    lat = jnp.deg2rad(latlon[:, 0])
    phi = jnp.deg2rad(latlon[:, 1])[:, None] * jnp.arange(L + 1, dtype=dtype)[None, :]  # [k, M]
    cos, sin = jnp.cos(phi), jnp.sin(phi)
    sums, tangents = jax.jvp(
        lambda t: _local_sums(c_cos, c_sin, eig, t, L), (lat,), (jnp.ones_like(lat),)
    )
    A, B, A_lap, B_lap, bound = sums
    dA, dB = tangents[:2]
    m = jnp.arange(L + 1, dtype=dtype)[None, :]  # [1, M]
    f = jnp.sum(A * cos + B * sin, axis=-1)
    d_lat = jnp.sum(dA * cos + dB * sin, axis=-1)
    d_lon = jnp.sum(m * (B * cos - A * sin), axis=-1)
    cos_lat = jnp.maximum(jnp.abs(jnp.cos(lat)), jnp.finfo(dtype).tiny)
    lap = -jnp.sum(A_lap * cos + B_lap * sin, axis=-1)
    return f, jnp.stack([d_lat, d_lon / cos_lat], axis=-1), lap, jnp.sum(bound, axis=-1)


def _refine(coeffs, start, *, L: int, steps: int, max_step_rad: float):
    """Trust-region Newton ascent from ``start [k, 2]`` degrees: ``(latlon [k, 2], f [k])``."""
    c_cos, c_sin = synthesis.square_coeffs(coeffs, L)  # [L+1, M] each
    curvature_floor = L * (L + 1) / 4.0
    eps = jnp.finfo(coeffs.dtype).eps
    root_d = float(np.sqrt(sphere.num_coeffs(L)))

    def step(_, state):
        x, f, g, lap, radius = state
        kappa = jnp.maximum(-lap, curvature_floor * jnp.abs(f)) + jnp.finfo(f.dtype).tiny
        move = 2.0 * g / kappa[:, None]  # [k, 2] (north, east) radians
        length = jnp.linalg.norm(move, axis=-1, keepdims=True)
        move = move * jnp.minimum(1.0, radius[:, None] / jnp.maximum(length, 1e-30))
        north, east = sphere.tangent_frame(x)
        xyz = sphere.exp_map(sphere.latlon_to_xyz(x), move[:, :1] * north + move[:, 1:] * east)
        x_new = sphere.xyz_to_latlon(xyz)
        f_new, g_new, lap_new, bound = _value_grad_laplacian(c_cos, c_sin, x_new, L)
        # At the top of a peak f is flat to rounding (float32 near the poles at high L
        # especially): there a step counts when it keeps f within the rounding error of
        # the sum and shrinks the gradient, which is accurate to far less than a step.
        noise = 4 * root_d * eps * bound
        shrinks = jnp.linalg.norm(g_new, axis=-1) < jnp.linalg.norm(g, axis=-1)
        accept = (f_new > f) | ((f_new >= f - noise) & shrinks)
        pick = lambda new, old: jnp.where(accept.reshape(-1, *([1] * (new.ndim - 1))), new, old)
        radius = jnp.where(accept, jnp.minimum(2 * radius, max_step_rad), radius / 4)
        return pick(x_new, x), pick(f_new, f), pick(g_new, g), pick(lap_new, lap), radius

    f, g, lap, _ = _value_grad_laplacian(c_cos, c_sin, start, L)
    radius = jnp.full(f.shape, max_step_rad, f.dtype)
    x, f, *_ = jax.lax.fori_loop(0, steps, step, (start, f, g, lap, radius))
    return x, f


def _sort_unique(latlon, f, nms_rad: float):
    """Sort modes by ``f``; a mode within ``nms_rad / 2`` of a better one gets ``f = -inf``."""
    order = jnp.argsort(-f, axis=-1)
    latlon = jnp.take_along_axis(latlon, order[..., None], axis=1)
    f = jnp.take_along_axis(f, order, axis=1)
    close = sphere.central_angle(latlon[:, :, None], latlon[:, None, :]) < nms_rad / 2  # [B,k,k]
    earlier = jnp.tril(jnp.ones(close.shape[1:], bool), k=-1)  # [k, k]: j < i
    duplicate = jnp.any(close & earlier[None], axis=-1)
    f = jnp.where(duplicate, -jnp.inf, f)
    order = jnp.argsort(-f, axis=-1, stable=True)
    return jnp.take_along_axis(latlon, order[..., None], axis=1), jnp.take_along_axis(f, order, 1)


def _mode_mass(prob, cells, latlon, f, radius_rad: float):
    """Mass of the cells within ``radius_rad`` of each mode and nearest to it: ``[B, k]``.

    ``prob [B, cells]``, ``cells [cells, 2]``, modes ``latlon [B, k, 2]`` with ``f [B, k]``
    (``-inf`` marks a duplicate, which owns nothing). Nearest means the largest dot
    product of unit vectors.
    """
    k = latlon.shape[1]
    cell_xyz = sphere.latlon_to_xyz(cells)  # [cells, 3]
    mode_xyz = sphere.latlon_to_xyz(latlon)  # [B, k, 3]
    best = jnp.full(prob.shape, -jnp.inf, prob.dtype)  # [B, cells] best cosine so far
    owner = jnp.full(prob.shape, -1, jnp.int32)
    cos_radius = np.cos(radius_rad)
    for j in range(k):
        cos_d = mode_xyz[:, j] @ cell_xyz.T  # [B, cells]
        cos_d = jnp.where(jnp.isfinite(f[:, j : j + 1]), cos_d, -jnp.inf)
        nearer = cos_d > best
        owner = jnp.where(nearer, jnp.where(cos_d >= cos_radius, j, -1), owner)
        best = jnp.maximum(best, cos_d)
    return jnp.stack([jnp.sum(jnp.where(owner == j, prob, 0), axis=-1) for j in range(k)], -1)

"""From coefficients to probabilities: density rules, probability maps and the SHDD-KL.

A coefficient vector ``c`` defines ``f(x) = sum_k c_k Y_k(x)``, which is not a density
(a truncated delta rings and goes negative). Two documented rules turn it into one on
the cells of a latitude-longitude grid, each cell weighted by its area:

* ``"positive"`` (default for maps and decoding): ``p ∝ area * max(f, 0) ** power``.
  With ``power = 1`` parameter free and linear in ``c`` where ``f > 0``, so the mean of
  K sampled vectors gives the mixture of their maps; ``power > 1`` sharpens the map
  (the truncated delta's broad main lobe and positive side lobes otherwise make its
  credible regions too large), and a ``floor`` (relative to the peak, added
  everywhere) gives the map tails for the answers that land far from every mode. A
  model's power and floor are chosen on validation so that its credible regions cover
  what they claim. If ``f`` has no positive part the map is uniform in area.
* ``"softmax"`` (default for the SHDD-KL): ``p ∝ area * exp(f / (temperature * peak))``
  where ``peak = (L+1)**2 / (4 pi)`` is the maximum of the truncated delta at ``L``.
  Strictly positive and smooth, so the KL is finite and differentiable. It is
  invariant to a constant added to ``f``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from shdd import grids, sphere, synthesis

RULES = ("positive", "softmax")


def _check_rule(rule: str, temperature: float) -> None:
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if rule == "softmax" and not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")


def density(
    values, area, *, L: int, rule: str = "positive", temperature: float = 0.1,
    power: float = 1.0, floor: float = 0.0,
):  # fmt: skip
    """Probability mass per cell from ``f`` values on a grid.

    Args:
      values: ``[..., n_lat, n_lon]`` values of ``f`` at the cell centres.
      area: ``[n_lat]`` cell areas of each row (steradians).
      L: band limit of ``f`` (sets the scale of the ``"softmax"`` rule).
      rule: ``"positive"`` or ``"softmax"`` (see the module docstring).
      temperature: softmax temperature, relative to the peak of the truncated delta.
      power, floor: ``"positive"``: ``(max(f, 0) / peak) ** power + floor`` (1 and 0:
        the plain rule).

    Returns:
      ``[..., n_lat, n_lon]`` non-negative masses summing to 1 over the last two axes.
    """
    area = jnp.asarray(area, values.dtype).reshape(
        *(1,) * (values.ndim - 2), -1, 1
    )  # [.., n_lat, 1]
    if rule == "positive":
        positive = jnp.maximum(values, 0)
        if power != 1.0 or floor:  # relative to the peak: large powers stay finite
            peak = jnp.max(positive, axis=(-2, -1), keepdims=True)
            positive = (positive / jnp.where(peak > 0, peak, 1)) ** power + floor
        weight = positive * area
        total = jnp.sum(weight, axis=(-2, -1), keepdims=True)
        uniform = jnp.broadcast_to(area / (4 * np.pi), weight.shape)  # sums to 1 over a grid
        return jnp.where(total > 0, weight / jnp.where(total > 0, total, 1), uniform)
    peak = (L + 1) ** 2 / (4 * np.pi)
    logits = values / (temperature * peak) + jnp.log(area)
    flat = logits.reshape(*logits.shape[:-2], -1)
    return jax.nn.softmax(flat, axis=-1).reshape(logits.shape)


def probability_map(
    coeffs,
    *,
    L: int,
    resolution_deg: float = 1.0,
    rule: str = "positive",
    temperature: float = 0.1,
    power: float = 1.0,
    floor: float = 0.0,
):
    """The distribution defined by ``coeffs`` on a regular latitude-longitude grid.

    Args:
      coeffs: ``[..., (L+1)**2]`` coefficient vectors.
      L: band limit.
      resolution_deg: cell size in degrees; ``180 / resolution_deg`` must be an integer.
      rule, temperature, power, floor: how ``f`` becomes a density (module docstring).

    Returns:
      ``[..., 180/res, 360/res]`` probability mass of each cell, rows from north to
      south, columns from -180 degrees east; non-negative, summing to 1. Cell centres
      are ``shdd.latlon_grid(resolution_deg).latlon()``. Cells shrink towards the poles,
      so the mode of the map is the argmax of the density ``mass / grid.area[:, None]``,
      not of the mass.
    """
    L = sphere.check_band_limit(L)
    sphere.check_coeffs(coeffs, L)
    _check_rule(rule, temperature)
    if not (np.isfinite(power) and power > 0 and np.isfinite(floor) and floor >= 0):
        raise ValueError(f"need power > 0 and floor >= 0, got {power!r} and {floor!r}")
    grid = grids.latlon_grid(resolution_deg)
    values = synthesis.synthesize(coeffs, grid, L=L)
    return _density_jit(values, grid.area, L, rule, temperature, float(power), float(floor))


@functools.partial(jax.jit, static_argnames=("L", "rule", "temperature", "power", "floor"))
def _density_jit(values, area, L, rule, temperature, power, floor):
    return density(values, area, L=L, rule=rule, temperature=temperature, power=power, floor=floor)


def kl_divergence(
    p_coeffs,
    q_coeffs,
    *,
    L: int,
    resolution_deg: float | None = None,
    rule: str = "softmax",
    temperature: float = 0.1,
    eps: float = 1e-12,
):
    """SHDD-KL: ``KL(p || q)`` between the distributions that two coefficient vectors define.

    Both are turned into cell masses on the same area-weighted latitude-longitude
    quadrature grid (``shdd.default_resolution(L)`` unless given) by the same rule, and
    ``KL = sum_cells p log(p / q)``. Differentiable in both arguments; usable under
    ``jax.jit`` (``L``, ``resolution_deg``, ``rule`` and ``temperature`` are static).

    Args:
      p_coeffs, q_coeffs: ``[..., (L+1)**2]``, broadcasting against each other.
      eps: added to both masses inside the logarithm (keeps the ``"positive"`` rule finite).

    Returns:
      ``[...]`` divergences in nats (non-negative).
    """
    L = sphere.check_band_limit(L)
    sphere.check_coeffs(p_coeffs, L, "p_coeffs")
    sphere.check_coeffs(q_coeffs, L, "q_coeffs")
    _check_rule(rule, temperature)
    grid = grids.latlon_grid(resolution_deg or grids.default_resolution(L))
    p_coeffs, q_coeffs = jnp.broadcast_arrays(jnp.asarray(p_coeffs), jnp.asarray(q_coeffs))

    def masses(coeffs):
        values = synthesis.synthesize(coeffs, grid, L=L)
        return density(values, grid.area, L=L, rule=rule, temperature=temperature)

    p, q = masses(p_coeffs), masses(q_coeffs)
    return jnp.sum(p * (jnp.log(p + eps) - jnp.log(q + eps)), axis=(-2, -1))


def _flat_cells(pmap, resolution_deg: float):
    """``(grid, batch shape, mass [B, cells] float64, area [cells])`` of maps ``[...,
    n_lat, n_lon]`` on the ``resolution_deg`` grid (``ValueError`` on another shape)."""
    grid = grids.latlon_grid(resolution_deg)
    pmap = np.asarray(pmap, np.float64)
    if pmap.shape[-2:] != grid.shape:
        raise ValueError(
            f"pmap must end in {grid.shape} for resolution {resolution_deg}, got {pmap.shape}"
        )
    cells = grid.shape[0] * grid.shape[1]
    area = np.repeat(np.asarray(grid.area, np.float64), grid.shape[1])
    return grid, pmap.shape[:-2], pmap.reshape(-1, cells), area


def credible_area_km2(pmap, *, resolution_deg: float, levels=(0.5, 0.9)) -> np.ndarray:
    """Area in km^2 of the smallest region holding each probability ``level`` of a map.

    The highest-density region: cells by decreasing density (mass / area), accumulated
    until their mass reaches the level (the cell that crosses it counts whole; cells of
    equal density in the grid's order, north first).

    Args:
      pmap: ``[..., n_lat, n_lon]`` probability map (``probability_map``'s layout).
      resolution_deg: its cell size.
      levels: probabilities in ``(0, 1]``.

    Returns:
      ``[..., len(levels)]`` areas in km^2 (float64).
    """
    for level in levels:
        if not 0 < level <= 1:
            raise ValueError(f"levels must lie in (0, 1], got {level}")
    grid, batch, mass, area = _flat_cells(pmap, resolution_deg)
    out = _region_areas(mass, area, tuple(levels))
    return out.reshape(*batch, len(levels)) * sphere.EARTH_RADIUS_KM**2


_BINS = 4096  # log-density bins of _region_areas
_SPAN = 64.0  # the bins span densities down to exp(-_SPAN) of the peak's; lower: the last


def _region_areas(mass, area, levels) -> np.ndarray:
    """``[B, len(levels)]`` the region areas of ``mass [B, C]`` on cells of ``area [C]``
    (steradians), exactly as a full sort by decreasing density would give them (equal
    densities in the cells' order), in linear time: the cells are binned by log
    density, the masses and areas of each bin summed, and only the cells of the bin
    where a level is crossed are sorted."""
    rows, cells = mass.shape
    dens = mass / area[None, :]
    top = dens.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        depth = -np.log(dens / np.where(top > 0, top, 1.0))  # >= 0; inf where empty
    which = np.minimum(depth * ((_BINS - 1) / _SPAN), _BINS - 1).astype(np.int32)
    flat = (which + _BINS * np.arange(rows, dtype=np.int32)[:, None]).ravel()
    size = rows * _BINS
    bin_mass = np.bincount(flat, weights=mass.ravel(), minlength=size).reshape(rows, _BINS)
    weights = np.broadcast_to(area, mass.shape).ravel()
    bin_area = np.bincount(flat, weights=weights, minlength=size).reshape(rows, _BINS)
    cum_mass, cum_area = np.cumsum(bin_mass, axis=1), np.cumsum(bin_area, axis=1)
    out = np.empty((rows, len(levels)))
    for j, level in enumerate(levels):
        target = level * cum_mass[:, -1]
        reached = (cum_mass >= target[:, None]) & (bin_area > 0)  # at a bin with cells
        crossing = np.where(reached.any(axis=1), np.argmax(reached, axis=1), _BINS - 1)
        for i, k in enumerate(crossing):
            inside = np.flatnonzero(which[i] == k)  # in the cells' order
            order = inside[np.argsort(-dens[i, inside], kind="stable")]
            before = cum_mass[i, k] - bin_mass[i, k]
            count = np.sum(before + np.cumsum(mass[i, order]) < target[i])
            count = min(int(count), len(order) - 1)  # cells before the one that crosses
            out[i, j] = cum_area[i, k] - bin_area[i, k] + area[order[: count + 1]].sum()
    return out


def credible_level(pmap, latlon, *, resolution_deg: float) -> np.ndarray:
    """The smallest credible level whose region holds each point: ``[N]`` in ``[0, 1)``.

    With the regions of :func:`credible_area_km2` (cells by decreasing density, the cell
    that crosses the level counting whole), ``latlon[i]`` lies in map ``i``'s region of
    level ``a`` exactly when ``credible_level[i] < a``: it is the mass of the cells
    denser than the point's own. Coverage of a set of predictions at level ``a`` is the
    share of true locations with ``credible_level < a``; for points drawn from the maps
    themselves it is ``a``, which is what calibration means.

    Args:
      pmap: ``[N, n_lat, n_lon]`` probability maps (``probability_map``'s layout).
      latlon: ``[N, 2]`` degrees, one point per map.
      resolution_deg: the maps' cell size.
    """
    grid = grids.latlon_grid(resolution_deg)
    pmap = np.asarray(pmap)
    latlon = np.asarray(latlon, np.float64)
    if pmap.ndim != 3 or pmap.shape[1:] != grid.shape:
        raise ValueError(f"pmap must be [N, {grid.shape[0]}, {grid.shape[1]}], got {pmap.shape}")
    if latlon.shape != (pmap.shape[0], 2):
        raise ValueError(f"latlon must be [{pmap.shape[0]}, 2] degrees, got {latlon.shape}")
    sphere.check_latlon(latlon)
    row, col = grid.cell_of(latlon)
    with jax.enable_x64(True):  # float64 sums of up to 10^6 cells
        return np.asarray(_level_jit(pmap, np.asarray(grid.area, np.float64), row, col))


def cell_levels(pmap, *, resolution_deg: float) -> np.ndarray:
    """``[..., n_lat, n_lon]``: each cell's credible level, the mass of the cells denser
    than it (:func:`credible_level` of the cell's centre). The region of level ``a`` is
    the cells with ``cell_levels < a``: contours at 0.5 and 0.9 draw the 50% and 90%
    credible regions on a map."""
    grid, batch, mass, area = _flat_cells(pmap, resolution_deg)
    cells = mass.shape[1]
    dens = mass / area[None, :]
    order = np.argsort(-dens, axis=-1, kind="stable")
    ranked_dens = np.take_along_axis(dens, order, -1)
    ranked_mass = np.take_along_axis(mass, order, -1)
    before = np.cumsum(ranked_mass, axis=-1) - ranked_mass  # mass ranked before each cell
    # cells of equal density share the level of the first of them (none is denser)
    first = np.concatenate(
        [np.ones((len(dens), 1), bool), ranked_dens[:, 1:] != ranked_dens[:, :-1]], axis=-1
    )
    start = np.maximum.accumulate(np.where(first, np.arange(cells)[None, :], 0), axis=-1)
    ranked_level = np.take_along_axis(before, start, -1) / mass.sum(axis=-1, keepdims=True)
    out = np.empty_like(ranked_level)
    np.put_along_axis(out, order, ranked_level, -1)
    return out.reshape(*batch, *grid.shape)


@jax.jit
def _level_jit(pmap, area, row, col):
    """:func:`credible_level` in one fused pass over the cells (under ``enable_x64``)."""
    pmap = pmap.astype(jnp.float64)
    dens = pmap / area[None, :, None]  # [N, n_lat, n_lon]
    own = dens[jnp.arange(len(dens)), row, col]  # [N]
    denser = jnp.where(dens > own[:, None, None], pmap, 0.0).sum(axis=(1, 2))
    return denser / pmap.sum(axis=(1, 2))

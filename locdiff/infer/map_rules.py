"""LocDiff's map rules: how the mean SHDD function becomes a calibrated probability map.

A rule's map is ``(1 - tail) * sharpened + tail * broad``
(:func:`locdiff.infer.map_choice.choose_map_rule`),
chosen on validation rows per bin of a signal of the answer (its spread,
:func:`spread_km2`, or its doubt, :mod:`locdiff.infer.reference`), the signal and the number
of bins chosen per run (:func:`choose_map_signal`), or a mixture of two rules weighted
by how novel the condition looks (:mod:`locdiff.infer.novelty`), where that keeps the
promise better on validation rows held out. :func:`rule_map` draws a rule's map
for inference by the same definition the rules are chosen by (:func:`rule_levels`).
Everything here is re-exported by :mod:`locdiff.infer.calibration`.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

import shdd
from locdiff.infer.map_signals import (  # noqa: F401  (re-exported)
    SPREAD_CHUNK,
    SPREAD_RESOLUTION,
    bin_edges,
    bin_index,
    spread_km2,
)

LEVELS = (0.5, 0.9)

POWERS = (0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0, 96.0, 128.0)
# A truth outside the sharp core has a level of about (1 - tail) + tail * r, r the broad
# map's mass above it: the 90% region holds it where r < 1 - 0.1 / tail, which moves
# fastest just above 0.1; the tails from 0.1 to 0.3 step that share by about a tenth.
TAILS = (0.0, 0.05, 0.1, 0.11, 0.125, 0.14, 0.15, 0.175, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 1.0)
# the tail's map: the plain positive part (0) or the softmax rule at that temperature
TEMPERATURES = (0.0, 1.0)
MAP_BINS = 4  # map rules by bin of a signal (at most, where the signal is given)
# What the map rules are binned by: "spread_km2" (map_signals.spread_km2) or "doubt_km"
# (locdiff.infer.reference), and into how many bins: chosen per run (choose_map_signal), by
# the held-out miss of 2-fold calibration on the run's own validation queries.
MAP_SIGNALS = ("spread_km2", "doubt_km")
MAP_BIN_COUNTS = (1, 2, 4, 6)  # the bin counts choose_map_signal tries (1: one rule)
FOLD_SEED = 1  # the two halves of the validation queries in choose_map_signal
# Misses (percentage points) within this of the least are a tie in choose_map_signal:
# about the standard error of a held-out coverage of 1,000 rows at 50% (1.6 points).
MISS_TOLERANCE = 2.0
MIN_BIN_ROWS = 150  # validation rows each of those bins holds at least


def choose_map_signal(
    found, values: dict, far, *, bin_counts=MAP_BIN_COUNTS, min_bin_rows: int = MIN_BIN_ROWS,
    tolerance: float = MISS_TOLERANCE, powers=POWERS, tails=TAILS, temperatures=TEMPERATURES,
    levels=LEVELS, mixture=(),
) -> tuple[str, int, list[dict]]:  # fmt: skip
    """The signal of ``values`` (``{name: [N]}``, in order of preference) and the number
    of bins (of ``bin_counts``) whose map rules keep their promise best on rows they
    were not chosen on: ``(signal, bins, table)``.

    The rows are cut in two halves (at random, :data:`FOLD_SEED`, with as many far rows
    in each); each half is scored
    by the rules chosen per bin on the other (:func:`held_out_levels`). A candidate's
    miss is the sum, over the random and the far rows (``far [N]`` bool; a part with no
    rows is left out) and over ``levels``, of ``|held-out coverage - level|`` in
    percent: a rule that covers random rows too much and far rows too little is not
    saved by their average. The least miss wins; misses within ``tolerance`` of it tie,
    and ties go to fewer bins, then to the first signal. One bin is one rule whatever
    the signal, so it is tried once. ``mixture``: rows of the same table for the
    mixture of rules by novelty (:func:`locdiff.infer.novelty.choose_mixture`), the most
    complex candidate: chosen (as its ``signal``, with 2 bins) only where no binned
    candidate ties with it.
    """
    far, table = np.asarray(far, bool), []
    for name, v in values.items():
        for bins in bin_counts:
            if bins == 1 and table:
                continue  # one rule for all rows: the same for every signal
            held = held_out_levels(
                found, v, bins=bins, strata=far, min_bin_rows=min_bin_rows, powers=powers,
                tails=tails, temperatures=temperatures, levels=levels,
            )  # fmt: skip
            row = {"signal": name if bins > 1 else None, "bins": bins}
            table.append(row | coverage_row(held, far, levels))
    table += [dict(row) for row in mixture]
    least = min(row["miss"] for row in table)
    ties = [row for row in table if row["miss"] <= least + tolerance]
    # the first of the fewest bins; the mixture last
    best = min(ties, key=lambda row: ("sharpness" in row, row["bins"]))
    return best["signal"] or next(iter(values)), best["bins"], table


def coverage_row(levels_, far, levels=LEVELS) -> dict:
    """``{"coverage_{level}_{part}": %, "miss"}`` of credible levels ``levels_ [N]``: the
    share of the random and of the far rows (``far [N]`` bool; a part with no rows is
    left out) below each of ``levels``, and the miss, the sum of ``|coverage - level|``
    in points over both."""
    far, row, miss = np.asarray(far, bool), {}, 0.0
    for part, sel in (("random", ~far), ("far", far)):
        if not sel.any():
            continue
        for a in levels:
            cover = float(100 * np.mean(levels_[sel] < a))
            row[f"coverage_{100 * a:g}_{part}"] = cover
            miss += abs(cover - 100 * a)
    return row | {"miss": miss}


def held_out_levels(
    found, values, *, bins: int, strata=None, min_bin_rows: int = MIN_BIN_ROWS,
    seed: int = FOLD_SEED, powers=POWERS, tails=TAILS, temperatures=TEMPERATURES,
    levels=LEVELS,
) -> np.ndarray:  # fmt: skip
    """``[N]`` each truth's credible level under the map rule of its bin of ``values``,
    chosen (:func:`rules_by_bin`, up to ``bins`` bins) on the other half of the rows:
    2-fold cross-fitting of the levels ``found [P, T, K, N]`` (:func:`rule_levels`).
    The halves split each value of ``strata [N]`` (e.g. far or not) evenly; their bins
    hold at least ``min_bin_rows // 2`` rows, so that a half is cut into as many bins as
    all the rows are with ``min_bin_rows``."""
    values = np.asarray(values, np.float64)
    half_rows = max(1, min_bin_rows // 2)  # half the rows: as many bins as all the rows get
    strata = np.zeros(len(values), int) if strata is None else np.asarray(strata)
    out = np.empty(len(values))
    for fit, score in fold_halves(strata, seed):
        _, per_bin, edges, _ = rules_by_bin(
            found[..., fit], values[fit], powers=powers, tails=tails, temperatures=temperatures,
            levels=levels, bins=bins, min_bin_rows=half_rows,
        )  # fmt: skip
        which = bin_index(values[score], edges)
        for b, rule in enumerate(per_bin):
            i = powers.index(rule["map_power"])
            j = tails.index(rule["map_tail"])
            k = temperatures.index(rule["map_tail_temperature"])
            rows = score[which == b]
            out[rows] = found[i, j, k, rows]
    return out


def fold_halves(strata, seed: int = FOLD_SEED) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two ``(fit, score)`` folds of 2-fold cross-fitting: the rows cut in random
    halves (at ``seed``), each value of ``strata [N]`` (e.g. far or not) split evenly."""
    strata = np.asarray(strata)
    rng, halves = np.random.default_rng(seed), ([], [])
    for stratum in np.unique(strata):
        rows = rng.permutation(np.flatnonzero(strata == stratum))
        for half, part in zip(halves, np.array_split(rows, 2), strict=True):
            half.append(part)
    halves = [np.sort(np.concatenate(h)) for h in halves]
    return [(halves[0], halves[1]), (halves[1], halves[0])]


def rules_by_bin(
    found, values, *, powers=POWERS, tails=TAILS, temperatures=TEMPERATURES, levels=LEVELS,
    bins: int = MAP_BINS, min_bin_rows: int = MIN_BIN_ROWS,
) -> tuple[dict, list[dict], list[float], list[dict]]:  # fmt: skip
    """The rule of least miss for all rows and for each bin of ``values [N]``, from each
    rule's credible levels ``found [P, T, K, N]`` (:func:`rule_levels`): ``(rule of all
    rows, [rule | {"n"} per bin], inner bin edges, table of every rule's coverage)``."""
    edges = bin_edges(values, bins, min_bin_rows)
    which, n_bins = bin_index(values, edges), len(edges) + 1
    table = []

    def best_for(sel, label):
        best = None
        for (i, p), (j, t), (k, temp) in itertools.product(
            enumerate(powers), enumerate(tails), enumerate(temperatures)
        ):
            true_levels = found[i, j, k, sel]
            cover = {f"coverage_{100 * a:g}": float(100 * np.mean(true_levels < a)) for a in levels}
            miss = sum(abs(cover[f"coverage_{100 * a:g}"] - 100 * a) for a in levels)
            rule = {"map_power": p, "map_tail": t, "map_tail_temperature": temp}
            table.append({"bin": label, **rule, **cover, "miss": miss})
            if best is None or miss < best[0]:
                best = (miss, rule)
        return best[1]

    chosen = best_for(np.ones(len(values), bool), -1)
    per_bin = [best_for(which == b, b) | {"n": int(np.sum(which == b))} for b in range(n_bins)]
    return chosen, per_bin, edges, table


def map_cells(mean_coeffs, *, L: int, resolution_deg: float = 1.0):
    """What every map rule is built from, for mean SHDD functions ``[B, D]`` on the
    ``resolution_deg`` grid (float64, cells flattened row by row): ``(positive [B, C]``
    the positive part over its peak, ``scaled [B, C]`` the softmax logits at temperature
    1 (at most 0), ``area [C]`` the cells' areas)."""
    grid = shdd.latlon_grid(resolution_deg)
    values = np.asarray(shdd.synthesize(mean_coeffs, grid, L=L), np.float64)
    values = values.reshape(len(values), -1)  # [B, C]
    positive = np.maximum(values, 0.0)
    positive /= np.maximum(positive.max(axis=1, keepdims=True), 1e-300)
    peak = (L + 1) ** 2 / (4 * np.pi)  # the softmax rule's scale (shdd.maps)
    scaled = (values - values.max(axis=1, keepdims=True)) / peak
    area = np.repeat(np.asarray(grid.area, np.float64), grid.shape[1])
    return positive, scaled, area


def rule_map(cells, rule: dict) -> np.ndarray:
    """``[B, C]`` cell masses (summing to 1) of the map of ``rule`` (``{"map_power",
    "map_tail", "map_tail_temperature"}``, as ``choose_map_rule`` chose it) from
    :func:`map_cells`: the calibrated map that inference draws, by the same definition
    (:func:`_rule_density`) as the levels the rule was chosen by."""
    positive, scaled, area = cells
    with jax.enable_x64(True):  # float64: powers up to 128 of values below 1
        density = _rule_density(
            positive, scaled, area[None, :], float(rule["map_power"]), float(rule["map_tail"]),
            float(rule.get("map_tail_temperature", 0.0)),
        )  # fmt: skip
        return np.asarray(density * area[None, :])


# A map rule's density, in three steps shared by rule_map (inference) and _rule_levels
# (the choice): cells' weights made densities, the broad tail, and the mixture.


def _per_area(weights, area):
    """Densities of total mass 1 from weights ``[B, C]`` (uniform where all are 0)."""
    total = (weights * area).sum(axis=1, keepdims=True)
    return jnp.where(total > 0, weights / jnp.where(total > 0, total, 1.0), 1 / area.sum())


def _tail_density(plain, scaled, area, temperature):
    """The broad map's density: the plain positive part's (``plain``, its density; at
    ``temperature`` 0) or the softmax rule's at ``temperature``, positive everywhere."""
    softmax = _per_area(jnp.exp(scaled / jnp.where(temperature > 0, temperature, 1.0)), area)
    return jnp.where(temperature > 0, softmax, plain)


def _mix(core, broad, tail):
    """``(1 - tail) * core + tail * broad``: the rule's density."""
    return (1 - tail) * core + tail * broad


@jax.jit
def _rule_density(positive, scaled, area, power, tail, temperature):
    broad = _tail_density(_per_area(positive, area), scaled, area, temperature)
    return _mix(_per_area(positive**power, area), broad, tail)


def rule_levels(
    geolocator, embeddings, truth, *, powers=POWERS, tails=TAILS, temperatures=TEMPERATURES,
    resolution_deg=1.0, batch_size: int = 256, seed: int = 0, prediction=None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``(levels [P, T, K, N], signals)``: the credible level of each truth ``[N, 2]``
    under the map rule of each power, tail and tail temperature (a truth lies in the
    ``a`` credible region where its level is below ``a``), and ``{"spread_km2": [N],
    "doubt_km": [N]}`` of each answer (doubts zero without a reference), from the
    geolocator's predictions of ``embeddings`` at ``seed`` (or ``prediction``, drawn
    already). The mean function is put on the grid once; each rule only reweights its
    cells."""
    truth = np.asarray(truth, np.float64)
    L = geolocator.config.model.L
    grid = shdd.latlon_grid(resolution_deg)
    row, col = grid.cell_of(truth)  # the cell credible_level takes for the truth
    cell = row * grid.shape[1] + col  # [N] in the flattened grid
    rules = [np.asarray(r, np.float64) for r in (powers, tails, temperatures)]
    found, doubts, spreads = [], [], []  # [P, T, K, B] per batch
    for start in range(0, len(truth), batch_size):
        rows = slice(start, start + batch_size)
        if prediction is None:
            part = geolocator.predict(embeddings[rows], top_k=1, seed=seed + start, doubt=True)
        else:
            part = prediction[rows]
            require_doubt(geolocator, part)
        doubts.append(np.zeros(len(part)) if part.doubt_km is None else part.doubt_km)
        mean = part.coeffs.mean(axis=1)
        spreads.append(spread_km2(mean, L=L))
        positive, scaled, area = map_cells(mean, L=L, resolution_deg=resolution_deg)
        with jax.enable_x64(True):  # float64: powers up to 128 of values below 1
            levels = _rule_levels(positive, scaled, area, cell[rows], *rules)  # [P, K, T, B]
            found.append(np.asarray(levels).transpose(0, 2, 1, 3))
    signals = {"spread_km2": np.concatenate(spreads), "doubt_km": np.concatenate(doubts)}
    return np.concatenate(found, axis=3), signals


def require_doubt(geolocator, prediction) -> None:
    """``ValueError`` when ``prediction`` lacks the doubts its geolocator can give."""
    if getattr(geolocator, "reference", None) is not None and prediction.doubt_km is None:
        raise ValueError("the prediction was drawn without its doubt: predict(..., doubt=True)")


@jax.jit
def _rule_levels(positive, scaled, area, own, powers, tails, temperatures):
    """Each rule's credible level of each truth: ``[P, K, T, B]``, the mass of the cells
    denser than the truth's cell ``own [B]`` under the map of power ``p``, tail ``t`` and
    tail temperature ``k`` (:func:`_rule_density`, its parts computed once for the rules
    that share them), from :func:`map_cells`. One fused pass over the cells per rule
    (call under ``jax.enable_x64``)."""
    index = jnp.arange(positive.shape[0])
    area = area[None, :]
    plain = _per_area(positive, area)  # the plain tail's density, shared by every rule

    def for_power(p):
        powered = _per_area(positive**p, area)
        powered_own = powered[index, own][:, None]

        def for_temperature(k):
            broad = _tail_density(plain, scaled, area, k)
            broad_own = broad[index, own][:, None]

            def for_tail(t):  # the truth's density from its cell's: density is never stored
                density = _mix(powered, broad, t)  # [B, C] per unit area
                mine = _mix(powered_own, broad_own, t)
                return jnp.where(density > mine, density * area, 0.0).sum(axis=1)

            return jax.lax.map(for_tail, tails)

        return jax.lax.map(for_temperature, temperatures)

    return jax.lax.map(for_power, powers)

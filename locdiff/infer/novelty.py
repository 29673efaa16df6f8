"""Map rules mixed by how novel a condition looks to the run.

Binning the map rules by one signal (:func:`locdiff.infer.map_rules.choose_map_signal`)
gives each bin one rule, chosen on rows of both kinds: an answer to a condition far
from every training photo and one in distribution that fall in the same bin get the
same rule, and one of them is overpromised. Here each answer's map is a mixture of two
rules, the best on the random validation rows and the best on the far ones (or both
refitted under the mixture's weights, :func:`refit_rules`)::

    map = (1 - w) * rule_map(random rule) + w * rule_map(far rule)
    w = sigmoid(sharpness * logit P(far | features))

where ``P(far)`` is a logistic model (:class:`Novelty`) of the answer's novelty
features (:data:`FEATURES`), fitted on the same validation rows:

- ``log_doubt``: ``log1p`` of the km between LocDiff's mode and the place of the most
  similar training condition (:meth:`locdiff.infer.reference.Reference.doubt_km`);
- ``log_spread``: ``log`` of the area (km²) of the plain map's 50% region
  (:func:`locdiff.infer.map_rules.spread_km2`);
- ``dissimilarity``: one minus the cosine similarity of that nearest training condition.

:func:`choose_mixture` scores the mixture by the same 2-fold held-out miss as the
binned candidates, for each sharpness of :data:`SHARPNESS`; ``choose_map_signal`` keeps
it only where no binned candidate ties with it (``docs/decisions.md``).
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

import shdd
from locdiff.infer import map_rules

MIXTURE = "novelty"  # the map_bins signal of a mixture (beside map_rules.MAP_SIGNALS)
FEATURES = ("log_doubt", "log_spread", "dissimilarity")
SHARPNESS = (1.0, 2.0, 4.0, 8.0)  # the sharpness choose_mixture tries
RIDGE = 1e-3  # the logistic model's L2 penalty (bounds it where the classes separate)
NEWTON_STEPS = 100


def feature_values(*, doubt_km=None, spread_km2=None, similarity=None) -> dict:
    """``{feature: [N]}`` of the novelty features given (:data:`FEATURES`; None: left out)."""
    out = {}
    if doubt_km is not None:
        out["log_doubt"] = np.log1p(np.maximum(np.asarray(doubt_km, np.float64), 0.0))
    if spread_km2 is not None:
        out["log_spread"] = np.log(np.maximum(np.asarray(spread_km2, np.float64), 1.0))
    if similarity is not None:
        out["dissimilarity"] = 1.0 - np.asarray(similarity, np.float64)
    return out


@dataclasses.dataclass(frozen=True)
class Novelty:
    """A logistic model of ``P(far)`` from novelty ``features`` (standardised by ``mean``
    and ``scale``; ``weights[0]`` the intercept), and the ``sharpness`` of the mixture
    weight it gives (:meth:`weight`)."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    sharpness: float = 1.0

    @classmethod
    def fit(cls, values: dict, far, *, sharpness: float = 1.0) -> Novelty:
        """Fit by Newton's method (L2 penalty :data:`RIDGE`) on ``values`` (``{feature:
        [N]}``, those of :data:`FEATURES` it holds) against ``far [N]`` bool."""
        features = tuple(f for f in FEATURES if f in values)
        if not features:
            raise ValueError(f"no novelty feature among {sorted(values)}; need one of {FEATURES}")
        x = np.stack([np.asarray(values[f], np.float64) for f in features], axis=1)
        y = np.asarray(far, np.float64)
        if y.shape != (len(x),) or y.min() == y.max():
            raise ValueError("far must be [N] bool with both far and random rows")
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        z = _design(x, mean, scale)
        w = np.zeros(z.shape[1])
        for _ in range(NEWTON_STEPS):
            p = _sigmoid(z @ w)
            hessian = z.T @ (z * (p * (1 - p))[:, None]) + RIDGE * np.eye(len(w))
            step = np.linalg.solve(hessian, z.T @ (y - p) - RIDGE * w)
            w += step
            if np.max(np.abs(step)) < 1e-9:
                break
        return cls(features, mean, scale, w, float(sharpness))

    def logit(self, values: dict) -> np.ndarray:
        """``[N]`` the log-odds of far for ``values`` (``{feature: [N]}``)."""
        missing = [f for f in self.features if f not in values]
        if missing:
            raise ValueError(f"novelty features missing: {missing}")
        x = np.stack([np.asarray(values[f], np.float64) for f in self.features], axis=1)
        return _design(x, self.mean, self.scale) @ self.weights

    def p_far(self, values: dict) -> np.ndarray:
        return _sigmoid(self.logit(values))

    def weight(self, values: dict, sharpness: float | None = None) -> np.ndarray:
        """``[N]`` the far rule's weight in each answer's map."""
        s = self.sharpness if sharpness is None else sharpness
        return _sigmoid(s * self.logit(values))

    def with_sharpness(self, sharpness: float) -> Novelty:
        return dataclasses.replace(self, sharpness=float(sharpness))

    def to_dict(self) -> dict:
        return {
            "features": list(self.features),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "weights": self.weights.tolist(),
            "sharpness": self.sharpness,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Novelty:
        arrays = {k: np.asarray(d[k], np.float64) for k in ("mean", "scale", "weights")}
        return cls(tuple(d["features"]), **arrays, sharpness=float(d["sharpness"]))


def _design(x, mean, scale):
    return np.concatenate([np.ones((len(x), 1)), (x - mean) / scale], axis=1)


def _sigmoid(t):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(t, np.float64)))  # no overflow


def mixture_map(cells, rules, weight) -> np.ndarray:
    """``[B, C]`` cell masses of the mixture of ``rules`` (random, far) with the far
    rule's ``weight [B]``, from :func:`locdiff.infer.map_rules.map_cells`."""
    w = np.asarray(weight, np.float64)[:, None]
    near, far = (map_rules.rule_map(cells, r) for r in rules)
    return (1 - w) * near + w * far


def mixture_levels(mean_coeffs, truth, rules, weights, *, L: int, resolution_deg=1.0,
                   batch_size: int = 256) -> np.ndarray:  # fmt: skip
    """``[S, N]`` each truth's credible level (the mass of the cells denser than its own,
    as :func:`shdd.credible_level`) under the mixture of ``rules`` with each row of far
    weights ``weights [S, N]``, for mean SHDD functions ``[N, D]``."""
    params = [np.asarray(_params(r), np.float64) for r in rules]
    weights = np.asarray(weights, np.float64)

    def levels_of(positive, scaled, area, own, rows):
        return _mixture_levels(positive, scaled, area, own, *params, weights[:, rows])

    return _over_batches(mean_coeffs, truth, levels_of, (len(weights), 0), L=L,
                         resolution_deg=resolution_deg, batch_size=batch_size)  # fmt: skip


def _over_batches(mean_coeffs, truth, levels_of, empty, *, L, resolution_deg, batch_size):
    """``levels_of(positive, scaled, area, own, rows) -> [..., B]`` (under float64) over
    batches of ``batch_size`` rows, joined along the last axis (none: zeros of shape
    ``empty``): each batch's mean functions put on the grid once
    (:func:`map_rules.map_cells`), ``own [B]`` the cells of their truths."""
    truth = np.asarray(truth, np.float64)
    grid = shdd.latlon_grid(resolution_deg)
    row, col = grid.cell_of(truth)
    cell = row * grid.shape[1] + col
    out = []
    for start in range(0, len(truth), batch_size):
        rows = slice(start, start + batch_size)
        cells = map_rules.map_cells(mean_coeffs[rows], L=L, resolution_deg=resolution_deg)
        with jax.enable_x64(True):
            out.append(np.asarray(levels_of(*cells, cell[rows], rows)))
    return np.concatenate(out, axis=-1) if out else np.zeros(empty)


@jax.jit
def _mixture_levels(positive, scaled, area, own, near, far, weights):
    area = area[None, :]
    index = jnp.arange(positive.shape[0])
    density_near = map_rules._rule_density(positive, scaled, area, *near)
    density_far = map_rules._rule_density(positive, scaled, area, *far)

    def level(w):
        density = (1 - w[:, None]) * density_near + w[:, None] * density_far
        mine = density[index, own][:, None]
        return jnp.where(density > mine, density * area, 0.0).sum(axis=1)

    return jax.lax.map(level, weights)


def _params(rule: dict) -> list[float]:
    return list(_rule(rule).values())  # power, tail, tail temperature


def refit_rules(mean_coeffs, truth, far, weight, rules, *, L: int, powers=map_rules.POWERS,
                tails=map_rules.TAILS, levels=map_rules.LEVELS, resolution_deg=1.0,
                batch_size: int = 256, **_) -> list[dict]:  # fmt: skip
    """The (random, far) ``rules`` refitted under the mixture's far weights ``weight
    [N]``: each in turn (the random rule first) is replaced by the rule of its
    neighbourhood in the grid, its power first (every power at its tail), then its tail
    (every tail at that power), its tail temperature kept, whose mixture misses the
    levels least on these rows (:func:`mixture_miss`; ties: the grid's order), the other
    rule held. Each rule alone is the best on its own part's rows; the mixture gives
    the rows the model is unsure of some of the other rule, and here both rules learn
    that (``far [N]``: the rows' parts, for the miss)."""
    rules = [_rule(r) for r in rules]
    kw = dict(L=L, resolution_deg=resolution_deg, batch_size=batch_size)
    for i in range(2):
        for key, grid in (("map_power", powers), ("map_tail", tails)):
            options = [rules[i] | {key: float(v)} for v in grid]
            found = refit_levels(mean_coeffs, truth, weight, rules, i, options, **kw)
            rules[i] = options[int(np.argmin([mixture_miss(lv, far, levels) for lv in found]))]
    return rules


def refit_levels(mean_coeffs, truth, weight, rules, which: int, options, *, L: int,
                 resolution_deg=1.0, batch_size: int = 256) -> np.ndarray:  # fmt: skip
    """``[C, N]`` the credible levels of :func:`mixture_levels` at far weights ``weight
    [N]`` with rule ``which`` (0: random, 1: far) of ``rules`` replaced by each of
    ``options`` (which share their tail temperature, and their power or their tail):
    the held rule's density is computed once, and each power's core once."""
    options = [_rule(o) for o in options]
    powers = sorted({o["map_power"] for o in options})
    tails = sorted({o["map_tail"] for o in options})
    if len({o["map_tail_temperature"] for o in options}) != 1 or min(len(powers), len(tails)) > 1:
        raise ValueError("the options of one refit share their tail temperature, and their "
                         "power or their tail")  # fmt: skip
    held = np.asarray(_params(rules[1 - which]), np.float64)
    temperature = options[0]["map_tail_temperature"]
    w = np.asarray(weight, np.float64)
    share, kept = (w, 1.0 - w) if which == 1 else (1.0 - w, w)  # the option's, the held's
    grid = (np.asarray(powers), np.asarray(tails))

    def levels_of(positive, scaled, area, own, rows):  # [P, T, B] -> [P * T, B]
        found = _refit_levels(
            positive, scaled, area, own, held, *grid, temperature, share[rows], kept[rows]
        )
        return found.reshape(len(powers) * len(tails), -1)

    levels = _over_batches(mean_coeffs, truth, levels_of, (len(powers) * len(tails), 0), L=L,
                           resolution_deg=resolution_deg, batch_size=batch_size)  # fmt: skip
    index = {(p, t): i for i, (p, t) in enumerate(itertools.product(powers, tails))}
    return levels[[index[o["map_power"], o["map_tail"]] for o in options]]


@jax.jit
def _refit_levels(positive, scaled, area, own, held, powers, tails, temperature, share, kept):
    """``[P, T, B]``: :func:`refit_levels`' levels for one batch, each power's core
    computed once, then mixed with each tail."""
    area = area[None, :]
    index = jnp.arange(positive.shape[0])
    kept = kept[:, None] * map_rules._rule_density(
        positive, scaled, area, held[0], held[1], held[2]
    )
    broad = map_rules._tail_density(map_rules._per_area(positive, area), scaled, area, temperature)

    def for_power(power):
        powered = map_rules._per_area(positive**power, area)

        def for_tail(tail):
            density = kept + share[:, None] * map_rules._mix(powered, broad, tail)
            mine = density[index, own][:, None]
            return jnp.where(density > mine, density * area, 0.0).sum(axis=1)

        return jax.lax.map(for_tail, tails)

    return jax.lax.map(for_power, powers)


def _rule(rule: dict) -> dict:
    """The rule's power (required), tail and tail temperature (absent: 0)."""
    if "map_power" not in rule:
        raise KeyError(f"a map rule needs its map_power, got {rule}")
    return {"map_power": float(rule["map_power"])} | {
        k: float(rule.get(k, 0.0)) for k in ("map_tail", "map_tail_temperature")
    }


def mixture_miss(levels_, far, levels=map_rules.LEVELS) -> float:
    """The sum over the random and far rows and ``levels`` of ``|coverage - level|`` (in
    points) of credible levels ``levels_ [N]`` (:func:`map_rules.coverage_row`)."""
    return map_rules.coverage_row(levels_, far, levels)["miss"]


FITS = ("separate", "joint")  # how choose_mixture fits the two rules (refit_rules: joint)


def choose_mixture(
    found, values: dict, far, mean_coeffs, truth, *, L: int, sharpness=SHARPNESS,
    min_rows: int = map_rules.MIN_BIN_ROWS, resolution_deg=1.0, fits=FITS, **grid,
) -> tuple[list[dict], dict | None]:  # fmt: skip
    """The mixture's rows of ``choose_map_signal``'s table, one per way to fit its rules
    (``fits``: each on its own part's rows, ``separate``, or then refitted under the
    mixture's weights, ``joint``, :func:`refit_rules`) and ``sharpness``, and its
    ``map_bins`` (fitted on all rows as the row of least held-out miss was; ties: the
    first of that order), from each rule's levels ``found [P, T, K, N]``
    (:func:`map_rules.rule_levels`), the novelty ``values`` (:func:`feature_values`) and
    mean functions ``[N, D]`` of the validation rows with truths ``[N, 2]`` and ``far
    [N]``. Held out as the binned candidates are (:func:`map_rules.fold_halves`): the
    model and both rules are fitted on one half and score the other. ``([], None)``
    where either part has fewer than ``min_rows`` rows."""
    far = np.asarray(far, bool)
    if min(far.sum(), (~far).sum()) < min_rows:
        return [], None
    levels = tuple(grid.get("levels", map_rules.LEVELS))
    kw = dict(L=L, resolution_deg=resolution_deg)
    candidates = list(itertools.product(fits, sharpness))
    held = np.empty((len(candidates), len(far)))
    for fit, score in map_rules.fold_halves(far):
        part = {k: v[fit] for k, v in values.items()}
        novelty, rules = _fit(found[..., fit], part, far[fit], **grid)
        logit_fit = novelty.logit(part)
        logit = novelty.logit({k: v[score] for k, v in values.items()})
        weights = np.stack([_sigmoid(s * logit) for _, s in candidates])
        separate = [i for i, (how, _) in enumerate(candidates) if how == "separate"]
        if separate:  # one pass over the maps for every sharpness
            held[np.ix_(separate, score)] = mixture_levels(
                mean_coeffs[score], truth[score], rules, weights[separate], **kw
            )
        for i, (how, s) in enumerate(candidates):
            if how == "joint":
                mixed = refit_rules(mean_coeffs[fit], truth[fit], far[fit],
                                    _sigmoid(s * logit_fit), rules, **kw, **grid)  # fmt: skip
                held[i, score] = mixture_levels(
                    mean_coeffs[score], truth[score], mixed, weights[i : i + 1], **kw
                )[0]
    table = []
    for (how, s), lv in zip(candidates, held, strict=True):
        row = {"signal": MIXTURE, "bins": 2, "fit": how, "sharpness": float(s)}
        table.append(row | map_rules.coverage_row(lv, far, levels))
    best = min(table, key=lambda r: r["miss"])
    novelty, rules = _fit(found, values, far, **grid)
    novelty = novelty.with_sharpness(best["sharpness"])
    if best["fit"] == "joint":
        weight = novelty.weight(values)
        rules = refit_rules(mean_coeffs, truth, far, weight, rules, **kw, **grid)
    rules = [r | {"n": int(n)} for r, n in zip(rules, ((~far).sum(), far.sum()), strict=True)]
    bins = {"signal": MIXTURE, "edges": [], "rules": rules, "novelty": novelty.to_dict()}
    return table, bins | {"fit": best["fit"]}


def _fit(found, values, far, **grid) -> tuple[Novelty, list[dict]]:
    """The logistic model and the (random, far) rules of least miss on these rows."""
    rules = [
        map_rules.rules_by_bin(found[..., sel], np.zeros(int(sel.sum())), bins=1, **grid)[0]
        for sel in (~far, far)
    ]
    return Novelty.fit(values, far), rules


def choose_for(geolocator, embeddings, truth, prediction, found, values, far, **kwargs):
    """:func:`choose_mixture` on a geolocator's validation rows ``embeddings [N, E]``
    (as given to it) with their ``prediction`` and :func:`map_rules.rule_levels`'
    ``found`` and signal ``values``: its features are the spread, and where the
    geolocator has a reference, the doubt and the nearest training condition's
    similarity."""
    reference = getattr(geolocator, "reference", None)
    features = feature_values(spread_km2=values["spread_km2"])
    if reference is not None:
        similarity = reference.nearest(embeddings)[1]
        features |= feature_values(doubt_km=values["doubt_km"], similarity=similarity)
    L = geolocator.config.model.L
    mean = prediction.coeffs.mean(axis=1)
    return choose_mixture(found, features, far, mean, truth, L=L, **kwargs)


def answer_weight(bins: dict, *, spread_km2, doubt_km=None, similarity=None):
    """``[B]`` the far rule's weight of each answer under a mixture's ``map_bins``; None
    where a feature it was fitted with is not given (a geolocator without its reference)."""
    values = feature_values(doubt_km=doubt_km, spread_km2=spread_km2, similarity=similarity)
    model = Novelty.from_dict(bins["novelty"])
    return model.weight(values) if set(model.features) <= set(values) else None

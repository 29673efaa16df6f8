"""The map rules a run keeps: binned by a signal of the answer, or mixed by novelty.

:func:`choose_map_rule` compares, on a run's validation rows held out, the map rules
binned by a signal (:func:`locdiff.infer.map_rules.choose_map_signal`) with the mixture of
two rules by novelty (:mod:`locdiff.infer.novelty`), and returns the run's choice
(re-exported by :mod:`locdiff.infer.calibration`).
"""

from __future__ import annotations

import numpy as np

from locdiff.infer import novelty
from locdiff.infer.map_rules import (
    LEVELS,
    MAP_BINS,
    MAP_SIGNALS,
    MIN_BIN_ROWS,
    POWERS,
    TAILS,
    TEMPERATURES,
    choose_map_signal,
    rule_levels,
    rules_by_bin,
)


def choose_map_rule(
    geolocator, embeddings, truth, *, powers=POWERS, tails=TAILS, temperatures=TEMPERATURES,
    levels=LEVELS, resolution_deg=1.0, batch_size: int = 256, seed: int = 0,
    bins: int = MAP_BINS, min_bin_rows: int = MIN_BIN_ROWS, prediction=None,
    signal: str | None = None, far=None,
) -> tuple[dict, list[dict]]:  # fmt: skip
    """The map rules whose credible regions' coverage is nearest the levels on a
    validation set, one for each bin of a signal of the answer (:data:`MAP_SIGNALS`:
    its spread, :func:`locdiff.infer.map_signals.spread_km2`, or its doubt,
    :meth:`locdiff.infer.reference.Reference.doubt_km`), and every rule's coverage.

    A rule's map is ``(1 - tail) * sharpened + tail * broad``: the positive part of the
    mean SHDD function raised to ``power`` (the core, :func:`shdd.probability_map`), mixed
    with weight ``tail`` with a broad map that ranks the cells far from every mode: the
    plain positive part (``tail_temperature`` 0), or the softmax rule at that
    temperature, which is positive everywhere, so that a truth where the function is
    negative can still fall inside a 90% region. A rule's miss is the sum over
    ``levels`` of ``|coverage - level|`` (ties go to the plainer rule).

    One rule for every input over-promises where the model is out of its depth (a
    condition far from every training photo gets a sharp map at the wrong place). So the
    validation rows are cut at quantiles of the signal into bins of at least
    ``min_bin_rows`` rows, and each bin gets its own rule; with a validation set that
    holds far-from-training rows (``far [N]`` bool, :func:`locdiff.data.splits.
    far_validation`), the bins of broad or doubtful answers learn how far to trust them.
    ``signal`` None: the signal and the number of bins are chosen on these rows by
    :func:`choose_map_signal` (by doubt only where the geolocator has a reference),
    against the mixture of two rules by novelty (:mod:`locdiff.infer.novelty`); else
    that signal, in up to ``bins`` bins (by doubt, a geolocator without a reference
    gets one rule). The mean function is put on the grid once; each rule then only
    reweights the cells (a truth's credible level is the mass of the cells denser than
    its own, as :func:`shdd.credible_level`). ``prediction``: the geolocator's own of
    ``embeddings`` at ``seed`` with its doubt, drawn already (else drawn here).

    Returns:
      ``{"map_power", "map_tail", "map_tail_temperature"}`` of all rows, with
      ``"map_bins": {"signal": signal, "edges": [inner edges], "rules": [that rule |
      {"n"} per bin]}`` (a mixture: :func:`locdiff.infer.novelty.choose_mixture`'s, with
      ``"novelty"``), and ``"choice"``: :func:`choose_map_signal`'s table, where it chose;
      and the table of every rule's coverage (``bin``: -1 for all rows).
    """
    if signal is not None and signal not in MAP_SIGNALS:
        raise ValueError(f"signal must be one of {MAP_SIGNALS} or None, got {signal!r}")
    if prediction is None:  # drawn here: the mixture by novelty reads its mean functions
        prediction = geolocator.predict(embeddings, top_k=1, seed=seed, doubt=True,
                                        batch_size=batch_size)  # fmt: skip
    found, values = rule_levels(
        geolocator, embeddings, truth, powers=powers, tails=tails, temperatures=temperatures,
        resolution_deg=resolution_deg, batch_size=batch_size, seed=seed, prediction=prediction,
    )  # fmt: skip
    grid = dict(powers=powers, tails=tails, temperatures=temperatures, levels=levels)
    has_doubt = getattr(geolocator, "reference", None) is not None
    choice = None
    if signal is None:
        far = np.zeros(len(truth), bool) if far is None else np.asarray(far, bool)
        if far.shape != (len(truth),):
            raise ValueError(f"far must be [{len(truth)}] bool, got shape {far.shape}")
        signals = MAP_SIGNALS if has_doubt else ("spread_km2",)
        mixture_rows, mixture = novelty.choose_for(
            geolocator, embeddings, truth, prediction, found, values, far,
            min_rows=min_bin_rows, **grid,
        )  # fmt: skip
        signal, bins, choice = choose_map_signal(
            found, {name: values[name] for name in signals}, far, min_bin_rows=min_bin_rows,
            mixture=mixture_rows, **grid,
        )  # fmt: skip
    elif signal == "doubt_km" and not has_doubt:
        bins = 1  # no doubt to bin by
    mixed = choice is not None and signal == novelty.MIXTURE
    chosen, per_bin, edges, table = rules_by_bin(
        found, values["spread_km2" if mixed else signal], bins=1 if mixed else bins,
        min_bin_rows=min_bin_rows, **grid,
    )  # fmt: skip
    bins_out = mixture if mixed else {"signal": signal, "edges": edges, "rules": per_bin}
    if choice is not None:
        bins_out = bins_out | {"choice": choice}
    return chosen | {"map_bins": bins_out}, table

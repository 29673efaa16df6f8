"""LocDiff-H: a LocDiff run, a gallery and the hybrid's rule (:mod:`locdiff.infer.hybrid`).

Trained as LocDiff; then the rule (candidates, weight, trust, gate) is chosen on the run's
validation split (:func:`locdiff.training.early_stopping.validation_split`: rows LocDiff did not
train on, searched against the other training rows) and on the data's far-validation set
where it has one, and kept in ``hybrid.json``. The gallery is
the training data unless one is given (kept in ``gallery.npz``).
"""

from __future__ import annotations

import os

from locdiff.config import Config
from locdiff.data import datasets as data
from locdiff.infer import hybrid
from locdiff.infer.hybrid import Gallery, Rule, choose_rule, locdiff_h
from locdiff.infer.prediction import Prediction, check_embeddings
from locdiff.io import files
from locdiff.methods import shdd_diffusion as locdiff_method
from locdiff.training.early_stopping import validation_split

MAX_TUNING_ROWS = 2000  # validation queries used to choose the rule
# how choose_rule picks (kept in hybrid.json; a rule chosen another way is chosen again)
SELECTION = f"parents-per-threshold-{hybrid.ADMISSIBLE_SE:g}se-clear-gain"

# What the method is (read by the registry and the command line, never its name):
LEARNED = True  # trains a network (with the one trainer)
CALIBRATED_MAPS = True  # LocDiff's maps: calibrated after training, a density to re-rank by
TAKES_GALLERY = True  # searches a gallery of (embedding, location) pairs given to it


objective_for = locdiff_method.objective_for  # it trains LocDiff


class LocDiffHLocator(locdiff_method.LocDiffLocator):
    """LocDiff's prediction with its first location chosen by the hybrid's rule."""

    method = "locdiff-h"

    def __init__(self, geolocator, gallery: Gallery, rule: Rule, meta=None, **kwargs):
        super().__init__(geolocator, meta, **kwargs)
        self.gallery, self.rule = gallery, rule

    def predict(self, embeddings, *, top_k: int = 1, **kwargs) -> Prediction:
        embeddings = check_embeddings(embeddings, self.embed_dim)
        plain = super().predict(embeddings, top_k=top_k, **kwargs)
        return locdiff_h(plain, embeddings, self.gallery, L=self.L, rule=self.rule)


def tune(locator, data_path: str, *galleries) -> list[tuple[Rule, list[dict]]]:
    """The rule chosen on ``locator``'s validation queries of ``data_path`` (its training
    data) for each of ``galleries``, with every rule's validation scores; the default
    rule when the run held nothing out. The queries are the random validation split and,
    where the data carry one, the far-validation set (:func:`locdiff.data.splits.
    far_validation_set`), at most ``MAX_TUNING_ROWS`` of each, predicted once.

    Each gallery is ``None`` (the training embeddings) or ``(embeddings, latlon)``
    row-aligned with the training data (e.g. the clean GeoCLIP embeddings of the same
    locations); either way the validation rows are left out of it.
    """
    arrays = data.load_npz(data_path)
    fraction = locator.geolocator.config.train.validation_fraction
    train_rows, _ = validation_split(len(arrays["latlon"]), fraction)
    query, truth, far = locdiff_method.calibration_rows(data_path, fraction, MAX_TUNING_ROWS)
    if len(query) == 0:
        return [(Rule(), []) for _ in galleries]
    prediction = locdiff_method.LocDiffLocator.predict(locator, query, top_k=1)
    chosen = []
    for gallery in galleries:
        emb, latlon = (arrays["embeddings"], arrays["latlon"]) if gallery is None else gallery
        if len(emb) != len(arrays["latlon"]):
            raise ValueError("the tuning gallery must be row-aligned with the training data")
        g = Gallery.of(emb[train_rows], latlon[train_rows])
        chosen.append(choose_rule(prediction, query, truth, g, L=locator.L, far=far))
    return chosen


def rule_for(run, locator, data_path: str, *, write: bool = True) -> Rule:
    """The run's rule: from ``hybrid.json``, else chosen now (:func:`tune`) and, with
    ``write``, kept there. A rule chosen for other LocDiff answers than the locator's
    (another guidance scale, snapping radius or gate) or by another selection is chosen
    again."""
    path = run.file("hybrid.json")
    geo = locator.geolocator
    guidance = locator.sampling.get("guidance", geo.config.diffusion.guidance)
    snapping = [geo.snap_km, geo.snap_max_doubt_km]
    kept = files.read_json(path) if os.path.exists(path) else {}
    step = locdiff_method.model_step(run)
    stale = kept.get("guidance", 1.0) != guidance or kept.get("selection") != SELECTION
    stale = stale or kept.get("snapping") != snapping or kept.get("best_step", step) != step
    if not kept or stale:  # (guidance 1.0: chosen before guidance was)
        ((rule, rows),) = tune(locator, data_path, None)
        kept = {"rule": rule.to_dict(), "guidance": guidance, "selection": SELECTION}
        kept |= {"snapping": snapping, "best_step": step}
        if write:
            files.write_json(path, {**kept, "validation": rows})
    return Rule.from_dict(kept["rule"])


def train(
    data_path: str, run, config: Config, *, progress=True, on_eval=None, gallery=None
) -> dict:
    """Train LocDiff, choose the rule; ``gallery``: ``(embeddings, latlon)`` to keep."""
    info = locdiff_method.train(data_path, run, config, progress=progress, on_eval=on_eval)
    if gallery is not None:
        g = Gallery.of(*gallery)
        files.save_npz(run.gallery, unit=g.unit, latlon=g.latlon)
    rule_for(run, locdiff_method.load(run, info), data_path)
    return info


def load(
    run, meta: dict, *, gallery: Gallery | None = None, batch_size=None, snap_km=None, **sampling
):
    """The locator; ``gallery`` replaces the run's (default: its training data)."""
    base = locdiff_method.load(run, meta, batch_size=batch_size, snap_km=snap_km, **sampling)
    if gallery is None and os.path.exists(run.gallery):
        arrays = files.load_npz(run.gallery)
        gallery = Gallery(arrays["unit"], arrays["latlon"])
    if gallery is None:
        arrays = data.load_npz(meta["data"])
        gallery = Gallery.of(arrays["embeddings"], arrays["latlon"])
    rule = rule_for(run, base, meta["data"], write=False)  # loading writes nothing
    return LocDiffHLocator(
        base.geolocator, gallery, rule, meta, batch_size=base.batch_size, **sampling
    )

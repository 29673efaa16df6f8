"""LocDiff: the CS-UNet in SHDD space (:mod:`locdiff.training.trainer`,
:mod:`locdiff.infer.geolocator`).

A locator over a :class:`locdiff.infer.geolocator.Geolocator`: its predictions carry the K
sampled SHDD vectors, each mode's probability and, on request, probability maps with
the areas of their credible regions.
"""

from __future__ import annotations

import itertools
import os
import warnings

import numpy as np

from locdiff.config import Config  # the method's config type
from locdiff.data import datasets as data
from locdiff.data import splits
from locdiff.infer import calibration, novelty
from locdiff.infer.geolocator import Geolocator
from locdiff.infer.prediction import Prediction
from locdiff.infer.reference import REFERENCE_ROWS, Reference
from locdiff.infer.snapping import LocationPrior
from locdiff.io import files
from locdiff.methods.base import Locator
from locdiff.model.loss import LocDiffObjective
from locdiff.training import trainer
from locdiff.training.checkpoints import training_record
from locdiff.training.early_stopping import validation_split

# What the method is (read by the registry and the command line, never its name):
LEARNED = True  # trains a network (with the one trainer)
CALIBRATED_MAPS = True  # LocDiff's maps: calibrated after training, a density to re-rank by
TAKES_GALLERY = False  # searches a gallery of (embedding, location) pairs given to it


class LocDiffLocator(Locator):
    """A trained LocDiff run; ``num_samples``, ``sample_steps``, ``guidance`` (None: the run's
    defaults) and ``batch_size`` set how it samples."""

    method = "locdiff"
    gives_maps = True
    map_title = "LocDiff"

    def __init__(self, geolocator: Geolocator, meta=None, *, batch_size: int = 256, **sampling):
        self.geolocator = geolocator
        self.embed_dim = geolocator.embed_dim
        self.meta = meta or {}
        self.batch_size = batch_size
        self.sampling = {k: v for k, v in sampling.items() if v is not None}

    @property
    def L(self) -> int:
        return self.geolocator.config.model.L

    def predict(
        self,
        embeddings,
        *,
        top_k: int = 1,
        seed: int = 0,
        maps: bool = False,
        progress=False,
        map_resolution: float = 1.0,
        doubt: bool = False,
    ) -> Prediction:
        return self.geolocator.predict(
            embeddings,
            top_k=top_k,
            seed=seed,
            maps=maps,
            map_resolution=map_resolution,
            batch_size=self.batch_size,
            progress=progress,
            doubt=doubt,
            **self.sampling,
        )


def objective_for(config: Config, data_path: str) -> LocDiffObjective:
    """The trainer's objective: the CS-UNet and its SHDD diffusion loss."""
    return LocDiffObjective(config)


def train(data_path: str, run, config: Config, *, progress=True, on_eval=None) -> dict:
    """Train (or resume) into ``run``; ``on_eval(step, locator)`` after each validation
    evaluation. Returns the data (``data.json``) and the training record (steps, best
    step, samples seen, epochs, validation losses, cumulative seconds)."""
    callback = None
    if on_eval is not None:

        def callback(step, graphdef, ema):
            on_eval(step, LocDiffLocator(Geolocator.from_params(run.path, graphdef, ema)))

    trainer.train(config, data_path, run.path, progress=progress, on_eval=callback)
    calibrate(run, data_path, Geolocator.from_checkpoint(run.path))
    return {**files.read_json(run.data), **training_record(run.path)}  # data, rows, width


CALIBRATION_ROWS = 1000  # validation rows that choose, in distribution and far away each


def calibration_rows(data_path: str, fraction: float, max_rows: int = CALIBRATION_ROWS):
    """The validation queries of the choices made after training: ``(x [V, E], truth
    [V, 2], far [V] bool)``, at most ``max_rows`` of the random validation split and as
    many of the data file's far-validation set (:func:`locdiff.data.splits.far_validation_set`;
    none if it carries none): equal shares, so that a choice that helps in distribution
    and hurts far from training is seen."""
    source = data.open_dataset(data_path)
    _, val = validation_split(len(source), fraction)
    val = val[:max_rows]
    if len(val):
        batch = source.take(val)
        x, truth = np.asarray(batch["embedding"], np.float32), np.asarray(batch["latlon"])
    else:
        x, truth = np.zeros((0, source.embed_dim), np.float32), np.zeros((0, 2))
    far = splits.far_validation_set(data_path)
    if far is None:
        return x, np.asarray(truth, np.float64), np.zeros(len(x), bool)
    rows = np.random.default_rng(0).permutation(len(far[0]))[:max_rows]
    far_x, far_truth = far[0][rows], far[1][rows]
    return (
        np.concatenate([x, far_x]),
        np.concatenate([np.asarray(truth, np.float64), far_truth]),
        np.concatenate([np.zeros(len(x), bool), np.ones(len(far_x), bool)]),
    )


def training_reference(data_path: str, fraction: float) -> Reference:
    """The :class:`Reference` of the training split's rows (those that
    ``validation_split(N, fraction)`` trains on): all of them, or a fixed random
    :data:`REFERENCE_ROWS` of them, read once."""
    source = data.open_dataset(data_path)
    train_rows = np.sort(validation_split(len(source), fraction)[0])
    keep = np.random.default_rng(0).permutation(len(train_rows))[:REFERENCE_ROWS]
    batch = source.take(np.sort(train_rows[keep]))
    return Reference.from_training(batch["embedding"], batch["latlon"])


def calibrate(run, data_path: str, geolocator: Geolocator) -> None:
    """Choose the run's sampling guidance (:func:`calibration.choose_guidance`), then at
    that guidance its map rules (:func:`calibration.choose_map_rule`: a power and the
    weight and kind of the broad tail for each bin of the answer's spread or doubt, the
    signal and the number of bins chosen on the same rows)
    and its snapping radius and gate by the answer's doubt (against the
    :class:`Reference` of the training split's conditions, kept in ``reference.npz``;
    :func:`calibration.choose_snap`, to the
    :class:`LocationPrior` of the training split's locations, kept in
    ``location_prior.npz``), on the validation queries of :func:`calibration_rows` (in
    distribution, and far from training where the data carry a far-validation set), and
    keep them in ``calibration.json``, which :class:`Geolocator` reads (without one:
    guidance from the config, the plain positive-part rule, no snapping). A
    ``calibration.json`` written before is completed: what it holds from today's grids
    is kept."""
    path = run.file("calibration.json")
    chosen = files.read_json(path) if os.path.exists(path) else {}
    step = model_step(run)
    if chosen.get("best_step", step) != step:  # made for another checkpoint of the run
        chosen = {}
    if is_calibrated(chosen, step) and os.path.exists(run.reference):
        return
    fraction = geolocator.config.train.validation_fraction
    x, truth, far = calibration_rows(data_path, fraction)
    if len(x) == 0:
        return
    rows = {"random": int(np.sum(~far)), "far": int(np.sum(far))}
    stored = chosen.get("validation_rows")  # None: chosen on random rows alone
    if (stored is None and rows["far"]) or (stored is not None and stored != rows):
        chosen = {}  # chosen on other queries: everything is chosen again
    chosen["validation_rows"] = rows
    if "guidance" not in chosen:
        guidance, table = calibration.choose_guidance(geolocator, x, truth)
        chosen |= {"guidance": guidance, "guidance_validation": table}
    source = data.open_dataset(data_path)
    train_rows = np.sort(validation_split(len(source), fraction)[0])
    if not os.path.exists(run.reference):
        training_reference(data_path, fraction).save(run.reference)
    reference = Reference.load(run.reference)
    geolocator = geolocator.with_guidance(chosen["guidance"]).with_snapping(None, 0.0)
    geolocator = geolocator.with_reference(reference)
    prediction = None  # drawn once for the map rules and snapping, where either is due
    if not _searched_today(chosen) or "snap_max_doubt_km" not in chosen:
        prediction = geolocator.predict(x, top_k=1, doubt=True)
    if not _searched_today(chosen):
        rule, table = calibration.choose_map_rule(
            geolocator, x, truth, prediction=prediction, far=far
        )
        chosen |= {**rule, "validation": table}
    if "snap_max_doubt_km" not in chosen:
        prior = LocationPrior.from_locations(data.locations(source)[train_rows])
        prior.save(run.location_prior)
        snap, table = calibration.choose_snap(geolocator, x, truth, prior, prediction=prediction)
        chosen |= {**snap, "snap_validation": table}
    files.write_json(path, chosen | {"best_step": step})


def _searched_today(chosen: dict) -> bool:
    grid = set(itertools.product(calibration.POWERS, calibration.TAILS, calibration.TEMPERATURES))
    searched = {
        (r["map_power"], r.get("map_tail"), r.get("map_tail_temperature"))
        for r in chosen.get("validation", [])
    }
    bins = chosen.get("map_bins", {})  # signal and bins chosen per run, on its own rows
    by_signal = bins.get("signal") in (*calibration.MAP_SIGNALS, novelty.MIXTURE)
    by_signal = by_signal and "choice" in bins
    # with far rows, the mixture by novelty was a candidate (too few: none),
    rows = chosen.get("validation_rows", {})
    tried = any(  # and its rules refitted under the mixture's weights
        row.get("signal") == novelty.MIXTURE and row.get("fit") == "joint"
        for row in bins.get("choice", [])
    )
    mixture = tried or min(rows.get("far", 0), rows.get("random", 0)) < calibration.MIN_BIN_ROWS
    return by_signal and searched == grid and mixture


def model_step(run) -> int | None:
    """The training step of the model the run loads (its best validation step)."""
    return trainer.read_progress(run.path).get("best_step")


def is_calibrated(chosen: dict, step: int | None = None) -> bool:
    """Whether a ``calibration.json`` holds a guidance, map rules chosen by bin of the
    signal the run chose (:func:`calibration.choose_map_signal`) from today's grid
    (:data:`calibration.POWERS` x :data:`calibration.TAILS` x
    :data:`calibration.TEMPERATURES`) and a snapping radius with its gate, all made for
    the model of training step ``step`` (where given and recorded: a run trained
    further, e.g. under a higher cap, has another)."""
    same_model = step is None or chosen.get("best_step", step) == step
    found = "guidance" in chosen and _searched_today(chosen) and "snap_max_doubt_km" in chosen
    return same_model and found


def load(run, meta: dict, *, batch_size=None, snap_km=None, **sampling) -> LocDiffLocator:
    """The run's locator, as the run directory holds it (loading writes nothing: a run
    calibrated by an earlier version keeps its choices, with a warning; ``locdiff
    calibrate RUN`` chooses them again). ``snap_km`` (None: the run's choice; 0: the
    decoder's own modes) is the radius its modes snap within (:mod:`locdiff.infer.snapping`):
    every mode, whatever its doubt (the run's gate goes with the run's radius)."""
    geolocator = Geolocator.from_checkpoint(run.path)
    calibrated = is_calibrated(geolocator.calibration, model_step(run))
    if not calibrated or geolocator.reference is None:
        warnings.warn(
            f"{run.path} was calibrated by an earlier version of LocDiff (or not at all); "
            f"`locdiff calibrate {run.path}` chooses its guidance, map rules and snapping "
            "again",
            stacklevel=2,
        )
    if snap_km is not None:  # a radius asked for snaps every mode (no gate by doubt)
        geolocator = geolocator.with_snapping(geolocator.prior, snap_km, max_doubt_km=None)
    return LocDiffLocator(geolocator, meta, batch_size=batch_size or 256, **sampling)


def recalibrate(run, meta: dict) -> None:
    """Choose the run's guidance, map rules and snapping again where its
    ``calibration.json`` is not from today's grids (:func:`calibrate`, on its training
    data ``meta["data"]``): the explicit step behind ``locdiff calibrate``."""
    path = run.file("calibration.json")
    if (
        os.path.exists(path)
        and is_calibrated(files.read_json(path), model_step(run))
        and os.path.exists(run.reference)
    ):
        return  # current: nothing to restore
    if not os.path.exists(meta.get("data", "")):
        raise FileNotFoundError(f"{run.path}: its training data {meta.get('data')} is gone")
    calibrate(run, meta["data"], Geolocator.from_checkpoint(run.path))

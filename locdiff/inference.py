"""From embeddings to locations: the ``Geolocator`` over a trained LocDiff run directory.

``Geolocator.from_checkpoint(workdir)`` restores the EMA parameters of the latest (or a
given) checkpoint with the run's config; ``predict(embeddings, ...)`` draws K SHDD
samples per condition, decodes the modes of their mean (the mixture of their
densities), snaps them to where training photos are (:mod:`locdiff.snapping`, when
the run chose a radius), and on request the probability maps and the areas of the 50% and 90%
credible regions. Any number of embeddings is predicted in fixed-size batches (one
compilation). LocDiff-H is :func:`locdiff.hybrid.locdiff_h`.
"""

from __future__ import annotations

import copy
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

import shdd
from locdiff import calibration, files
from locdiff.config import Config, override
from locdiff.errors import RunError
from locdiff.prediction import Prediction, check_embeddings
from locdiff.reference import Reference
from locdiff.rundir import RunDir
from locdiff.sampling import sample_coefficients
from locdiff.snapping import LocationPrior
from locdiff.train_step import init_state, make_optimizer
from locdiff.trainer import checkpoint_manager, read_progress

KEEP = object()  # an argument left as the geolocator has it


class Geolocator:
    """A trained LocDiff model ready to predict locations from condition embeddings."""

    def __init__(
        self,
        graphdef,
        params,
        config: Config,
        embed_dim: int,
        encoder: str | None = None,
        condition_stats: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        self.graphdef = graphdef
        self.params = params
        self.config = config
        self.embed_dim = embed_dim
        self.encoder = encoder  # the image encoder that made the training embeddings
        # (mean, std) of the training conditions; None: conditions are used as given.
        self.condition_stats = condition_stats
        # power and floor of the positive-part map rule, chosen on the run's validation
        # split so that credible regions cover what they claim (shdd.maps; 1 and 0: plain)
        self.map_rule = {"power": 1.0, "floor": 0.0}
        # maps are (1 - tail) * that rule's + tail * the plain rule's (the broad lobes
        # rank the cells far from every mode); tail is chosen with the power
        self.map_tail = 0.0
        self.map_tail_temperature = 0.0  # the tail's map: plain (0), else softmax at it
        # rules by bin of a signal of the answer (calibration.MAP_SIGNALS: its spread or
        # its doubt): {"signal", "edges": inner bin edges, "rules": one {"map_power",
        # "map_tail", "map_tail_temperature"} per bin}; None: the one rule above for all
        self.map_bins: dict | None = None
        # training conditions and places, for the doubt of each answer (None: no doubt)
        self.reference: Reference | None = None
        self.calibration: dict = {}  # calibration.json: the guidance and map rule chosen
        # modes move to the densest cell of training photos within snap_km (0: they stay)
        self.prior: LocationPrior | None = None
        self.snap_km = 0.0
        self.snap_max_doubt_km: float | None = None  # answers of more doubt stay (None: all snap)

    @classmethod
    def from_checkpoint(cls, workdir: str, *, step: int | None = None, ema: bool = True):
        """Restore a run directory written by ``locdiff train``: ``step``, or by default
        the step of the lowest validation loss (``training.json``), else the latest.

        Raises:
          RunError: no LocDiff run, or no checkpoint, in ``workdir``.
        """
        run = RunDir(workdir)
        if not run.is_locdiff:
            raise RunError(f"{workdir}: not a LocDiff run directory (no config.json)")
        config = Config.load(run.config)
        meta = files.read_json(run.data)
        embed_dim = int(meta["embed_dim"])
        manager = checkpoint_manager(workdir)
        try:
            if step is None:  # the best validation step where there is one, else the latest
                best = read_progress(workdir).get("best_step")
                step = best if best in manager.all_steps() else manager.latest_step()
            if step is None:
                raise RunError(f"{workdir}: no checkpoint yet")
            tx, _ = make_optimizer(config)
            graphdef, abstract = _abstract_state(config, embed_dim, tx)
            restored = manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            )["state"]
        finally:
            manager.close()
        return cls.from_params(workdir, graphdef, restored.ema if ema else restored.params)

    @classmethod
    def from_params(cls, workdir: str, graphdef, params):
        """A geolocator of run ``workdir``'s config and data with the given parameters
        (e.g. a run's EMA parameters mid-training, for a learning curve)."""
        run = RunDir(workdir)
        meta = files.read_json(run.data)
        stats = None
        if os.path.exists(run.condition_stats):
            arrays = files.load_npz(run.condition_stats)
            stats = (arrays["mean"], arrays["std"])
        config = Config.load(run.config)
        geo = cls(graphdef, params, config, int(meta["embed_dim"]), meta.get("encoder"), stats)
        if os.path.exists(run.file("calibration.json")):
            geo.calibration = files.read_json(run.file("calibration.json"))
            chosen = geo.calibration
            geo.map_rule = {"power": chosen["map_power"], "floor": chosen.get("map_floor", 0.0)}
            geo.map_tail = float(chosen.get("map_tail", 0.0))
            geo.map_tail_temperature = float(chosen.get("map_tail_temperature", 0.0))
            bins = chosen.get("map_bins")  # an older layout (no "signal"): one rule for all
            known = bins and bins.get("signal") in calibration.MAP_SIGNALS
            geo.map_bins = bins if known else None
            if "guidance" in chosen:
                geo.config = override(config, **{"diffusion.guidance": chosen["guidance"]})
        if os.path.exists(run.location_prior):
            geo.prior = LocationPrior.load(run.location_prior)
            geo.snap_km = float(geo.calibration.get("snap_km", 0.0))
            geo.snap_max_doubt_km = geo.calibration.get("snap_max_doubt_km")
        if os.path.exists(run.reference):
            geo.reference = Reference.load(run.reference)
        return geo

    def with_guidance(self, guidance: float) -> Geolocator:
        """This geolocator with ``guidance`` as its default guidance scale."""
        geo = copy.copy(self)
        geo.config = override(self.config, **{"diffusion.guidance": guidance})
        return geo

    def with_reference(self, reference: Reference | None) -> Geolocator:
        """This geolocator with ``reference`` for the doubt of its answers (None: none)."""
        geo = copy.copy(self)
        geo.reference = reference
        return geo

    def with_snapping(
        self, prior: LocationPrior | None, within_km: float, max_doubt_km=KEEP
    ) -> Geolocator:
        """This geolocator with its modes snapped to ``prior``'s densest cell within
        ``within_km`` (:mod:`locdiff.snapping`; ``None`` or 0: not snapped), only for
        answers of doubt at most ``max_doubt_km`` (:meth:`locdiff.reference.Reference.
        doubt_km`; None: all; unset: the run's gate)."""
        if within_km < 0:
            raise ValueError(f"within_km must be >= 0, got {within_km}")
        if within_km > 0 and prior is None:
            raise ValueError("snapping needs a LocationPrior (the run has no location_prior.npz)")
        geo = copy.copy(self)
        geo.prior, geo.snap_km = prior, float(within_km)
        if max_doubt_km is not KEEP:
            geo.snap_max_doubt_km = max_doubt_km
        return geo

    def check_embeddings(self, embeddings) -> np.ndarray:
        """``embeddings`` as float32 ``[N, E]``; ``ValueError`` on a wrong width or a NaN."""
        return check_embeddings(embeddings, self.embed_dim)

    def predict(
        self,
        embeddings,
        *,
        top_k: int = 5,
        num_samples: int | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
        maps: bool = False,
        map_resolution: float = 1.0,
        batch_size: int = 256,
        progress: bool = False,
    ) -> Prediction:
        """Top-``k`` locations of each embedding ``[N, E]`` (deterministic for a ``seed``).

        Unset ``num_samples`` (K), ``steps`` and ``guidance`` take the run's defaults.
        More than ``batch_size`` embeddings go in batches of ``batch_size`` (the last one
        padded, so every batch has one shape); batch ``i`` uses seed ``seed + i *
        batch_size``. Fewer are padded to the next power of two (at least 8). The noise of
        a row does not depend on the padding (JAX's partitionable threefry), so a row's
        prediction is the same whatever the batch it is padded into.
        """
        embeddings = self.check_embeddings(embeddings)  # before any progress is shown
        raw = embeddings  # as the reference holds them, for the doubt
        if self.condition_stats is not None:
            mean, std = self.condition_stats
            embeddings = (embeddings - mean[None, :]) / std[None, :]
        kwargs = dict(num_samples=num_samples, steps=steps, guidance=guidance, top_k=top_k)
        kwargs |= dict(maps=maps, map_resolution=map_resolution)
        n = len(embeddings)
        if n <= batch_size:  # one batch, padded to a power of two: few shapes to compile
            bucket = min(batch_size, max(8, 1 << (n - 1).bit_length()))
            out = self._predict_batch(_pad(embeddings, bucket), _pad(raw, bucket), seed=seed,
                                      **kwargs)  # fmt: skip
            return out[:n]
        parts = []
        starts = range(0, n, batch_size)
        for start in tqdm(starts, disable=not progress, desc="predict", unit="batch"):
            chunk = embeddings[start : start + batch_size]
            raw_chunk = raw[start : start + batch_size]
            batch, raw_batch = _pad(chunk, batch_size), _pad(raw_chunk, batch_size)
            out = self._predict_batch(batch, raw_batch, seed=seed + start, **kwargs)
            parts.append(out[: len(chunk)])
        return Prediction.concatenate(parts)

    def _predict_batch(self, conditions, raw, *, seed, top_k, maps, map_resolution, **sampling):
        """One batch of standardised conditions ``[B, E]`` (``raw``: as given)."""
        coeffs = sample_coefficients(
            self.graphdef, self.params, conditions, jax.random.key(seed), self.config, **sampling
        )  # [B, K, D]
        mean = coeffs.mean(axis=1)
        L = self.config.model.L
        latlon, prob = shdd.decode(mean, L=L, k=top_k)
        latlon = np.asarray(latlon)
        doubt = None
        if self.reference is not None:  # of the decoder's own top mode, before snapping
            doubt = self.reference.doubt_km(latlon[:, 0], raw)
        if self.prior is not None and self.snap_km > 0:
            snapped = self.prior.snap(latlon, self.snap_km).astype(latlon.dtype)
            if self.snap_max_doubt_km is not None and doubt is not None:
                keep = (doubt <= self.snap_max_doubt_km)[:, None, None]  # the rest stay
                snapped = np.where(keep, snapped, latlon)
            latlon = snapped
        out = Prediction(latlon, np.asarray(prob), np.asarray(coeffs), doubt_km=doubt)
        if maps:
            signal = None  # the values of the map bins' signal
            if self.map_bins and self.map_bins["signal"] == "spread_km2":
                signal = calibration.spread_km2(mean, L=L)
            elif self.map_bins:
                signal = doubt
            pmap = self._maps(mean, signal, map_resolution)
            out.maps = pmap
            out.credible_km2 = np.asarray(
                shdd.credible_area_km2(pmap, resolution_deg=map_resolution, levels=(0.5, 0.9))
            )
        return out

    def _maps(self, mean, signal, resolution) -> np.ndarray:
        """``[B, n_lat, n_lon]`` maps of mean functions ``[B, D]`` by the run's map rule
        (by bin of ``signal [B]``, the values of its bins' signal, where the run chose
        one rule per bin): ``(1 - tail) * sharpened + tail * broad``
        (:func:`calibration.choose_map_rule`)."""
        L = self.config.model.L
        broad = {}  # the tail maps, each put on the grid once for every rule

        def tail_map(temperature):
            if temperature not in broad:
                rule = dict(rule="softmax", temperature=temperature) if temperature else {}
                broad[temperature] = np.asarray(
                    shdd.probability_map(mean, L=L, resolution_deg=resolution, **rule)
                )
            return broad[temperature]

        def by_rule(power, tail, temperature=0.0, floor=0.0):
            pmap = np.asarray(
                shdd.probability_map(mean, L=L, resolution_deg=resolution, power=power, floor=floor)
            )
            return (1 - tail) * pmap + tail * tail_map(temperature) if tail else pmap

        if not self.map_bins or signal is None:  # (no doubt without a reference)
            rule = self.map_rule
            return by_rule(rule["power"], self.map_tail, self.map_tail_temperature, rule["floor"])
        which = calibration.bin_index(signal, self.map_bins["edges"])
        out = None
        for b in np.unique(which):
            rule = self.map_bins["rules"][b]
            temperature = rule.get("map_tail_temperature", 0.0)
            pmap = by_rule(rule["map_power"], rule["map_tail"], temperature)
            out = pmap if out is None else np.where((which == b)[:, None, None], pmap, out)
        return out


def _pad(rows: np.ndarray, size: int) -> np.ndarray:
    """``rows [n, E]`` padded to ``[size, E]`` by repeating the last row."""
    return np.concatenate([rows, np.repeat(rows[-1:], size - len(rows), axis=0)])


def _abstract_state(config: Config, embed_dim: int, tx):
    """``(graphdef, state)`` where the state holds only shapes, dtypes and a one-device
    sharding: the restore target, with nothing allocated (AdamW moments included)."""
    graphdefs = []

    def build():
        graphdef, state = init_state(config, embed_dim, tx)
        graphdefs.append(graphdef)
        return state

    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # this process's
    shapes = jax.eval_shape(build)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), shapes
    )
    return graphdefs[0], abstract

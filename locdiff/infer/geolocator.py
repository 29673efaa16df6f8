"""From embeddings to locations: the ``Geolocator`` over a trained LocDiff run directory.

``Geolocator.from_checkpoint(workdir)`` restores the EMA parameters of the latest (or a
given) checkpoint with the run's config; ``predict(embeddings, ...)`` draws K SHDD
samples per condition, decodes the modes of their mean (the mixture of their
densities), snaps them to where training photos are (:mod:`locdiff.infer.snapping`, when
the run chose a radius), and on request the probability maps and the areas of the 50% and 90%
credible regions. Any number of embeddings is predicted in fixed-size batches (one
compilation). LocDiff-H is :func:`locdiff.infer.hybrid.locdiff_h`.
"""

from __future__ import annotations

import copy
import os

import jax
import numpy as np
from tqdm.auto import tqdm

import shdd
from locdiff.config import Config, override
from locdiff.errors import RunError
from locdiff.infer import calibration, novelty
from locdiff.infer.prediction import Prediction, check_embeddings
from locdiff.infer.reference import Reference
from locdiff.infer.snapping import LocationPrior
from locdiff.io import files
from locdiff.io.rundir import RunDir
from locdiff.model.sampling import sample_coefficients
from locdiff.training.checkpoints import restore_params

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
        # the map rule, chosen on the run's validation rows so that credible regions
        # cover what they claim (calibration.choose_map_rule): maps are (1 - tail) *
        # positive part ** power + tail * a broad map (the plain positive part, or the
        # softmax rule at the tail temperature); these values: the plain map
        self.map_rule = {"map_power": 1.0, "map_tail": 0.0, "map_tail_temperature": 0.0}
        # rules by bin of a signal of the answer (calibration.MAP_SIGNALS: its spread or
        # its doubt): {"signal", "edges": inner bin edges, "rules": one rule per bin}; or
        # signal "novelty": two rules mixed by how novel the answer looks
        # (locdiff.infer.novelty, with "novelty": its model); None: the one rule above
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
        embed_dim = int(files.read_json(run.data)["embed_dim"])
        graphdef, params = restore_params(workdir, config, embed_dim, step=step, ema=ema)
        return cls.from_params(workdir, graphdef, params)

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
            geo.map_rule = {k: float(chosen.get(k, v)) for k, v in geo.map_rule.items()}
            bins = chosen.get("map_bins")  # an older layout (no "signal"): one rule for all
            known = bins and bins.get("signal") in (*calibration.MAP_SIGNALS, novelty.MIXTURE)
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
        ``within_km`` (:mod:`locdiff.infer.snapping`; ``None`` or 0: not snapped), only for
        answers of doubt at most ``max_doubt_km`` (:meth:`locdiff.infer.reference.Reference.
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
        sample_steps: int | None = None,
        guidance: float | None = None,
        seed: int = 0,
        maps: bool = False,
        map_resolution: float = 1.0,
        batch_size: int = 256,
        progress: bool = False,
        doubt: bool = False,
    ) -> Prediction:
        """Top-``k`` locations of each embedding ``[N, E]`` (deterministic for a ``seed``).

        Unset ``num_samples`` (K), ``sample_steps`` and ``guidance`` take the run's defaults.
        ``doubt``: also each answer's doubt (``Prediction.doubt_km``, where the run has
        a reference: a search of its training conditions); it is computed, and given,
        anyway where the run's snapping gate or its maps' bins need it.
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
        kwargs = dict(num_samples=num_samples, sample_steps=sample_steps, guidance=guidance)
        kwargs["top_k"] = top_k
        kwargs |= dict(maps=maps, map_resolution=map_resolution, doubt=doubt)
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

    def _needs_doubt(self, maps: bool) -> bool:
        """Whether the run's own choices read the doubt: its snapping gate, or (with
        maps) its map rules by bin of doubt."""
        gated = self.prior is not None and self.snap_km > 0 and self.snap_max_doubt_km is not None
        signal = self.map_bins["signal"] if self.map_bins else None
        by_doubt = maps and signal in ("doubt_km", novelty.MIXTURE)
        return gated or by_doubt

    def _predict_batch(
        self, conditions, raw, *, seed, top_k, maps, map_resolution, doubt, **sampling
    ):
        """One batch of standardised conditions ``[B, E]`` (``raw``: as given)."""
        coeffs = sample_coefficients(
            self.graphdef, self.params, conditions, jax.random.key(seed), self.config, **sampling
        )  # [B, K, D]
        mean = coeffs.mean(axis=1)
        L = self.config.model.L
        latlon, prob = shdd.decode(mean, L=L, k=top_k)
        latlon = np.asarray(latlon)
        wanted, doubt, similarity = doubt or self._needs_doubt(maps), None, None
        if wanted and self.reference is not None:  # of the decoder's own mode, unsnapped
            doubt, similarity = self.reference.doubt_and_similarity(latlon[:, 0], raw)
        if self.prior is not None and self.snap_km > 0:
            snapped = self.prior.snap(latlon, self.snap_km).astype(latlon.dtype)
            if self.snap_max_doubt_km is not None and doubt is not None:
                keep = (doubt <= self.snap_max_doubt_km)[:, None, None]  # the rest stay
                snapped = np.where(keep, snapped, latlon)
            latlon = snapped
        out = Prediction(latlon, np.asarray(prob), np.asarray(coeffs), doubt_km=doubt)
        if maps:
            signal = None  # the values of the map bins' signal (a mixture: the weights)
            kind = self.map_bins["signal"] if self.map_bins else None
            if kind in ("spread_km2", novelty.MIXTURE):
                signal = calibration.spread_km2(mean, L=L)
            elif kind:
                signal = doubt
            if kind == novelty.MIXTURE:  # None without the reference it was fitted with
                signal = novelty.answer_weight(
                    self.map_bins, spread_km2=signal, doubt_km=doubt, similarity=similarity
                )
            pmap = self._maps(mean, signal, map_resolution)
            out.maps = pmap
            out.credible_km2 = np.asarray(
                shdd.credible_area_km2(pmap, resolution_deg=map_resolution, levels=(0.5, 0.9))
            )
        return out

    def _maps(self, mean, signal, resolution) -> np.ndarray:
        """``[B, n_lat, n_lon]`` maps of mean functions ``[B, D]`` by the run's map rule
        (by bin of ``signal [B]``, the values of its bins' signal, where the run chose
        one rule per bin): :func:`calibration.rule_map`, the definition the rules were
        chosen by."""
        cells = calibration.map_cells(mean, L=self.config.model.L, resolution_deg=resolution)
        shape = (len(mean), *shdd.latlon_grid(resolution).shape)
        if not self.map_bins or signal is None:  # (no doubt without a reference)
            return calibration.rule_map(cells, self.map_rule).reshape(shape).astype(np.float32)
        if self.map_bins["signal"] == novelty.MIXTURE:  # signal: the far rule's weights
            masses = novelty.mixture_map(cells, self.map_bins["rules"], signal)
            return masses.reshape(shape).astype(np.float32)
        which = calibration.bin_index(signal, self.map_bins["edges"])
        out = np.zeros((len(mean), cells[0].shape[1]), np.float32)
        for b in np.unique(which):  # every row's map by each rule in use: one shape to jit
            masses = calibration.rule_map(cells, self.map_bins["rules"][b])
            out[which == b] = masses[which == b]
        return out.reshape(shape)


def _pad(rows: np.ndarray, size: int) -> np.ndarray:
    """``rows [n, E]`` padded to ``[size, E]`` by repeating the last row."""
    return np.concatenate([rows, np.repeat(rows[-1:], size - len(rows), axis=0)])

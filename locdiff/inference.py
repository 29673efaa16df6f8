"""From embeddings to locations: the ``Geolocator`` API over a trained run directory.

``Geolocator.from_checkpoint(workdir)`` restores the EMA parameters of the latest (or a
given) checkpoint with the run's config; ``predict(embeddings, ...)`` draws K SHDD
samples per condition, decodes the modes of their mean (the mixture of their
densities), and on request the probability maps and the areas of the 50% and 90%
credible regions. ``rerank_gallery`` is LocDiff-H: it snaps each prediction to the GPS
gallery point of highest decoded density near the modes.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from scipy.spatial import cKDTree

import shdd
from locdiff.config import Config
from locdiff.sampling import sample_coefficients
from locdiff.train_step import init_state, make_optimizer
from locdiff.trainer import CONDITION_STATS, checkpoint_manager


@dataclasses.dataclass
class Prediction:
    """What ``Geolocator.predict`` returns (numpy arrays).

    Attributes:
      latlon: ``[B, k, 2]`` modes in degrees, best first.
      prob: ``[B, k]`` probability mass of each mode (``shdd.decode``'s ``mass``).
      coeffs: ``[B, K, D]`` the sampled SHDD vectors.
      maps: ``[B, n_lat, n_lon]`` probability maps of the sample mean, if requested.
      credible_km2: ``[B, 2]`` areas of the 50% and 90% credible regions, if maps were made.
    """

    latlon: np.ndarray
    prob: np.ndarray
    coeffs: np.ndarray
    maps: np.ndarray | None = None
    credible_km2: np.ndarray | None = None


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

    @classmethod
    def from_checkpoint(cls, workdir: str, *, step: int | None = None, ema: bool = True):
        """Restore a run directory written by ``locdiff train``.

        Raises:
          FileNotFoundError: no run, or no checkpoint, in ``workdir``.
        """
        config_path = os.path.join(workdir, "config.json")
        meta_path = os.path.join(workdir, "data.json")
        if not os.path.exists(config_path) or not os.path.exists(meta_path):
            raise FileNotFoundError(f"{workdir}: not a LocDiff run directory (no config.json)")
        config = Config.load(config_path)
        with open(meta_path) as f:
            meta = json.load(f)
        embed_dim, encoder = int(meta["embed_dim"]), meta.get("encoder")
        manager = checkpoint_manager(workdir)
        try:
            step = manager.latest_step() if step is None else step
            if step is None:
                raise FileNotFoundError(f"{workdir}: no checkpoint yet")
            tx, _ = make_optimizer(config)
            graphdef, state = init_state(config, embed_dim, tx)
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
            restored = manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
            )["state"]
        finally:
            manager.close()
        params = restored.ema if ema else restored.params
        stats = None
        stats_path = os.path.join(workdir, CONDITION_STATS)
        if os.path.exists(stats_path):
            with np.load(stats_path) as f:
                stats = (f["mean"], f["std"])
        return cls(graphdef, params, config, embed_dim, encoder, stats)

    def check_embeddings(self, embeddings) -> np.ndarray:
        """``embeddings`` as float32 ``[B, E]``; ``ValueError`` on a wrong width or a NaN."""
        embeddings = np.asarray(embeddings, np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.embed_dim:
            raise ValueError(
                f"embeddings must be [B, {self.embed_dim}] for this checkpoint, "
                f"got {list(embeddings.shape)}"
            )
        if not np.all(np.isfinite(embeddings)):
            raise ValueError("embeddings must be finite")
        return embeddings

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
    ) -> Prediction:
        """Top-``k`` locations of each embedding ``[B, E]`` (deterministic for a ``seed``).

        Unset ``num_samples`` (K), ``steps`` and ``guidance`` take the run's defaults.
        """
        embeddings = self.check_embeddings(embeddings)
        if self.condition_stats is not None:
            mean, std = self.condition_stats
            embeddings = (embeddings - mean[None, :]) / std[None, :]
        coeffs = sample_coefficients(
            self.graphdef,
            self.params,
            embeddings,
            jax.random.key(seed),
            self.config,
            num_samples=num_samples,
            steps=steps,
            guidance=guidance,
        )  # [B, K, D]
        mean = coeffs.mean(axis=1)
        L = self.config.model.L
        latlon, prob = shdd.decode(mean, L=L, k=top_k)
        out = Prediction(np.asarray(latlon), np.asarray(prob), np.asarray(coeffs))
        if maps:
            pmap = shdd.probability_map(mean, L=L, resolution_deg=map_resolution)
            out.maps = np.asarray(pmap)
            out.credible_km2 = np.asarray(
                shdd.credible_area_km2(pmap, resolution_deg=map_resolution, levels=(0.5, 0.9))
            )
        return out


def rerank_gallery(prediction: Prediction, gallery, *, L: int, neighbours: int = 64):
    """LocDiff-H: for each prediction, the gallery point of highest density near its modes.

    Args:
      prediction: from :meth:`Geolocator.predict`.
      gallery: ``[G, 2]`` degrees (e.g. the 100K MP16 gallery).
      L: band limit of the coefficients.
      neighbours: gallery points considered around each mode.

    Returns:
      ``[B, 2]`` snapped locations.
    """
    gallery = np.asarray(gallery, np.float64)
    tree = cKDTree(np.asarray(shdd.sphere.latlon_to_xyz(gallery), np.float64))
    modes = prediction.latlon  # [B, k, 2]
    n = min(neighbours, len(gallery))
    _, index = tree.query(np.asarray(shdd.sphere.latlon_to_xyz(modes.astype(np.float64))), k=n)
    index = index.reshape(modes.shape[0], -1)  # [B, k*n]
    candidates = gallery[index]  # [B, k*n, 2]
    mean = prediction.coeffs.mean(axis=1)  # [B, D]
    values = np.asarray(shdd.evaluate(mean[:, None, :], candidates.astype(np.float32), L=L))
    best = np.argmax(values, axis=1)
    return candidates[np.arange(len(best)), best]

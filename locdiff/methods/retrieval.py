"""Retrieval (IM2GPS, GeoCLIP): the location of the most similar gallery embedding.

The gallery is the training set's own embeddings and locations (image-to-image
retrieval), or any gallery whose embeddings are comparable to the queries. Similarity
is cosine; the gallery is normalised once, when the locator is made, and queries are
scored in chunks so that memory stays bounded for a gallery of any size (the 100K
MP16 gallery included). ``search.k = 1`` answers with the nearest neighbour;
``search.k > 1`` with the densest cluster of the top ``k``: the neighbour with most
others within ``radius_km``, averaged with them.
"""

from __future__ import annotations

import numpy as np

import shdd
from locdiff.infer.neighbours import normalise, search
from locdiff.infer.prediction import Prediction, broadcast_top_k
from locdiff.io import files
from locdiff.methods.base import Locator, no_options, read_training_data
from locdiff.methods.cells import spherical_mean
from locdiff.methods.configs import RetrievalConfig

Config = RetrievalConfig

# What the method is (read by the registry and the command line, never its name):
LEARNED = False  # trains a network (with the one trainer)
CALIBRATED_MAPS = False  # LocDiff's maps: calibrated after training, a density to re-rank by
TAKES_GALLERY = False  # searches a gallery of (embedding, location) pairs given to it


def densest(points, radius_km: float) -> np.ndarray:
    """The mean ``[2]`` of the densest cluster of ``points [k, 2]``: the point with most
    others within ``radius_km``, averaged with them."""
    d = shdd.haversine_km_np(points[:, None], points[None, :])  # [k, k]
    close = d <= radius_km
    return spherical_mean(points[close[close.sum(axis=1).argmax()]])


def answer(index, gallery_latlon, radius_km: float) -> np.ndarray:
    """Locations ``[Q, 2]`` from neighbour indices ``[Q, k]``: the neighbour's location
    for ``k = 1``, else the densest cluster of the ``k``."""
    if index.shape[1] == 1:
        return gallery_latlon[index[:, 0]]
    return np.stack([densest(gallery_latlon[row], radius_km) for row in index])


def retrieval(query, gallery, gallery_latlon, *, k: int = 1, radius_km: float = 25.0):
    """Locations ``[Q, 2]`` of ``query [Q, E]`` by cosine retrieval over ``gallery [G, E]``
    with locations ``gallery_latlon [G, 2]`` (module docstring for ``k``)."""
    index = search(normalise(query), normalise(gallery), k=k)
    return answer(index, np.asarray(gallery_latlon, np.float64), radius_km)


class RetrievalLocator(Locator):
    """Cosine retrieval over a gallery of ``(embedding, location)`` pairs."""

    method = "retrieval"

    def __init__(self, embeddings, latlon, config: RetrievalConfig | None = None, meta=None):
        self.gallery_unit = normalise(embeddings)  # [G, E], normalised once
        self.latlon = np.asarray(latlon, np.float64)
        self.config = RetrievalConfig() if config is None else config
        self.embed_dim = self.gallery_unit.shape[1]
        self.meta = meta or {}

    def neighbours(self, embeddings, k: int) -> np.ndarray:
        """Indices ``[N, k]`` of each embedding's ``k`` nearest gallery rows (unsorted)."""
        return search(normalise(embeddings), self.gallery_unit, k=k)

    def _predict(self, embeddings, *, top_k: int, seed: int) -> Prediction:
        index = self.neighbours(embeddings, self.config.search.k)
        best = answer(index, self.latlon, self.config.search.radius_km)
        return Prediction(latlon=broadcast_top_k(best, top_k))


def train(data_path: str, run, config: RetrievalConfig, *, progress=True, on_eval=None) -> dict:
    """Keep the training set as the gallery (nothing is learned: no learning curve)."""
    x, latlon, info = read_training_data(data_path)
    files.save_npz(run.params, embeddings=x, latlon=latlon)
    return info


def load(run, meta: dict, **options) -> RetrievalLocator:
    no_options("retrieval", options)
    arrays = files.load_npz(run.require(run.params, "gallery"))
    config = RetrievalConfig.from_dict(meta["config"])
    return RetrievalLocator(arrays["embeddings"], arrays["latlon"], config, meta)

"""GeoToken: a location as the sequence of its S2 cell tokens, predicted token by token.

Our reconstruction of GeoToken (Hierarchical Geolocalization of Images via Next Token
Prediction, ICDM 2025) without its retrieval memory: a location is its S2 cell of
level 20 written as a face token then ten tokens of two levels each
(:mod:`locdiff.data.s2`); a transformer decoder conditioned on the embedding
(:class:`locdiff.model.token_decoder.TokenDecoder`) is trained by teacher forcing with a
position-weighted cross-entropy, through the one trainer; it answers by beam search or
by sampling several sequences and keeping the most probable, with the centres of the
cells as locations and their probabilities under the model. Identical sequences (from
sampling) are merged. The tokens of a batch are computed on the device from its
locations, in float32 (a point within a metre of a level-20 edge may get the next
cell: 10 m, far below any threshold scored).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import shdd
from locdiff.config import assign
from locdiff.data import s2
from locdiff.infer import calibration
from locdiff.infer.neighbours import most_similar, normalise
from locdiff.infer.prediction import Prediction
from locdiff.io import files
from locdiff.methods.configs import GeoTokenConfig
from locdiff.methods.network import (
    NetworkLocator,
    NetworkObjective,
    load_network,
    train_network,
)
from locdiff.methods.shdd_diffusion import calibration_rows
from locdiff.model import token_decoder

Config = GeoTokenConfig
BATCH = 256  # queries decoded at once

# What the method is (read by the registry and the command line, never its name):
LEARNED = True  # trains a network (with the one trainer)
CALIBRATED_MAPS = False  # LocDiff's maps: calibrated after training, a density to re-rank by
TAKES_GALLERY = False  # searches a gallery of (embedding, location) pairs given to it


def position_weights(length: int, coarse_weight: float) -> np.ndarray:
    """``[T]`` the loss weight of each position, falling linearly from ``coarse_weight``
    at the face to 1 at the finest token (GeoToken's public code: 2 to 1), normalised to
    mean 1 (``coarse_weight`` 1: all alike)."""
    t = np.arange(length) / max(length - 1, 1)
    w = 1.0 + (coarse_weight - 1.0) * (1.0 - t)
    return w / w.mean()


def loss(model, x, latlon, key, *, levels: int, per_token: int, weights, neighbours=None):
    """The position-weighted cross-entropy of each location's tokens, teacher-forced
    (``neighbours``: ``geotoken-rag``'s, :meth:`TokenDecoder.memory_of`)."""
    sequences = s2.tokens(latlon, levels=levels, per_token=per_token, xp=jnp)
    logp = model(x, sequences, neighbours)  # [B, T, V]
    nll = -jnp.take_along_axis(logp, sequences[..., None], axis=-1)[..., 0]
    return jnp.mean(nll @ jnp.asarray(weights, jnp.float32)) / len(weights)


@dataclasses.dataclass(frozen=True)
class Gallery:
    """``geotoken-rag``'s training photos: unit embeddings ``unit [G, E]`` and their cells'
    token sequences ``tokens [G, T]``."""

    unit: np.ndarray
    tokens: np.ndarray

    def neighbours(self, embeddings, k: int, exclude=None):
        """The ``k`` most similar photos of each of ``embeddings [B, E]`` as the decoder
        reads them: ``(unit [B, k, E], tokens [B, k, T], similarity [B, k])``."""
        index, similarity = most_similar(normalise(embeddings), self.unit, k=k, exclude=exclude)
        return np.asarray(self.unit[index], np.float32), self.tokens[index], similarity


class GeoTokenLocator(NetworkLocator):
    """The decoder's most probable cells (beam search, or the best of samples); with a
    ``gallery``, ``geotoken-rag``: the query's nearest photos in the decoder's memory."""

    method = "geotoken"
    gives_maps = True  # its decoded cells' masses (predict(maps=True)), not calibrated
    map_title = "GeoToken"

    def __init__(self, model, config, embed_dim: int, meta=None, gallery: Gallery | None = None):
        super().__init__(model, config, embed_dim, meta)
        self.gallery = gallery
        if gallery is not None:
            self.method, self.map_title = "geotoken-rag", "GeoToken-RAG"
        m, graphdef = self.config.model, self._graphdef
        length = 1 + m.levels // m.per_token

        @functools.partial(jax.jit, static_argnames=("decode", "width"))
        def decode(state, x, neighbours, key, temperature, *, decode, width):
            model = nnx.merge(graphdef, state)
            step = token_decoder.CachedStep(model, model.memory_of(x, neighbours))
            if decode == "beam":
                return token_decoder.beam_search(step, len(x), length, width)
            return token_decoder.sample(step, key, len(x), length, width, temperature)

        self._decode = decode

    def sequences(self, embeddings, *, seed: int = 0, decode=None, width=None,
                  temperature=None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """``(sequences [N, W, T], log-probabilities [N, W])``, most probable first: the
        run's decoding, or ``decode`` ("beam", "sample") with ``width`` (beam width, or
        number of samples) and ``temperature`` given."""
        m = self.config.model
        decode = decode or m.decode
        if width is None:
            width = m.beam_width if decode == "beam" else m.samples
        temperature = float(m.temperature if temperature is None else temperature)
        key = jax.random.key(seed)
        seqs, scores = [], []
        size = BATCH  # one shape for every chunk and every call: one compilation
        for start in range(0, len(embeddings), size):
            x = embeddings[start : start + size]
            n = len(x)
            neighbours = None
            if self.gallery is not None:  # the rows' own, padded as the rows are
                neighbours = tuple(_pad(a, size) for a in self.gallery.neighbours(x, m.neighbours))
            x = _pad(x, size)
            s, p = self._decode(
                self._state, x, neighbours, jax.random.fold_in(key, start), temperature,
                decode=decode, width=int(width),
            )  # fmt: skip
            seqs.append(np.asarray(s)[:n]), scores.append(np.asarray(p)[:n])
        return np.concatenate(seqs), np.concatenate(scores)

    def _predict_maps(self, embeddings, *, top_k: int, seed: int, resolution_deg: float):
        """Each input's map of its decoded cells (:func:`cell_maps`: the beam's or the
        distinct samples' probabilities, renormalised) and its 50% / 90% regions' areas.
        The maps are the decoding's own, not calibrated: a beam of width 1 puts all its
        mass in one cell."""
        latlon, prob = self._answers(embeddings, seed=seed)
        pmap = cell_maps(latlon, prob, resolution_deg=resolution_deg)  # prob: the map's shares
        areas = shdd.credible_area_km2(pmap, resolution_deg=resolution_deg)  # 50%, 90%
        return dataclasses.replace(_top(latlon, prob, top_k), maps=pmap, credible_km2=areas)

    def _answers(self, embeddings, *, seed: int, **decoding) -> tuple[np.ndarray, np.ndarray]:
        """``(latlon [N, W, 2], prob [N, W])``: every decoded cell's centre and share of
        the decoded cells' probability (the decoder's, renormalised over the distinct
        cells: what its map holds there), identical cells merged (repeats at the end,
        share 0)."""
        seqs, scores = distinct(*self.sequences(embeddings, seed=seed, **decoding))
        return s2.centres(seqs, self.config.model.per_token), shares(scores)

    def _predict(self, embeddings, *, top_k: int, seed: int, **decoding) -> Prediction:
        return _top(*self._answers(embeddings, seed=seed, **decoding), top_k)


def _top(latlon, prob, top_k: int) -> Prediction:
    """The first ``top_k`` of decoded cells ``latlon [N, W, 2]`` with probabilities
    ``prob [N, W]`` (fewer than ``top_k``: the last repeated, probability 0)."""
    if latlon.shape[1] < top_k:
        pad = top_k - latlon.shape[1]
        latlon = np.concatenate([latlon, np.repeat(latlon[:, -1:], pad, axis=1)], axis=1)
        prob = np.concatenate([prob, np.zeros((len(prob), pad))], axis=1)
    return Prediction(latlon=latlon[:, :top_k], prob=prob[:, :top_k])


def shares(scores) -> np.ndarray:
    """``[N, W]`` each row's log-probabilities ``scores`` (``-inf``: none) made shares
    summing to 1, from the largest down (no underflow where every one is tiny)."""
    scores = np.asarray(scores, np.float64)
    top = scores.max(axis=1, keepdims=True)
    if not np.all(np.isfinite(top)):
        raise ValueError("every row needs a decoded cell of finite log-probability")
    weights = np.exp(scores - top)
    return weights / weights.sum(axis=1, keepdims=True)


def cell_maps(latlon, prob, *, resolution_deg: float = 1.0) -> np.ndarray:
    """``[N, n_lat, n_lon]`` maps (:func:`shdd.latlon_grid`'s layout, each summing to 1):
    each input's probabilities ``prob [N, W]`` of its decoded cells, renormalised, put
    in the map cells that hold their centres ``latlon [N, W, 2]`` (a level-20 S2 cell is
    far smaller than any map cell)."""
    latlon, prob = np.asarray(latlon, np.float64), np.asarray(prob, np.float64)
    if latlon.shape != (*prob.shape, 2):
        raise ValueError(f"latlon must be [N, W, 2] with prob [N, W], got {latlon.shape} "
                         f"and {prob.shape}")  # fmt: skip
    total = prob.sum(axis=1, keepdims=True)
    if not np.all(total > 0):
        raise ValueError("every input needs a decoded cell of positive probability")
    grid = shdd.latlon_grid(resolution_deg)
    row, col = grid.cell_of(latlon)
    out = np.zeros((len(prob), *grid.shape))
    np.add.at(out, (np.arange(len(prob))[:, None], row, col), prob / total)
    return out


def distinct(sequences, scores) -> tuple[np.ndarray, np.ndarray]:
    """Each row's sequences ``[N, W, T]`` (most probable first) with repeats moved to
    the end, where they repeat the row's last distinct sequence with log-probability
    ``-inf``: identical cells merged, the shapes kept."""
    sequences, scores = np.array(sequences), np.array(scores, np.float64)
    for i in range(len(sequences)):
        _, first = np.unique(sequences[i], axis=0, return_index=True)
        keep = np.sort(first)
        n = len(keep)
        sequences[i, :n], scores[i, :n] = sequences[i, keep], scores[i, keep]
        sequences[i, n:], scores[i, n:] = sequences[i, n - 1], -np.inf
    return sequences, scores


def _build(config: GeoTokenConfig, embed_dim: int, rngs, *, standardise: bool = True):
    m = config.model
    return token_decoder.TokenDecoder(
        embed_dim, s2.vocabularies(m.levels, m.per_token), hidden=m.hidden, depth=m.depth,
        width=m.width, layers=m.layers, heads=m.heads, memory=m.memory,
        feedforward=m.feedforward, neighbours=m.neighbours, rngs=rngs,
        standardise=standardise,
    )  # fmt: skip


def objective(config: GeoTokenConfig) -> NetworkObjective:
    """The decoder and its loss, for the one trainer (the data play no part in it)."""
    m = config.model
    weights = position_weights(1 + m.levels // m.per_token, m.coarse_weight)
    goal = functools.partial(loss, levels=m.levels, per_token=m.per_token, weights=weights)
    return NetworkObjective("geotoken", config, _build, goal)


def objective_for(config: GeoTokenConfig, data_path: str) -> NetworkObjective:
    return objective(config)


def train(data_path: str, run, config: GeoTokenConfig, *, progress=True, on_eval=None) -> dict:
    """The decoder trained on ``data_path`` by the one trainer, then its decoding chosen
    on the validation queries (:func:`keep_decoding`)."""

    def make(model):
        return GeoTokenLocator(model, config, model.trunk.mean.shape[0])

    info = train_network(objective(config), data_path, run, make, progress=progress,
                         on_eval=on_eval)  # fmt: skip
    meta = {"config": config.to_dict(), "embed_dim": info["embed_dim"]}
    keep_decoding(run, data_path, config, lambda: load(run, meta))
    return info


def keep_decoding(run, data_path: str, config, locator) -> None:
    """Choose the run's decoding on its validation queries (:func:`choose_decoding`;
    ``locator()`` gives the trained locator) and keep it in ``decoding.json``; nothing
    without a validation split."""
    fraction = config.train.validation_fraction
    x, truth, far = calibration_rows(data_path, fraction) if fraction > 0 else ((), (), ())
    if len(x):
        chosen, table = choose_decoding(locator(), x, truth, far)
        files.write_json(run.file(DECODING_FILE), chosen | {"validation": table})


def as_decoded(run, config):
    """``config`` with the decoding its run chose (``decoding.json``), where it chose one."""
    path = run.file(DECODING_FILE)
    if not os.path.exists(path):
        return config
    chosen = files.read_json(path)
    return assign(config, **{f"model.{k}": chosen[k] for k in DECODING_KEYS})


def load(run, meta: dict, **options) -> GeoTokenLocator:
    """The trained decoder, decoding as ``decoding.json`` chose (else as its config)."""

    def objective_of(values):
        return objective(as_decoded(run, GeoTokenConfig.from_dict(values)))

    return load_network("geotoken", run, meta, objective_of, GeoTokenLocator, options)


DECODING_FILE = "decoding.json"
DECODING_KEYS = ("decode", "beam_width", "samples", "temperature")
# The decodings choose_decoding tries, cheapest first (ties go to the first)
DECODINGS = (
    {"decode": "beam", "beam_width": 1},
    {"decode": "beam", "beam_width": 5},
    {"decode": "beam", "beam_width": 10},
    {"decode": "sample", "samples": 16, "temperature": 0.7},
    {"decode": "sample", "samples": 16, "temperature": 1.0},
)


def choose_decoding(locator, embeddings, truth, far, *, grid=DECODINGS, seed: int = 0):
    """The decoding (beam search of a width, or sampling at a temperature) of highest
    mean top-1 accuracy over 25, 200, 750 and 2500 km on validation queries, their
    random and far-from-training rows (``far [N]`` bool) in equal shares (a part with
    no rows left out; ties go to the cheaper, earlier in ``grid``): ``({"decode",
    "beam_width", "samples", "temperature"}, each decoding's accuracies)``."""
    far = np.asarray(far, bool)
    m, table = locator.config.model, []
    for option in grid:
        decoding = {k: option.get(k, getattr(m, k)) for k in DECODING_KEYS}
        width = decoding["beam_width" if decoding["decode"] == "beam" else "samples"]
        top1 = locator._predict(
            embeddings, top_k=1, seed=seed, decode=decoding["decode"], width=width,
            temperature=decoding["temperature"],
        ).top1  # fmt: skip
        row = dict(decoding)
        parts = [p for p in (("random", ~far), ("far", far)) if p[1].any()]
        for part, sel in parts:
            row[part] = calibration.accuracies(top1[sel], truth[sel])
        row["mean"] = float(np.mean([row[part]["mean"] for part, _ in parts]))
        table.append(row)
    best = max(enumerate(table), key=lambda r: (r[1]["mean"], -r[0]))[1]
    return {k: best[k] for k in DECODING_KEYS}, table


def _pad(rows: np.ndarray, size: int) -> np.ndarray:
    """``rows [n, ...]`` padded to ``size`` rows by repeating the last one."""
    return np.concatenate([rows, np.repeat(rows[-1:], size - len(rows), axis=0)])

"""GeoToken with retrieval: the query's nearest training photos in the decoder's memory.

GeoToken's public code feeds its decoder the 15 nearest training images' embeddings with
their own token sequences. Here each of the ``model.neighbours`` most similar training
photos (cosine, over the training rows: the validation rows are never neighbours) adds
one memory token (:meth:`locdiff.model.token_decoder.TokenDecoder.neighbour_memory`). In
training a photo never retrieves itself: every row's neighbours are found once, before
the first step, and the train step looks them up by the batch's row numbers in the
arrays the trainer keeps on the devices (``objective.memory``). The run keeps the
training photos' unit embeddings and token sequences beside its parameters
(``params.npz``) for inference. Finding the neighbours of N rows costs N x N similarities:
seconds for 100K rows on a GPU, minutes on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from locdiff.data import datasets as data
from locdiff.data import s2
from locdiff.infer.neighbours import most_similar, normalise
from locdiff.io import files
from locdiff.methods import geotoken
from locdiff.methods.base import no_options
from locdiff.methods.configs import GeoTokenRagConfig
from locdiff.methods.network import NetworkObjective, train_network, trained_network
from locdiff.training.early_stopping import validation_split

Config = GeoTokenRagConfig

# What the method is (read by the registry and the command line, never its name):
LEARNED = True  # trains a network (with the one trainer)
CALIBRATED_MAPS = False  # LocDiff's maps: calibrated after training, a density to re-rank by
TAKES_GALLERY = False  # its gallery is its own training set, kept in the run


def retrieval_memory(data_path: str, config: GeoTokenRagConfig) -> dict[str, np.ndarray]:
    """What the train step reads to give every row of ``data_path`` its neighbours:
    ``unit [N, E]`` (float16) and ``tokens [N, T]`` of every row, ``neighbours [N, K]``
    (row numbers, training rows only, never the row itself) and ``similarity [N, K]``."""
    m = config.model
    source = data.open_dataset(data_path)
    rows = data.all_rows(source)
    unit = normalise(rows["embedding"])
    tokens = s2.tokens(np.asarray(rows["latlon"], np.float64), levels=m.levels,
                       per_token=m.per_token)  # fmt: skip
    train_rows = validation_split(len(unit), config.train.validation_fraction)[0]
    position = np.full(len(unit), -1)
    position[train_rows] = np.arange(len(train_rows))  # each row's place in the gallery
    index, similarity = most_similar(unit, unit[train_rows], k=m.neighbours, exclude=position)
    return {
        "unit": unit.astype(np.float16),
        "tokens": tokens,
        "neighbours": train_rows[index].astype(np.int32),
        "similarity": similarity,
    }


@dataclasses.dataclass(frozen=True, eq=False)  # its arrays are not compared
class RagObjective(NetworkObjective):
    """GeoToken's objective with every row's neighbours (:func:`retrieval_memory`) as the
    trainer's ``memory``, looked up by the batch's row numbers."""

    memory: dict | None = None

    def loss_terms(self, model, batch, key, *, train: bool = True):
        mem, rows = batch["memory"], batch["rows"]
        near = jnp.take(mem["neighbours"], rows, axis=0)  # [B, K] row numbers
        neighbours = (
            jnp.take(mem["unit"], near, axis=0).astype(jnp.float32),
            jnp.take(mem["tokens"], near, axis=0),
            jnp.take(mem["similarity"], rows, axis=0),
        )
        return self.loss(model, batch["embedding"], batch["latlon"], key, neighbours=neighbours), {}


def objective(config: GeoTokenRagConfig, memory=None) -> RagObjective:
    """The decoder with its neighbour layers and its loss (``memory``: for training)."""
    plain = geotoken.objective(config)
    return RagObjective("geotoken-rag", config, plain.build, plain.loss, memory)


def objective_for(config: GeoTokenRagConfig, data_path: str) -> RagObjective:
    """The trainer's objective: every row's neighbours found first."""
    return objective(config, retrieval_memory(data_path, config))


def train(data_path: str, run, config: GeoTokenRagConfig, *, progress=True, on_eval=None):
    """Neighbours, training (the one trainer), then the decoding chosen on validation."""
    goal = objective_for(config, data_path)
    mem = goal.memory
    train_rows = validation_split(len(mem["unit"]), config.train.validation_fraction)[0]
    gallery = geotoken.Gallery(mem["unit"][train_rows], mem["tokens"][train_rows])

    def make(model):
        return geotoken.GeoTokenLocator(model, config, model.trunk.mean.shape[0], None, gallery)

    extra = {"gallery:unit": gallery.unit, "gallery:tokens": gallery.tokens}
    info = train_network(goal, data_path, run, make, progress=progress, on_eval=on_eval,
                         extra=extra)  # fmt: skip
    meta = {"config": config.to_dict(), "embed_dim": info["embed_dim"]}
    geotoken.keep_decoding(run, data_path, config, lambda: load(run, meta))
    return info


def load(run, meta: dict, **options) -> geotoken.GeoTokenLocator:
    """The trained decoder with its gallery of training photos."""
    no_options("geotoken-rag", options)
    config = geotoken.as_decoded(run, GeoTokenRagConfig.from_dict(meta["config"]))
    arrays = files.load_npz(run.require(run.params, "parameters"))
    embed_dim = int(meta["embed_dim"])
    model = trained_network(objective(config), embed_dim, arrays)
    gallery = geotoken.Gallery(arrays["gallery:unit"], arrays["gallery:tokens"])
    return geotoken.GeoTokenLocator(model, config, embed_dim, meta, gallery)

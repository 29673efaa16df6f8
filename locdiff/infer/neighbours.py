"""Cosine nearest neighbours over a gallery of embeddings, in bounded memory.

Shared by retrieval (:mod:`locdiff.methods.retrieval`) and LocDiff-H
(:mod:`locdiff.infer.hybrid`): the gallery is normalised once, queries are scored in chunks
so that memory stays bounded for a gallery of any size (the 100K MP16 gallery included).
"""

from __future__ import annotations

import numpy as np

# Similarities held at once: chunk of queries x gallery (64 MB of float32).
MAX_SCORES = 2**24


def normalise(x) -> np.ndarray:
    """Rows of ``x [N, E]`` scaled to unit length (float32; zero rows stay zero)."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def search(query_unit, gallery_unit, *, k: int = 1, max_scores: int = MAX_SCORES):
    """Indices ``[Q, k]`` of the ``k`` most similar gallery rows (unsorted for ``k > 1``),
    for unit-length ``query_unit [Q, E]`` and ``gallery_unit [G, E]``, in chunks of at
    most ``max_scores`` similarities."""
    if query_unit.shape[1] != gallery_unit.shape[1]:
        raise ValueError(
            f"query width {query_unit.shape[1]} differs from gallery width {gallery_unit.shape[1]}"
        )
    k = min(k, len(gallery_unit))
    chunk = max(1, max_scores // len(gallery_unit))
    out = np.empty((len(query_unit), k), np.int64)
    for start in range(0, len(query_unit), chunk):
        sim = query_unit[start : start + chunk] @ gallery_unit.T  # [q, G]
        if k == 1:
            out[start : start + chunk, 0] = sim.argmax(axis=1)
        else:
            out[start : start + chunk] = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    return out


def most_similar(query_unit, gallery_unit, *, k: int, exclude=None, max_scores: int = MAX_SCORES):
    """``(indices [Q, k], similarities [Q, k])`` of the ``k`` most similar gallery rows to
    each of ``query_unit [Q, E]`` (unit rows, as ``gallery_unit [G, E]``), most similar
    first. ``exclude [Q]``: a gallery row each query may not take (the query itself, in
    the gallery it is searched in), or -1; in chunks of at most ``max_scores``
    similarities."""
    query_unit = np.asarray(query_unit, np.float32)
    gallery_unit = np.asarray(gallery_unit, np.float32)
    if query_unit.shape[1] != gallery_unit.shape[1]:
        raise ValueError(
            f"query width {query_unit.shape[1]} differs from gallery width {gallery_unit.shape[1]}"
        )
    room = len(gallery_unit) - (exclude is not None)
    if not 1 <= k <= room:
        raise ValueError(f"need 1 <= k <= {room} (the gallery's rows to choose from), got {k}")
    chunk = max(1, max_scores // len(gallery_unit))
    index, value = np.empty((len(query_unit), k), np.int64), np.empty((len(query_unit), k))
    for start in range(0, len(query_unit), chunk):
        sim = query_unit[start : start + chunk] @ gallery_unit.T  # [q, G]
        if exclude is not None:
            own = np.asarray(exclude[start : start + chunk])
            rows = np.flatnonzero(own >= 0)
            sim[rows, own[rows]] = -np.inf
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        top_sim = np.take_along_axis(sim, top, axis=1)
        order = np.argsort(-top_sim, axis=1, kind="stable")
        index[start : start + chunk] = np.take_along_axis(top, order, axis=1)
        value[start : start + chunk] = np.take_along_axis(top_sim, order, axis=1)
    return index, value.astype(np.float32)

"""Setting B, the oracle study: real photo locations, each conditioned on its own embedding.

Training locations: the 100K MP16 photo locations of GeoCLIP's GPS gallery (in the PyPI
wheel ``geoclip``). Test locations: Im2GPS3k and YFCC26k (shipped metadata,
:func:`locdiff.data.readers.read_benchmark`). The condition of a location is its embedding by
GeoCLIP's pretrained location encoder, L2-normalised, plus Gaussian noise
(:func:`oracle_condition`): a stand-in for an imperfect image embedding. Retrieval over
the gallery's clean embeddings is then exactly GeoCLIP's inference. This measures what a
method does with a condition, not accuracy on images.
"""

from __future__ import annotations

import os

import numpy as np

from locdiff.data import datasets as data
from locdiff.data.readers import read_benchmark, read_locations
from locdiff.data.splits import FAR_KEYS
from locdiff.io import files

TEST_SETS = ("im2gps3k", "yfcc26k")


def oracle_condition(embeddings, noise: float, *, seed: int = 0) -> np.ndarray:
    """The oracle study's condition: L2-normalised ``embeddings`` plus Gaussian noise of
    standard deviation ``noise`` per coordinate (a stand-in for an imperfect image
    embedding; not renormalised)."""
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    x = np.asarray(embeddings, np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    return (x + noise * rng.standard_normal(x.shape, dtype=np.float32)).astype(np.float32)


def gallery_file() -> str:
    """GeoCLIP's 100K MP16 GPS gallery (``coordinates_100K.csv`` in the ``geoclip`` wheel)."""
    from locdiff.encoders import geoclip_file

    return geoclip_file("model", "gps_gallery", "coordinates_100K.csv")


def oracle_data(cache: str, *, yfcc_n: int | None = None, gallery_n: int | None = None) -> dict:
    """Setting B's locations and raw GeoCLIP location embeddings, cached in ``cache``.

    Args:
      yfcc_n, gallery_n: keep a fixed random subset of YFCC26k / of the gallery.

    Returns:
      ``{"gallery": (latlon, emb), "im2gps3k": (latlon, emb, scene), "yfcc26k": ...}``.
    """
    path = os.path.join(cache, f"oracle_geoclip_{gallery_n}_{yfcc_n}.npz")
    if not os.path.exists(path):
        from locdiff.encoders import GeoCLIPLocationEncoder

        encoder = GeoCLIPLocationEncoder()
        g = read_locations(gallery_file()).latlon
        if gallery_n is not None and gallery_n < len(g):
            g = g[np.sort(np.random.default_rng(0).choice(len(g), gallery_n, replace=False))]
        arrays = {"gallery_latlon": g, "gallery_emb": encoder.embed_locations(g)}
        for name in TEST_SETS:
            test = read_benchmark(name)
            keep = np.arange(len(test))
            if name == "yfcc26k":
                keep = yfcc_rows(len(test), yfcc_n)
            arrays[f"{name}_latlon"] = test.latlon[keep]
            arrays[f"{name}_emb"] = encoder.embed_locations(test.latlon[keep])
            arrays[f"{name}_scene"] = test.scene[keep]
        os.makedirs(cache, exist_ok=True)
        files.save_npz(path, **arrays)
    a = files.load_npz(path)
    out = {"gallery": (a["gallery_latlon"], a["gallery_emb"])}
    for name in TEST_SETS:
        out[name] = (a[f"{name}_latlon"], a[f"{name}_emb"], a[f"{name}_scene"])
    return out


def yfcc_rows(total: int, yfcc_n: int | None) -> np.ndarray:
    """The YFCC26k rows that setting B scores: all ``total``, or a fixed random ``yfcc_n``."""
    if yfcc_n is None or yfcc_n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(0).choice(total, yfcc_n, replace=False))


def confirmation_set(
    cache: str, *, yfcc_n: int | None, n: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Setting B's confirmation set: the YFCC26k rows that the scored sample
    (:func:`yfcc_rows`) leaves out, or a fixed random ``n`` of them, and their raw GeoCLIP
    location embeddings, ``(latlon [M, 2], emb [M, E])``, cached in ``cache``. Rows that
    no choice and no test report has seen: scored once a configuration is fixed."""
    path = os.path.join(cache, f"oracle_confirm_{yfcc_n}_{n}.npz")
    if not os.path.exists(path):
        from locdiff.encoders import GeoCLIPLocationEncoder

        test = read_benchmark("yfcc26k")
        rest = np.setdiff1d(np.arange(len(test)), yfcc_rows(len(test), yfcc_n))
        if n is not None and n < len(rest):
            rest = np.sort(np.random.default_rng(1).choice(rest, n, replace=False))
        latlon = test.latlon[rest]
        os.makedirs(cache, exist_ok=True)
        files.save_npz(path, latlon=latlon, emb=GeoCLIPLocationEncoder().embed_locations(latlon))
    a = files.load_npz(path)
    return a["latlon"], a["emb"]


def land_test(cache: str, *, n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Setting B's GWS-like test set: ``n`` points uniform in area over land north of 60 S
    (:func:`locdiff.data.splits.land_points` with ``seed``) and their raw GeoCLIP location
    embeddings, ``(latlon [n, 2], emb [n, E])``, cached in ``cache``."""
    from locdiff.data.splits import land_points

    path = os.path.join(cache, f"oracle_land_{n}_{seed}.npz")
    if not os.path.exists(path):
        from locdiff.encoders import GeoCLIPLocationEncoder

        latlon = land_points(n, seed=seed)
        emb = GeoCLIPLocationEncoder().embed_locations(latlon)
        os.makedirs(cache, exist_ok=True)
        files.save_npz(path, latlon=latlon, emb=emb)
    a = files.load_npz(path)
    return a["latlon"], a["emb"]


VALIDATION_SEED = 2000  # land validation draws: the land test's seed plus this


def land_validation(cache: str, *, n: int = 3000, seed: int = 0):
    """Points drawn like :func:`land_test` (seed ``seed``) but with their own seed
    (``seed + VALIDATION_SEED``), never the test's points: validation rows that look
    like the question of unseen places, ``(latlon [n, 2], emb [n, E])``, cached."""
    return land_test(cache, n=n, seed=seed + VALIDATION_SEED)


def training_set(cache: str, gallery, noise: float, seed: int, *, far=None) -> str:
    """An ``.npz`` of the gallery with conditions of noise ``noise`` (0: clean), cached;
    ``far = (latlon, emb)``: a far-validation set stored beside it (:data:`locdiff.data.splits.
    FAR_KEYS`), its conditions made the same way."""
    latlon, emb = gallery
    tag = "" if far is None else f"_far{len(far[0])}"
    path = os.path.join(cache, f"mp16_{len(latlon)}_{noise:g}_{seed}{tag}.npz")
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        cond = oracle_condition(emb, noise, seed=seed + 1)
        extra = {}
        if far is not None:
            far_cond = oracle_condition(far[1], noise, seed=seed + 3)
            extra = dict(zip(FAR_KEYS, (far_cond, np.asarray(far[0], np.float32)), strict=True))
        data.save_npz(path, cond, latlon, encoder=np.array("geoclip-location"), **extra)
    return path

"""Embedding a collection of images into the dataset format that ``locdiff train`` reads.

``embed_images(encoder, images, out)`` takes a directory of images (recursively) or a
CSV (``locdiff.read_locations``: a ``path, lat, lon`` list or benchmark metadata whose
``IMG_ID`` names files under ``image_root``), and writes ``out`` (``.npz``) with
``embeddings [N, E]`` (float32, or float16 with ``dtype``), ``ids [N]``, ``encoder``
and, when every location is known, ``latlon [N, 2]``. It is an uncompressed ``.npz``,
which training streams in place when it is large (:mod:`locdiff.streaming`).

Nothing is lost on a crash: finished batches go to ``out.parts/`` every
``save_every`` batches, and a rerun skips what they hold. Unreadable or corrupt images
are skipped, listed in ``out.skipped.txt`` and counted; the job never stops halfway
because of one bad file.
"""

from __future__ import annotations

import glob
import os
import shutil

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from locdiff import files
from locdiff.readers import read_locations

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def list_images(images: str, image_root: str | None = None):
    """``(ids [N], paths [N], latlon [N, 2] with NaN where unknown)`` for a directory or CSV."""
    if os.path.isdir(images):
        paths = sorted(
            p
            for p in glob.glob(os.path.join(images, "**", "*"), recursive=True)
            if p.lower().endswith(IMAGE_SUFFIXES)
        )
        if not paths:
            raise ValueError(f"{images}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        ids = np.array([os.path.relpath(p, images) for p in paths])
        return ids, np.array(paths), np.full((len(paths), 2), np.nan)
    table = read_locations(images)
    if table.paths is not None:
        return table.ids, table.paths, table.latlon
    root = image_root or os.path.dirname(os.path.abspath(images))
    return table.ids, np.array([os.path.join(root, i) for i in table.ids]), table.latlon


def _load(path: str):
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        return error


def embed_images(
    encoder,
    images: str,
    out: str,
    *,
    batch_size: int = 64,
    image_root: str | None = None,
    save_every: int = 10,
    dtype: str = "float32",
    progress: bool = True,
) -> dict:
    """Embed every readable image; returns ``{"embedded", "skipped", "out"}``.

    Raises:
      ValueError: no images, or an unreadable list of images.
    """
    ids, paths, latlon = list_images(images, image_root)
    parts_dir = out + ".parts"
    os.makedirs(parts_dir, exist_ok=True)
    done: set[str] = set()
    for part in sorted(glob.glob(os.path.join(parts_dir, "part_*.npz"))):
        with np.load(part) as saved:
            done.update(saved["ids"].tolist())
    skipped_path = os.path.join(parts_dir, "skipped.txt")
    skipped: dict[str, str] = {}
    if os.path.exists(skipped_path):
        with open(skipped_path) as f:
            skipped = dict(line.rstrip("\n").split("\t", 1) for line in f if "\t" in line)
    todo = [i for i, id_ in enumerate(ids) if id_ not in done and id_ not in skipped]
    pending_ids, pending_emb = [], []
    part_index = len(glob.glob(os.path.join(parts_dir, "part_*.npz")))

    def flush():
        nonlocal part_index, pending_ids, pending_emb
        if pending_ids:
            files.save_npz(
                os.path.join(parts_dir, f"part_{part_index:05d}.npz"),
                ids=np.array(pending_ids),
                embeddings=np.concatenate(pending_emb),
            )
            part_index += 1
            pending_ids, pending_emb = [], []
        with open(skipped_path, "w") as f:
            f.writelines(f"{k}\t{v}\n" for k, v in skipped.items())

    bar = tqdm(
        total=len(ids),
        initial=len(ids) - len(todo),
        disable=not progress,
        desc=f"embed ({encoder.name})",
        unit="img",
    )
    try:
        for n, start in enumerate(range(0, len(todo), batch_size), start=1):
            batch = todo[start : start + batch_size]
            loaded = [(i, _load(paths[i])) for i in batch]
            good = [(i, im) for i, im in loaded if isinstance(im, Image.Image)]
            for i, error in loaded:
                if not isinstance(error, Image.Image):
                    skipped[ids[i]] = f"{type(error).__name__}: {error}".replace("\n", " ")
            if good:
                pending_emb.append(encoder.embed([im for _, im in good]))
                pending_ids.extend(ids[i] for i, _ in good)
            bar.update(len(batch))
            bar.set_postfix(skipped=len(skipped))
            if n % save_every == 0:
                flush()
    finally:
        flush()
        bar.close()

    parts = sorted(glob.glob(os.path.join(parts_dir, "part_*.npz")))
    got_ids, got_emb = [], []
    for part in parts:
        with np.load(part) as saved:
            got_ids.append(saved["ids"])
            got_emb.append(saved["embeddings"])
    if not got_ids:
        raise ValueError(
            f"{images}: none of the {len(ids)} images could be read (see {skipped_path})"
        )
    got_ids = np.concatenate(got_ids)
    order = {id_: k for k, id_ in enumerate(ids)}
    sort = np.argsort([order[i] for i in got_ids])
    result = {
        "embeddings": np.concatenate(got_emb)[sort].astype(dtype),
        "ids": got_ids[sort],
        "encoder": np.array(encoder.spec),
    }
    coords = latlon[[order[i] for i in result["ids"]]]
    if np.all(np.isfinite(coords)):
        result["latlon"] = coords.astype(np.float32)
    files.save_npz(out, **result)
    if skipped:
        shutil.copy(skipped_path, out + ".skipped.txt")
    shutil.rmtree(parts_dir)
    return {"embedded": len(result["ids"]), "skipped": len(skipped), "out": out}


def embed_files(paths, encoder) -> np.ndarray:
    """``[N, E]`` embeddings of the image files ``paths`` (all of them, or an error).

    Raises:
      ValueError: naming the first file that cannot be read as an image.
    """
    images = []
    for path in paths:
        loaded = _load(path)
        if not isinstance(loaded, Image.Image):
            raise ValueError(f"{path}: unreadable image ({loaded})")
        images.append(loaded)
    return encoder.embed(images)

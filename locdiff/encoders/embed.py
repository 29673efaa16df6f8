"""Embedding a collection of images into the dataset format that ``locdiff train`` reads.

``embed_images(encoder, images, out)`` takes a directory of images (recursively) or a
CSV (``locdiff.read_locations``: a ``path, lat, lon`` list or benchmark metadata whose
``IMG_ID`` names files under ``image_root``), and writes ``out`` (``.npz``) with
``embeddings [N, E]`` (float32, or float16 with ``dtype``), ``ids [N]``, ``encoder``
and, when every location is known, ``latlon [N, 2]``. It is an uncompressed ``.npz``,
which training streams in place when it is large (:mod:`locdiff.data.streaming`).

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

from locdiff.data.readers import read_locations
from locdiff.io import files

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


class _Parts:
    """The embeddings written so far (``<out>.parts/part_*.npz``) and the images skipped
    with why (``skipped.txt``): what a run resumed after a crash does not embed again."""

    def __init__(self, directory: str):
        os.makedirs(directory, exist_ok=True)
        self.directory = directory
        self.skipped_path = os.path.join(directory, "skipped.txt")
        self.done: set[str] = set()
        for part in self.paths():
            with np.load(part) as saved:
                self.done.update(saved["ids"].tolist())
        self.skipped: dict[str, str] = {}
        if os.path.exists(self.skipped_path):
            with open(self.skipped_path) as f:
                lines = [line.rstrip("\n").split("\t", 1) for line in f if "\t" in line]
            self.skipped = dict(lines)
        self.pending_ids, self.pending_emb = [], []
        self.next_part = len(self.paths())

    def paths(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.directory, "part_*.npz")))

    def add(self, ids, embeddings) -> None:
        self.pending_emb.append(embeddings)
        self.pending_ids.extend(ids)

    def flush(self) -> None:
        """Write the pending embeddings as the next part, and the skipped list."""
        if self.pending_ids:
            files.save_npz(
                os.path.join(self.directory, f"part_{self.next_part:05d}.npz"),
                ids=np.array(self.pending_ids),
                embeddings=np.concatenate(self.pending_emb),
            )
            self.pending_ids, self.pending_emb = [], []
            self.next_part += 1
        with open(self.skipped_path, "w") as f:
            f.writelines(f"{k}\t{v}\n" for k, v in self.skipped.items())

    def read(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(ids, embeddings)`` of every part (None: none)."""
        got_ids, got_emb = [], []
        for part in self.paths():
            with np.load(part) as saved:
                got_ids.append(saved["ids"])
                got_emb.append(saved["embeddings"])
        if not got_ids:
            return None
        return np.concatenate(got_ids), np.concatenate(got_emb)


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
    parts = _Parts(out + ".parts")
    todo = [i for i, id_ in enumerate(ids) if id_ not in parts.done and id_ not in parts.skipped]
    bar = tqdm(total=len(ids), initial=len(ids) - len(todo), disable=not progress,
               desc=f"embed ({encoder.name})", unit="img")  # fmt: skip
    try:
        for n, start in enumerate(range(0, len(todo), batch_size), start=1):
            batch = todo[start : start + batch_size]
            loaded = [(i, _load(paths[i])) for i in batch]
            good = [(i, im) for i, im in loaded if isinstance(im, Image.Image)]
            for i, error in loaded:
                if not isinstance(error, Image.Image):
                    parts.skipped[ids[i]] = f"{type(error).__name__}: {error}".replace("\n", " ")
            if good:
                parts.add([ids[i] for i, _ in good], encoder.embed([im for _, im in good]))
            bar.update(len(batch))
            bar.set_postfix(skipped=len(parts.skipped))
            if n % save_every == 0:
                parts.flush()
    finally:
        parts.flush()
        bar.close()
    got = parts.read()
    if got is None:
        raise ValueError(
            f"{images}: none of the {len(ids)} images could be read (see {parts.skipped_path})"
        )
    order = {id_: k for k, id_ in enumerate(ids)}
    sort = np.argsort([order[i] for i in got[0]])
    result = {
        "embeddings": got[1][sort].astype(dtype),
        "ids": got[0][sort],
        "encoder": np.array(encoder.spec),
    }
    coords = latlon[[order[i] for i in result["ids"]]]
    if np.all(np.isfinite(coords)):
        result["latlon"] = coords.astype(np.float32)
    files.save_npz(out, **result)
    if parts.skipped:
        shutil.copy(parts.skipped_path, out + ".skipped.txt")
    shutil.rmtree(parts.directory)
    return {"embedded": len(result["ids"]), "skipped": len(parts.skipped), "out": out}


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

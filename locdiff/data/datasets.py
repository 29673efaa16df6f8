"""Embedding datasets and the Grain pipeline that feeds training.

A dataset is an ``.npz`` file with ``embeddings [N, E]`` (float32 or float16) and
``latlon [N, 2]`` (float degrees), optionally ``ids [N]`` and ``scene [N]``; or a
directory of such shards; or a directory of ArrayRecord shards (``*.arrayrecord``,
written by :func:`write_array_record`), each record the float32 vector
``[lat, lon, embedding...]``. ``.npz`` data larger than ``STREAM_BYTES`` (or any, with
``stream=True``) are streamed: read in place, batch by batch, never loaded whole
(:mod:`locdiff.data.streaming`); smaller data are held in memory.

Everything is checked before training starts (:func:`open_dataset`): a missing key, a
wrong shape, a NaN or a latitude out of range is reported with the file and the row.
The pipeline (:class:`BatchSource`) shuffles deterministically by seed (a new order
each epoch), repeats, shares every global batch among the processes of a multi-host
run, and gathers whole batches at once with static shapes; its iterator state is
checkpointed with the model. The SHDD targets are not stored: the train step
computes them from ``latlon`` inside the jitted function.
"""

from __future__ import annotations

import dataclasses
import glob
import os

import grain
import numpy as np

from locdiff.data.streaming import ShardedSource
from locdiff.errors import DataError, check_rows
from locdiff.io import files
from shdd.sphere import EARTH_RADIUS_KM

REQUIRED = ("embeddings", "latlon")
STREAM_BYTES = 1 << 30  # .npz data above this size are streamed rather than loaded


@dataclasses.dataclass
class InMemorySource:
    """Random access over embeddings and locations held in memory (``grain`` source)."""

    embeddings: np.ndarray  # [N, E] float32
    latlon: np.ndarray  # [N, 2] float32 degrees
    encoder: str | None = None  # the image encoder that made the embeddings, if recorded

    def __len__(self) -> int:
        return self.latlon.shape[0]

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {"embedding": self.embeddings[index], "latlon": self.latlon[index]}

    def take(self, rows) -> dict[str, np.ndarray]:
        """The batch of ``rows``: ``{"embedding": [n, E], "latlon": [n, 2]}``."""
        return {"embedding": self.embeddings[rows], "latlon": self.latlon[rows]}

    @property
    def embed_dim(self) -> int:
        return self.embeddings.shape[1]


class ArrayRecordSource:
    """Random access over ArrayRecord shards of ``[lat, lon, embedding...]`` float32 records."""

    encoder = None  # ArrayRecord shards carry no encoder name

    def __init__(self, paths: list[str], embed_dim: int):
        self._source = grain.sources.ArrayRecordDataSource(paths)
        self.embed_dim = embed_dim

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        record = np.frombuffer(self._source[index], dtype=np.float32)
        return {"embedding": record[2:], "latlon": record[:2]}

    def take(self, rows) -> dict[str, np.ndarray]:
        """The batch of ``rows``: ``{"embedding": [n, E], "latlon": [n, 2]}``."""
        block = np.frombuffer(b"".join(self._source[int(r)] for r in rows), np.float32)
        block = block.reshape(len(rows), self.embed_dim + 2)
        return {"embedding": block[:, 2:], "latlon": block[:, :2]}


def load_npz(path: str, *, require_latlon: bool = True) -> dict[str, np.ndarray]:
    """Read and check one ``.npz`` shard: ``{"embeddings", "latlon"[, "ids", "scene"]}``.

    With ``require_latlon=False`` (prediction on unlabelled images) ``latlon`` may be
    absent.
    """
    name = os.path.basename(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as error:
        raise DataError(f"{name}: cannot be read as .npz ({error})") from None
    for key in REQUIRED if require_latlon else ("embeddings",):
        if key not in arrays:
            raise DataError(f"{name}: missing key {key!r} (has {sorted(arrays)})")
    emb, latlon = arrays["embeddings"], arrays.get("latlon")
    if emb.ndim != 2 or emb.shape[0] == 0:
        raise DataError(f"{name}: 'embeddings' must have shape [N, E] with N >= 1, got {emb.shape}")
    if latlon is not None and latlon.shape != (emb.shape[0], 2):
        raise DataError(
            f"{name}: 'latlon' must have shape [N, 2] = [{emb.shape[0]}, 2], got {latlon.shape}"
        )
    for key in ("ids", "scene"):
        if key in arrays and (arrays[key].ndim == 0 or arrays[key].shape[0] != emb.shape[0]):
            raise DataError(
                f"{name}: {key!r} has shape {arrays[key].shape}, expected {emb.shape[0]} rows"
            )
    floats = [emb] if latlon is None else [emb, latlon]
    if not all(np.issubdtype(x.dtype, np.floating) for x in floats):
        raise DataError(f"{name}: 'embeddings' and 'latlon' must be float arrays")
    check_rows(name, emb, latlon)
    arrays["embeddings"] = emb.astype(np.float32)
    if latlon is not None:
        arrays["latlon"] = latlon.astype(np.float32)
    return arrays


def save_npz(path: str, embeddings, latlon, *, dtype=np.float32, **extra) -> None:
    """Write a dataset shard in the format :func:`load_npz` reads (checked first);
    ``dtype`` of the stored embeddings: float32, or float16 for half the bytes."""
    if np.dtype(dtype) not in (np.float16, np.float32):
        raise ValueError(f"embeddings are stored as float32 or float16, not {np.dtype(dtype)}")
    embeddings = np.asarray(embeddings, dtype)
    latlon = np.asarray(latlon, np.float32)
    check_rows(os.path.basename(path), embeddings, latlon)
    files.save_npz(path, embeddings=embeddings, latlon=latlon, **extra)


def write_array_record(path: str, embeddings, latlon) -> None:
    """Write one ArrayRecord shard of ``[lat, lon, embedding...]`` float32 records."""
    from array_record.python.array_record_module import ArrayRecordWriter

    embeddings = np.asarray(embeddings, np.float32)
    latlon = np.asarray(latlon, np.float32)
    check_rows(os.path.basename(path), embeddings, latlon)
    writer = ArrayRecordWriter(path, "group_size:1")
    try:
        for row in np.concatenate([latlon, embeddings], axis=1):
            writer.write(row.tobytes())
    finally:
        writer.close()


def _array_record_source(paths: list[str]) -> ArrayRecordSource:
    from array_record.python.array_record_module import ArrayRecordReader

    embed_dim = None
    for path in paths:
        name = os.path.basename(path)
        reader = ArrayRecordReader(path)
        try:
            n = reader.num_records()
            for start in range(0, n, 65536):
                rows = reader.read(range(start, min(n, start + 65536)))
                sizes = {len(r) for r in rows}
                if len(sizes) != 1 or next(iter(sizes)) % 4 or next(iter(sizes)) < 12:
                    raise DataError(f"{name}: records of unequal or invalid size near row {start}")
                block = np.frombuffer(b"".join(rows), np.float32).reshape(len(rows), -1)
                if embed_dim is None:
                    embed_dim = block.shape[1] - 2
                if block.shape[1] - 2 != embed_dim:
                    raise DataError(
                        f"{name}: embedding width {block.shape[1] - 2}, "
                        f"other shards have {embed_dim}"
                    )
                check_rows(name, block[:, 2:], block[:, :2], offset=start)
        finally:
            reader.close()
    return ArrayRecordSource(paths, embed_dim)


def open_dataset(path: str, *, stream: bool | None = None):
    """A checked data source for an ``.npz`` file or a directory of shards.

    Args:
      stream: read ``.npz`` shards in place instead of loading them (None: when their
        total size exceeds ``STREAM_BYTES``).

    Returns:
      An :class:`InMemorySource`, a :class:`locdiff.data.streaming.ShardedSource` (``.npz``)
      or an :class:`ArrayRecordSource`, each with ``len()``, ``embed_dim``, ``encoder``,
      items ``{"embedding": [E], "latlon": [2]}`` and ``take(rows)`` for a batch.

    Raises:
      DataError: naming the file (and row) that is missing, unreadable or invalid.
    """
    if os.path.isdir(path):
        shards = sorted(glob.glob(os.path.join(path, "*.npz")))
        records = sorted(glob.glob(os.path.join(path, "*.arrayrecord")))
        if records and not shards:
            return _array_record_source(records)
        if not shards:
            raise DataError(f"{path}: no .npz or .arrayrecord shards in this directory")
    elif os.path.exists(path):
        shards = [path]
    else:
        raise DataError(f"{path}: no such file or directory")
    if stream or (stream is None and sum(os.path.getsize(p) for p in shards) > STREAM_BYTES):
        return ShardedSource(shards)
    parts = [load_npz(p) for p in shards]
    widths = {p["embeddings"].shape[1] for p in parts}
    if len(widths) > 1:
        raise DataError(f"{path}: shards have different embedding widths {sorted(widths)}")
    return InMemorySource(
        embeddings=np.concatenate([p["embeddings"] for p in parts]),
        latlon=np.concatenate([p["latlon"] for p in parts]),
        encoder=str(parts[0]["encoder"]) if "encoder" in parts[0] else None,
    )


def condition_stats(source, *, max_rows: int = 100_000, seed: int = 0):
    """Per-feature ``(mean [E], std [E])`` float32 of a source's embeddings, from all rows
    or a fixed random ``max_rows`` of them; a constant feature gets ``std = 1``.

    Conditions are standardised with these before the network sees them (training and
    inference alike), so an encoder's feature scale does not matter.
    """
    n = len(source)
    index = np.arange(n)
    if n > max_rows:
        index = np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))
    shift = total = squares = None
    for start in range(0, len(index), 8192):  # in blocks: a streamed source stays streamed
        x = np.asarray(source.take(index[start : start + 8192])["embedding"], np.float64)
        if shift is None:  # sums about a rough mean: no cancellation in the variance
            shift, total, squares = x.mean(axis=0), 0.0, 0.0
        x = x - shift
        total = total + x.sum(axis=0)
        squares = squares + (x**2).sum(axis=0)
    centred = total / len(index)
    mean = shift + centred
    std = np.sqrt(np.maximum(squares / len(index) - centred**2, 0.0))
    std = np.where(std > 1e-6 * np.abs(mean) + 1e-12, std, 1.0)  # constant: left as is
    return mean.astype(np.float32), std.astype(np.float32)


class BatchSource:
    """Random access to the training batches: batch ``j`` is rows ``j*B .. (j+1)*B - 1``
    of the endless stream made of one shuffled pass over the data after another.

    Each epoch ``e`` is a fresh permutation seeded by ``(seed, e)``; a batch may span the
    end of one epoch and the start of the next, so no row is dropped. A batch's rows are
    read together (``source.take``: one fancy index in memory, in place for streamed
    shards), which is what keeps the input pipeline far faster than the train step. A process of a
    multi-host run takes its contiguous share ``process_index`` of every global batch.
    ``rows`` restricts the stream to those rows of the source (the training rows when a
    validation slice is held out). Every batch carries its row numbers in the source,
    ``"rows": int32 [B]`` (what a method that looks rows up by number reads, e.g.
    ``geotoken-rag``'s neighbours); with ``indices`` a batch is only those, for data
    held on the device (:func:`all_rows`).
    """

    def __init__(self, source, *, global_batch: int, seed: int, rows=None, process_index: int = 0,
                 process_count: int = 1, indices: bool = False):  # fmt: skip
        self.source, self.seed, self.indices = source, seed, indices
        self.subset = None if rows is None else np.asarray(rows, np.int64)
        self.global_batch = global_batch
        self.n = len(source) if rows is None else len(self.subset)
        self.local = global_batch // process_count
        self.offset = process_index * self.local
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return 2**62  # endless: a batch exists for every index

    def permutation(self, epoch: int) -> np.ndarray:
        """The row order of ``epoch`` (the last two are cached)."""
        if epoch not in self._perms:
            if len(self._perms) >= 2:
                self._perms.pop(min(self._perms))
            rng = np.random.default_rng([self.seed, epoch])
            self._perms[epoch] = rng.permutation(self.n)
        return self._perms[epoch]

    def rows(self, index: int) -> np.ndarray:
        """The row indices of this process's share of global batch ``index``."""
        start = index * self.global_batch + self.offset
        position = np.arange(start, start + self.local)
        epoch, within = np.divmod(position, self.n)
        out = np.empty(self.local, np.int64)
        for e in np.unique(epoch):
            sel = epoch == e
            out[sel] = self.permutation(int(e))[within[sel]]
        return out if self.subset is None else self.subset[out]

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        rows = self.rows(int(index))
        numbers = {"rows": rows.astype(np.int32)}
        return numbers if self.indices else {**self.source.take(rows), **numbers}


# Row numbers need no reading ahead: Grain's default 16 threads and 500 batches in flight
# cost 0.2 ms a batch on 2 cores (0.06 ms without).
INDEX_READ_OPTIONS = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


def make_pipeline(
    source, *, batch_size: int, seed: int, rows=None, process_index: int = 0,
    process_count: int = 1, indices: bool = False,
) -> grain.IterDataset:  # fmt: skip
    """The endless, shuffled (new order each epoch) batches of one process.

    ``batch_size`` is the process's local share of the global batch
    ``batch_size * process_count``; the processes see disjoint rows of every global
    batch. The iterator's position is all the state there is (checkpointed with the
    model). ``rows``: only these rows of the source (default: all). Batches of rows are
    read ahead by Grain's threads; batches of ``indices`` (tens of microseconds each) are
    made when asked, without threads competing with the step for the cores.
    """
    if (len(source) if rows is None else len(rows)) == 0:
        raise DataError("the dataset has no rows to train on")
    batches = grain.MapDataset.source(
        BatchSource(
            source,
            global_batch=batch_size * process_count,
            seed=seed,
            rows=rows,
            process_index=process_index,
            process_count=process_count,
            indices=indices,
        )
    )
    options = INDEX_READ_OPTIONS if indices else grain.ReadOptions()
    return batches.to_iter_dataset(options)


def all_rows(source, *, block: int = 1 << 18) -> dict[str, np.ndarray]:
    """Every row of ``source`` as host arrays ``{"embedding": [N, E] (stored dtype),
    "latlon": [N, 2]}``, read in blocks (to be put on the device whole)."""
    n = len(source)
    first = source.take(np.arange(min(block, n)))
    out = {k: np.empty((n, *v.shape[1:]), v.dtype) for k, v in first.items()}
    for start in range(0, n, block):
        part = first if start == 0 else source.take(np.arange(start, min(n, start + block)))
        for k, v in part.items():
            out[k][start : start + len(v)] = v
    return out


def locations(source) -> np.ndarray:
    """``latlon [N, 2]`` of every row of ``source``, without reading the embeddings where
    the source holds the locations apart (in memory, or streamed ``.npz`` shards)."""
    if isinstance(source, InMemorySource):
        return np.asarray(source.latlon)
    if isinstance(source, ShardedSource):
        return np.concatenate([shard.latlon for shard in source.shards])
    blocks = range(0, len(source), 1 << 16)  # block by block: the embeddings are dropped
    return np.concatenate([source.take(np.arange(a, min(len(source), a + (1 << 16))))["latlon"]
                           for a in blocks])  # fmt: skip


def synthetic_clustered(
    n: int,
    *,
    n_clusters: int = 8,
    embed_dim: int = 16,
    noise: float = 0.1,
    spread_km: float = 100.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A small clustered dataset for smoke tests: ``(embeddings [n, E], latlon [n, 2])``.

    Cluster centres are spread over the sphere; each point is scattered about
    ``spread_km`` around its centre and carries its cluster's random unit embedding
    plus Gaussian ``noise``.
    """
    rng = np.random.default_rng(seed)
    centres = np.stack(
        [
            np.rad2deg(np.arcsin(rng.uniform(-0.9, 0.9, n_clusters))),
            rng.uniform(-180, 180, n_clusters),
        ],
        -1,
    )
    codes = rng.normal(size=(n_clusters, embed_dim))
    codes /= np.linalg.norm(codes, axis=1, keepdims=True)
    label = rng.integers(0, n_clusters, n)
    scatter = rng.normal(size=(n, 2)) * np.rad2deg(spread_km / EARTH_RADIUS_KM)
    scatter[:, 1] /= np.cos(np.deg2rad(centres[label, 0]))
    latlon = centres[label] + scatter
    latlon[:, 0] = np.clip(latlon[:, 0], -90, 90)
    latlon[:, 1] = (latlon[:, 1] + 180) % 360 - 180
    embeddings = codes[label] + noise * rng.normal(size=(n, embed_dim))
    return embeddings.astype(np.float32), latlon.astype(np.float32)

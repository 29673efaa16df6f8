"""Training data larger than memory: ``.npz`` shards read in place, never loaded whole.

A folder of shards in the format ``locdiff embed`` writes (``np.savez``: uncompressed
``.npz`` with ``embeddings [N, E]`` float32 or float16 and ``latlon [N, 2]``) is opened
as a :class:`ShardedSource`: the locations (8 bytes a row) are held in memory, and a
batch's embeddings are read in place from inside the zip files, one ``preadv`` per row
straight into the batch array. Embeddings stay in their stored dtype (float16 halves
the disk, the page cache and the host-to-device copy); the train step converts them to
float32 inside the jitted function.

Resident memory does not grow with the data set: nothing is memory-mapped (a mapped
file's touched pages count as the process's own, and the kernel maps whole cached
folios of up to 2 MB around every random row), so the process holds only the
locations, the batches in flight and the permutations of the epochs. The operating
system's page cache keeps what was read for the next epoch where there is room.

Exact resumption and the multi-host split come from :class:`locdiff.data.datasets.BatchSource`,
which asks a source only for the rows of its own share of each batch (:meth:`take`).
"""

from __future__ import annotations

import os
import struct
import zipfile

import numpy as np

from locdiff.errors import DataError, check_rows

CHECK_ROWS = 65_536  # rows per block of the opening check


def npz_member(path: str, name: str):
    """``(dtype, shape, offset)`` of array ``name`` inside the uncompressed ``.npz`` ``path``.

    Raises:
      DataError: the member is missing, compressed (``np.savez_compressed``) or Fortran-ordered.
    """
    label = os.path.basename(path)
    try:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo(f"{name}.npy")
    except KeyError:
        raise DataError(f"{label}: missing key {name!r}") from None
    except (OSError, zipfile.BadZipFile) as error:
        raise DataError(f"{label}: cannot be read as .npz ({error})") from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise DataError(
            f"{label}: {name!r} is compressed and cannot be streamed; write shards with "
            "np.savez (not savez_compressed), as locdiff embed and locdiff synthetic do"
        )
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            raise DataError(f"{label}: broken zip header for {name!r}")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read_header = {
            (1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0,
        }.get(version)
        if read_header is None:
            raise DataError(f"{label}: {name!r} has .npy format version {version}")
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    if fortran and len(shape) > 1:
        raise DataError(f"{label}: {name!r} is Fortran-ordered; save it C-ordered")
    return np.dtype(dtype), tuple(shape), offset


class _Shard:
    """One ``.npz`` shard: an open file, where its embeddings start, its locations."""

    def __init__(self, path: str):
        self.path = path
        name = os.path.basename(path)
        self.dtype, shape, self.offset = npz_member(path, "embeddings")
        latlon_dtype, latlon_shape, latlon_offset = npz_member(path, "latlon")
        if len(shape) != 2 or shape[0] == 0:
            raise DataError(f"{name}: 'embeddings' must have shape [N, E] with N >= 1, got {shape}")
        if latlon_shape != (shape[0], 2):
            raise DataError(
                f"{name}: 'latlon' must have shape [N, 2] = [{shape[0]}, 2], got {latlon_shape}"
            )
        floats = np.issubdtype(self.dtype, np.floating) and np.issubdtype(latlon_dtype, np.floating)
        if not floats:
            raise DataError(f"{name}: 'embeddings' and 'latlon' must be float arrays")
        self.rows, self.dim = shape
        self.row_bytes = self.dim * self.dtype.itemsize
        self.latlon = (
            np.fromfile(path, latlon_dtype, 2 * self.rows, offset=latlon_offset)
            .reshape(-1, 2)
            .astype(np.float32)
        )
        self.fd = os.open(path, os.O_RDONLY)
        if hasattr(os, "posix_fadvise"):  # random rows: no read-ahead
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_RANDOM)
        with zipfile.ZipFile(path) as z:
            self.encoder = (
                str(np.load(z.open("encoder.npy"), allow_pickle=False))
                if "encoder.npy" in z.namelist()
                else None
            )

    def __len__(self) -> int:
        return self.rows

    def block(self, start: int, stop: int) -> np.ndarray:
        """Embeddings of the consecutive rows ``start .. stop - 1``."""
        count = (stop - start) * self.dim
        offset = self.offset + start * self.row_bytes
        return np.fromfile(self.path, self.dtype, count, offset=offset).reshape(-1, self.dim)

    def read(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Embeddings of ``rows`` (ascending) into the C-contiguous ``out [len(rows), E]``."""
        view = memoryview(out).cast("B")
        size, fd, base = self.row_bytes, self.fd, self.offset
        for k, r in enumerate(rows.tolist()):
            if os.preadv(fd, [view[k * size : (k + 1) * size]], base + r * size) != size:
                raise DataError(f"{os.path.basename(self.path)}: row {r} is cut short")

    def close(self) -> None:
        os.close(self.fd)


class ShardedSource:
    """Random access over ``.npz`` shards without loading them (see the module docstring).

    Has the interface of :class:`locdiff.data.datasets.InMemorySource`: ``len()``, ``embed_dim``,
    ``encoder``, items ``{"embedding", "latlon"}`` and :meth:`take` for a batch of rows.

    Args:
      paths: the shards, in order (row ``i`` of the source runs through them).
      check: read every row once to check for NaN and out-of-range latitudes.
    """

    def __init__(self, paths: list[str], *, check: bool = True):
        if not paths:
            raise DataError("no shards to stream")
        self.shards = [_Shard(p) for p in paths]
        widths = {s.dim for s in self.shards}
        if len(widths) > 1:
            raise DataError(f"shards have different embedding widths {sorted(widths)}")
        dtypes = {s.dtype for s in self.shards}
        if len(dtypes) > 1:
            raise DataError(f"shards have different embedding dtypes {sorted(map(str, dtypes))}")
        self.embed_dim = widths.pop()
        self.dtype = dtypes.pop()
        self.encoder = self.shards[0].encoder
        self.starts = np.cumsum([0] + [len(s) for s in self.shards])
        if check:
            self.check()

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def nbytes(self) -> int:
        """Bytes of the embeddings on disk."""
        return len(self) * self.embed_dim * self.dtype.itemsize

    def check(self) -> None:
        """Every row finite, every latitude in [-90, 90]; errors name the shard and row."""
        for shard in self.shards:
            name = os.path.basename(shard.path)
            for start in range(0, len(shard), CHECK_ROWS):
                stop = min(len(shard), start + CHECK_ROWS)
                check_rows(name, shard.block(start, stop), shard.latlon[start:stop], start)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        out = self.take(np.array([index]))
        return {k: v[0] for k, v in out.items()}

    def take(self, rows) -> dict[str, np.ndarray]:
        """``{"embedding": [n, E] (stored dtype), "latlon": [n, 2] float32}`` of ``rows``."""
        rows = np.asarray(rows, np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows out of range [0, {len(self)})")
        emb = np.empty((len(rows), self.embed_dim), self.dtype)
        latlon = np.empty((len(rows), 2), np.float32)
        shard_of = np.searchsorted(self.starts, rows, side="right") - 1
        for s in np.unique(shard_of):
            sel = np.flatnonzero(shard_of == s)
            local = rows[sel] - self.starts[s]
            order = np.argsort(local, kind="stable")  # ascending offsets on disk
            block = np.empty((len(sel), self.embed_dim), self.dtype)
            self.shards[s].read(local[order], block)
            emb[sel[order]] = block
            latlon[sel] = self.shards[s].latlon[local]
        return {"embedding": emb, "latlon": latlon}

    def close(self) -> None:
        for shard in self.shards:
            shard.close()

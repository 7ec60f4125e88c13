"""Reads of rows of a sharded row array in the caller's thread, each shard's index read once per reader.

Why: zarr 3.1 reads rows of a sharded array with two file reads (the shard's index, then the chunks), each sent
through its event loop to a worker thread, plus a thread for each chunk's decode. With the synthetic world's small
chunks those hops, not the bytes, are the cost: a random image read was 1.6-2.6x slower than from an unsharded
store (docs/caches.md). Here a shard's index is read and decoded once and kept, and a read of rows is one ranged
read of the file (chunks of a shard are contiguous as zarr writes them) decoded by the array's own codecs (their
synchronous ``_decode_sync``), with no thread hop: the store format is unchanged.

Checksums: each chunk's bytes end with their CRC-32C (zarr's ``crc32c`` codec, last in the inner chain of store
format 4), checked here by that codec as zarr checks it. A mismatch raises :class:`DamagedChunk`, naming the chunk:
the caller reports it and never retries or serves the rows.

Correctness: an index is only kept for a shard whose work unit is done (``unit_done``): a done unit is never
written again (a rebuild, repair or rewrite first clears its flag, and a reader's done flags are a snapshot taken at
open), so its index cannot go stale. As a second guard the kept index is tied to the file's inode, size and
modification time (one ``stat`` per read) and read again when they change. Rows of a unit not done are never read
here (the caller takes zarr's path, which reads the file afresh, and the stores refuse such rows anyway).
Only local stores and codec chains whose codecs decode synchronously take this path; anything else (fsspec URLs,
other codecs) returns ``None`` and the caller uses zarr.

zarr's synchronous decode and store calls are not all public API (tested with zarr 3.1): if an import here
fails, :meth:`ShardRowReader.for_array` returns ``None`` and every read takes zarr's own path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import zarr
from zarr.storage import LocalStore

try:
    from zarr.abc.codec import ArrayBytesCodec, BytesBytesCodec
    from zarr.abc.store import RangeByteRequest, SuffixByteRequest
    from zarr.codecs import Crc32cCodec, ShardingCodec
    from zarr.codecs.sharding import ShardingCodecIndexLocation
    from zarr.core.array_spec import ArrayConfig, ArraySpec
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.dtype import UInt64

    AVAILABLE = True
except ImportError:  # a zarr whose internals moved: reads go through zarr
    AVAILABLE = False


class DamagedChunk(ValueError):
    """A chunk whose bytes fail their checksum (or cannot be decoded): ``chunk`` is its index along the rows."""

    def __init__(self, chunk: int, cause: Exception) -> None:
        super().__init__(f"chunk {chunk}: {cause}")
        self.chunk, self.cause = chunk, cause


#: An index entry of a chunk that was never written (the sharding spec's "empty chunk").
EMPTY = np.uint64(2**64 - 1)


@dataclass(frozen=True)
class ShardIndex:
    """One shard's chunk byte ranges, and the file identity it was read from."""

    offsets: np.ndarray  # uint64 [chunks_per_shard]
    nbytes: np.ndarray  # uint64 [chunks_per_shard]
    file_id: tuple[int, int, int]  # (inode, size, mtime_ns)


def _decodes_synchronously(codecs: tuple) -> bool:
    """Whether a codec chain is one array-to-bytes codec and bytes-to-bytes codecs, each with ``_decode_sync``."""
    return (
        len(codecs) >= 1
        and isinstance(codecs[0], ArrayBytesCodec)
        and all(isinstance(codec, BytesBytesCodec) for codec in codecs[1:])
        and all(callable(getattr(codec, "_decode_sync", None)) for codec in codecs)
    )


def _decode(codecs: tuple, data, spec: ArraySpec, chunk: int | None = None):
    """Decode bytes with a chain checked by :func:`_decodes_synchronously` (last codec first). With ``chunk`` (its
    index along the rows), a failed checksum raises :class:`DamagedChunk`; other errors propagate as they are."""
    for codec in reversed(codecs[1:]):
        try:
            data = codec._decode_sync(data, spec)
        except Exception as err:
            if chunk is not None and isinstance(codec, Crc32cCodec):
                raise DamagedChunk(chunk, err) from err
            raise
    return codecs[0]._decode_sync(data, spec)


class ShardRowReader:
    """Rows of one sharded row array (chunks and shards span every axis but the first)."""

    def __init__(self, array: zarr.Array, sharding: ShardingCodec, unit_done: Callable[[int], bool]) -> None:
        self.array = array
        self.store: LocalStore = array.store_path.store  # type: ignore[assignment]
        self.unit_done = unit_done
        self.shard_rows = int(array.shards[0])  # type: ignore[index]
        self.chunk_rows = int(sharding.chunk_shape[0])
        self.chunks_per_shard = self.shard_rows // self.chunk_rows
        self.codecs = tuple(sharding.codecs)
        self.index_codecs = tuple(sharding.index_codecs)
        prototype = default_buffer_prototype()
        config = ArrayConfig(order="C", write_empty_chunks=False)
        self.chunk_spec = ArraySpec(
            tuple(sharding.chunk_shape), array.metadata.data_type, array.metadata.fill_value, config, prototype
        )
        self.index_spec = ArraySpec(
            (self.chunks_per_shard, 2), UInt64(endianness="little"), int(EMPTY), config, prototype
        )
        size = 16 * self.chunks_per_shard
        for codec in self.index_codecs:
            size = codec.compute_encoded_size(size, self.index_spec)
        self.index_size = size
        self.index_at_end = sharding.index_location == ShardingCodecIndexLocation.end
        self.indexes: dict[int, ShardIndex] = {}
        #: Index reads from files (what the cache saves; tests count them).
        self.index_reads = 0

    @classmethod
    def for_array(cls, array: zarr.Array, unit_done: Callable[[int], bool]) -> ShardRowReader | None:
        """A reader for ``array``, or ``None`` where zarr's own path must be used (see the module's doc)."""
        if not AVAILABLE or array.shards is None or not isinstance(array.store_path.store, LocalStore):
            return None
        codecs = array.metadata.codecs
        if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
            return None
        sharding = codecs[0]
        spans_rows_only = tuple(sharding.chunk_shape[1:]) == tuple(array.shape[1:]) == tuple(array.shards[1:])
        if not spans_rows_only or not (
            _decodes_synchronously(tuple(sharding.codecs)) and _decodes_synchronously(tuple(sharding.index_codecs))
        ):
            return None
        return cls(array, sharding, unit_done)

    def _key(self, unit: int) -> str:
        return f"{self.array.path}/{self.array.metadata.encode_chunk_key((unit,) + (0,) * (self.array.ndim - 1))}"

    def _index(self, unit: int, key: str) -> ShardIndex | None:
        try:
            stat = os.stat(os.path.join(str(self.store.root), key))
        except OSError:
            return None
        file_id = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        known = self.indexes.get(unit)
        if known is not None and known.file_id == file_id:
            return known
        request = SuffixByteRequest(self.index_size) if self.index_at_end else RangeByteRequest(0, self.index_size)
        raw = self.store.get_sync(key, prototype=self.index_spec.prototype, byte_range=request)
        self.index_reads += 1
        if raw is None:
            return None
        table = np.asarray(_decode(self.index_codecs, raw, self.index_spec).as_numpy_array()).reshape(-1, 2)
        index = ShardIndex(table[:, 0].copy(), table[:, 1].copy(), file_id)
        self.indexes[unit] = index
        return index

    def read_rows(self, start: int, stop: int) -> np.ndarray | None:
        """Rows ``[start, stop)`` (within one shard of a done unit) as zarr would return them, or ``None`` when
        this path does not apply (unit not done, file missing, a chunk never written): the caller asks zarr."""
        unit = start // self.shard_rows
        if stop <= start or (stop - 1) // self.shard_rows != unit or not self.unit_done(unit):
            return None
        key = self._key(unit)
        index = self._index(unit, key)
        if index is None:
            return None
        base = unit * self.shard_rows
        first, last = (start - base) // self.chunk_rows, (stop - 1 - base) // self.chunk_rows
        offsets, nbytes = index.offsets[first : last + 1], index.nbytes[first : last + 1]
        if (offsets == EMPTY).any():
            return None
        ends = offsets + nbytes
        begin, end = int(offsets.min()), int(ends.max())
        if end > index.file_id[1]:  # an index that does not fit the file: let zarr report it
            return None
        raw = self.store.get_sync(key, prototype=self.chunk_spec.prototype, byte_range=RangeByteRequest(begin, end))
        if raw is None or len(raw) != end - begin:
            return None
        blob = raw.as_numpy_array()
        buffer = self.chunk_spec.prototype.buffer
        first_chunk = base // self.chunk_rows + first
        parts = [
            _decode(
                self.codecs, buffer.from_array_like(blob[int(o) - begin : int(e) - begin]), self.chunk_spec, chunk
            ).as_numpy_array()
            for chunk, (o, e) in enumerate(zip(offsets, ends, strict=True), start=first_chunk)
        ]
        rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
        offset = start - base - first * self.chunk_rows
        selected = rows[offset : offset + stop - start]
        # Decoded chunks may be read-only views of the codec's output; zarr returns a writable array, so do we.
        return selected if selected.flags.writeable else selected.copy()

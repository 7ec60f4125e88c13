"""Integrity of a chunked store: which files exist and are the ones written, reads that name the bad chunk, and
``cache verify``.

Three guards, so that no lost or damaged byte is ever served as data (store format 4):

- Every chunk carries a CRC-32C checksum (zarr's ``crc32c`` codec, in the inner chunk codecs of sharded arrays and in
  the codec chain of the others; a shard's index has its own). A flipped byte fails to decode, and a checked read
  turns that into one line naming the store, the array, the shard, the chunk, its rows and images, and the fix.
- Zarr reads a missing chunk as the array's fill value. Every array's fill value is a *missing marker* that data
  never holds: NaN for float arrays, the dtype's minimum for signed integers (its maximum for unsigned ones), and
  every checked read refuses it. Every chunk is written to a file, even one equal to the fill value.
- Each work unit's done flag is one row of the ``done`` table: ``[flag, size of each row array's file..., CRC-32 of
  each file...]``, written in one chunk after the unit's files. (CRC-32, zlib's, not CRC-32C: a shard file is a row
  of blocks that each end with their own CRC-32C, and the CRC-32C of such a file depends on the blocks' lengths
  only, so it would not see any change of their bytes.) A writer that resumes compares the files of the
  units it will not recompute with that record (one ``stat`` each; a file modified since its record was written,
  by its modification time, is hashed) and recomputes the ones that differ. ``open_for_reading``, ``cache info``
  and ``clips4.cache.open`` compare sizes (nothing read); ``cache verify`` hashes and decodes everything.

Rows of done shards are read directly, each shard's index read once per reader (clips4/cache/shard_reader.py).
"""

from __future__ import annotations

import functools
import math
import os
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore

from clips4.cache.errors import StoreError
from clips4.cache.shard_reader import DamagedChunk, ShardRowReader

#: Image ids named in one message before "and N more".
NAMED_IMAGES = 4
#: How a store's files are compared with their record (see :func:`damaged_units`).
HASHING = ("never", "if-modified", "always")
#: Bytes read at a time when hashing a file.
HASH_BLOCK = 16 << 20


def missing_value(dtype: Any) -> float | int | None:
    """The fill value that marks a missing chunk of an array of ``dtype``: NaN for floats, the minimum of a signed
    integer type, the maximum of an unsigned one (no store holds such a value); ``None`` for other dtypes."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return math.nan
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return int(info.min if dtype.kind == "i" else info.max)
    return None


def refuses_fill(array: zarr.Array) -> bool:
    """Whether checked reads of ``array`` refuse its fill value: a float array filled with NaN, or an integer array
    filled with the missing marker (stores of format 4; older integer arrays were filled with 0, a valid value)."""
    fill, kind = array.fill_value, np.dtype(array.dtype).kind
    if kind == "f":
        return bool(np.isnan(fill))
    return kind in "iu" and fill is not None and int(fill) == missing_value(array.dtype)


def fill_mask(array: zarr.Array, values: np.ndarray) -> np.ndarray | None:
    """Where ``values`` (read from ``array``) hold its refused fill value; ``None`` when it has no such value."""
    if not values.size or not refuses_fill(array):
        return None
    mask = np.isnan(values) if values.dtype.kind == "f" else values == array.fill_value
    return mask if mask.any() else None


async def _list(store: Any, prefix: str) -> set[str]:
    return {key async for key in store.list_prefix(prefix)}


def chunk_key(array: zarr.Array, chunk: int) -> str:
    """The store key of file ``chunk`` along the rows: the shard of a sharded array (its metadata's chunk grid is
    the shard grid), else the chunk (a row array has one file across its other axes)."""
    return f"{array.path}/{array.metadata.encode_chunk_key((chunk,) + (0,) * (array.ndim - 1))}"


def file_rows(array: zarr.Array) -> int:
    """Rows per file of a row array: its shard's rows when sharded (format 3), else its chunk's (format 2)."""
    return int((array.shards or array.chunks)[0])


def unit_rows(attrs: Any) -> int:
    """Rows per work unit (one done flag, one file per row array) from a store's attributes; a format-2 store
    (unsharded) has one chunk per work unit."""
    return int(attrs.get("rows_per_shard", attrs.get("rows_per_chunk", 1)))


def unit_word(attrs: Any) -> str:
    """What a work unit of a store is called in messages: "shard" (format 3) or "chunk" (format 2)."""
    return "shard" if "rows_per_shard" in attrs else "chunk"


def file_word(array: zarr.Array) -> str:
    """What a file of the array is called in messages: "shard" (sharded) or "chunk"."""
    return "shard" if array.shards else "chunk"


def _local_root(array: zarr.Array) -> Path | None:
    store = array.store_path.store
    return Path(store.root) if isinstance(store, LocalStore) else None


def present_chunks(array: zarr.Array, chunks: Iterable[int]) -> set[int]:
    """Which of the row chunks ``chunks`` of ``array`` have a file (nothing is decoded).

    A local store is asked file by file (one ``stat`` each: 0.1 s for 3,250 chunks, against 1.3 s for zarr's
    async listing); a remote one is listed once (one request, not one per chunk).
    """
    wanted = [int(j) for j in chunks]
    root = _local_root(array)
    if root is not None:
        return {j for j in wanted if (root / chunk_key(array, j)).is_file()}
    keys = sync(_list(array.store_path.store, f"{array.path}/"))
    return {j for j in wanted if chunk_key(array, j) in keys}


def file_stats(array: zarr.Array, chunks: Iterable[int]) -> dict[int, tuple[int, int | None]]:
    """``{chunk: (size, mtime_ns)}`` of the row files of ``chunks`` that exist (one ``stat`` each, nothing read);
    on a remote store one size request per file and no modification time."""
    root, stats = _local_root(array), {}
    for chunk in chunks:
        key = chunk_key(array, int(chunk))
        try:
            if root is not None:
                stat = os.stat(root / key)
                stats[int(chunk)] = (int(stat.st_size), int(stat.st_mtime_ns))
            else:
                stats[int(chunk)] = (int(sync(array.store_path.store.getsize(key))), None)
        except FileNotFoundError:
            continue
    return stats


def file_digest(array: zarr.Array, chunk: int) -> tuple[int, int] | None:
    """``(size, CRC-32)`` of the bytes of row file ``chunk`` (``None`` when it does not exist); zlib's CRC-32 (2 GB/s
    here), not CRC-32C, which cannot see changes in a file of CRC-32C-terminated blocks (see the module's doc)."""
    key, root = chunk_key(array, chunk), _local_root(array)
    if root is None:
        data = sync(array.store_path.store.get(key, prototype=default_buffer_prototype()))
        return None if data is None else (len(data), zlib.crc32(data.to_bytes()))
    crc, size = 0, 0
    try:
        with open(root / key, "rb") as handle:
            while block := handle.read(HASH_BLOCK):
                crc, size = zlib.crc32(block, crc), size + len(block)
    except FileNotFoundError:
        return None
    return size, int(crc)


def row_arrays(group: zarr.Group) -> list[str]:
    """The arrays split by rows (filled chunk by chunk), as recorded when the store was created; for a store
    written before that record (format 1), the arrays chunked along ``rows`` like the done flags."""
    if "row_arrays" in group.attrs:
        return [str(name) for name in group.attrs["row_arrays"]]
    if "rows" not in group.attrs or "rows_per_chunk" not in group.attrs:
        return []
    rows, step = int(group.attrs["rows"]), unit_rows(group.attrs)
    return [
        str(name)
        for name, array in group.arrays()
        if name != "done" and array.shape[:1] == (rows,) and file_rows(array) == step
    ]


def whole_arrays(group: zarr.Group) -> list[str]:
    """The arrays written whole (not by work units, not the done table) that the store's header lists."""
    rows = set(row_arrays(group))
    names = list(group.attrs.get("arrays", [])) or [str(n) for n in group.array_keys()]
    return [name for name in names if name not in rows and name != "done" and name in group]


def done_table(group: zarr.Group, undecodable: list[int] | None = None) -> np.ndarray:
    """The ``done`` table as ``uint64 [units, columns]``: column 0 the flag, then (format 4) each row array's file
    size and CRC-32, in the order of ``row_arrays``; a store before format 4 has the flag only.

    A row that cannot be decoded (a damaged flag chunk) counts as not done, so that a writer recomputes its unit;
    its index is appended to ``undecodable``.
    """
    flags = group["done"]
    try:
        table = np.asarray(flags[:])
    except Exception:
        rows = []
        for unit in range(flags.shape[0]):
            try:
                rows.append(np.asarray(flags[unit]))
            except Exception:
                rows.append(np.zeros(flags.shape[1:], flags.dtype))
                if undecodable is not None:
                    undecodable.append(unit)
        table = np.stack(rows) if rows else np.zeros(flags.shape, flags.dtype)
    return table.astype(np.uint64).reshape(table.shape[0], -1)


def done_flags(group: zarr.Group, table: np.ndarray | None = None) -> np.ndarray:
    """``[units]`` bool: which work units are marked done."""
    return (done_table(group) if table is None else table)[:, 0] != 0


def unit_record(group: zarr.Group, unit: int) -> np.ndarray:
    """The done-table row of a unit written just now: flag 1, then each row array's file size and CRC-32."""
    names = row_arrays(group)
    digests = []
    for name in names:
        digest = file_digest(group[name], unit)
        if digest is None:
            raise StoreError(f"{group.store}: work unit {unit}: the file of {name!r} is missing right after writing it")
        digests.append(digest)
    return np.array([1, *(d[0] for d in digests), *(d[1] for d in digests)], np.uint64)


def damaged_units(
    group: zarr.Group,
    units: Sequence[int] | None = None,
    *,
    table: np.ndarray | None = None,
    hashing: str = "never",
) -> dict[int, dict[str, str]]:
    """``{unit: {array: problem}}`` over the units marked done (of ``units``, default all) whose row files are
    missing or differ from the record written with their done flag.

    ``hashing``: "never" compares sizes only (one ``stat`` per file); "if-modified" also hashes the files whose
    modification time is not older than their unit's done record (a file changed after it was recorded; local
    stores); "always" hashes every file. Stores before format 4 have no record: only missing files are found.
    """
    if hashing not in HASHING:
        raise ValueError(f"hashing: one of {HASHING}, got {hashing!r}")
    table = done_table(group) if table is None else table
    flags = table[:, 0] != 0
    candidates = range(len(flags)) if units is None else units
    wanted = [int(j) for j in candidates if 0 <= int(j) < len(flags) and flags[int(j)]]
    damaged: dict[int, dict[str, str]] = {}
    if not wanted:
        return damaged
    names = row_arrays(group)
    recorded = table.shape[1] == 1 + 2 * len(names)
    written = file_stats(group["done"], wanted) if recorded and hashing == "if-modified" else {}
    for k, name in enumerate(names):
        if name not in group:
            continue  # reported by require_arrays
        array = group[name]
        stats = file_stats(array, wanted)
        for unit in wanted:
            key = chunk_key(array, unit)
            problem = None
            if unit not in stats:
                problem = f"file {key} missing"
            elif recorded:
                size, mtime = stats[unit]
                want_size, want_crc = int(table[unit, 1 + k]), int(table[unit, 1 + len(names) + k])
                record_mtime = written.get(unit, (0, None))[1]
                changed_since = mtime is not None and record_mtime is not None and mtime >= record_mtime
                if size != want_size:
                    problem = f"file {key} has {size} bytes, {want_size} when written (truncated or overwritten)"
                elif hashing == "always" or (hashing == "if-modified" and changed_since):
                    digest = file_digest(array, unit)
                    if digest is not None and digest[1] != want_crc:
                        problem = (
                            f"file {key} changed since it was written (CRC-32 {digest[1]:08x}, "
                            f"{want_crc:08x} when written)"
                        )
            if problem:
                damaged.setdefault(unit, {})[name] = problem
    return dict(sorted(damaged.items()))


def missing_chunks(
    group: zarr.Group, chunks: Sequence[int] | None = None, done: np.ndarray | None = None
) -> dict[int, list[str]]:
    """``{unit: [arrays whose file is missing or not the size it was written with]}`` over the units marked done
    (of ``chunks``, default all); nothing is read but the done table. ``done``: the done table (see
    :func:`done_table`), when the caller has it."""
    return {unit: list(problems) for unit, problems in damaged_units(group, chunks, table=done).items()}


def missing_whole_files(group: zarr.Group) -> dict[str, str]:
    """``{array: key}`` of the arrays written whole (:func:`whole_arrays`) that lost a chunk file."""
    missing: dict[str, str] = {}
    for name in whole_arrays(group):
        array = group[name]
        grid = [math.ceil(size / step) for size, step in zip(array.shape, array.chunks, strict=True)]
        root = _local_root(array)
        keys = [f"{array.path}/{array.metadata.encode_chunk_key(coords)}" for coords in np.ndindex(*grid)]
        listed = None if root is not None else sync(_list(array.store_path.store, f"{array.path}/"))
        for key in keys:
            present = (root / key).is_file() if root is not None else key in (listed or set())
            if not present:
                missing[name] = key
                break
    return missing


class RowNames:
    """Which images a range of rows holds: image rows directly, segment rows through the CSR ``offsets``."""

    def __init__(self, group: zarr.Group) -> None:
        self.group = group
        self.rows_per_unit = unit_rows(group.attrs)

    @functools.cached_property
    def _ids(self) -> list[str]:
        return list(self.group.attrs.get("image_ids", []))

    @functools.cached_property
    def _offsets(self) -> np.ndarray | None:
        if self.group.attrs.get("kind") != "segments":
            return None
        try:
            return np.asarray(self.group["offsets"][:], np.int64)
        except Exception:  # the names are a courtesy in an error message; never mask the error itself
            return None

    def images(self, start: int, stop: int) -> list[str]:
        if self.group.attrs.get("kind") == "segments":
            if self._offsets is None:
                return []
            first = int(np.searchsorted(self._offsets, start, side="right")) - 1
            last = int(np.searchsorted(self._offsets, max(start, stop - 1), side="right")) - 1
            return self._ids[max(first, 0) : last + 1]
        return self._ids[start:stop]

    def chunk_rows(self, chunk: int, total: int) -> tuple[int, int]:
        """The rows of work unit (file) ``chunk``."""
        start = chunk * self.rows_per_unit
        return start, min(start + self.rows_per_unit, total)

    def describe_rows(self, start: int, stop: int) -> str:
        """``rows 12-17, images train_000012, ...`` for rows ``[start, stop)``."""
        ids = self.images(start, stop)
        named = ", ".join(ids[:NAMED_IMAGES]) + (
            f" and {len(ids) - NAMED_IMAGES} more" if len(ids) > NAMED_IMAGES else ""
        )
        return f"rows {start}-{stop - 1}" + (f", images {named}" if named else "")

    def describe(self, chunk: int, total: int) -> str:
        return self.describe_rows(*self.chunk_rows(chunk, total))


def _row_range(selection: Any, total: int) -> tuple[int, int]:
    """The rows a selection touches (whole array when it cannot tell)."""
    first = selection[0] if isinstance(selection, tuple) and selection else selection
    if isinstance(first, slice):
        start, stop, _ = first.indices(total)
        return start, max(start + 1, stop)
    if isinstance(first, int | np.integer):
        row = int(first) % total if total else 0
        return row, row + 1
    return 0, total


def _what_failed(err: BaseException) -> str:
    """A failed decode in words: a checksum mismatch is damaged bytes; anything else keeps zarr's message."""
    cause = err.cause if isinstance(err, DamagedChunk) else err
    if "checksum" in str(cause).lower():
        return "damaged bytes (CRC-32C checksum mismatch)"
    return f"cannot be decoded ({type(cause).__name__}: {cause})"


def repair_hint(path: str, stage: str) -> str:
    """The fix for damaged chunks: mark them not done, then recompute them."""
    return f"run `clips4 cache verify --repair {path}`, then `dvc repro` (or `clips4 {stage}`) to recompute it"


class CheckedArray:
    """A read-only zarr array whose reads refuse fill values (NaN, the integer missing marker) and name the chunk
    and images of a bad read.

    Slicing returns numpy arrays like ``zarr.Array``; other attributes (``shape``, ``dtype``, ``chunks``, ...)
    are the wrapped array's.
    """

    def __init__(self, store_path: str, name: str, array: zarr.Array, rows: RowNames, stage: str) -> None:
        self._path, self._name, self._array, self._rows, self._stage = store_path, name, array, rows, stage
        #: Row reads of done shards without zarr's per-read index read and thread hops (see ShardRowReader).
        self._fast: ShardRowReader | None = None

    def read_done_shards_directly(self, unit_done: Callable[[int], bool]) -> None:
        """Serve row reads of work units for which ``unit_done`` holds through a :class:`ShardRowReader`
        (each shard's index read once); other reads, and arrays it does not apply to, keep zarr's path."""
        self._fast = ShardRowReader.for_array(self._array, unit_done)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._array, attribute)

    def __len__(self) -> int:
        return int(self._array.shape[0]) if self._array.ndim else 1

    @property
    def array(self) -> zarr.Array:
        """The plain zarr array (unchecked)."""
        return self._array

    def _where(self, chunk: int) -> str:
        total = int(self._array.shape[0])
        rows = self._rows.describe(chunk, total)
        word = file_word(self._array)
        return f"{self._path}: {self._name} {word} {chunk} ({chunk_key(self._array, chunk)}; {rows})"

    def _where_chunk(self, chunk: int) -> str:
        """The file and the (inner) chunk ``chunk`` along the rows: what a damaged byte spoils."""
        total, step = int(self._array.shape[0]), int(self._array.chunks[0])
        start, stop = chunk * step, min((chunk + 1) * step, total)
        where = self._where(start // file_rows(self._array))
        if not self._array.shards:
            return where
        return f"{where}, chunk {chunk} ({self._rows.describe_rows(start, stop)})"

    def _read_fast(self, selection: Any) -> np.ndarray | None:
        """Rows by :class:`ShardRowReader` for a row or a step-1 row slice; ``None``: use zarr."""
        if self._fast is None:
            return None
        try:
            return self._read_rows_fast(selection)
        except DamagedChunk:  # the chunk's checksum failed: never served, never retried
            raise
        except Exception:
            # zarr internals that changed under the reader, or a damaged index: zarr's own path reads the rows
            # again and reports a damaged chunk with its usual error.
            return None

    def _read_rows_fast(self, selection: Any) -> np.ndarray | None:
        assert self._fast is not None
        total = int(self._array.shape[0])
        if isinstance(selection, int | np.integer) and -total <= int(selection) < total:
            row = int(selection) % total
            values = self._fast.read_rows(row, row + 1)
            return None if values is None else values[0]
        if isinstance(selection, slice) and selection.step in (None, 1):
            start, stop, _ = selection.indices(total)
            return self._fast.read_rows(start, stop) if stop > start else None
        return None

    def __getitem__(self, selection: Any) -> np.ndarray:
        try:
            fast = self._read_fast(selection)
            values = fast if fast is not None else np.asarray(self._array[selection])
        except DamagedChunk as err:
            raise StoreError(
                f"{self._where_chunk(err.chunk)}: {_what_failed(err)}; {repair_hint(self._path, self._stage)}"
            ) from None
        except Exception as err:
            raise StoreError(self._decode_message(selection, err)) from None
        mask = fill_mask(self._array, values)
        if mask is not None:
            marker = "NaN" if values.dtype.kind == "f" else f"missing marker {self._array.fill_value}"
            if not self._is_row_array:
                raise StoreError(
                    f"{self._path}: {self._name} (written whole) holds the fill value {marker}: a chunk file is "
                    f"missing; rerun `clips4 {self._stage}` to write it again"
                )
            start, _ = _row_range(selection, int(self._array.shape[0]))
            offset = int(np.argwhere(mask)[0][0]) if values.ndim == self._array.ndim else 0
            chunk = (start + offset) // file_rows(self._array)
            raise StoreError(
                f"{self._where(chunk)} holds the fill value {marker}: its file is missing or was never written; "
                f"rerun `clips4 {self._stage}` to recompute it (`clips4 cache verify {self._path}` lists bad chunks)"
            )
        return values

    @functools.cached_property
    def _is_row_array(self) -> bool:
        return self._array.ndim > 0 and self._name in row_arrays(self._rows.group)

    def _decode_message(self, selection: Any, err: Exception) -> str:
        if not self._is_row_array:
            return f"{self._path}: {self._name} (written whole) {_what_failed(err)}; rerun `clips4 {self._stage}`"
        start, stop = _row_range(selection, int(self._array.shape[0]))
        step = file_rows(self._array)
        bad = first_bad_chunk(self._array, range(start // step, (stop - 1) // step + 1))
        if bad is None:
            where = f"{self._path}: {self._name} rows {start}-{stop - 1}"
        else:
            inner = bad_inner_chunks(self._array, bad)
            where = self._where_chunk(inner[0][0]) if inner else self._where(bad)
            err = inner[0][1] if inner else err
        return f"{where}: {_what_failed(err)}; {repair_hint(self._path, self._stage)}"


def first_bad_chunk(array: zarr.Array, chunks: range) -> int | None:
    """The first row file (shard or chunk) in ``chunks`` that fails to decode (the error path only)."""
    step = file_rows(array)
    for chunk in chunks:
        try:
            array[chunk * step : min((chunk + 1) * step, array.shape[0])]
        except Exception:
            return chunk
    return None


def bad_inner_chunks(array: zarr.Array, file: int) -> list[tuple[int, Exception]]:
    """``(chunk, error)`` of the chunks (along the rows) of row file ``file`` that fail to decode."""
    step, per_file, total = int(array.chunks[0]), file_rows(array), int(array.shape[0])
    bad = []
    for start in range(file * per_file, min((file + 1) * per_file, total), step):
        try:
            array[start : min(start + step, total)]
        except Exception as err:
            bad.append((start // step, err))
    return bad


class CheckedGroup:
    """A complete store opened for reading: ``group[name]`` is a :class:`CheckedArray`; ``attrs`` as zarr's."""

    def __init__(self, path: str, group: zarr.Group, stage: str) -> None:
        self.path, self.group, self.stage = path, group, stage
        self.attrs = group.attrs
        self._rows = RowNames(group)

    def __contains__(self, name: str) -> bool:
        return name in self.group

    def __getitem__(self, name: str) -> CheckedArray:
        return CheckedArray(self.path, name, self.group[name], self._rows, self.stage)


@dataclass(frozen=True)
class BadChunk:
    """One file that cannot be served: its array, index along the rows, rows and images, and what is wrong."""

    array: str
    chunk: int
    where: str
    problem: str
    #: "shard" for a sharded array's file (format 3), else "chunk"
    word: str = "chunk"
    #: a work unit's file (``chunk`` is the unit; ``--repair`` marks it not done), not an array written whole
    unit: bool = True

    def __str__(self) -> str:
        return f"{self.array} {self.word} {self.chunk} ({self.where}): {self.problem}"


def verify(group: zarr.Group, path: str) -> list[BadChunk]:
    """Check every file of every unit marked done against its record (size and CRC-32), decode it (each chunk's
    checksum), refuse fill values; decode the other arrays whole. The bad ones, one per file."""
    bad: list[BadChunk] = []
    rows = RowNames(group)
    names = list(group.attrs.get("arrays", [])) or [str(n) for n in group.array_keys()]
    for name in names:
        if name not in group:
            bad.append(BadChunk(name, -1, f"{path}/{name}/zarr.json", "array metadata missing", unit=False))
    if "done" in group:
        undecodable: list[int] = []
        table = done_table(group, undecodable)
        total = int(group.attrs.get("rows", 0))
        for unit in undecodable:
            where = rows.describe(unit, total)
            problem = f"its done flag ({chunk_key(group['done'], unit)}) cannot be decoded; it counts as not done"
            bad.append(BadChunk("done", unit, where, problem, unit_word(group.attrs)))
        damaged = damaged_units(group, table=table, hashing="always")
        for name in row_arrays(group):
            if name in group:
                bad.extend(_verify_row_files(group[name], name, np.flatnonzero(table[:, 0]), damaged, rows))
    missing = missing_whole_files(group)
    for name in whole_arrays(group):
        problem = f"file {missing[name]} missing" if name in missing else None
        if problem is None:
            try:
                values = np.asarray(group[name][...])
            except Exception as err:
                problem = _what_failed(err)
            else:
                if fill_mask(group[name], values) is not None:
                    problem = "holds its fill value (a chunk file is missing)"
        if problem:
            bad.append(BadChunk(name, 0, "whole array", problem, unit=False))
    return bad


def _verify_row_files(
    array: zarr.Array, name: str, done: np.ndarray, damaged: dict[int, dict[str, str]], rows: RowNames
) -> list[BadChunk]:
    bad, word, total = [], file_word(array), int(array.shape[0])
    for chunk in (int(j) for j in done):
        where = rows.describe(chunk, total)
        problems = [damaged[chunk][name]] if name in damaged.get(chunk, {}) else []
        if not (problems and problems[0].endswith("missing")):
            start, stop = rows.chunk_rows(chunk, total)
            try:
                values = array[start:stop]
            except Exception as err:
                step = int(array.chunks[0])
                inner = bad_inner_chunks(array, chunk)
                for index, error in inner:
                    described = rows.describe_rows(index * step, min((index + 1) * step, total))
                    problems.append(f"chunk {index} ({described}): {_what_failed(error)}")
                if not inner:  # the shard's index, not a chunk
                    problems.append(_what_failed(err))
            else:
                if fill_mask(array, values) is not None:
                    problems.append("holds its fill value (NaN or the missing marker)")
        if problems:
            bad.append(BadChunk(name, chunk, where, "; ".join(problems), word))
    return bad


def mark_not_done(group: zarr.Group, chunks: Sequence[int]) -> None:
    """Clear the done flags (and records) of ``chunks`` (and ``complete``), so that rerunning the stage recomputes
    them."""
    if not chunks:
        return
    with zarr.config.set({"array.write_empty_chunks": True}):
        flags = group["done"]
        for chunk in sorted(set(chunks)):
            flags[chunk] = 0
    if group.attrs.get("complete"):
        group.attrs.update({"complete": False})

"""Chunked, resumable Zarr stores: the one writer behind every cache under data/cache/.

A store is a Zarr group whose *row arrays* share a leading axis (images, or segment rows), all chunked by the
same ``rows_per_chunk``. Work is done in whole chunks: a writer computes every row array's rows of one chunk,
writes them, and only then sets ``done[j]``. Because each write covers exactly one chunk of every array, the
processes (or torchrun ranks) that fill disjoint chunk ranges of one store never touch the same file, and a
chunk is never *marked* complete before all of its data is on disk. Zarr's local store writes each chunk file
through a temporary name and a rename, so a killed writer leaves whole files only; a chunk whose ``done`` flag
is unset is simply computed again on the next run.

The store's ``fingerprint`` attribute is a hash of everything its content depends on (the params it reads, its
inputs' content, the code that computes it); ``fingerprint_parts`` keeps one hash per part. Opening a store for
writing with the same fingerprint resumes it. A stale store that holds finished work is only replaced when asked
(``--rebuild``), and the error says which parts changed. A store whose header cannot be read is never removed.
DVC keeps these outputs between runs (``persist: true`` in dvc.yaml) so that a killed ``dvc repro`` resumes.

Paths may be local folders or fsspec URLs (``s3://bucket/cache/clip_dense.zarr``) where credentials exist.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec
from zarr.core.sync import sync

from clips4 import __version__
from clips4.cache.errors import StoreError
from clips4.cache.integrity import (
    CheckedGroup,
    chunk_key,
    damaged_units,
    done_flags,
    done_table,
    mark_not_done,
    missing_chunks,
    missing_value,
    missing_whole_files,
    unit_record,
    unit_word,
)

#: Version of the on-disk layout; part of every fingerprint, so a layout change rebuilds old stores.
#: 2: NaN fill values, a file for every written chunk, per-part fingerprints, content-hashed images, no timestamps.
#: 3: row arrays sharded (zarr's sharding codec): one file per work unit and array, done flags per work unit.
#: 4: a CRC-32C checksum on every chunk; fill values that mark a missing chunk in every array (NaN, or an
#:    integer type's extreme); each done flag records its unit's file sizes and CRC-32 (see integrity.py).
STORE_FORMAT = 4
#: What each format lacks that this one checks, for the message that asks to rebuild an older store.
OLD_FORMATS = {
    3: "no chunk checksums, integer arrays filled with 0",
    2: "unsharded, no chunk checksums",
    1: "unsharded, no chunk checksums",
}
#: How long shards other than rank 0 wait for rank 0's store (seconds), and how often they look.
SHARD_WAIT_S = 600.0
SHARD_POLL_S = 1.0

__all__ = ["StoreError"]


@dataclass(frozen=True)
class ArraySpec:
    """One array of a store: its shape after the leading row axis, dtype and fill value."""

    shape: tuple[int, ...]
    dtype: str
    #: ``None`` (keep it so): the missing marker, NaN for float arrays and the integer type's minimum (maximum if
    #: unsigned), values no store holds, so that a lost chunk is refused by the readers instead of read as data.
    fill_value: float | int | None = None

    @property
    def fill(self) -> float | int:
        if self.fill_value is not None:
            return self.fill_value
        marker = missing_value(self.dtype)
        return 0 if marker is None else marker


@dataclass(frozen=True)
class StoreLayout:
    """What a store holds: ``rows`` rows and its row arrays.

    Each row array is sharded: a *work unit* of ``rows_per_shard`` rows (``chunks_per_shard`` chunks of
    ``rows_per_chunk`` rows) is one file per array and one done flag. A random read decodes one chunk; a writer
    always writes whole work units, so no two processes ever write into the same shard file (zarr 3.1 loses data
    on concurrent partial writes to one shard).
    """

    kind: str
    rows: int
    rows_per_chunk: int
    arrays: Mapping[str, ArraySpec] = field(default_factory=dict)
    chunks_per_shard: int = 1

    @property
    def rows_per_shard(self) -> int:
        return self.rows_per_chunk * self.chunks_per_shard

    @property
    def num_units(self) -> int:
        """Work units (= shards of every row array = done flags)."""
        return max(1, math.ceil(self.rows / self.rows_per_shard))

    def unit_rows(self, unit: int) -> tuple[int, int]:
        """The ``[start, stop)`` rows of one work unit (one shard)."""
        start = unit * self.rows_per_shard
        return start, min(start + self.rows_per_shard, self.rows)


def rows_per_chunk(bytes_per_row: int, chunk_mb: float, rows: int) -> int:
    """Rows per chunk so that one chunk holds about ``chunk_mb`` MB uncompressed (at least one row)."""
    return int(min(max(1, rows), max(1, (chunk_mb * 1e6) // max(1, bytes_per_row))))


def chunks_per_shard(
    rows_per_chunk: int,
    rows: int,
    files_per_unit: int,
    images_per_file: int,
    rows_per_image: float = 1.0,
    fixed_files: int = 0,
) -> int:
    """Chunks per shard so that a store has at most one file per ``images_per_file`` images.

    A store of U work units has ``fixed_files + U * files_per_unit`` files (metadata, plus one shard per row
    array and a done flag per unit), so U is the largest count that keeps that at most
    ``images / images_per_file`` (``rows_per_image`` rows per image: segments per image for the segments store),
    and at least 1. ``images_per_file`` 0 gives one chunk per shard (the finest work units).
    """
    total_chunks = max(1, math.ceil(rows / rows_per_chunk))
    if images_per_file <= 0:
        return 1
    images = rows / max(rows_per_image, 1e-9)
    units = max(1, int((images / images_per_file - fixed_files) // files_per_unit))
    return int(min(total_chunks, max(1, math.ceil(total_chunks / units))))


def sharded_layout(
    kind: str,
    rows: int,
    rows_per_chunk: int,
    arrays: Mapping[str, ArraySpec],
    images_per_file: int,
    rows_per_image: float = 1.0,
    static_arrays: int = 0,
) -> StoreLayout:
    """A layout with at most one file per ``images_per_file`` images (see :func:`chunks_per_shard`): the root
    and each array's ``zarr.json`` (row arrays, ``done``, ``static_arrays`` written whole with one chunk file)
    are the fixed files."""
    fixed = 1 + len(arrays) + 1 + 2 * static_arrays
    per_shard = chunks_per_shard(
        rows_per_chunk, rows, len(arrays) + 1, images_per_file, rows_per_image, fixed_files=fixed
    )
    return StoreLayout(kind, rows, rows_per_chunk, arrays, per_shard)


def code_digest(*modules: str) -> str:
    """A hash of the source of the modules (dotted names) that compute a store, so a code change invalidates it.

    The files are found without importing them (a stage need not import torch to fingerprint HED's code).
    """
    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"code_digest: no module {name!r}")
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()[:16]


def fingerprint(**parts: Any) -> str:
    """A stable hash of JSON-able parts (params, input fingerprints, code digests)."""
    payload = json.dumps(_jsonable({"format": STORE_FORMAT, **parts}), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def fingerprint_parts(parts: Mapping[str, Any]) -> dict[str, str]:
    """One short hash per leaf of ``parts``, keyed by its dotted path (``contours.sigma``, ``images.val``)."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            flat[prefix] = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]

    walk("", _jsonable(dict(parts)))
    return dict(sorted(flat.items()))


def combine_parts(hashes: Mapping[str, str]) -> str:
    """The store fingerprint: one hash of the per-part hashes."""
    return hashlib.sha256(json.dumps(dict(hashes), sort_keys=True).encode()).hexdigest()[:24]


def is_url(path: str | Path) -> bool:
    return "://" in str(path)


def _compressor(clevel: int) -> BloscCodec:
    return BloscCodec(cname="zstd", clevel=clevel, shuffle="shuffle")


def _codecs(clevel: int) -> list:
    """The bytes codecs of every data chunk: Blosc/zstd, then a CRC-32C of the compressed bytes (for sharded
    arrays these are the inner chunks' codecs; zarr gives a shard's index a CRC-32C of its own)."""
    return [_compressor(clevel), Crc32cCodec()]


def remove_store(path: str | Path) -> None:
    """Delete a store folder (local or fsspec URL); a missing one is fine."""
    if is_url(path):
        import fsspec

        fs, root = fsspec.core.url_to_fs(str(path))
        if fs.exists(root):
            fs.rm(root, recursive=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def store_exists(path: str | Path) -> bool:
    """Whether ``path`` has a store header (``zarr.json``)."""
    if is_url(path):
        import fsspec

        fs, root = fsspec.core.url_to_fs(str(path))
        return bool(fs.exists(f"{root.rstrip('/')}/zarr.json"))
    return (Path(path) / "zarr.json").is_file()


def _has_files(path: str | Path) -> bool:
    """Whether anything is at ``path`` (a folder without a header still counts)."""
    if is_url(path):
        import fsspec

        fs, root = fsspec.core.url_to_fs(str(path))
        return bool(fs.exists(root))
    return os.path.lexists(path)


def read_header(path: str | Path) -> dict[str, Any] | None:
    """The store's attributes; ``None`` when there is no header file. A header that exists but cannot be read
    (a network error, a damaged file) raises :class:`StoreError`: such a store is never taken for absent, so no
    caller removes it."""
    try:
        if not store_exists(path):
            return None
        return dict(zarr.open_group(str(path), mode="r").attrs.asdict())
    except Exception as err:
        raise StoreError(
            f"{path}: cannot read the store header ({type(err).__name__}: {err}); nothing was changed or removed. "
            f"Check the path or the connection and rerun; if {path}/zarr.json is damaged, delete the store yourself"
        ) from None


def _say(message: str) -> None:
    """A note on stderr (progress bars and results go to stdout/stderr as usual)."""
    print(message, file=sys.stderr, flush=True)


class ChunkedStore:
    """A store open for writing: which chunks are pending, and a chunk-aligned writer."""

    def __init__(self, path: str | Path, group: zarr.Group, layout: StoreLayout) -> None:
        self.path = str(path)
        self.group = group
        self.layout = layout

    @classmethod
    def open(
        cls,
        path: str | Path,
        layout: StoreLayout,
        parts: Mapping[str, Any],
        attrs: Mapping[str, Any],
        *,
        stage: str,
        clevel: int = 5,
        static: Mapping[str, np.ndarray] | None = None,
        rebuild: bool = False,
        shard: tuple[int, int] = (0, 1),
        wait_s: float | None = None,
    ) -> ChunkedStore:
        """Resume the store at ``path`` if its fingerprint matches ``parts``; else create or rebuild it (rank 0).

        ``parts`` are what the content depends on (params, inputs' fingerprints, code digests); the layout, codec
        level and store format are added, and each part's hash is kept in the ``fingerprint_parts`` attribute so
        that a stale store says what changed. A stale store that holds finished work is replaced only with
        ``rebuild`` (``clips4 <stage> --rebuild``; dvc.yaml passes it); a stale store with no finished chunk is
        replaced without it. Only shard rank 0 creates, rebuilds or removes; other ranks wait up to ``wait_s``
        for rank 0's store. Every rank then checks that the files of its units marked done are the ones recorded
        with their done flags (:meth:`recheck_done`), and marks the others not done, so that they are computed
        again.

        ``static`` arrays (not split by rows, e.g. the segments' ``offsets``) are written whole by rank 0 on
        every open: their content is a function of the fingerprint, so rewriting them is idempotent.
        """
        hashes = fingerprint_parts({**parts, "format": STORE_FORMAT, "layout": layout, "cache": {"clevel": clevel}})
        store_fingerprint = combine_parts(hashes)
        names = [*layout.arrays, *(static or {}), "done"]
        header = {
            **attrs,
            "kind": layout.kind,
            "format": STORE_FORMAT,
            "fingerprint": store_fingerprint,
            "fingerprint_parts": hashes,
            "clips4_version": __version__,
            "rows": layout.rows,
            "rows_per_chunk": layout.rows_per_chunk,
            "rows_per_shard": layout.rows_per_shard,
            "row_arrays": list(layout.arrays),
            "arrays": names,
            "complete": False,
        }
        if shard[0] == 0:
            group = _create_or_resume(path, header, rebuild=rebuild, stage=stage)
            codecs = _codecs(clevel)
            with zarr.config.set({"array.write_empty_chunks": True}):
                for name, spec in layout.arrays.items():
                    shape, chunks = (layout.rows, *spec.shape), (layout.rows_per_chunk, *spec.shape)
                    shards = (layout.rows_per_shard, *spec.shape)
                    _ensure_array(group, name, shape, chunks, spec.dtype, spec.fill_value, codecs, shards)
                for name, values in (static or {}).items():
                    array = _ensure_array(
                        group, name, values.shape, values.shape or (1,), values.dtype.str, None, codecs
                    )
                    array[...] = values
                # Created last: other ranks take the store as ready once it exists. One row (chunk) per work unit:
                # its flag, then the size and CRC-32 of each row array's file (see integrity.done_table).
                width = 1 + 2 * len(layout.arrays)
                _ensure_array(group, "done", (layout.num_units, width), (1, width), "uint64", 0, [Crc32cCodec()])
        else:
            group = _wait_for_store(path, store_fingerprint, names, shard, SHARD_WAIT_S if wait_s is None else wait_s)
        store = cls(path, group, layout)
        store.recheck_done(store.shard_units(shard))
        return store

    def shard_units(self, shard: tuple[int, int] = (0, 1)) -> list[int]:
        """The work units of one process (``--shard r/n``): the r-th of n contiguous ranges of work units.

        A work unit is a whole zarr shard of every row array, so two processes never share a shard file.
        """
        rank, world = shard
        bounds = np.linspace(0, self.layout.num_units, world + 1).round().astype(int)
        return list(range(int(bounds[rank]), int(bounds[rank + 1])))

    def recheck_done(self, units: list[int]) -> list[int]:
        """Mark the work units of ``units`` that are done but whose files are not the ones recorded with their done
        flag (missing, another size, or, for a file modified after its record, another CRC-32) not done; returns
        them. One ``stat`` per file; only modified files are read."""
        lost = damaged_units(self.group, units, hashing="if-modified")
        if lost:
            listed = "; ".join(
                f"shard {j}: {'; '.join(problems.values())}" for j, problems in list(lost.items())[:4]
            ) + ("; ..." if len(lost) > 4 else "")
            _say(
                f"{self.path}: {len(lost)} shard(s) marked done are missing or changed since they were written "
                f"({listed}); computing them again"
            )
            mark_not_done(self.group, list(lost))
        return list(lost)

    def done_mask(self) -> np.ndarray:
        """``[num_units]`` bool: which work units are complete."""
        return done_flags(self.group)

    def pending(self, shard: tuple[int, int] = (0, 1)) -> list[int]:
        """Incomplete work units of this process's shard of the work."""
        mine = np.array(self.shard_units(shard), dtype=int)
        return [int(j) for j in mine[~self.done_mask()[mine]]] if len(mine) else []

    def write_unit(self, unit: int, data: Mapping[str, np.ndarray]) -> None:
        """Write every row array's rows of work unit ``unit`` (a whole shard each), then mark it done (the order
        is what makes resuming safe)."""
        start, stop = self.layout.unit_rows(unit)
        missing = set(self.layout.arrays) - set(data)
        if missing:
            raise ValueError(f"work unit {unit} of {self.path}: no data for arrays {sorted(missing)}")
        # zarr 3.1 reads a shard before writing it, even a whole one: a damaged file left by a killed or broken
        # run would make the rewrite fail. The unit is not done, so its old files hold nothing to keep.
        for name in self.layout.arrays:
            array = self.group[name]
            sync(array.store_path.store.delete(chunk_key(array, unit)))
        # Every chunk gets written, even one equal to the fill value, so a missing file always means a lost shard.
        with zarr.config.set({"array.write_empty_chunks": True}):
            for name, values in data.items():
                if values.shape[0] != stop - start:
                    raise ValueError(
                        f"work unit {unit} of {self.path}: {name} has {values.shape[0]} rows, expected {stop - start}"
                    )
                # One assignment of the whole shard: zarr encodes it and writes the file once (temp + rename).
                self.group[name][start:stop] = values
            # The flag and the record of the files just written (read back from the page cache), in one chunk.
            self.group["done"][unit] = unit_record(self.group, unit)

    def finish(self) -> bool:
        """Mark the store complete if every chunk is done; returns whether it is.

        A store already marked complete is left untouched, so rerunning a finished stage changes no file (and
        DVC sees no change downstream). No timestamp is written: the same inputs give the same bytes.
        """
        complete = bool(self.done_mask().all())
        if complete and not self.group.attrs.get("complete"):
            self.group.attrs.update({"complete": True})
        return complete


def _create_or_resume(path: str | Path, header: Mapping[str, Any], *, rebuild: bool, stage: str) -> zarr.Group:
    """Rank 0: the group to fill: the existing one when its fingerprint matches, else a new one (see open)."""
    existing = read_header(path)
    if existing is not None and existing.get("fingerprint") == header["fingerprint"]:
        return zarr.open_group(str(path), mode="a")
    if existing is None:
        if _has_files(path):  # a folder without a header (deleted zarr.json): nothing in it can be trusted
            _say(f"{path}: a folder without a store header ({path}/zarr.json); replacing it")
            remove_store(path)
    else:
        finished = _finished_work(path, existing)
        if finished and not rebuild:
            raise StoreError(
                f"{path}: the store {finished} but is stale ({describe_changes(existing, header)}); rerun "
                f"`clips4 {stage} --rebuild` to recompute it (`dvc repro` passes --rebuild), or undo the change"
            )
        _say(f"{path}: stale ({describe_changes(existing, header)}); rebuilding it")
        remove_store(path)
    try:
        return zarr.open_group(str(path), mode="w-", attributes=_jsonable(header))
    except (zarr.errors.ContainsGroupError, FileExistsError):  # a second rank-0 process created it just now
        if (read_header(path) or {}).get("fingerprint") == header["fingerprint"]:
            return zarr.open_group(str(path), mode="a")
        raise StoreError(
            f"{path}: another process created a different version of this store at the same time; run one "
            "configuration at a time (and give each process its own --shard)"
        ) from None


def _finished_work(path: str | Path, attrs: Mapping[str, Any]) -> str:
    """What a stale store would lose ("is complete", "holds 3 finished chunks") or "" when nothing."""
    if attrs.get("complete"):
        return "is complete"
    try:
        done = int(done_flags(zarr.open_group(str(path), mode="r")).sum())
    except Exception:  # unknown: assume there is work to lose
        return "may hold finished chunks"
    return f"holds {done} finished chunk(s)" if done else ""


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """Which fingerprint parts differ between two headers, e.g. "changed: contours.sigma, images.val"."""
    before, after = old.get("fingerprint_parts"), new.get("fingerprint_parts") or {}
    if not isinstance(before, dict):
        return "written by an older clips4 that did not record what its fingerprint covers"
    changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
    if "format" in changed and old.get("format") != new.get("format"):
        changed[changed.index("format")] = f"format (store format {old.get('format')} -> {new.get('format')})"
    shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
    return f"changed: {shown}" if changed else "changed: its fingerprint"


def _wait_for_store(
    path: str | Path, store_fingerprint: str, names: list[str], shard: tuple[int, int], wait_s: float
) -> zarr.Group:
    """Ranks other than 0: wait for rank 0's store with this fingerprint and every array; never create or remove."""
    deadline = time.monotonic() + wait_s
    announced, found = False, "no store"
    while True:
        try:
            attrs = read_header(path)
        except StoreError as err:  # rank 0 may be rewriting it; keep waiting, never remove
            attrs, found = None, str(err)
        if attrs is not None:
            found = f"a store with fingerprint {attrs.get('fingerprint')}"
            if attrs.get("fingerprint") == store_fingerprint:
                group = zarr.open_group(str(path), mode="a")
                if all(name in group for name in names):
                    return group
        if time.monotonic() >= deadline:
            raise StoreError(
                f"{path}: shard {shard[0]}/{shard[1]} waited {wait_s:.0f} s for rank 0 to create this store "
                f"(fingerprint {store_fingerprint}) and found {found}; start rank 0 of the same command (with "
                "--rebuild if the store is stale), or run without --shard"
            )
        if not announced:
            _say(f"{path}: shard {shard[0]}/{shard[1]} waits up to {wait_s:.0f} s for rank 0 to create the store")
            announced = True
        time.sleep(SHARD_POLL_S)


def _ensure_array(
    group: zarr.Group,
    name: str,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    dtype: str,
    fill_value: float | int | None,
    codecs: list | None,
    shards: tuple[int, ...] | None = None,
) -> zarr.Array:
    """Create the array, or open it when it exists with the same layout (a resumed writer). An array whose
    metadata was deleted is created again: its chunk files, if any are left, belong to the same fingerprint."""
    if name in group:
        array = group[name]
        same = array.shape == tuple(shape) and array.chunks == tuple(chunks) and array.shards == shards
        if not same or np.dtype(array.dtype) != np.dtype(dtype):
            raise StoreError(
                f"{group.store}: array {name!r} has shape {array.shape}, chunks {array.chunks}, shards "
                f"{array.shards}, dtype {array.dtype}; expected {shape}, {chunks}, {shards}, {dtype}. Delete the "
                "store and rerun the stage."
            )
        return array
    fill = ArraySpec(tuple(shape), dtype, fill_value).fill
    return group.create_array(
        name,
        shape=shape,
        chunks=chunks,
        shards=shards,
        dtype=dtype,
        fill_value=fill,
        compressors=codecs,
    )


def _jsonable(value: Any) -> Any:
    """Attributes as plain JSON (params dataclasses -> mappings, tuples -> lists, numpy scalars -> Python)."""

    def convert(item: Any) -> Any:
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            return dataclasses.asdict(item)
        return item.item() if hasattr(item, "item") else str(item)

    return json.loads(json.dumps(value, default=convert))


def write_small_store(
    path: str | Path, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any], *, clevel: int = 5
) -> None:
    """Write a small store in one go (e.g. prototypes), with no timestamp: the same arrays and attributes give
    byte-identical files. Locally it is built beside the target and renamed into place, so a killed writer leaves
    the previous store or none (a URL target is written in place)."""
    header = _jsonable({**attrs, "format": STORE_FORMAT, "clips4_version": __version__})
    header["arrays"] = list(arrays)
    header["complete"] = True
    target = str(path)
    build = target if is_url(target) else f"{target}.partial{os.getpid()}"
    if not is_url(target):  # leftovers of killed writers (their pid is in the name)
        for pattern in (".partial*", ".old*"):
            for leftover in Path(target).parent.glob(Path(target).name + pattern):
                shutil.rmtree(leftover, ignore_errors=True)
    remove_store(build)
    group = zarr.open_group(build, mode="w", attributes=header)
    with zarr.config.set({"array.write_empty_chunks": True}):
        for name, values in arrays.items():
            values = np.asarray(values)
            array = group.create_array(
                name,
                shape=values.shape,
                chunks=values.shape or (1,),
                dtype=values.dtype,
                fill_value=ArraySpec(values.shape, values.dtype.str).fill,  # a lost chunk is refused, not zeros
                compressors=_codecs(clevel),
            )
            array[...] = values
    if build != target:
        old = f"{target}.old{os.getpid()}"
        if os.path.lexists(target):
            os.replace(target, old)
        os.replace(build, target)
        shutil.rmtree(old, ignore_errors=True)


def open_for_reading(
    path: str | Path, kind: str | Iterable[str] | None = None, *, stage: str | None = None
) -> CheckedGroup:
    """Open a complete store read-only, its reads checked (:class:`CheckedGroup`); a clear error when it is
    missing, of an older format, incomplete, of another kind, lacks an array's metadata, lost chunk files, or has
    files of another size than recorded (nothing is read to check that)."""
    group = validate_for_reading(path, kind, stage=stage)
    return CheckedGroup(str(path), group, stage or str(group.attrs.get("kind")))


def validate_for_reading(
    path: str | Path, kind: str | Iterable[str] | None = None, *, stage: str | None = None
) -> zarr.Group:
    """The checks of :func:`open_for_reading`; returns the plain zarr group."""
    command = f"clips4 {stage}" if stage else "the stage that writes it"
    run = f"; run `{command}` (or `dvc repro`) to build it" if stage else ""
    attrs = read_header(path)
    if attrs is None:
        raise StoreError(f"{path}: no cache store here{run}")
    kinds = {kind} if isinstance(kind, str) else set(kind or ())
    if kinds and attrs.get("kind") not in kinds:
        raise StoreError(f"{path}: a {attrs.get('kind')!r} store, expected {' or '.join(sorted(kinds))}")
    require_format(attrs, str(path), command)
    if not attrs.get("complete"):
        raise StoreError(f"{path}: the store is incomplete (a stage was interrupted){run.replace('build', 'finish')}")
    group = zarr.open_group(str(path), mode="r")
    require_arrays(group, str(path), command)
    if "done" in group:
        table = done_table(group)
        if not (table[:, 0] != 0).all():  # marked complete, but a done flag is unset or cannot be decoded
            raise StoreError(
                f"{path}: marked complete, but a work unit's done flag is unset or damaged; rerun `{command}` (or "
                "`dvc repro`) to recompute it (`clips4 cache verify` names it)"
            )
        lost = missing_chunks(group, done=table)
        if lost:
            first, names = next(iter(lost.items()))
            word = unit_word(attrs)
            raise StoreError(
                f"{path}: {len(lost)} {word}(s) marked done lost their files or changed size (first: {word} {first} "
                f"of {', '.join(names)}); rerun `{command}` to recompute them (`clips4 cache verify {path}` lists them)"
            )
    missing = missing_whole_files(group)
    if missing:
        name, key = next(iter(missing.items()))
        raise StoreError(f"{path}: array {name!r} lost its file {key}; rerun `{command}` to write it again")
    return group


def require_format(attrs: Mapping[str, Any], path: str, command: str) -> None:
    """A clear error for a store written in an older format, which lacks checks this one relies on."""
    found = attrs.get("format")
    if found == STORE_FORMAT:
        return
    lacks = OLD_FORMATS.get(found, "an unknown layout") if isinstance(found, int) else "no format recorded"
    again = command if command.endswith("prototypes") or not command.startswith("clips4 ") else f"{command} --rebuild"
    raise StoreError(
        f"{path}: store format {found} ({lacks}), and this clips4 reads format {STORE_FORMAT} only; rebuild it with "
        f"`dvc repro` (or `{again}`)"
    )


def require_arrays(group: zarr.Group, path: str, command: str) -> None:
    """A clear error when an array of the header's ``arrays`` list has no metadata (a damaged store)."""
    for name in group.attrs.get("arrays", []):
        if name not in group:
            raise StoreError(
                f"{path}: array {name!r} is missing (no {path}/{name}/zarr.json); the store is damaged: rerun "
                f"`{command}` to repair it, or delete the store and rerun"
            )

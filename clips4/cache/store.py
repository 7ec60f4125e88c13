"""Chunked, resumable Zarr stores: the one writer behind every cache under data/cache/.

A store is a Zarr group whose *row arrays* share a leading axis (images, or segment rows), all chunked by the
same ``rows_per_chunk``. Work is done in whole chunks: a writer computes every row array's rows of one chunk,
writes them, and only then sets ``done[j]``. Because each write covers exactly one chunk of every array, the
processes (or torchrun ranks) that fill disjoint chunk ranges of one store never touch the same file, and a
chunk is never *marked* complete before all of its data is on disk. Zarr's local store writes each chunk file
through a temporary name and a rename, so a killed writer leaves whole files only; a chunk whose ``done`` flag
is unset is simply computed again on the next run.

The store's ``fingerprint`` attribute is a hash of everything its content depends on (the params it reads, its
inputs' fingerprints, the code that computes it). Opening a store for writing with the same fingerprint resumes
it; with another fingerprint the stale store is removed first. DVC keeps these outputs between runs
(``persist: true`` in dvc.yaml) so that a killed ``dvc repro`` resumes instead of starting over.

Paths may be local folders or fsspec URLs (``s3://bucket/cache/clip_dense.zarr``) where credentials exist.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import importlib.util
import json
import math
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from clips4 import __version__
from clips4.errors import Clips4Error

#: Version of the on-disk layout; part of every fingerprint, so a layout change rebuilds old stores.
STORE_FORMAT = 1


class StoreError(Clips4Error):
    """A cache store is missing, incomplete, stale or of the wrong kind; the message says which stage to run."""


@dataclass(frozen=True)
class ArraySpec:
    """One array of a store: its shape after the leading row axis, dtype and fill value."""

    shape: tuple[int, ...]
    dtype: str
    fill_value: float | int = 0


@dataclass(frozen=True)
class StoreLayout:
    """What a store holds: ``rows`` rows in chunks of ``rows_per_chunk``, and its row arrays."""

    kind: str
    rows: int
    rows_per_chunk: int
    arrays: Mapping[str, ArraySpec] = field(default_factory=dict)

    @property
    def num_chunks(self) -> int:
        return max(1, math.ceil(self.rows / self.rows_per_chunk))

    def chunk_rows(self, chunk: int) -> tuple[int, int]:
        """The ``[start, stop)`` rows of one chunk."""
        start = chunk * self.rows_per_chunk
        return start, min(start + self.rows_per_chunk, self.rows)


def rows_per_chunk(bytes_per_row: int, chunk_mb: float, rows: int) -> int:
    """Rows per chunk so that one chunk holds about ``chunk_mb`` MB uncompressed (at least one row)."""
    return int(min(max(1, rows), max(1, (chunk_mb * 1e6) // max(1, bytes_per_row))))


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


def is_url(path: str | Path) -> bool:
    return "://" in str(path)


def _compressor(clevel: int) -> BloscCodec:
    return BloscCodec(cname="zstd", clevel=clevel, shuffle="shuffle")


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
    if is_url(path):
        import fsspec

        fs, root = fsspec.core.url_to_fs(str(path))
        return bool(fs.exists(f"{root.rstrip('/')}/zarr.json"))
    return (Path(path) / "zarr.json").is_file()


def now_utc() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


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
        content_fingerprint: str,
        attrs: Mapping[str, Any],
        *,
        clevel: int = 5,
        static: Mapping[str, np.ndarray] | None = None,
    ) -> ChunkedStore:
        """Resume the store at ``path`` if it has this content fingerprint and layout, else (re)create it empty.

        ``static`` arrays (not split by rows, e.g. the segments' ``offsets``) are written whole on every open:
        their content is a function of the fingerprint, so rewriting them is idempotent and repairs a store
        killed while being created.
        """
        # The layout and codec are part of the store's identity: a store chunked or compressed differently is
        # rebuilt, never resumed into.
        store_fingerprint = fingerprint(content=content_fingerprint, layout=layout, clevel=clevel)
        existing = _read_attrs(path)
        if existing is not None and existing.get("fingerprint") != store_fingerprint:
            remove_store(path)
        if existing is None or existing.get("fingerprint") != store_fingerprint:
            header = {
                **attrs,
                "kind": layout.kind,
                "format": STORE_FORMAT,
                "fingerprint": store_fingerprint,
                "clips4_version": __version__,
                "created": now_utc(),
                "rows": layout.rows,
                "rows_per_chunk": layout.rows_per_chunk,
                "complete": False,
            }
            # The group's metadata (with the fingerprint) is one atomically written file, so a concurrent
            # writer with the same fingerprint sees either no store or this one, never a foreign half-store.
            try:
                group = zarr.open_group(str(path), mode="w-", attributes=_jsonable(header))
            except (zarr.errors.ContainsGroupError, FileExistsError):  # another shard created it first
                group = zarr.open_group(str(path), mode="a")
                if group.attrs.get("fingerprint") != store_fingerprint:
                    raise StoreError(
                        f"{path}: another process is writing a different version of this store (fingerprint "
                        f"{group.attrs.get('fingerprint')}, ours {store_fingerprint}); run one configuration at a time"
                    ) from None
        else:
            group = zarr.open_group(str(path), mode="a")
        compressor = _compressor(clevel)
        for name, spec in layout.arrays.items():
            _ensure_array(
                group,
                name,
                (layout.rows, *spec.shape),
                (layout.rows_per_chunk, *spec.shape),
                spec.dtype,
                spec.fill_value,
                compressor,
            )
        _ensure_array(group, "done", (layout.num_chunks,), (1,), "uint8", 0, None)
        for name, values in (static or {}).items():
            array = _ensure_array(group, name, values.shape, values.shape or (1,), values.dtype.str, 0, compressor)
            array[...] = values
        return cls(path, group, layout)

    def done_mask(self) -> np.ndarray:
        """``[num_chunks]`` bool: which chunks are complete."""
        return np.asarray(self.group["done"][:], dtype=bool)

    def pending(self, shard: tuple[int, int] = (0, 1)) -> list[int]:
        """Incomplete chunks of this shard: shard ``r`` of ``n`` owns the r-th of n contiguous chunk ranges."""
        rank, world = shard
        bounds = np.linspace(0, self.layout.num_chunks, world + 1).round().astype(int)
        mine = np.arange(bounds[rank], bounds[rank + 1])
        return [int(j) for j in mine[~self.done_mask()[mine]]]

    def write_chunk(self, chunk: int, data: Mapping[str, np.ndarray]) -> None:
        """Write every row array's rows of ``chunk``, then mark it done (the order is what makes resuming safe)."""
        start, stop = self.layout.chunk_rows(chunk)
        missing = set(self.layout.arrays) - set(data)
        if missing:
            raise ValueError(f"chunk {chunk} of {self.path}: no data for arrays {sorted(missing)}")
        for name, values in data.items():
            if values.shape[0] != stop - start:
                raise ValueError(
                    f"chunk {chunk} of {self.path}: {name} has {values.shape[0]} rows, expected {stop - start}"
                )
            self.group[name][start:stop] = values
        self.group["done"][chunk] = 1

    def finish(self) -> bool:
        """Mark the store complete if every chunk is done; returns whether it is.

        A store already marked complete is left untouched, so rerunning a finished stage changes no file (and
        DVC sees no change downstream).
        """
        complete = bool(self.done_mask().all())
        if complete and not self.group.attrs.get("complete"):
            self.group.attrs.update({"complete": True, "completed": now_utc()})
        return complete


def _ensure_array(
    group: zarr.Group,
    name: str,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    dtype: str,
    fill_value: float | int,
    compressor: BloscCodec | None,
) -> zarr.Array:
    """Create the array, or open it when it exists with the same layout (a resumed or concurrent writer)."""
    if name in group:
        array = group[name]
        if array.shape != tuple(shape) or array.chunks != tuple(chunks) or np.dtype(array.dtype) != np.dtype(dtype):
            raise StoreError(
                f"{group.store}: array {name!r} has shape {array.shape}, chunks {array.chunks}, dtype {array.dtype}; "
                f"expected {shape}, {chunks}, {dtype}. Delete the store and rerun the stage."
            )
        return array
    try:
        return group.create_array(
            name,
            shape=shape,
            chunks=chunks,
            dtype=dtype,
            fill_value=fill_value,
            compressors=compressor if compressor is not None else None,
        )
    except zarr.errors.ContainsArrayError:  # another process created it in the meantime
        return group[name]


def _read_attrs(path: str | Path) -> dict[str, Any] | None:
    if not store_exists(path):
        return None
    try:
        return dict(zarr.open_group(str(path), mode="r").attrs.asdict())
    except Exception:  # an unreadable group header is a broken store: rebuild it
        return {}


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
    """Write a small store in one go (e.g. prototypes): built beside the target and renamed into place locally,
    so a killed writer leaves the previous store or none."""
    header = _jsonable({**attrs, "format": STORE_FORMAT, "clips4_version": __version__, "created": now_utc()})
    header["complete"] = True
    target = str(path)
    build = target if is_url(target) else f"{target}.partial{os.getpid()}"
    if not is_url(target):  # leftovers of killed writers (their pid is in the name)
        for pattern in (".partial*", ".old*"):
            for leftover in Path(target).parent.glob(Path(target).name + pattern):
                shutil.rmtree(leftover, ignore_errors=True)
    remove_store(build)
    group = zarr.open_group(build, mode="w", attributes=header)
    for name, values in arrays.items():
        values = np.asarray(values)
        array = group.create_array(
            name, shape=values.shape, chunks=values.shape or (1,), dtype=values.dtype, compressors=_compressor(clevel)
        )
        array[...] = values
    if build != target:
        old = f"{target}.old{os.getpid()}"
        if os.path.exists(target):
            os.replace(target, old)
        os.replace(build, target)
        shutil.rmtree(old, ignore_errors=True)


def open_for_reading(
    path: str | Path, kind: str | Iterable[str] | None = None, *, stage: str | None = None
) -> zarr.Group:
    """Open a store read-only; a clear error when it is missing, incomplete or of another kind."""
    run = f"; run `clips4 {stage}` (or `dvc repro`) to build it" if stage else ""
    attrs = _read_attrs(path)
    if attrs is None:
        raise StoreError(f"{path}: no cache store here{run}")
    kinds = {kind} if isinstance(kind, str) else set(kind or ())
    if kinds and attrs.get("kind") not in kinds:
        raise StoreError(f"{path}: a {attrs.get('kind')!r} store, expected {' or '.join(sorted(kinds))}")
    if not attrs.get("complete"):
        raise StoreError(f"{path}: the store is incomplete (a stage was interrupted){run.replace('build', 'finish')}")
    return zarr.open_group(str(path), mode="r")

"""Typed, read-only access to the caches from Python: ``clips4.cache.open(path)``.

Each store kind gets a small class with its shapes, dtypes and provenance, per-image views cropped to the
image's valid extent, and iteration in chunk order (one chunk decoded at a time). A row whose chunk was not
completed (an interrupted stage), lost its file, changed size, or fails its checksum is never served: asking for it
raises :class:`StoreError` naming the store, the chunk and the image (reads go through
:class:`clips4.cache.integrity.CheckedArray`, which also refuses the fill value of a missing chunk: NaN, or an
integer array's missing marker). A store of an older format is refused with the command that rebuilds it.

A store object is a snapshot: the arrays, the per-chunk done flags and the image extents are read once, when it is
opened (so that a random read costs one Zarr read), and rows completed later need a fresh ``open``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from clips4.cache.integrity import (
    BadChunk,
    CheckedArray,
    RowNames,
    damaged_units,
    done_table,
    mark_not_done,
    missing_chunks,
    missing_whole_files,
    unit_rows,
    unit_word,
    verify,
)
from clips4.cache.store import (
    STORE_FORMAT,
    StoreError,
    read_header,
    require_arrays,
    require_format,
    validate_for_reading,
)
from clips4.superpixels.types import ContourMap

#: Attributes too long to print in a summary.
_BULKY_ATTRS = ("image_ids",)


class CacheStore:
    """Any store: its Zarr group, attributes (provenance) and arrays."""

    kind = ""
    stage = ""

    def __init__(self, path: str, group: zarr.Group) -> None:
        self.path = path
        self.group = group
        self.attrs: dict[str, Any] = dict(group.attrs.asdict())
        require_arrays(group, path, f"clips4 {self.stage}")
        names = RowNames(group)
        self._arrays: dict[str, CheckedArray] = {
            name: CheckedArray(path, name, array, names, self.stage) for name, array in group.arrays()
        }

    @property
    def complete(self) -> bool:
        """Marked complete, no unit marked done has lost its file (or changed its size), and no array written
        whole has lost its file."""
        return bool(self.attrs.get("complete")) and not self.lost_chunks and not self.missing_arrays

    @property
    def lost_chunks(self) -> dict[int, list[str]]:
        """``{unit: arrays}`` of the work units marked done whose file is missing or not the size it was written
        with (none for whole-array stores)."""
        return {}

    @functools.cached_property
    def _missing_arrays(self) -> dict[str, str]:
        return missing_whole_files(self.group)

    @property
    def missing_arrays(self) -> dict[str, str]:
        """``{array: key}`` of the arrays written whole that lost a chunk file (they would read as fill values)."""
        return dict(self._missing_arrays)

    @property
    def fingerprint(self) -> str | None:
        return self.attrs.get("fingerprint")

    @property
    def provenance(self) -> dict[str, Any]:
        """The attributes, less the per-image lists."""
        return {k: v for k, v in self.attrs.items() if k not in _BULKY_ATTRS}

    @property
    def arrays(self) -> dict[str, CheckedArray]:
        """The arrays, read-checked (``.array`` is the plain zarr array)."""
        return dict(self._arrays)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n}{tuple(a.shape)}:{a.dtype}" for n, a in sorted(self.arrays.items()))
        return f"<{type(self).__name__} {self.path} {'complete' if self.complete else 'INCOMPLETE'}: {shapes}>"


#: About how much data ``ImageStore.iter_rows`` decodes per read (MB, uncompressed).
READ_BLOCK_MB = 16.0


class RowStore(CacheStore):
    """A store filled chunk by chunk along its rows (images or segments); knows which rows are complete."""

    def __init__(self, path: str, group: zarr.Group) -> None:
        super().__init__(path, group)
        # Rows of done units are read with each shard's index read once (done units are immutable; the done
        # flags are this object's snapshot), so a random read costs one file read as before sharding.
        for name, array in self._arrays.items():
            if name != "done":
                array.read_done_shards_directly(self._unit_done)

    def _unit_done(self, unit: int) -> bool:
        return 0 <= unit < len(self._done) and bool(self._done[unit])

    @property
    def rows_per_chunk(self) -> int:
        """Rows per chunk: what one random read decodes."""
        return int(self.attrs["rows_per_chunk"])

    @property
    def rows_per_shard(self) -> int:
        """Rows per work unit: one shard file per row array, one done flag (= rows_per_chunk before format 3)."""
        return unit_rows(self.attrs)

    @property
    def num_rows(self) -> int:
        return int(self.attrs["rows"])

    @functools.cached_property
    def _table(self) -> np.ndarray:
        """The done table: flags and, per unit, the size and CRC-32 of its files (integrity.done_table)."""
        return done_table(self.group)

    @functools.cached_property
    def _done(self) -> np.ndarray:
        return self._table[:, 0] != 0

    @property
    def complete(self) -> bool:
        """As :attr:`CacheStore.complete`, and every unit's done flag reads as set (a damaged flag does not)."""
        return super().complete and bool(self._done.all())

    def done_chunks(self) -> np.ndarray:
        """Done flags, one per work unit (shard)."""
        return self._done.copy()

    @functools.cached_property
    def _lost(self) -> dict[int, list[str]]:
        return missing_chunks(self.group, done=self._table)

    @property
    def lost_chunks(self) -> dict[int, list[str]]:
        return dict(self._lost)

    def row_done(self, row: int) -> bool:
        return bool(self._done[row // self.rows_per_shard])

    @property
    def image_ids(self) -> list[str]:
        """Ids of the images, in row order (train, then val)."""
        return list(self.attrs["image_ids"])

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {image_id: row for row, image_id in enumerate(self.attrs["image_ids"])}

    def index_of(self, image_id: str) -> int:
        """The row (image index) of an image id."""
        try:
            return self._index[image_id]
        except KeyError:
            raise KeyError(f"{self.path}: no image {image_id!r}") from None

    def _require(self, row: int, what: str) -> None:
        if not 0 <= row < self.num_rows:
            raise IndexError(f"{what} {row} out of range: {self.path} has {self.num_rows}")
        if not self.row_done(row):
            raise StoreError(
                f"{self.path}: {what} is not computed yet (interrupted stage); rerun `clips4 {self.stage}` to finish"
            )
        unit = row // self.rows_per_shard
        if unit in self._lost:
            raise StoreError(
                f"{self.path}: {what} is in {unit_word(self.attrs)} {unit}, whose file of "
                f"{', '.join(self._lost[unit])} is missing or not the size it was written with; rerun "
                f"`clips4 {self.stage}` to recompute it (`clips4 cache verify {self.path}` lists bad ones)"
            )


class ImageStore(RowStore):
    """A store with one row per image (contours, superpixels, clip_dense): train images, then val."""

    @property
    def num_images(self) -> int:
        return self.num_rows

    @property
    def splits(self) -> dict[str, tuple[int, int]]:
        """``{split: (first_row, stop_row)}``."""
        return {name: (int(a), int(b)) for name, (a, b) in self.attrs["splits"].items()}

    def _row(self, image: int | str) -> int:
        row = self.index_of(image) if isinstance(image, str) else int(image)
        label = f"image {self.attrs['image_ids'][row]!r} (row {row})" if 0 <= row < self.num_rows else "image"
        self._require(row, label)
        return row

    @functools.cached_property
    def _unit_extents(self) -> dict[int, np.ndarray]:
        return {}

    def _extent_row(self, row: int) -> np.ndarray:
        """The valid extent of a row of a done unit, read (checked) once per unit: the rows of units not done
        hold the missing marker, which a checked read of the whole array would refuse."""
        unit = row // self.rows_per_shard
        if unit not in self._unit_extents:
            start = unit * self.rows_per_shard
            self._unit_extents[unit] = self._arrays["extent"][start : min(start + self.rows_per_shard, self.num_rows)]
        return self._unit_extents[unit][row - unit * self.rows_per_shard]

    def extent(self, image: int | str) -> tuple[int, int]:
        row = self._row(image)
        return tuple(int(v) for v in self._extent_row(row))  # type: ignore[return-value]

    def image(self, image: int | str) -> Any:
        """The stored data of one image (by row or id), cropped to its valid extent."""
        raise NotImplementedError

    def iter_images(self, split: str | None = None) -> Iterator[tuple[int, Any]]:
        """``(row, image(row))`` for the complete rows of ``split`` (all by default), one chunk read at a time."""
        return self.iter_rows(*(self.splits[split] if split else (0, self.num_rows)))

    def read_block_rows(self) -> int:
        """Rows ``iter_rows`` reads at once: whole chunks, about ``READ_BLOCK_MB`` of data, within one shard.

        Each read has a fixed cost (zarr's path: a shard-index read and thread hops; the direct path of done
        shards, see ShardRowReader: a ``stat`` and a file read), so a block of several chunks pays it once.
        """
        row_bytes = sum(
            int(np.prod(array.shape[1:])) * array.dtype.itemsize
            for name, array in self._arrays.items()
            if name != "done"
        )
        chunk_bytes = max(1, row_bytes * self.rows_per_chunk)
        chunks = max(1, int(READ_BLOCK_MB * 1e6 // chunk_bytes))
        rows = chunks * self.rows_per_chunk
        shard = self.rows_per_shard
        return (
            shard
            if rows >= shard
            else max(d for d in range(self.rows_per_chunk, rows + 1, self.rows_per_chunk) if shard % d == 0)
        )

    def iter_rows(self, first: int, stop: int) -> Iterator[tuple[int, Any]]:
        """``(row, image(row))`` for the complete rows in ``[first, stop)``, one block of chunks read at a time."""
        step = self.read_block_rows()
        # A block divides its shard (a shard is a whole number of blocks): one done flag covers a block.
        for chunk_start in range(first - first % step, stop, step):
            if not self._done[chunk_start // self.rows_per_shard]:
                continue
            rows = range(max(first, chunk_start), min(stop, chunk_start + step))
            self._require(rows.start, f"image {self.attrs['image_ids'][rows.start]!r} (row {rows.start})")
            block = {name: array[rows.start : rows.stop] for name, array in self._arrays.items() if name != "done"}
            for row in rows:
                yield row, self._view({name: values[row - rows.start] for name, values in block.items()})

    def _view(self, row_data: dict[str, np.ndarray]) -> Any:
        raise NotImplementedError

    def _ext(self, row: int) -> dict[str, np.ndarray]:
        return {"extent": self._extent_row(row)}

    def _read_row(self, row: int, *names: str) -> dict[str, np.ndarray]:
        """One row of each array; a bad read names the image asked for, then the chunk (and its images)."""
        try:
            return {name: self._arrays[name][row] for name in names}
        except StoreError as err:
            raise StoreError(f"image {self.attrs['image_ids'][row]!r} (row {row}): {err}") from None


class ContoursStore(ImageStore):
    """data/cache/contours.zarr: ``image(i)`` is a :class:`ContourMap` (float32)."""

    kind, stage = "contours", "contours"

    def image(self, image: int | str) -> ContourMap:
        row = self._row(image)
        return self._view(self._read_row(row, "strength", "orientation") | self._ext(row))

    def _view(self, row_data: dict[str, np.ndarray]) -> ContourMap:
        height, width = (int(v) for v in row_data["extent"])
        return ContourMap(
            strength=np.asarray(row_data["strength"][:height, :width], np.float32),
            orientation=np.asarray(row_data["orientation"][:height, :width], np.float32),
        )


@dataclass(frozen=True)
class Superpixels:
    """One image's superpixels: ``labels`` int32 [H, W] (0..n-1) and its UCM edge strengths float32 [2, H, W]."""

    labels: np.ndarray
    ucm: np.ndarray
    num_regions: int


class SuperpixelsStore(ImageStore):
    """data/cache/superpixels.zarr: ``image(i)`` is :class:`Superpixels`."""

    kind, stage = "superpixels", "ucm"

    def image(self, image: int | str) -> Superpixels:
        row = self._row(image)
        return self._view(self._read_row(row, "labels", "ucm", "num_regions") | self._ext(row))

    def _view(self, row_data: dict[str, np.ndarray]) -> Superpixels:
        height, width = (int(v) for v in row_data["extent"])
        return Superpixels(
            labels=np.asarray(row_data["labels"][:height, :width]),
            ucm=np.asarray(row_data["ucm"][:, :height, :width], np.float32),
            num_regions=int(row_data["num_regions"]),
        )


class DenseStore(ImageStore):
    """data/cache/clip_dense.zarr: ``image(i)`` is the float16 ``[h, w, D]`` dense CLIP features of one image."""

    kind, stage = "clip_dense", "clip-dense"

    @property
    def feature_stride(self) -> int:
        return int(self.attrs["feature_stride"])

    @property
    def embed_dim(self) -> int:
        return int(self.attrs["embed_dim"])

    def image(self, image: int | str) -> np.ndarray:
        row = self._row(image)
        return self._view(self._read_row(row, "features") | self._ext(row))

    def _view(self, row_data: dict[str, np.ndarray]) -> np.ndarray:
        height, width = (int(v) for v in row_data["extent"])
        return np.asarray(row_data["features"][:height, :width])


@dataclass(frozen=True)
class ImageSegments:
    """The superpixels of one image: rows ``start:stop`` of the flat arrays; superpixel k is row ``start + k``."""

    start: int
    stop: int
    embeddings: np.ndarray
    area: np.ndarray


class SegmentsStore(RowStore):
    """data/cache/segments.zarr: flat ``embeddings [S, D]`` with CSR ``offsets [N+1]`` over the images.

    Each segment here is one OWT-UCM superpixel (label k of superpixels.zarr), with CLIP's mean dense embedding
    over it; not the student's k-means segments."""

    kind, stage = "segments", "segments"

    @property
    def num_images(self) -> int:
        return len(self.attrs["image_ids"])

    @property
    def num_segments(self) -> int:
        return self.num_rows

    @functools.cached_property
    def _offsets(self) -> np.ndarray:
        return np.asarray(self._arrays["offsets"][:], np.int64)

    @property
    def offsets(self) -> np.ndarray:
        return self._offsets.copy()

    @property
    def embeddings(self) -> CheckedArray:
        """The flat ``[S, D]`` float16 array (lazy: slice it to read; reads are checked)."""
        return self._arrays["embeddings"]

    def segment_rows(self, split: str) -> tuple[int, int]:
        """``(first_row, stop_row)`` of a split's segments."""
        first, stop = self.attrs["segment_splits"][split]
        return int(first), int(stop)

    def segments_of(self, image: int | str) -> ImageSegments:
        """The superpixel embeddings and areas of one image (by row or id)."""
        row = self.index_of(image) if isinstance(image, str) else int(image)
        start, stop = (int(v) for v in self._offsets[row : row + 2])
        step = self.rows_per_shard
        for unit in range(start // step, max(start, stop - 1) // step + 1):
            if stop > start:
                self._require(max(start, unit * step), f"segments of image {self.attrs['image_ids'][row]!r}")
        try:
            embeddings, area = self._arrays["embeddings"][start:stop], self._arrays["area"][start:stop]
        except StoreError as err:  # the chunk names several images: say which one was asked for
            raise StoreError(f"segments of image {self.attrs['image_ids'][row]!r}: {err}") from None
        return ImageSegments(start, stop, embeddings, area)

    def iter_chunks(self, first: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(first_row, embeddings block)`` over rows ``[first, stop)``, one chunk read at a time."""
        stop = self.num_rows if stop is None else stop
        for start in range(first - first % self.rows_per_chunk, stop, self.rows_per_chunk):
            lo, hi = max(first, start), min(stop, start + self.rows_per_chunk)
            self._require(lo, f"segment row {lo}")
            yield lo, self._arrays["embeddings"][lo:hi]


class PrototypesStore(CacheStore):
    """data/cache/prototypes.zarr: known-class prototypes ``known [k, D]`` (class names in ``known_classes``)
    and unknown ones ``unknown [u, D]``, float32 unit vectors."""

    kind, stage = "prototypes", "prototypes"

    @property
    def known(self) -> np.ndarray:
        return np.asarray(self._arrays["known"][:])

    @property
    def unknown(self) -> np.ndarray:
        return np.asarray(self._arrays["unknown"][:])

    @property
    def known_classes(self) -> list[str]:
        return list(self.attrs["known_classes"])

    @property
    def held_out_classes(self) -> list[str]:
        return list(self.attrs["held_out_classes"])


KINDS: dict[str, type[CacheStore]] = {
    cls.kind: cls for cls in (ContoursStore, SuperpixelsStore, DenseStore, SegmentsStore, PrototypesStore)
}


def open(path: str, *, old_format: bool = False) -> CacheStore:
    """Open any clips4 store read-only as its typed class (an incomplete store opens too; its missing rows
    raise on access). A store of an older format (no chunk checksums) is refused with the command that rebuilds
    it, unless ``old_format`` (``cache info`` describes it)."""
    path = str(path)
    attrs = read_header(path)
    if attrs is None:
        raise StoreError(f"{path}: no cache store here; build it with `dvc repro` (see docs/caches.md)")
    kind = attrs.get("kind")
    if kind not in KINDS:
        raise StoreError(f"{path}: not a clips4 store (kind {kind!r}); expected one of {', '.join(KINDS)}")
    if not old_format:
        require_format(attrs, path, f"clips4 {KINDS[kind].stage}")
    return KINDS[kind](path, zarr.open_group(path, mode="r"))


def open_complete(path: str | Path, kind: str, stage: str) -> CacheStore:
    """A complete store of ``kind``, typed; the error of :func:`open_for_reading` (which stage to run) otherwise."""
    store = KINDS[kind](str(path), validate_for_reading(path, kind, stage=stage))
    # Listed here, once: a stage forks workers after opening its input, and each would list the store again.
    store.lost_chunks  # noqa: B018
    return store


def verify_store(path: str, *, repair: bool = False) -> list[BadChunk]:
    """Check every file of a store against its record, decode every chunk marked done (each chunk's checksum) and
    the arrays written whole; the bad ones (``clips4 cache verify``). With ``repair``, clear the done flags of the
    bad units (and ``complete``), so that rerunning the stage recomputes exactly them."""
    store = open(path)
    bad = verify(store.group, path)
    if repair and bad:
        if any(b.chunk < 0 for b in bad):
            raise StoreError(
                f"{path}: an array lost its metadata; rerun `clips4 {store.stage}` (it recreates it and recomputes "
                "the chunks whose files are gone)"
            )
        if not isinstance(store, RowStore):
            raise StoreError(f"{path}: a {store.kind} store is written whole; rerun `clips4 {store.stage}`")
        # Arrays written whole (the segments' offsets) are written again by every run of the stage; marking a
        # unit not done makes sure it runs: the store is incomplete.
        units = [b.chunk for b in bad if b.unit]
        mark_not_done(zarr.open_group(path, mode="a"), units or [0])
    return bad


def describe(path: str) -> str:
    """The ``clips4 cache info`` text: kind, completeness, arrays with chunking and compression, provenance."""
    import json

    store = open(path, old_format=True)
    old = store.attrs.get("format") != STORE_FORMAT
    # Files of another size, or modified after their record and with another CRC-32 (only those are read).
    lost = (
        {}
        if old or not isinstance(store, RowStore)
        else damaged_units(store.group, table=store._table, hashing="if-modified")
    )
    lost = lost or store.lost_chunks
    missing = store.missing_arrays
    state = (
        "complete"
        if store.complete and not lost and not old
        else "OLD FORMAT"
        if old
        else "DAMAGED"
        if lost or missing
        else "INCOMPLETE"
    )
    lines = [f"{store.path}: {store.kind} store, {state}"]
    if old:
        lines.append(
            f"  store format {store.attrs.get('format')}; this clips4 reads format {STORE_FORMAT} only: rebuild it "
            f"with `dvc repro` (or `clips4 {store.stage}`" + (" --rebuild)" if isinstance(store, RowStore) else ")")
        )
    if lost:
        first, names = next(iter(lost.items()))
        word = unit_word(store.attrs)
        lines.append(
            f"  {len(lost)} {word}(s) marked done lost their files or changed since they were written (first: {word} "
            f"{first} of {', '.join(names)}); rerun `clips4 {store.stage}` to recompute them; "
            f"`clips4 cache verify {store.path}` lists them"
        )
    for name, key in missing.items():
        lines.append(f"  array {name} lost its file {key}; rerun `clips4 {store.stage}` to write it again")
    if isinstance(store, RowStore):
        done = store.done_chunks()
        word = unit_word(store.attrs)
        lines.append(
            f"  rows: {store.num_rows} in {word}s of {store.rows_per_shard} (chunks of {store.rows_per_chunk}); "
            f"{word}s done: {int(done.sum())}/{len(done)}"
        )
    lines.append("  arrays:")
    total_raw = total_stored = 0
    for name, array in sorted(store.arrays.items()):
        if name == "done":  # bookkeeping, summarised above
            continue
        raw = int(np.prod(array.shape)) * array.dtype.itemsize
        stored = int(array.nbytes_stored())
        total_raw, total_stored = total_raw + raw, total_stored + stored
        codecs = ",".join(type(c).__name__.replace("Codec", "") for c in array.compressors) or "none"
        ratio = raw / stored if stored else float("nan")
        lines.append(
            f"    {name:12s} {tuple(array.shape)!s:24s} chunks {tuple(array.chunks)!s:20s} "
            f"{'shards ' + str(tuple(array.shards)) if array.shards else '':26s}"
            f"{array.dtype!s:8s} {codecs:6s} {_size(stored):>9s} stored, ratio {ratio:.2f}"
        )
    if total_stored:
        lines.append(
            f"  total: {_size(total_raw)} raw, {_size(total_stored)} stored, ratio {total_raw / total_stored:.2f}"
        )
    lines.append("  provenance:")
    for key, value in store.provenance.items():
        lines.append(f"    {key}: {json.dumps(value) if isinstance(value, dict | list) else value}")
    return "\n".join(lines)


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} GB"

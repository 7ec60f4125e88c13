"""Reads of sharded stores read each shard's index once per reader, return zarr's rows bit for bit, and never
read or keep anything of a work unit that is not done (issue 12: reads of sharded stores as fast as unsharded)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.abc.store import SuffixByteRequest
from zarr.storage import LocalStore

import clips4.cache
from clips4.cache import StoreError, shard_reader
from clips4.cache.integrity import mark_not_done
from clips4.cache.shard_reader import ShardRowReader
from clips4.cache.store import ArraySpec, ChunkedStore, StoreLayout

ROWS, NOT_DONE = 22, 2  # shards of 6 rows (3 chunks of 2): units 0-3, the last one partial; unit 2 left undone
LAYOUT = StoreLayout(
    "clip_dense",
    ROWS,
    rows_per_chunk=2,
    arrays={
        "features": ArraySpec((3, 3, 4), "float16"),
        "extent": ArraySpec((2,), "int32"),
        "image_size": ArraySpec((2,), "int32"),
    },
    chunks_per_shard=3,
)
ATTRS = {
    "image_ids": [f"im{i:02d}" for i in range(ROWS)],
    "splits": {"train": [0, 16], "val": [16, ROWS]},
    "feature_stride": 8,
    "embed_dim": 4,
}


def _unit_data(unit: int, seed: int = 0) -> dict[str, np.ndarray]:
    start, stop = LAYOUT.unit_rows(unit)
    rng = np.random.default_rng(seed * 100 + unit)
    extent = np.where(np.arange(start, stop)[:, None] % 3 == 0, [2, 3], [3, 3]).astype(np.int32)
    return {
        "features": rng.standard_normal((stop - start, 3, 3, 4)).astype(np.float16),
        "extent": extent,
        "image_size": extent * 8,
    }


def _writer(path: Path) -> ChunkedStore:
    return ChunkedStore.open(path, LAYOUT, {"test": 1}, ATTRS, stage="clip-dense")


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "clip_dense.zarr"
    writer = _writer(path)
    for unit in range(LAYOUT.num_units):
        if unit != NOT_DONE:
            writer.write_unit(unit, _unit_data(unit))
    assert not writer.finish()
    return path


@pytest.fixture
def index_reads(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Reads of a shard's index (the tail of the file), by store key, through zarr's async path or get_sync."""
    counts: Counter = Counter()
    original_get, original_get_sync = LocalStore.get, LocalStore.get_sync

    def note(key: str, byte_range) -> None:
        if isinstance(byte_range, SuffixByteRequest):
            counts[key] += 1

    async def get(self, key, prototype=None, byte_range=None):
        note(key, byte_range)
        return await original_get(self, key, prototype, byte_range)

    def get_sync(self, key, *, prototype=None, byte_range=None):
        note(key, byte_range)
        return original_get_sync(self, key, prototype=prototype, byte_range=byte_range)

    monkeypatch.setattr(LocalStore, "get", get)
    monkeypatch.setattr(LocalStore, "get_sync", get_sync)
    return counts


def _plain_image(path: Path, row: int) -> np.ndarray:
    group = zarr.open_group(str(path), mode="r")
    height, width = (int(v) for v in group["extent"][row])
    return np.asarray(group["features"][row])[:height, :width]


def _done_rows() -> list[int]:
    start, stop = LAYOUT.unit_rows(NOT_DONE)
    return [row for row in range(ROWS) if not start <= row < stop]


def test_reads_read_each_shard_index_once_and_equal_zarrs_rows(store_path: Path, index_reads: Counter):
    expected = {row: _plain_image(store_path, row) for row in _done_rows()}
    index_reads.clear()
    store = clips4.cache.open(str(store_path))
    rows = np.random.default_rng(0).permutation(_done_rows() * 3)  # every row three times, in random order
    for row in rows:
        image = store.image(int(row))
        assert image.dtype == expected[row].dtype and image.tobytes() == expected[row].tobytes(), row
        assert image.flags.writeable  # as zarr's: callers may change what they get
    for split in ("train", "val"):
        for row, image in store.iter_images(split):
            assert image.tobytes() == expected[row].tobytes(), row
    features = {key: n for key, n in index_reads.items() if key.startswith("features/")}
    # Without the cache every random read of a row reads its shard's index: 3 reads per row, 18+ per shard.
    assert features and max(features.values()) == 1, features
    assert len(features) == LAYOUT.num_units - 1
    assert store.arrays["features"]._fast.index_reads == LAYOUT.num_units - 1


def test_rows_of_a_unit_not_done_are_never_read_kept_or_served(store_path: Path, index_reads: Counter):
    store = clips4.cache.open(str(store_path))
    reader = store.arrays["features"]._fast
    assert isinstance(reader, ShardRowReader)
    start, stop = LAYOUT.unit_rows(NOT_DONE)
    with pytest.raises(StoreError, match="not computed yet"):
        store.image(start)
    assert reader.read_rows(start, start + 1) is None
    assert [row for row, _ in store.iter_images()] == _done_rows()
    # Another process finishes the unit meanwhile: this reader's snapshot still refuses it and keeps nothing of it.
    _writer(store_path).write_unit(NOT_DONE, _unit_data(NOT_DONE))
    with pytest.raises(StoreError, match="not computed yet"):
        store.image(start)
    assert reader.read_rows(start, stop) is None
    assert NOT_DONE not in reader.indexes and not any(k.endswith(f"/c/{NOT_DONE}/0/0/0") for k in index_reads)
    # A fresh reader serves the finished unit, equal to what was written.
    fresh = clips4.cache.open(str(store_path))
    written = _unit_data(NOT_DONE)["features"]
    for row in range(start, stop):
        assert fresh.image(row).tobytes() == _plain_image(store_path, row).tobytes()
        assert np.array_equal(fresh.arrays["features"][row], written[row - start])


def test_a_shard_rewritten_after_its_index_was_kept_is_read_again(store_path: Path):
    store = clips4.cache.open(str(store_path))
    before = store.image(1)
    # A repair: the unit is marked not done and written again with other values (a new file).
    mark_not_done(zarr.open_group(str(store_path), mode="a"), [0])
    new = _unit_data(0, seed=1)
    _writer(store_path).write_unit(0, new)
    after = store.image(1)
    assert not np.array_equal(before, after)
    assert after.tobytes() == _plain_image(store_path, 1).tobytes()
    assert store.arrays["features"]._fast.index_reads == 2


def test_reads_the_fast_path_cannot_serve_take_zarrs_path(store_path: Path):
    store = clips4.cache.open(str(store_path))
    features = store.arrays["features"]
    group = zarr.open_group(str(store_path), mode="r")
    # Across shards, with a step, and by index lists: zarr's path, same values.
    for selection in (slice(4, 8), slice(0, 6, 2), [1, 7]):
        assert np.array_equal(features[selection], np.asarray(group["features"][selection]))
    # An unsharded array (format 2 stores) gets no reader.
    plain = zarr.create_array(
        LocalStore(str(store_path.parent / "plain.zarr")), shape=(4, 2), chunks=(2, 2), dtype="f4"
    )
    assert ShardRowReader.for_array(plain, lambda unit: True) is None


def test_a_damaged_chunk_is_reported_as_before(store_path: Path):
    store = clips4.cache.open(str(store_path))
    store.image(0)  # the index of unit 0 is kept
    shard = store_path / "features" / "c" / "0" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[:32] = b"\xff" * 32  # damage the first chunk's bytes (the index at the end is intact)
    shard.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="features shard 0"):
        store.image(0)


def test_without_zarrs_internals_or_when_the_fast_path_fails_reads_take_zarrs_path(store_path: Path, monkeypatch):
    store = clips4.cache.open(str(store_path))
    features = store.arrays["features"]
    expected = _plain_image(store_path, 1).tobytes()

    def broken(*args, **kwargs):
        raise TypeError("an internal zarr signature changed")

    monkeypatch.setattr(features._fast, "read_rows", broken)
    assert store.image(1).tobytes() == expected  # served by zarr, not reported as a damaged chunk

    monkeypatch.setattr(shard_reader, "AVAILABLE", False)
    group = zarr.open_group(str(store_path), mode="r")
    assert ShardRowReader.for_array(group["features"], lambda unit: True) is None
    assert clips4.cache.open(str(store_path)).image(1).tobytes() == expected

"""Sharded stores (format 3 and later): work units are whole shards, so concurrent writers never share a shard file;
resuming after a kill redoes exactly the missing shards; damaged shards are named; stores of older formats are
refused by readers and rebuilt with a message (issues 12 and 22)."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

import clips4.cache
from clips4.cache import StoreError
from clips4.cache.api import describe, verify_store
from clips4.cache.store import (
    STORE_FORMAT,
    ArraySpec,
    ChunkedStore,
    StoreLayout,
    chunks_per_shard,
    open_for_reading,
    sharded_layout,
)
from clips4.params import load_params
from clips4.stages.contours import run_contours
from tests.test_cache_stages import Interrupted, _assert_same_store, project  # noqa: F401 (fixture)


@pytest.fixture
def sharded(project: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    """The tiny world's params with shards of several chunks: 18 images, contours chunks of 2 images, and at most
    1 file per image: 5 metadata files + 3 units x 4 files -> shards of 6 images (3 chunks), 3 work units."""
    monkeypatch.chdir(project)
    return load_params("params.yaml", overrides={"cache.images_per_file": 1})


def _layout(rows: int = 22) -> StoreLayout:
    arrays = {"x": ArraySpec((3,), "float32"), "n": ArraySpec((), "int32")}
    return StoreLayout("contours", rows, rows_per_chunk=2, arrays=arrays, chunks_per_shard=3)


def _values(start: int, stop: int) -> dict[str, np.ndarray]:
    rows = np.arange(start, stop)
    return {"x": np.repeat(rows[:, None], 3, axis=1).astype(np.float32) + 0.5, "n": rows.astype(np.int32) + 1}


def _write_units(path: str, rank: int, world: int) -> None:
    store = ChunkedStore.open(path, _layout(), {"test": 1}, {}, stage="contours", shard=(rank, world), wait_s=30)
    for unit in store.pending((rank, world)):
        store.write_unit(unit, _values(*store.layout.unit_rows(unit)))
    store.finish()


def test_shards_hold_whole_work_units_and_ranks_never_share_one():
    arrays = {name: ArraySpec((2,), "float16") for name in ("a", "b", "c")}
    for images, per_chunk in [(1000, 1), (4000, 1), (4000, 3), (6500, 6), (118_000, 1)]:
        layout = sharded_layout("contours", images, per_chunk, arrays, 64)
        files = 1 + len(arrays) + 1 + layout.num_units * (len(arrays) + 1)  # metadata + units x (shards + flag)
        assert files <= images / 64 and layout.rows_per_shard % per_chunk == 0, (images, per_chunk)
    segments = sharded_layout("segments", 32 * 4000, 300, arrays, 64, rows_per_image=32.0, static_arrays=1)
    assert 1 + 3 + 1 + 2 + segments.num_units * 4 <= 4000 / 64
    assert chunks_per_shard(rows_per_chunk=1, rows=100, files_per_unit=4, images_per_file=64) == 100  # one unit
    assert chunks_per_shard(rows_per_chunk=5, rows=4000, files_per_unit=4, images_per_file=0) == 1

    layout = _layout()
    store_rows = [layout.unit_rows(unit) for unit in range(layout.num_units)]
    # Units tile the rows and each unit is exactly one shard: rows // rows_per_shard == unit for all its rows.
    assert store_rows[0][0] == 0 and store_rows[-1][1] == layout.rows
    for unit, (start, stop) in enumerate(store_rows):
        assert set(np.arange(start, stop) // layout.rows_per_shard) == {unit}
    for world in (2, 3, 4):
        store = ChunkedStore("unused", None, layout)  # type: ignore[arg-type]
        owners: dict[int, int] = {}
        for rank in range(world):
            for unit in store.shard_units((rank, world)):
                assert unit not in owners, f"unit {unit} given to ranks {owners[unit]} and {rank}"
                owners[unit] = rank
        assert sorted(owners) == list(range(layout.num_units))


def test_two_processes_fill_disjoint_shards_into_one_complete_store(tmp_path):
    path = str(tmp_path / "two.zarr")
    context = multiprocessing.get_context("spawn")
    ranks = [context.Process(target=_write_units, args=(path, rank, 2)) for rank in (1, 0)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(60)
        assert process.exitcode == 0
    group = zarr.open_group(path, mode="r")
    assert group["x"].shards == (6, 3) and group["x"].chunks == (2, 3)
    assert len(list((tmp_path / "two.zarr" / "x" / "c").iterdir())) == 4  # 22 rows in shards of 6: 4 files
    expected = _values(0, 22)
    np.testing.assert_array_equal(group["x"][:], expected["x"])
    np.testing.assert_array_equal(group["n"][:], expected["n"])
    assert group["done"][:].all() and group.attrs["complete"]


def test_killed_run_resumes_exactly_the_missing_shards(sharded, monkeypatch, tmp_path):
    reference = tmp_path / "reference.zarr"
    full = run_contours(sharded, reference, workers=1)
    store = clips4.cache.open(str(reference))
    assert (store.rows_per_chunk, store.rows_per_shard, full.total_chunks) == (2, 6, 3)
    assert len(list((reference / "strength" / "c").iterdir())) == 3  # one file per shard, not per chunk

    import clips4.superpixels.contours as detector

    real, calls = detector.detect_contours, []

    def counting(image, contour_params):
        calls.append(1)
        if len(calls) == 8 and interrupt:
            raise Interrupted  # killed in the middle of the second shard
        return real(image, contour_params)

    monkeypatch.setattr(detector, "detect_contours", counting)
    resumed, interrupt = tmp_path / "resumed.zarr", True
    with pytest.raises(Interrupted):
        run_contours(sharded, resumed, workers=1)
    assert clips4.cache.open(str(resumed)).done_chunks().tolist() == [True, False, False]
    assert len(list((resumed / "strength" / "c").iterdir())) == 1  # the half-computed shard was never written
    interrupt, calls[:] = False, []
    result = run_contours(sharded, resumed, workers=1)
    assert result.complete and result.computed_chunks == 2 and len(calls) == 18 - 6
    _assert_same_store(reference, resumed)


def test_lost_and_truncated_shards_are_named(sharded, tmp_path):
    path = tmp_path / "contours.zarr"
    run_contours(sharded, path, workers=1)
    (path / "strength" / "c" / "1" / "0" / "0").unlink()
    damaged = clips4.cache.open(str(path))
    assert list(damaged.lost_chunks) == [1] and not damaged.complete
    with pytest.raises(StoreError, match=r"image 'train_000007' \(row 7\) is in shard 1, whose file of strength"):
        damaged.image(7)
    damaged.image(13)  # other shards are still served
    with pytest.raises(
        StoreError, match=r"1 shard\(s\) marked done lost their files or changed size \(first: shard 1 of strength"
    ):
        open_for_reading(path, "contours", stage="contours")
    shard = path / "orientation" / "c" / "2" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:-40])  # truncated: the shard index at its end is gone
    bad = verify_store(str(path), repair=True)
    assert [str(b).split(" (")[0] for b in bad] == ["strength shard 1", "orientation shard 2"]
    assert "rows 12-17, images val_000000, val_000001, val_000002, val_000003 and 2 more" in str(bad[1])
    result = run_contours(sharded, path, workers=1)
    assert result.complete and result.computed_chunks == 2


def _as_format_2(source: Path, target: Path) -> None:
    """The same content as an unsharded format-2 store (what clips4 wrote before sharding)."""
    old = zarr.open_group(str(source), mode="r")
    attrs = dict(old.attrs.asdict())
    attrs.pop("rows_per_shard")
    attrs["format"] = 2
    attrs["fingerprint_parts"] = {**attrs["fingerprint_parts"], "format": "old"}
    attrs["fingerprint"] = "format2fingerprint"
    new = zarr.open_group(str(target), mode="w", attributes=attrs)
    step = int(attrs["rows_per_chunk"])
    rows = int(attrs["rows"])
    for name in attrs["row_arrays"]:
        array = old[name]
        copy = new.create_array(
            name, shape=array.shape, chunks=array.chunks, dtype=array.dtype, fill_value=array.fill_value
        )
        copy[...] = array[...]
    done = new.create_array("done", shape=(-(-rows // step),), chunks=(1,), dtype="uint8", fill_value=0)
    done[...] = 1


def _as_format_3(source: Path, target: Path) -> None:
    """The same files, labelled as written by the sharded format before chunk checksums (format 3)."""
    shutil.copytree(source, target)
    group = zarr.open_group(str(target), mode="a")
    parts = {**group.attrs["fingerprint_parts"], "format": "old"}
    group.attrs.update({"format": 3, "fingerprint_parts": parts, "fingerprint": "format3fingerprint"})


@pytest.mark.parametrize("old_format", [2, 3])
def test_a_store_of_an_older_format_is_refused_by_readers_and_rebuilt_with_a_message(sharded, tmp_path, old_format):
    current = tmp_path / "current.zarr"
    run_contours(sharded, current, workers=1)
    old_path = tmp_path / "old.zarr"
    (_as_format_2 if old_format == 2 else _as_format_3)(current, old_path)
    refused = (
        rf"old\.zarr: store format {old_format} \([^)]*no chunk checksums[^)]*\), and this clips4 reads format 4 "
        r"only; rebuild it with `dvc repro` \(or `clips4 contours --rebuild`\)"
    )
    with pytest.raises(StoreError, match=refused):
        clips4.cache.open(str(old_path))
    with pytest.raises(StoreError, match=refused):
        open_for_reading(old_path, "contours", stage="contours")
    with pytest.raises(StoreError, match=refused):
        verify_store(str(old_path))
    assert describe(str(old_path)).splitlines()[0].endswith("contours store, OLD FORMAT")
    stale = rf"is complete but is stale \(changed: format \(store format {old_format} -> 4\)\); rerun `clips4 contours"
    with pytest.raises(StoreError, match=stale):
        run_contours(sharded, old_path, workers=1)
    result = run_contours(sharded, old_path, workers=1, rebuild=True)
    assert result.complete and result.computed_chunks == 3
    assert clips4.cache.open(str(old_path)).attrs["format"] == STORE_FORMAT == 4
    _assert_same_store(current, old_path)


def test_workers_share_one_work_unit_and_the_parent_writes_it_whole(project, monkeypatch, tmp_path):  # noqa: F811
    monkeypatch.chdir(project)
    one_unit = load_params("params.yaml", overrides={"cache.images_per_file": 64})  # 18 images: one shard
    single = run_contours(one_unit, tmp_path / "single.zarr", workers=1)
    shared = run_contours(one_unit, tmp_path / "shared.zarr", workers=2)  # 2 processes on pieces of the unit
    assert single.total_chunks == shared.total_chunks == 1 and shared.complete
    assert len(list((tmp_path / "shared.zarr" / "strength" / "c").iterdir())) == 1
    _assert_same_store(tmp_path / "single.zarr", tmp_path / "shared.zarr")

"""Stores you can trust (issue 22): a flipped byte, a truncated shard or a lost chunk is a named error, never data.

Every chunk carries a CRC-32C, every fill value marks a missing chunk (NaN, or an integer type's extreme), and each
done flag records its unit's file sizes and CRC-32, so that a writer that resumes recomputes damaged units and
``dvc repro`` never records a damaged store.
"""

# ruff: noqa: F811  (the tiny-project fixtures of test_cache_stages are imported, then requested by name)

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

import clips4.cache
from clips4.cache import StoreError
from clips4.cache.api import describe, verify_store
from clips4.cache.shard_reader import DamagedChunk
from clips4.cache.store import ArraySpec, ChunkedStore, StoreLayout, open_for_reading, write_small_store
from clips4.cli import app
from clips4.params import load_params
from clips4.stages.contours import run_contours
from tests.test_cache_stages import _assert_same_store, project  # noqa: F401 (fixture)

ROWS = 16  # shards of 6 rows (3 chunks of 2 rows): units 0-2, the last one partial
LAYOUT = StoreLayout(
    "clip_dense",
    ROWS,
    rows_per_chunk=2,
    arrays={
        "features": ArraySpec((3, 3, 8), "float16"),
        "extent": ArraySpec((2,), "int32"),
        "image_size": ArraySpec((2,), "int32"),
    },
    chunks_per_shard=3,
)
ATTRS = {
    "image_ids": [f"im{i:02d}" for i in range(ROWS)],
    "splits": {"train": [0, 12], "val": [12, ROWS]},
    "feature_stride": 8,
    "embed_dim": 8,
}


def _unit_data(unit: int) -> dict[str, np.ndarray]:
    start, stop = LAYOUT.unit_rows(unit)
    rng = np.random.default_rng(unit)
    extent = np.full((stop - start, 2), 3, np.int32)
    return {
        "features": rng.standard_normal((stop - start, 3, 3, 8)).astype(np.float16),
        "extent": extent,
        "image_size": extent * 8 + unit,  # unit by unit another file
    }


def _writer(path: Path) -> ChunkedStore:
    return ChunkedStore.open(path, LAYOUT, {"test": 1}, ATTRS, stage="clip-dense")


def _fill(path: Path) -> ChunkedStore:
    """Resume the store as a stage does: compute the pending units, finish."""
    writer = _writer(path)
    for unit in writer.pending():
        writer.write_unit(unit, _unit_data(unit))
    assert writer.finish()
    return writer


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "clip_dense.zarr"
    _fill(path)
    return path


def _shard(path: Path, unit: int, name: str = "features") -> Path:
    return (
        path / name / "c" / str(unit) / "0" / "0" / "0" if name == "features" else path / name / "c" / str(unit) / "0"
    )


def _chunk_offset(path: Path, unit: int, inner: int) -> tuple[int, int]:
    """Byte offset and length of inner chunk ``inner`` of a features shard (from its index)."""
    reader = clips4.cache.open(str(path)).arrays["features"]._fast
    index = reader._index(unit, reader._key(unit))
    return int(index.offsets[inner]), int(index.nbytes[inner])


def _flip(file: Path, offset: int, keep_mtime: bool = False) -> None:
    stat = file.stat()
    with open(file, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))
    if keep_mtime:  # bit rot: the file's modification time does not move
        os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _written(row: int) -> np.ndarray:
    unit = row // LAYOUT.rows_per_shard
    return _unit_data(unit)["features"][row - LAYOUT.unit_rows(unit)[0]]


# --- finding 1: a flipped byte is a named error, from the API (both read paths) and from verify ---


def test_a_flipped_byte_in_a_shard_is_a_named_error_from_the_api_and_from_verify(store_path: Path):
    offset, length = _chunk_offset(store_path, 1, 1)  # shard 1 holds rows 6-11; its chunk 1 (chunk 4) rows 8-9
    _flip(_shard(store_path, 1), offset + length // 2)
    store = clips4.cache.open(str(store_path))
    named = (
        rf"{re.escape(str(store_path))}: features shard 1 \(features/c/1/0/0/0; rows 6-11, images im06, im07, im08, "
        r"im09 and 2 more\), chunk 4 \(rows 8-9, images im08, im09\): damaged bytes \(CRC-32C checksum mismatch\); "
        rf"run `clips4 cache verify --repair {re.escape(str(store_path))}`, then `dvc repro`"
    )
    with pytest.raises(StoreError, match=r"image 'im08' \(row 8\): " + named):
        store.image(8)
    with pytest.raises(StoreError, match=named):
        store.arrays["features"][9]
    # The direct shard reader checks the checksum itself (it decodes with zarr's codecs, crc32c included) ...
    with pytest.raises(DamagedChunk, match="checksum"):
        store.arrays["features"]._fast.read_rows(8, 10)
    # ... and so does zarr's path (a read across two shards), with the same message.
    with pytest.raises(StoreError, match=named):
        store.arrays["features"][4:10]
    with pytest.raises(StoreError, match=named):
        list(store.iter_images("train"))
    assert store.image(6).tobytes() == _written(6)[:3, :3].tobytes()  # the shard's other chunks are still served

    runner = CliRunner()
    verify = runner.invoke(app, ["cache", "verify", str(store_path)])
    assert verify.exit_code == 1, verify.output
    assert "features shard 1 (rows 6-11, images im06" in verify.output
    assert "changed since it was written (CRC-32 " in verify.output
    assert "chunk 4 (rows 8-9, images im08, im09): damaged bytes (CRC-32C checksum mismatch)" in verify.output
    assert f"1 bad chunk(s); run `clips4 cache verify --repair {store_path}`, then `dvc repro`" in verify.output
    assert "DAMAGED" in describe(str(store_path)).splitlines()[0]  # modified after its record: info hashes it

    repaired = runner.invoke(app, ["cache", "verify", "--repair", str(store_path)])
    assert repaired.exit_code == 1 and "marked not done" in repaired.output
    assert _writer(store_path).pending() == [1]
    _fill(store_path)
    assert runner.invoke(app, ["cache", "verify", str(store_path)]).exit_code == 0
    assert clips4.cache.open(str(store_path)).image(8).tobytes() == _written(8)[:3, :3].tobytes()


def test_no_flipped_byte_anywhere_in_a_shard_is_served(store_path: Path):
    shard = _shard(store_path, 1)
    original = shard.read_bytes()
    start, stop = LAYOUT.unit_rows(1)
    for offset in np.linspace(0, len(original) - 1, 20).astype(int):  # chunk data, chunk checksums and the index
        _flip(shard, int(offset))
        store = clips4.cache.open(str(store_path))
        refused = 0
        for row in range(start, stop):
            try:
                assert store.image(row).tobytes() == _written(row)[:3, :3].tobytes(), (offset, row)
            except StoreError:
                refused += 1
        assert refused, f"a flip at byte {offset} of {len(original)} went unnoticed"
        assert [b.chunk for b in verify_store(str(store_path))] == [1], offset
        shard.write_bytes(original)


def test_bit_rot_that_keeps_the_modification_time_is_still_caught_by_reads_and_verify(store_path: Path):
    offset, _ = _chunk_offset(store_path, 0, 2)
    _flip(_shard(store_path, 0), offset + 1, keep_mtime=True)
    with pytest.raises(StoreError, match=r"features shard 0 .*, chunk 2 \(rows 4-5.*\): damaged bytes"):
        clips4.cache.open(str(store_path)).image(5)
    bad = verify_store(str(store_path))
    assert [(b.array, b.chunk) for b in bad] == [("features", 0)] and "changed since it was written" in bad[0].problem


# --- finding 2: a resumed writer recomputes the units whose files are not the ones it wrote ---


def test_a_truncated_or_flipped_shard_is_recomputed_by_the_stage_rerun(project, monkeypatch, tmp_path):
    monkeypatch.chdir(project)
    params = load_params("params.yaml", overrides={"cache.images_per_file": 1})  # 3 shards of 6 images
    reference, path = tmp_path / "reference.zarr", tmp_path / "contours.zarr"
    run_contours(params, reference, workers=1)
    first = run_contours(params, path, workers=1)
    assert first.total_chunks == 3
    shard = path / "strength" / "c" / "1" / "0" / "0"
    os.truncate(shard, shard.stat().st_size // 2)  # as `truncate -s` does
    again = run_contours(params, path, workers=1)
    assert again.complete and again.computed_chunks == 1
    assert verify_store(str(path)) == []
    _assert_same_store(reference, path)

    _flip(path / "orientation" / "c" / "2" / "0" / "0", 100)  # same size, newer than its record: hashed
    again = run_contours(params, path, workers=1)
    assert again.complete and again.computed_chunks == 1
    assert verify_store(str(path)) == []
    _assert_same_store(reference, path)
    files = {p: p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    assert run_contours(params, path, workers=1).computed_chunks == 0  # nothing changed: nothing recomputed
    assert {p: p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()} == files


def test_a_replaced_shard_or_a_damaged_done_flag_is_recomputed_on_resume(store_path: Path):
    # Another unit's valid file in place of shard 1 of image_size: it decodes, but it is not what was written there.
    other = _shard(store_path, 0, "image_size").read_bytes()
    _shard(store_path, 1, "image_size").write_bytes(other)
    bad = verify_store(str(store_path))
    assert [(b.array, b.chunk) for b in bad] == [("image_size", 1)], bad
    done_chunk = store_path / "done" / "c" / "2" / "0"
    data = bytearray(done_chunk.read_bytes())
    data[0] ^= 0xFF
    done_chunk.write_bytes(bytes(data))
    assert [(b.array, b.chunk) for b in verify_store(str(store_path))] == [("done", 2), ("image_size", 1)]
    assert not clips4.cache.open(str(store_path)).complete
    with pytest.raises(StoreError, match=r"marked complete, but a work unit's done flag is unset or damaged"):
        open_for_reading(store_path, "clip_dense", stage="clip-dense")
    assert sorted(_writer(store_path).pending()) == [1, 2]  # both recomputed by the next run
    _fill(store_path)
    assert verify_store(str(store_path)) == []


# --- finding 3: a lost chunk reads as a named error, never as zeros ---


def test_a_deleted_chunk_of_an_int_or_a_float_row_array_is_a_named_error(store_path: Path):
    group = zarr.open_group(str(store_path), mode="r")
    assert group["extent"].fill_value == np.iinfo(np.int32).min and np.isnan(group["features"].fill_value)
    _shard(store_path, 1, "extent").unlink()
    _shard(store_path, 2, "features").unlink()
    store = clips4.cache.open(str(store_path))
    assert not store.complete and sorted(store.lost_chunks) == [1, 2]
    with pytest.raises(StoreError, match=r"image 'im07' \(row 7\) is in shard 1, whose file of extent is missing"):
        store.image(7)
    # Past the file check (the file vanished after the store was opened), the fill value itself is refused.
    with pytest.raises(
        StoreError, match=r"extent shard 1 .*rows 6-11.* holds the fill value missing marker -2147483648"
    ):
        store.arrays["extent"][7]
    with pytest.raises(StoreError, match=r"features shard 2 .*rows 12-15.* holds the fill value NaN"):
        store.arrays["features"][13]
    with pytest.raises(StoreError, match=r"2 shard\(s\) marked done lost their files or changed size"):
        open_for_reading(store_path, "clip_dense", stage="clip-dense")
    assert [(b.array, b.chunk) for b in verify_store(str(store_path))] == [("features", 2), ("extent", 1)]


def test_a_deleted_chunk_of_a_small_store_is_a_named_error_never_zeros(tmp_path: Path):
    from clips4.train.objective import load_prototypes

    path = tmp_path / "prototypes.zarr"
    rng = np.random.default_rng(0)
    arrays = {
        "known": rng.standard_normal((3, 8)).astype(np.float32),
        "known_indices": np.arange(6).reshape(3, 2),
        "class_text": rng.standard_normal((3, 8)).astype(np.float32),
        "unknown": rng.standard_normal((2, 8)).astype(np.float32),
    }
    attrs = {"kind": "prototypes", "known_classes": ["a", "b", "c"], "held_out_classes": []}
    write_small_store(path, arrays, attrs)
    assert clips4.cache.open(str(path)).complete and load_prototypes(str(path), 8, "prototypes")[0].shape == (3, 8)

    (path / "known" / "c" / "0" / "0").unlink()  # the hostile user's `rm prototypes.zarr/known/c/0/0`
    store = clips4.cache.open(str(path))
    assert not store.complete and store.missing_arrays == {"known": "known/c/0/0"}
    assert "prototypes store, DAMAGED" in describe(str(path)) and "array known lost its file" in describe(str(path))
    with pytest.raises(StoreError, match=r"prototypes\.zarr: known \(written whole\) holds the fill value NaN"):
        store.known  # noqa: B018
    with pytest.raises(StoreError, match=r"holds the fill value NaN"):
        load_prototypes(str(path), 8, "prototypes")  # what `clips4 train` reads: never zeros
    with pytest.raises(StoreError, match=r"array 'known' lost its file known/c/0/0; rerun `clips4 prototypes`"):
        open_for_reading(path, "prototypes", stage="prototypes")
    verify = CliRunner().invoke(app, ["cache", "verify", str(path)])
    assert verify.exit_code == 1 and "known chunk 0 (whole array): file known/c/0/0 missing" in verify.output

    write_small_store(path, arrays, attrs)
    (path / "known_indices" / "c" / "0" / "0").unlink()
    marker = np.iinfo(np.int64).min
    assert zarr.open_group(str(path), mode="r")["known_indices"].fill_value == marker
    with pytest.raises(
        StoreError, match=rf"known_indices \(written whole\) holds the fill value missing marker {marker}"
    ):
        clips4.cache.open(str(path)).arrays["known_indices"][:]

    write_small_store(path, arrays, attrs)
    class_text = path / "class_text" / "c" / "0" / "0"
    data = bytearray(class_text.read_bytes())
    data[len(data) // 2] ^= 0xFF
    class_text.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"class_text \(written whole\) damaged bytes \(CRC-32C checksum mismatch\)"):
        load_prototypes(str(path), 8, "text")
    assert [b.array for b in verify_store(str(path))] == ["class_text"]

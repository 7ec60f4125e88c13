"""Caches that never lose work or serve garbage (issue 9, items 6-10): unreadable headers, content fingerprints and
--rebuild, sharded writers, lost and truncated chunks, small stores written atomically and byte for byte."""

# ruff: noqa: F811  (the tiny-project fixtures of test_cache_stages are imported, then requested by name)

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import clips4.cache
import clips4.cache.store as store_module
from clips4.cache.store import StoreError, write_small_store
from clips4.cli import app
from clips4.errors import Clips4Error
from clips4.params import load_params
from clips4.stages.clip_dense import run_clip_dense
from clips4.stages.common import parse_shard
from clips4.stages.contours import run_contours
from clips4.stages.segments import run_segments
from clips4.stages.ucm import run_ucm
from tests.fixtures import tree_bytes as _files
from tests.test_cache_stages import Interrupted, project  # noqa: F401 (fixture; `params` is tests/conftest.py's)

# --- item 6: a header that cannot be read is never removed ---


def test_unreadable_header_stops_the_stage_and_removes_nothing(params, monkeypatch, tmp_path):
    path = tmp_path / "contours.zarr"
    run_contours(params, path, workers=1)
    before = _files(path)

    def network_down(_path):
        raise OSError("connection reset by peer")

    with monkeypatch.context() as patch:
        patch.setattr(store_module, "store_exists", network_down)  # a transient fsspec/network error
        with pytest.raises(StoreError, match=r"contours\.zarr: cannot read the store header \(OSError: connection"):
            run_contours(params, path, workers=1, rebuild=True)
    assert _files(path) == before

    (path / "zarr.json").write_text('{"attributes": ')  # a damaged header
    with pytest.raises(StoreError, match=r"cannot read the store header .* nothing was changed or removed"):
        run_contours(params, path, workers=1, rebuild=True)
    assert sorted(_files(path)) == sorted(before)


# --- item 7: content fingerprints, what changed, --rebuild ---


def _copy_world(project: Path, target: Path) -> Path:
    """The synthetic world copied as `cp` without -p does: same bytes, new modification times."""
    shutil.copytree(project / "data" / "synth", target, copy_function=shutil.copyfile)
    return target


def test_a_copied_or_touched_dataset_does_not_recompute_but_an_edited_image_does(params, project, tmp_path):
    path = tmp_path / "contours.zarr"
    first = run_contours(params, path, workers=1)
    assert first.computed_chunks == first.total_chunks
    time.sleep(0.05)
    copy = _copy_world(project, tmp_path / "copied_world")
    moved = load_params("params.yaml", overrides={"dataset.root": str(copy)})
    again = run_contours(moved, path, workers=1)
    assert again.complete and again.computed_chunks == 0  # same content: nothing to do

    image = copy / "JPEGImages" / "val_000002.jpg"
    image.write_bytes(image.read_bytes() + b"\0")  # an edited val image
    with pytest.raises(StoreError, match=r"is complete but is stale \(changed: images\.val\); rerun `clips4 contours"):
        run_contours(moved, path, workers=1)
    assert run_contours(moved, path, workers=1, rebuild=True).computed_chunks == first.total_chunks


def test_stale_incomplete_store_needs_rebuild_only_when_it_holds_finished_chunks(params, monkeypatch, tmp_path):
    import clips4.superpixels.contours as contours_module

    real, calls = contours_module.detect_contours, []

    def interrupted_after(limit):
        def detect(image, contour_params):
            calls.append(1)
            if len(calls) > limit:
                raise Interrupted
            return real(image, contour_params)

        return detect

    changed = load_params("params.yaml", overrides={"ucm.regions": 5, "contours.num_scales": 2})
    empty = tmp_path / "empty.zarr"
    monkeypatch.setattr(contours_module, "detect_contours", interrupted_after(0))
    with pytest.raises(Interrupted):
        run_contours(params, empty, workers=1)
    monkeypatch.setattr(contours_module, "detect_contours", real)
    result = run_contours(changed, empty, workers=1)  # nothing finished to lose: replaced without --rebuild
    assert result.complete and result.computed_chunks == result.total_chunks

    started = tmp_path / "started.zarr"
    calls.clear()
    monkeypatch.setattr(contours_module, "detect_contours", interrupted_after(3))
    with pytest.raises(Interrupted):
        run_contours(params, started, workers=1)
    monkeypatch.setattr(contours_module, "detect_contours", real)
    with pytest.raises(StoreError, match=r"holds 1 finished chunk\(s\) but is stale \(changed: contours\.num_scales\)"):
        run_contours(changed, started, workers=1)
    assert clips4.cache.open(str(started)).done_chunks().sum() == 1  # kept
    assert run_contours(params, started, workers=1).computed_chunks == result.total_chunks - 1  # resumes


def test_cli_stage_on_a_stale_store_names_the_change_and_rebuild_replaces_it(params, project, tmp_path):
    import yaml

    runner = CliRunner()
    cache = ["--cache-dir", str(tmp_path / "cache"), "-j", "1"]
    assert runner.invoke(app, ["contours", *cache]).exit_code == 0
    config = yaml.safe_load((project / "params.yaml").read_text())
    # A params file elsewhere: its relative dataset.root would be read from its own folder, so give it absolute.
    changed = {**config, "dataset": {"root": str(project / "data" / "synth")}, "contours": {"sigma": 2.5}}
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed))
    stale = runner.invoke(app, ["contours", *cache, "--params", str(tmp_path / "changed.yaml")])
    assert stale.exit_code == 1
    assert "is complete but is stale (changed: contours.sigma)" in stale.output and "--rebuild" in stale.output
    rebuilt = runner.invoke(app, ["contours", *cache, "--params", str(tmp_path / "changed.yaml"), "--rebuild"])
    assert rebuilt.exit_code == 0 and "computed 9 of 9 chunks now; complete" in rebuilt.output
    again = runner.invoke(app, ["contours", *cache, "--params", str(tmp_path / "changed.yaml"), "--rebuild"])
    assert again.exit_code == 0 and "computed 0 of 9 chunks now" in again.output  # --rebuild never redoes fresh work


def test_the_same_inputs_give_byte_identical_stores(params, tmp_path):
    """No timestamp in any store: a rebuild from the same inputs writes the same bytes, so DVC sees no change."""
    run_contours(params, tmp_path / "a.zarr", workers=1)
    time.sleep(1.1)  # a timestamp in seconds would differ
    run_contours(params, tmp_path / "b.zarr", workers=1)
    assert _files(tmp_path / "a.zarr") == _files(tmp_path / "b.zarr")


# --- item 8: sharded writers ---


def test_other_ranks_never_create_or_remove_and_wait_for_rank_zero(params, monkeypatch, tmp_path):
    path = tmp_path / "contours.zarr"
    monkeypatch.setattr(store_module, "SHARD_POLL_S", 0.05)
    monkeypatch.setattr(store_module, "SHARD_WAIT_S", 0.3)
    with pytest.raises(StoreError, match=r"shard 1/2 waited 0 s for rank 0 to create this store .* found no store"):
        run_contours(params, path, workers=1, shard=(1, 2))
    assert not path.exists()

    run_contours(params, path, workers=1, shard=(0, 2))  # rank 0 creates the store and fills its half
    before = _files(path)
    changed = load_params("params.yaml", overrides={"contours.sigma": 3.0})
    with pytest.raises(StoreError, match=r"found a store with fingerprint"):
        run_contours(changed, path, workers=1, shard=(1, 2), rebuild=True)  # stale: rank 1 waits, removes nothing
    assert _files(path) == before
    result = run_contours(params, path, workers=1, shard=(1, 2))
    assert result.complete and result.computed_chunks == result.total_chunks - result.total_chunks // 2


def test_shard_from_torchrun_or_slurm_environment():
    assert parse_shard(None, {}) == (0, 1)
    assert parse_shard(None, {"RANK": "2", "WORLD_SIZE": "4"}) == (2, 4)
    slurm = {"SLURM_PROCID": "1", "SLURM_NTASKS": "3", "SLURM_STEP_ID": "0"}
    assert parse_shard(None, slurm) == (1, 3)
    # A batch script has SLURM_NTASKS of the allocation but is not one of several tasks (no srun step).
    assert parse_shard(None, {"SLURM_PROCID": "0", "SLURM_NTASKS": "3"}) == (0, 1)
    assert parse_shard("0/2", {"RANK": "1", "WORLD_SIZE": "2"}) == (0, 2)  # --shard wins
    with pytest.raises(Clips4Error, match=r"RANK/WORLD_SIZE: need 0 <= RANK < WORLD, got '4/4'"):
        parse_shard(None, {"RANK": "4", "WORLD_SIZE": "4"})


# --- item 9: a lost or truncated chunk is detected, never served ---


@pytest.fixture
def segments_stores(params, tmp_path):
    """contours -> ucm -> clip_dense -> segments in tmp_path, segments in chunks of 27 rows (7 chunks)."""
    paths = {name: tmp_path / f"{name}.zarr" for name in ("contours", "superpixels", "dense", "segments")}
    run_contours(params, paths["contours"], workers=1)
    run_ucm(params, paths["contours"], paths["superpixels"], workers=1, reports_dir=tmp_path / "reports")
    run_clip_dense(params, paths["dense"])
    small = load_params("params.yaml", overrides={"cache.chunk_mb": 0.002, "cache.images_per_file": 0})
    run_segments(small, paths["superpixels"], paths["dense"], paths["segments"], workers=1)
    return small, paths


def test_lost_and_truncated_chunks_are_named_never_served_and_recomputed(segments_stores, tmp_path):
    from clips4.stages.prototypes import run_prototypes

    params, paths = segments_stores
    path = paths["segments"]
    store = clips4.cache.open(str(path))
    assert store.complete and store.rows_per_chunk == 27 and len(store.done_chunks()) >= 5
    reference = store.embeddings[:]
    offsets = store.offsets
    (path / "embeddings" / "c" / "1" / "0").unlink()  # a vanished chunk file
    truncated = path / "embeddings" / "c" / "3" / "0"
    truncated.write_bytes(truncated.read_bytes()[:40])

    def image_in(chunk: int) -> str:
        return store.image_ids[int(np.searchsorted(offsets, chunk * 27 + 1, side="right")) - 1]

    damaged = clips4.cache.open(str(path))
    # Both are found without reading anything: one file is gone, the other is not the size it was written with.
    assert not damaged.complete and list(damaged.lost_chunks) == [1, 3]
    runner = CliRunner()
    info = runner.invoke(app, ["cache", "info", str(path)])
    assert (
        info.exit_code == 0
        and "segments store, DAMAGED" in info.output
        and "complete" not in info.output.split("\n")[0]
    )
    verify = runner.invoke(app, ["cache", "verify", str(path)])
    assert verify.exit_code == 1
    assert f"embeddings shard 1 (rows 27-53, images {image_in(1)}" in verify.output and "missing" in verify.output
    assert f"embeddings shard 3 (rows 81-107, images {image_in(3)}" in verify.output
    assert "40 bytes" in verify.output and "truncated" in verify.output and "2 bad chunk(s)" in verify.output

    for chunk in (1, 3):
        with pytest.raises(
            StoreError, match=rf"segments of image '{image_in(chunk)}' is in shard {chunk}, whose file of embeddings"
        ):
            damaged.segments_of(image_in(chunk))
    with pytest.raises(
        StoreError, match=r"2 shard\(s\) marked done lost their files or changed size \(first: shard 1 of embeddings"
    ):
        run_prototypes(params, path, tmp_path / "prototypes.zarr")

    # A rerun recomputes exactly the two damaged chunks (no --repair needed: their files are not the ones recorded).
    result = run_segments(params, paths["superpixels"], paths["dense"], path, workers=1)
    assert result.complete and result.computed_chunks == 2
    assert runner.invoke(app, ["cache", "verify", str(path)]).exit_code == 0
    np.testing.assert_array_equal(clips4.cache.open(str(path)).embeddings[:], reference)
    run_prototypes(params, path, tmp_path / "prototypes.zarr")


def test_float_arrays_fill_with_nan_and_reads_refuse_it(segments_stores):
    _, paths = segments_stores
    path = paths["dense"]
    store = clips4.cache.open(str(path))
    assert np.isnan(store.arrays["features"].array.fill_value)
    (path / "features" / "c" / "0" / "0" / "0" / "0").unlink()
    store = clips4.cache.open(str(path))  # even when the listing is bypassed, the NaN fill is refused
    with pytest.raises(StoreError, match=r"features shard 0 .*images train_000000.* holds the fill value NaN"):
        store.arrays["features"][0]
    with pytest.raises(StoreError, match=r"image 'train_000001' \(row 1\): .* features shard 0 .* NaN"):
        store.__dict__["_lost"] = {}  # as if the file vanished after the store was opened
        store.image("train_000001")


def test_missing_array_metadata_is_a_clear_error_and_a_rerun_repairs_it(segments_stores):
    params, paths = segments_stores
    path = paths["segments"]
    (path / "embeddings" / "zarr.json").unlink()
    with pytest.raises(StoreError, match=r"array 'embeddings' is missing \(no .*embeddings/zarr.json\); the store is"):
        clips4.cache.open(str(path))
    with pytest.raises(StoreError, match=r"array 'embeddings' is missing .* rerun `clips4 segments`"):
        store_module.open_for_reading(path, "segments", stage="segments")
    result = run_segments(params, paths["superpixels"], paths["dense"], path, workers=1)
    assert result.complete and result.computed_chunks == 0  # the chunk files were all still there
    assert clips4.cache.open(str(path)).complete


def test_deleted_store_header_is_replaced_in_one_run(params, tmp_path):
    path = tmp_path / "contours.zarr"
    run_contours(params, path, workers=1)
    (path / "zarr.json").unlink()
    result = run_contours(params, path, workers=1)
    assert result.complete and result.computed_chunks == result.total_chunks
    assert clips4.cache.open(str(path)).complete


# --- item 10: small stores atomic and byte-identical ---


def test_small_store_rewrite_is_byte_identical_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "prototypes.zarr"
    arrays = {"known": np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32), "ids": np.arange(4)}
    attrs = {"kind": "prototypes", "known_classes": ["a", "b"], "nested": {"z": 1, "a": [1, 2]}}
    write_small_store(path, arrays, attrs)
    first = _files(path)
    time.sleep(1.1)  # a timestamp in seconds would differ
    write_small_store(path, arrays, attrs)
    assert _files(path) == first
    (path / "zarr.json").unlink()  # deleted metadata: one rewrite restores the same bytes
    write_small_store(path, arrays, attrs)
    assert _files(path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prototypes.zarr"]
    assert "created" not in clips4.cache.open(str(path)).attrs


# --- bad input ---


def test_an_empty_split_is_refused_naming_its_file(params, project, tmp_path):
    copy = _copy_world(project, tmp_path / "world")
    (copy / "ImageSets" / "Segmentation" / "val.txt").write_text("")
    empty = load_params("params.yaml", overrides={"dataset.root": str(copy)})
    with pytest.raises(
        Clips4Error, match=r"world/ImageSets/Segmentation/val\.txt: split 'val' \(dataset\.val_split\) lists no images"
    ):
        run_contours(empty, tmp_path / "contours.zarr", workers=1)
    assert not (tmp_path / "contours.zarr").exists()


def test_cache_dir_elsewhere_keeps_reports_out_of_the_project(params, project, tmp_path):
    runner = CliRunner()
    cache = tmp_path / "elsewhere" / "cache"
    for command in (["contours", "-j", "1"], ["ucm", "-j", "1"]):
        outcome = runner.invoke(app, [*command, "--cache-dir", str(cache)])
        assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "elsewhere" / "reports" / "segments.json").is_file()
    assert (tmp_path / "elsewhere" / "reports" / "figures" / "segments_pr.png").is_file()
    assert not (project / "reports").exists()

"""The cache stages (contours, ucm, clip_dense, segments) on a tiny world: resuming, sharding, staleness,
the segment means, and the errors a user meets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import clips4.cache
from clips4.cache.store import StoreError, store_exists
from clips4.params import load_params
from clips4.stages.clip_dense import run_clip_dense
from clips4.stages.contours import run_contours
from clips4.stages.segments import run_segments
from clips4.stages.ucm import run_ucm
from tests.fixtures import make_tiny_project

TINY = {
    "synth": {"image_size": 48, "train_images": 12, "val_images": 6},
    "clip": {"model": "clips4-test-vit", "pretrained": "synth", "window": 48, "stride": 16, "batch_size": 4},
    # 0.02 MB chunks: two 48x48 images per contours chunk, so every store has several chunks.
    "cache": {"chunk_mb": 0.02, "images_per_file": 0},
    "ucm": {"regions": 10, "quality_images": 4},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder with params.yaml, a tiny synthetic world and a random tiny CLIP at models/clip.pt."""
    return make_tiny_project(tmp_path_factory.mktemp("project"), TINY)


def _arrays(path: str | Path) -> dict[str, np.ndarray]:
    store = clips4.cache.open(str(path))
    return {name: array[...] for name, array in store.arrays.items()}


def _assert_same_store(a: str | Path, b: str | Path) -> None:
    first, second = _arrays(a), _arrays(b)
    assert first.keys() == second.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)


class Interrupted(Exception):
    pass


def test_contours_killed_midway_resume_without_redoing_work(params, monkeypatch, tmp_path):
    """A stage stopped after 3 images and rerun computes only the rest and equals an uninterrupted run."""
    import clips4.superpixels.contours as contours_module

    reference = tmp_path / "reference.zarr"
    run_contours(params, reference, workers=1)

    real = contours_module.detect_contours
    calls = []

    def counting(image, contour_params):
        calls.append(1)
        if len(calls) == 4 and interrupt:
            raise Interrupted  # as if killed while computing the 4th image: its chunk is half done
        return real(image, contour_params)

    monkeypatch.setattr(contours_module, "detect_contours", counting)
    resumed = tmp_path / "resumed.zarr"
    interrupt = True
    with pytest.raises(Interrupted):
        run_contours(params, resumed, workers=1)
    store = clips4.cache.open(str(resumed))
    assert not store.complete and store.done_chunks().sum() == 1  # images 0-1 written, 2-3 not
    with pytest.raises(StoreError, match=r"image 'train_000002' \(row 2\) is not computed yet"):
        store.image(2)

    interrupt = False
    calls.clear()
    result = run_contours(params, resumed, workers=1)
    assert result.complete and result.computed_chunks == result.total_chunks - 1
    assert len(calls) == 18 - 2  # every image but the two of the completed chunk
    _assert_same_store(reference, resumed)


def test_stale_store_needs_rebuild_says_what_changed_then_is_rebuilt(params, tmp_path):
    """A complete store whose params changed is kept and named (issue 9, item 7) until --rebuild replaces it."""
    path = tmp_path / "contours.zarr"
    run_contours(params, path, workers=1)
    before = clips4.cache.open(str(path))
    files = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    changed = load_params("params.yaml", overrides={"contours.sigma": 2.0})
    with pytest.raises(
        StoreError, match=r"complete but is stale \(changed: contours\.sigma\); rerun `clips4 contours --rebuild`"
    ):
        run_contours(changed, path, workers=1)
    assert {p: p.read_bytes() for p in path.rglob("*") if p.is_file()} == files  # nothing touched
    result = run_contours(changed, path, workers=1, rebuild=True)
    after = clips4.cache.open(str(path))
    assert result.computed_chunks == result.total_chunks  # everything recomputed, nothing resumed
    assert after.fingerprint != before.fingerprint
    assert after.attrs["params"]["contours"]["sigma"] == 2.0
    again = run_contours(changed, path, workers=1)
    assert again.computed_chunks == 0 and again.complete


def test_two_processes_fill_disjoint_shards_of_one_store(params, project, tmp_path):
    """`clips4 contours --shard 0/2` and `--shard 1/2` at once give the same store as one process."""
    reference = tmp_path / "one.zarr"
    run_contours(params, reference, workers=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "clips4.cli", "contours", "--workers", "1", "--shard"]
    shards = [subprocess.Popen([*command, f"{rank}/2"], cwd=project, env=env) for rank in range(2)]
    assert [shard.wait(timeout=120) for shard in shards] == [0, 0]
    store = clips4.cache.open(str(project / "data" / "cache" / "contours.zarr"))
    assert store.complete
    _assert_same_store(reference, project / "data" / "cache" / "contours.zarr")


def test_pipeline_stores_and_segment_means(params, tmp_path):
    contours_path, superpixels_path = tmp_path / "c.zarr", tmp_path / "s.zarr"
    dense_path, segments_path = tmp_path / "d.zarr", tmp_path / "g.zarr"
    run_contours(params, contours_path, workers=1)
    run_ucm(params, contours_path, superpixels_path, workers=2)
    run_clip_dense(params, dense_path)
    run_segments(params, superpixels_path, dense_path, segments_path, workers=2)

    superpixels = clips4.cache.open(str(superpixels_path))
    dense = clips4.cache.open(str(dense_path))
    segments = clips4.cache.open(str(segments_path))
    assert isinstance(segments, clips4.cache.SegmentsStore) and segments.complete
    assert segments.num_segments == int(superpixels.arrays["num_regions"][:].sum())
    assert (superpixels.arrays["num_regions"][:] == params.ucm.regions).mean() > 0.5
    stride = dense.feature_stride
    for row in (0, 5, 17):
        labels = superpixels.image(row).labels
        # ucm.regions, or fewer where the image has fewer watershed basins.
        assert labels.max() + 1 == superpixels.image(row).num_regions <= params.ucm.regions
        # Direct computation: every pixel takes its grid cell's feature; mean per superpixel; normalise.
        per_pixel = np.repeat(np.repeat(dense.image(row).astype(np.float64), stride, 0), stride, 1)
        per_pixel = per_pixel[: labels.shape[0], : labels.shape[1]]
        expected = np.stack([per_pixel[labels == k].mean(axis=0) for k in range(labels.max() + 1)])
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        stored = segments.segments_of(row)
        np.testing.assert_allclose(stored.embeddings.astype(np.float64), expected, atol=2e-3)
        np.testing.assert_array_equal(stored.area, np.bincount(labels.ravel()))
        assert segments.segments_of(superpixels.image_ids[row]).start == stored.start
    # The dense store holds exactly what the teacher computes for the image.
    from clips4.clip import dense_clip_features, load_clip, normalize_images, to_rgb_batch
    from clips4.stages.common import image_list

    loaded = load_clip(params.clip.model, params.clip.pretrained)
    image = image_list(params).read_image(3)
    with torch.no_grad():
        direct = dense_clip_features(loaded.model, normalize_images(to_rgb_batch(image), loaded.mean, loaded.std))
    np.testing.assert_allclose(dense.image(3).astype(np.float32), direct[0].numpy(), atol=2e-3)
    assert dense.attrs["weights_sha256"] == loaded.sha256 and dense.attrs["dense_mode"] == "maskclip"


def test_image_missing_from_dense_store_is_named(params, project, tmp_path):
    contours_path, superpixels_path, dense_path = tmp_path / "c.zarr", tmp_path / "s.zarr", tmp_path / "d.zarr"
    run_contours(params, contours_path, workers=1)
    run_ucm(params, contours_path, superpixels_path, workers=1)
    val_file = project / "data" / "synth" / "ImageSets" / "Segmentation" / "val.txt"
    original = val_file.read_text()
    try:
        val_file.write_text("\n".join(original.split()[:-1]) + "\n")  # the dense store lacks the last val image
        run_clip_dense(params, dense_path)
    finally:
        val_file.write_text(original)
    with pytest.raises(StoreError, match=r"image 'val_000005' is missing from the dense CLIP store"):
        run_segments(params, superpixels_path, dense_path, tmp_path / "g.zarr", workers=1)


def test_reading_an_incomplete_input_says_which_stage_to_run(params, tmp_path):
    with pytest.raises(StoreError, match=r"no cache store here; run `clips4 contours`"):
        run_ucm(params, tmp_path / "nothing.zarr", tmp_path / "s.zarr", workers=1)


def test_prototypes_stage_with_a_held_out_fold(params, tmp_path):
    """Known prototypes are the normalised means of their top-m train segments; the fold's classes never appear."""
    from clips4.prototypes import top_m_segments_torch
    from clips4.stages.prototypes import held_out_classes, run_prototypes

    paths = {name: tmp_path / f"{name}.zarr" for name in ("c", "s", "d", "g", "p")}
    run_contours(params, paths["c"], workers=1)
    run_ucm(params, paths["c"], paths["s"], workers=1)
    run_clip_dense(params, paths["d"])
    run_segments(params, paths["s"], paths["d"], paths["g"], workers=1)
    fold_params = load_params("params.yaml", overrides={"fold": 1, "top_m": 4, "unknowns": 6})
    result = run_prototypes(fold_params, paths["g"], paths["p"])

    store = clips4.cache.open(str(paths["p"]))
    assert isinstance(store, clips4.cache.PrototypesStore) and store.complete
    held_out = held_out_classes(fold_params)
    assert held_out and set(held_out).isdisjoint(store.known_classes)
    assert len(store.known_classes) + len(held_out) == 14 == len(result.known_classes) + len(result.held_out_classes)
    segments = clips4.cache.open(str(paths["g"]))
    first, stop = segments.segment_rows("train")
    indices = store.group["known_indices"][:]
    assert indices.shape == (len(store.known_classes), 4) and (indices >= first).all() and (indices < stop).all()
    embeddings = segments.embeddings[:].astype(np.float64)
    expected = embeddings[indices].mean(axis=1)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(store.known, expected, atol=1e-5)
    reference = top_m_segments_torch(
        segments.embeddings, store.group["class_text"][:], store.attrs["logit_scale"], 4, rows=(first, stop)
    )
    np.testing.assert_array_equal(indices, reference.indices)
    unknown_rows = store.group["unknown_indices"][:]
    assert len(set(unknown_rows.tolist())) == 6 and (unknown_rows < stop).all()
    np.testing.assert_allclose(store.unknown, embeddings[unknown_rows], atol=2e-3)


def test_cache_info_and_stage_commands(params, project):
    from typer.testing import CliRunner

    from clips4.cli import app

    runner = CliRunner()
    for command in (
        ["contours", "-j", "1"],
        ["ucm", "-j", "1"],
        ["clip-dense"],
        ["segments", "-j", "1"],
        ["prototypes"],
    ):
        outcome = runner.invoke(app, command)
        assert outcome.exit_code == 0, outcome.output
    outcome = runner.invoke(app, ["cache", "info", "data/cache/clip_dense.zarr"])
    assert outcome.exit_code == 0, outcome.output
    assert "clip_dense store, complete" in outcome.output and "features" in outcome.output
    assert "ratio" in outcome.output and "weights_sha256" in outcome.output
    report = __import__("json").loads((project / "reports" / "segments.json").read_text())
    assert 0 <= report["superpixels"]["achievable_miou"] <= 100 and report["contours"]["method"] == "gradient"
    outcome = runner.invoke(app, ["cache", "info", "data/cache/nothing.zarr"])
    assert outcome.exit_code == 1 and "no cache store here" in outcome.output
    outcome = runner.invoke(app, ["contours", "--shard", "2/2"])
    assert outcome.exit_code == 1 and "--shard" in outcome.output


def test_stores_at_an_fsspec_url(params, tmp_path):
    """`--cache-dir` takes fsspec URLs (memory:// here, s3:// with credentials): write, resume, read back."""
    from typer.testing import CliRunner

    from clips4.cli import app

    runner = CliRunner()
    for _ in range(2):  # the second run finds the store complete and computes nothing
        outcome = runner.invoke(app, ["contours", "-j", "1", "--cache-dir", "memory://clips4-test/cache"])
        assert outcome.exit_code == 0, outcome.output
    assert "computed 0 of 9 chunks now; complete" in outcome.output
    ucm = ["ucm", "-j", "1", "--cache-dir", "memory://clips4-test/cache"]
    outcome = runner.invoke(app, ucm)  # a URL cache has no folder beside it for the report: say so, do nothing
    assert outcome.exit_code == 2 and "--reports-dir" in outcome.output
    outcome = runner.invoke(app, [*ucm, "--reports-dir", str(tmp_path / "reports")])
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "reports" / "segments.json").is_file() and (tmp_path / "reports" / "figures").is_dir()
    store = clips4.cache.open("memory://clips4-test/cache/superpixels.zarr")
    assert store.complete and store.image("val_000001").labels.shape == (48, 48)


def test_clip_dense_killed_midway_resumes_to_the_same_store(params, monkeypatch, tmp_path):
    import clips4.clip.dense as dense

    reference = tmp_path / "reference.zarr"
    run_clip_dense(params, reference)
    real = dense.dense_features_batch
    calls = []

    def failing_after_two(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:
            raise Interrupted
        return real(*args, **kwargs)

    monkeypatch.setattr(dense, "dense_features_batch", failing_after_two)
    resumed = tmp_path / "resumed.zarr"
    with pytest.raises(Interrupted):
        run_clip_dense(params, resumed)
    done_before = int(clips4.cache.open(str(resumed)).done_chunks().sum())
    assert 0 < done_before < clips4.cache.open(str(reference)).done_chunks().size
    monkeypatch.setattr(dense, "dense_features_batch", real)
    result = run_clip_dense(params, resumed)
    assert result.complete and result.computed_chunks == result.total_chunks - done_before
    _assert_same_store(reference, resumed)


def test_rerunning_a_complete_stage_changes_no_file(params, tmp_path, tree_bytes):
    """A finished store is left byte for byte as it was, so DVC sees nothing new downstream."""
    path = tmp_path / "contours.zarr"
    run_contours(params, path, workers=1)
    before = tree_bytes(path)
    time.sleep(1.1)  # a rewritten timestamp (seconds) would differ
    result = run_contours(params, path, workers=1)
    after = tree_bytes(path)
    assert result.complete and result.computed_chunks == 0
    assert before == after


def test_hed_without_weights_stops_before_any_work(project, params, write_params):
    from typer.testing import CliRunner

    from clips4.cli import app

    config = yaml.safe_load((project / "params.yaml").read_text())
    config["contours"] = {"method": "hed"}
    write_params(project, config, "hed.yaml")
    outcome = CliRunner().invoke(app, ["contours", "--params", "hed.yaml", "--cache-dir", "memory://clips4-hed/cache"])
    assert outcome.exit_code == 1
    assert "contours.hed_weights" in outcome.output and "network-bsds500.pytorch" in outcome.output
    assert not store_exists("memory://clips4-hed/cache/contours.zarr")  # nothing was created


def test_segment_rows_of_a_range_that_cuts_images_and_reads_dense_rows_out_of_order():
    """grid_segment_rows: rows [start, stop) of the flat superpixel table, for any range (cutting images) and
    dense grids stored in another order; they equal grid_segment_means of each image."""
    from clips4.ops.segment_means import grid_segment_means, grid_segment_rows

    rng = np.random.default_rng(0)
    extents = np.array([[16, 16], [12, 9], [16, 13]], np.int32)
    labels = np.full((3, 16, 16), -1, np.int32)
    counts = []
    for k, (height, width) in enumerate(extents):
        image = rng.integers(0, 4 + k, (height, width))
        _, image = np.unique(image, return_inverse=True)
        labels[k, :height, :width] = image.reshape(height, width)
        counts.append(int(image.max()) + 1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    grids = rng.normal(size=(4, 4, 4, 6)).astype(np.float16)  # image i is grid dense_rows[i]
    for dense_rows in (np.array([1, 2, 3]), np.array([3, 0, 2])):
        expected = np.concatenate(
            [
                grid_segment_means(labels[k, :h, :w], grids[dense_rows[k]], 4, counts[k])[0]
                for k, (h, w) in enumerate(extents)
            ]
        )
        for start, stop in ((0, int(offsets[-1])), (2, counts[0] + 1), (counts[0] + 1, int(offsets[-1]) - 1)):
            rows = grid_segment_rows(labels, extents, grids, dense_rows, 4, offsets, start, stop)
            np.testing.assert_array_equal(rows["embeddings"], expected[start:stop].astype(np.float16))
            image_of = np.repeat(np.arange(3), counts)[start:stop]
            np.testing.assert_array_equal(rows["image_index"], image_of)
            area = np.concatenate([np.bincount(labels[k][labels[k] >= 0], minlength=counts[k]) for k in range(3)])
            np.testing.assert_array_equal(rows["area"], area[start:stop])
            assert (
                rows["embeddings"].dtype == np.float16 and rows["area"].dtype == rows["image_index"].dtype == np.int32
            )


def test_an_image_of_another_size_in_the_dense_store_is_named():
    from clips4.stages.segments import require_same_sizes

    extents = np.array([[48, 48], [40, 48]], np.int32)
    require_same_sizes(["a", "b"], extents, extents.copy(), "s.zarr", "d.zarr")
    with pytest.raises(StoreError, match=r"d.zarr: image 'b' is 48x48 in the dense store but 40x48 in s.zarr"):
        require_same_sizes(["a", "b"], extents, np.array([[48, 48], [48, 48]], np.int32), "s.zarr", "d.zarr")

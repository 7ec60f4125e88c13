"""Known/unknown prototypes: FAISS top-m agrees with brute-force torch, streaming, held-out folds, unknowns;
and the prototypes stage on a tiny world: the CLIP identity check, bad inputs, reruns and its dvc.yaml entry."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
import zarr

import clips4.cache
from clips4.cache.integrity import unit_record
from clips4.errors import Clips4Error
from clips4.params import ParamsError, load_params
from clips4.prototypes import (
    draw_unknowns,
    known_classes,
    known_prototypes,
    log_odds,
    top_m_segments,
    top_m_segments_torch,
    unknown_prototypes,
)
from tests.fixtures import make_tiny_project

ROOT = Path(__file__).resolve().parents[1]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _random(num: int, dim: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    segments = _unit(rng.standard_normal((num, dim))).astype(np.float16)
    text = _unit(rng.standard_normal((classes, dim))).astype(np.float32)
    return segments, text


def _log_p(segments: np.ndarray, text: np.ndarray, tau: float) -> np.ndarray:
    """float64 log p(c|s) ``[S, C]`` by a plain log_softmax (saturates at 0 for confident rows)."""
    logits = tau * torch.from_numpy(segments.astype(np.float64)) @ torch.from_numpy(text).double().T
    return torch.log_softmax(logits, dim=1).numpy()


def _exhaustive(segments: np.ndarray, text: np.ndarray, tau: float, m: int) -> np.ndarray:
    """Top m per class over all rows by float64 log-odds, each class's competitors summed explicitly."""
    logits = tau * segments.astype(np.float64) @ text.astype(np.float64).T
    rows = np.arange(len(segments))
    top = []
    for c in range(len(text)):
        z = logits[:, c] - np.logaddexp.reduce(np.delete(logits, c, axis=1), axis=1)
        top.append(np.lexsort((rows, -z))[:m])
    return np.stack(top)


def test_log_odds_orders_like_the_softmax_and_does_not_saturate() -> None:
    logits = torch.tensor([[40.0, 0.0, -3.0], [41.0, 0.0, -3.0], [1.0, 2.0, 0.5]], dtype=torch.float64)
    z = log_odds(logits)
    expected = torch.stack(
        [logits[:, c] - torch.logsumexp(logits[:, [k for k in range(3) if k != c]], 1) for c in range(3)], 1
    )
    torch.testing.assert_close(z, expected)
    assert torch.log_softmax(logits, 1)[0, 0] == torch.log_softmax(logits, 1)[1, 0] == 0  # p rounds to 1 for both
    assert z[1, 0] > z[0, 0]  # the log-odds still tell them apart


def test_two_clusters_give_two_prototypes() -> None:
    rng = np.random.default_rng(3)
    axis = np.eye(8)
    centre_a, centre_b = _unit(axis[0] + 0.3 * axis[6]), _unit(axis[1] + 0.3 * axis[7])
    cluster_a = _unit(centre_a + 0.05 * rng.standard_normal((30, 8)))
    cluster_b = _unit(centre_b + 0.05 * rng.standard_normal((30, 8)))
    ambiguous = _unit(0.6 * axis[0] + 0.8 * axis[1] + 0.05 * rng.standard_normal((20, 8)))  # between classes 0, 1
    others = _unit(axis[rng.integers(2, 6, 40)] + 0.05 * rng.standard_normal((40, 8)))  # classes 2-3, no-class axes
    segments = np.concatenate([others[:20], cluster_a, ambiguous, others[20:], cluster_b]).astype(np.float32)
    text = axis[:4].astype(np.float32)  # class c points along axis c
    top = top_m_segments(segments, text, 100.0, 10, block_rows=16)
    assert set(top.indices[0]) <= set(range(20, 50)) and set(top.indices[1]) <= set(range(90, 120))
    prototypes = known_prototypes(segments, top.indices)
    assert prototypes[0] @ centre_a > 0.995 and prototypes[1] @ centre_b > 0.995
    np.testing.assert_allclose(np.linalg.norm(prototypes, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("tau", [10.0, 100.0, 2000.0])  # 2000: p rounds to 1 for many rows (saturated softmax)
def test_faiss_agrees_with_the_torch_reference(tau: float) -> None:
    segments, text = _random(1000, 16, 5)
    faiss_top = top_m_segments(segments, text, tau, 8, block_rows=128)  # 128 does not divide 1000
    torch_top = top_m_segments_torch(segments, text, tau, 8, block_rows=300)
    assert faiss_top.index == "IndexFlatIP" and torch_top.index == "reference"
    np.testing.assert_array_equal(faiss_top.indices, torch_top.indices)
    np.testing.assert_array_equal(torch_top.indices, _exhaustive(segments, text, tau, 8))
    np.testing.assert_allclose(faiss_top.log_probability, torch_top.log_probability, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(
        known_prototypes(segments, faiss_top.indices), known_prototypes(segments, torch_top.indices)
    )
    expected = np.take_along_axis(_log_p(segments, text, tau).T, faiss_top.indices, axis=1)
    np.testing.assert_allclose(faiss_top.log_probability, expected, rtol=1e-4, atol=1e-6)
    assert (np.diff(faiss_top.log_probability, axis=1) <= 0).all()  # best first


def test_streaming_equals_one_block_and_rows_limit_the_search() -> None:
    segments, text = _random(700, 12, 4, seed=1)
    whole = top_m_segments(segments, text, 50.0, 6, block_rows=700)
    for block_rows in (1, 7, 97, 699):
        streamed = top_m_segments(segments, text, 50.0, 6, block_rows=block_rows)
        np.testing.assert_array_equal(streamed.indices, whole.indices)
    part = top_m_segments(segments, text, 50.0, 6, rows=(100, 650), block_rows=64)  # a split: rows 100..649
    np.testing.assert_array_equal(part.indices, top_m_segments(segments[100:650], text, 50.0, 6).indices + 100)
    np.testing.assert_array_equal(part.indices, top_m_segments_torch(segments, text, 50.0, 6, rows=(100, 650)).indices)


def test_duplicate_rows_are_all_kept_and_the_result_is_deterministic() -> None:
    segments, text = _random(400, 8, 3, seed=2)
    best = int(_exhaustive(segments, text, 100.0, 1)[1, 0])
    assert 10 < best < 399
    segments[[10, 399]] = segments[best]  # three identical rows, all the best for class 1
    first = top_m_segments(segments, text, 100.0, 3, block_rows=64)
    np.testing.assert_array_equal(np.sort(first.indices[1]), [10, best, 399])
    np.testing.assert_array_equal(first.indices, top_m_segments(segments, text, 100.0, 3, block_rows=64).indices)
    assert set(top_m_segments_torch(segments, text, 100.0, 3).indices[1]) == {10, best, 399}


def test_held_out_classes_leave_the_softmax_and_the_outputs() -> None:
    names = ("sky", "tree", "road", "car")
    known, index = known_classes(names, held_out=["road"])
    assert known == ("sky", "tree", "car") and index.tolist() == [0, 1, 3] and index.dtype == np.int64
    segments, text = _random(300, 8, 4, seed=4)
    top = top_m_segments(segments, text[index], 20.0, 5)
    assert top.indices.shape == (3, 5)
    chosen = top.indices[2]  # "car", now row 2
    with_fold = _log_p(segments[chosen], text[index], 20.0)[:, 2]
    all_four = _log_p(segments[chosen], text, 20.0)[:, 3]
    np.testing.assert_allclose(top.log_probability[2], with_fold, rtol=1e-4, atol=1e-6)
    assert (with_fold > all_four).all()  # one competitor fewer: every probability goes up
    with pytest.raises(Clips4Error, match="fold"):
        known_classes(names, held_out=["boat"])


def test_draw_unknowns() -> None:
    first, again, other = draw_unknowns(1000, 64, seed=0), draw_unknowns(1000, 64, seed=0), draw_unknowns(1000, 64, 1)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.dtype == np.int64 and len(np.unique(first)) == 64 and first.min() >= 0 and first.max() < 1000
    assert len(np.unique(draw_unknowns(64, 64, seed=5))) == 64
    with pytest.raises(ValueError, match="count"):
        draw_unknowns(10, 11, seed=0)
    segments, _ = _random(1000, 8, 2)
    prototypes = unknown_prototypes(segments, first)
    assert prototypes.dtype == np.float32 and prototypes.shape == (64, 8)
    np.testing.assert_allclose(prototypes, _unit(segments[first].astype(np.float64)), atol=1e-6)


def test_the_library_raises_value_errors_not_params_errors() -> None:
    segments, text = _random(10, 8, 3)
    for search in (top_m_segments, top_m_segments_torch):
        with pytest.raises(ValueError, match="m must be") as raised:
            search(segments, text, 100.0, 11)
        assert not isinstance(raised.value, ParamsError)


def test_zarr_input_float16_and_damaged_rows() -> None:
    segments, text = _random(500, 8, 3, seed=5)
    array = zarr.create_array(store={}, shape=segments.shape, chunks=(64, 8), dtype="float16", fill_value=np.nan)
    array[:] = segments
    top = top_m_segments(array, text, 100.0, 4, block_rows=64)
    np.testing.assert_array_equal(top.indices, top_m_segments(segments.astype(np.float32), text, 100.0, 4).indices)
    np.testing.assert_array_equal(known_prototypes(array, top.indices), known_prototypes(segments, top.indices))
    array[130] = np.zeros(8, np.float16)  # a lost chunk read as zeros, or a NaN fill value: never a prototype
    with pytest.raises(Clips4Error, match="row 130 is not a unit vector"):
        top_m_segments(array, text, 100.0, 4, block_rows=64)
    array[130] = np.full(8, np.nan, np.float16)
    with pytest.raises(Clips4Error, match="row 130 is not a unit vector"):
        known_prototypes(array, np.array([[3, 130]]))


# ----------------------------------------------------------------------------------- the stage, on a tiny world

TINY = {
    "synth": {"image_size": 48, "train_images": 12, "val_images": 6},
    "clip": {"model": "clips4-test-vit", "pretrained": "synth", "window": 48, "stride": 16, "batch_size": 4},
    "cache": {"chunk_mb": 0.02},
    "ucm": {"regions": 10, "quality_images": 4},
    "top_m": 4,
    "unknowns": 6,
}


def _as_open_clip_tag(tag: str):
    """A load_project_clip that presents the tiny checkpoint as the open_clip tag ``tag`` (sha256 None, like any
    tag)."""
    from clips4.clip import loading

    def load(params, device: str = "cpu", **options) -> loading.LoadedClip:
        loaded = loading.load_project_clip(params, device, **options)
        return dataclasses.replace(loaded, sha256=None, source=f"open_clip:{loaded.model_name}/{tag}")

    return load


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with a tiny world and CLIP, its segments store, and a second one built as if from an open_clip
    tag (``cache/tag_a``)."""
    from clips4.stages.clip_dense import run_clip_dense
    from clips4.stages.contours import run_contours
    from clips4.stages.segments import run_segments
    from clips4.stages.ucm import run_ucm

    root = make_tiny_project(tmp_path_factory.mktemp("protos"), TINY)
    params = load_params(root / "params.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        cache = Path("data/cache")
        run_contours(params, cache / "contours.zarr", workers=1)
        run_ucm(params, cache / "contours.zarr", cache / "superpixels.zarr", workers=1)
        run_clip_dense(params, cache / "clip_dense.zarr")
        run_segments(params, cache / "superpixels.zarr", cache / "clip_dense.zarr", cache / "segments.zarr", workers=1)
        patch.setattr("clips4.clip.load_project_clip", _as_open_clip_tag("tag_a"))
        tagged = Path("cache/tag_a")
        run_clip_dense(params, tagged / "clip_dense.zarr")
        run_segments(
            params, cache / "superpixels.zarr", tagged / "clip_dense.zarr", tagged / "segments.zarr", workers=1
        )
    return root


@pytest.fixture
def project(world: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(world)
    return world


def _cli(*args: str):
    from typer.testing import CliRunner

    from clips4.cli import app

    return CliRunner().invoke(app, list(args))


def test_stage_reruns_give_the_same_store_and_log_faiss(project: Path, tmp_path: Path, tree_bytes) -> None:
    outcome = _cli("prototypes", "--cache-dir", "data/cache")
    assert outcome.exit_code == 0, outcome.output
    assert "; faiss " in outcome.output and "on CPU with IndexFlatIP" in outcome.output
    first = tmp_path / "first.zarr"
    (project / "data/cache/prototypes.zarr").rename(first)
    assert _cli("prototypes").exit_code == 0
    assert tree_bytes(first) == tree_bytes(project / "data/cache/prototypes.zarr")  # byte for byte: no timestamp
    store = clips4.cache.open("data/cache/prototypes.zarr")
    assert isinstance(store, clips4.cache.PrototypesStore) and store.known.shape[0] == 14 == len(store.known_classes)
    assert store.unknown.shape[0] == 6 and store.held_out_classes == []


def test_params_error_keeps_the_previous_store(project: Path, tree_bytes, write_params) -> None:
    assert _cli("prototypes").exit_code == 0
    before = tree_bytes(project / "data/cache/prototypes.zarr")
    train = clips4.cache.open("data/cache/segments.zarr").segment_rows("train")
    params = yaml.safe_load((project / "params.yaml").read_text())
    for key in ("top_m", "unknowns"):
        write_params(project, {**params, key: train[1] - train[0] + 1}, "bad.yaml")
        outcome = _cli("prototypes", "--params", "bad.yaml")
        assert outcome.exit_code == 2 and f"{key}: {train[1] - train[0] + 1} is more than the" in outcome.output
        assert len(outcome.output.strip().splitlines()) == 1 and outcome.exception.__class__ is SystemExit
    assert tree_bytes(project / "data/cache/prototypes.zarr") == before


def test_split_typo_and_empty_train_split_are_one_line(project: Path, tmp_path: Path, write_params) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    write_params(project, {**params, "dataset": {**params.get("dataset", {}), "train_split": "trian"}}, "typo.yaml")
    outcome = _cli("prototypes", "--params", "typo.yaml")
    assert outcome.exit_code == 1 and "data/cache/segments.zarr: no split 'trian'" in outcome.output
    assert "dataset.train_split" in outcome.output and len(outcome.output.strip().splitlines()) == 1

    empty = tmp_path / "segments.zarr"
    shutil.copytree(project / "data/cache/segments.zarr", empty)
    group = zarr.open_group(str(empty), mode="r+")
    splits = group.attrs["segment_splits"]
    group.attrs["segment_splits"] = {**splits, "train": [0, 0]}
    outcome = _cli("prototypes", "--cache-dir", str(tmp_path))
    assert outcome.exit_code == 1 and "the 'train' split has no segments" in outcome.output
    assert str(empty) in outcome.output and len(outcome.output.strip().splitlines()) == 1


def test_a_damaged_segment_row_names_the_store(project: Path, tmp_path: Path) -> None:
    damaged = tmp_path / "segments.zarr"
    shutil.copytree(project / "data/cache/segments.zarr", damaged)
    group = zarr.open_group(str(damaged), mode="r+")
    embeddings = group["embeddings"]
    embeddings[5] = np.zeros(embeddings.shape[1], embeddings.dtype)  # as a lost chunk read back as zeros
    # Recorded as written by the stage (a file changed afterwards is caught before this check: test_cache_trust.py).
    group["done"][5 // group.attrs["rows_per_shard"]] = unit_record(group, 5 // group.attrs["rows_per_shard"])
    outcome = _cli("prototypes", "--cache-dir", str(tmp_path))
    assert outcome.exit_code == 1 and f"{damaged}: segment embeddings: row 5 is not a unit vector" in outcome.output
    assert len(outcome.output.strip().splitlines()) == 1 and not (tmp_path / "prototypes.zarr").exists()


def test_a_different_clip_stops_the_stage(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clips4.stages.prototypes import run_prototypes

    params = load_params("params.yaml")
    tagged = "cache/tag_a/segments.zarr"
    monkeypatch.setattr("clips4.clip.load_project_clip", _as_open_clip_tag("tag_a"))
    assert run_prototypes(params, tagged, "cache/tag_a/p.zarr").train_segments > 0  # the same tag: accepted
    monkeypatch.setattr("clips4.clip.load_project_clip", _as_open_clip_tag("tag_b"))  # sha256 None on both sides
    with pytest.raises(Clips4Error, match=r"computed with CLIP clips4-test-vit \(open_clip:clips4-test-vit/tag_a\)"):
        run_prototypes(params, tagged, "cache/tag_a/p.zarr")
    with pytest.raises(Clips4Error, match="tag_b"):  # the checkpoint's sha256 against the tag
        run_prototypes(params, "data/cache/segments.zarr", "cache/tag_a/p.zarr")


def test_stage_outputs_match_the_brute_force_reference(project: Path) -> None:
    from clips4.stages.prototypes import held_out_classes, run_prototypes

    params = load_params("params.yaml", overrides={"fold": 1})
    run_prototypes(params, "data/cache/segments.zarr", "cache/fold.zarr")
    store = clips4.cache.open("cache/fold.zarr")
    assert set(held_out_classes(params)).isdisjoint(store.known_classes) and store.held_out_classes
    segments = clips4.cache.open("data/cache/segments.zarr")
    rows = segments.segment_rows("train")
    reference = top_m_segments_torch(
        segments.embeddings, store.group["class_text"][:], store.attrs["logit_scale"], 4, rows=rows
    )
    np.testing.assert_array_equal(store.group["known_indices"][:], reference.indices)
    np.testing.assert_array_equal(store.known, known_prototypes(segments.embeddings, reference.indices))


def test_clip_kmeans_source_searches_clusters_of_clip_pixels(project: Path) -> None:
    from clips4.clip_kmeans import clip_kmeans_segments
    from clips4.stages.prototypes import run_prototypes

    base = run_prototypes(load_params("params.yaml"), "data/cache/segments.zarr", "cache/sp.zarr")
    params = load_params("params.yaml", overrides={"prototypes.source": "clip_kmeans", "prototypes.clusters": 5})
    result = run_prototypes(params, "data/cache/segments.zarr", "cache/km.zarr", "data/cache/clip_dense.zarr")
    store = clips4.cache.open("cache/km.zarr")
    assert store.attrs["source"] == "clip_kmeans" and "clip_dense" in store.attrs["inputs"]
    dense = clips4.cache.open("data/cache/clip_dense.zarr")
    train = dense.splits["train"]
    clusters = clip_kmeans_segments(dense, train, 5, params.seed)
    # 12 train images, at most 5 clusters each: other segments than the superpixels (10 per image)
    assert result.train_segments == len(clusters.embeddings) <= 12 * 5 != base.train_segments
    np.testing.assert_array_equal(store.group["segment_image_rows"][:], clusters.image_rows)
    assert set(clusters.image_rows) == set(range(*train))
    # Still one unit prototype per known class (the top_m clusters' mean) and `unknowns` unit unknown ones.
    assert store.known.shape == (len(store.known_classes), dense.embed_dim) and store.unknown.shape[0] == 6
    np.testing.assert_allclose(np.linalg.norm(store.known, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(store.unknown, axis=1), 1, atol=1e-5)
    np.testing.assert_array_equal(store.known, known_prototypes(clusters.embeddings, store.group["known_indices"][:]))
    assert not np.allclose(store.known, clips4.cache.open("cache/sp.zarr").known)
    # The superpixel default keeps the fingerprint it had before the option existed.
    assert "clusters" not in clips4.cache.open("cache/sp.zarr").attrs
    assert store.fingerprint != clips4.cache.open("cache/sp.zarr").fingerprint


class _Recorder:
    """Params that record the dotted keys read from them."""

    def __init__(self, node: object, seen: set[str], prefix: str = "") -> None:
        self._node, self._seen, self._prefix = node, seen, prefix

    def __getattr__(self, name: str) -> object:
        value = getattr(self._node, name)
        if dataclasses.is_dataclass(value):
            return _Recorder(value, self._seen, f"{self._prefix}{name}.")
        if callable(value):  # a method such as project_path: no params key
            return value
        self._seen.add(self._prefix + name)
        return value


def test_the_report_gives_each_prototypes_cosine_to_its_m32_prototype(project: Path, tmp_path: Path) -> None:
    """Table 8's measure: top_m = 4 against the reference's top 32, by the float64 brute force."""
    import json

    from clips4.stages.prototypes import run_prototypes

    params = load_params("params.yaml")
    result = run_prototypes(params, "data/cache/segments.zarr", "cache/t8.zarr", reports_dir=tmp_path / "p")
    report = json.loads((tmp_path / "p" / "prototypes.json").read_text())
    store = clips4.cache.open("cache/t8.zarr")
    segments = clips4.cache.open("data/cache/segments.zarr")
    reference = top_m_segments_torch(
        segments.embeddings, store.group["class_text"][:], store.attrs["logit_scale"], 32,
        rows=segments.segment_rows("train"),
    )  # fmt: skip
    np.testing.assert_array_equal(store.group["known_indices"][:], reference.indices[:, :4])  # one search serves both
    m32 = known_prototypes(segments.embeddings, reference.indices).astype(np.float64)
    cosines = (store.known.astype(np.float64) * m32).sum(axis=1)
    assert report["top_m"] == 4 and report["reference_m"] == 32 and list(report["per_class"]) == store.known_classes
    np.testing.assert_allclose(list(report["per_class"].values()), cosines, atol=1e-4)
    assert report["cosine_to_m32"] == result.cosine_to_m32 == pytest.approx(cosines.mean(), abs=1e-4)
    assert result.cosine_to_m32 < 0.999  # 4 segments are not 32: the measure can tell them apart
    assert report["cosine_to_m32_min"] == pytest.approx(cosines.min(), abs=1e-4)
    same = load_params("params.yaml", overrides={"top_m": 32})
    again = run_prototypes(same, "data/cache/segments.zarr", "cache/t8.zarr", reports_dir=tmp_path / "q")
    assert again.cosine_to_m32 == 1.0


def test_dvc_stage_declares_what_the_stage_reads(project: Path) -> None:
    from clips4.stages.prototypes import run_prototypes

    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["prototypes"]
    # persist: DVC must not delete it first; cache: false: no second copy in .dvc/cache (issue 12)
    assert stage["outs"] == [{"data/cache/prototypes.zarr": {"cache": False, "persist": True}}]
    assert stage["metrics"] == [{"reports/prototypes.json": {"cache": False}}]  # Table 8's column, in dvc exp show
    seen: set[str] = set()
    for source in ("superpixels", "clip_kmeans"):  # the keys either segment source reads
        params = load_params("params.yaml", overrides={"fold": 2, "prototypes.source": source})
        run_prototypes(_Recorder(params, seen), "data/cache/segments.zarr", "cache/keys.zarr")  # type: ignore[arg-type]
    assert set(stage["params"]) == seen
    # tests/test_stage_deps.py checks that every clips4 module the stage loads is one of these deps.
    deps = [ROOT / dep for dep in stage["deps"] if not dep.startswith(("$", "data/", "models/"))]
    assert [str(dep) for dep in deps if not dep.exists()] == []  # DVC stops on a missing dependency


def test_the_report_goes_beside_the_caches_it_was_computed_from(project: Path, tmp_path: Path) -> None:
    from clips4.stages.common import reports_beside

    params = load_params("params.yaml")
    assert reports_beside(params, "data/cache/prototypes.zarr") == params.project_path("reports")
    elsewhere = tmp_path / "scratch" / "cache" / "prototypes.zarr"
    assert reports_beside(params, elsewhere) == tmp_path / "scratch" / "reports"  # never into the project
    with pytest.raises(Clips4Error, match="--reports-dir"):
        reports_beside(params, "s3://bucket/cache/prototypes.zarr")

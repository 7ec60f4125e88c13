"""One scorer: on a tiny Pascal VOC project (where VOC's background gets no prompt and is ignored), the val mIoU
that the train stage writes into models/clips4.json equals evaluate's ``clips4.miou`` for the same checkpoint and
split. Before the scorer was shared, training labelled pixels with the dataset's raw class names, background
included, and the two disagreed on VOC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clips4.params import load_params
from tests.fixtures import make_tiny_project, make_voc
from tests.segment_world import write_student_checkpoint


@pytest.fixture(scope="module")
def voc_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("voc_project")
    make_voc(root / "voc", ids_per_split=3, size=(40, 56))
    return make_tiny_project(
        root,
        {
            "dataset": {"name": "voc", "root": "voc/VOCdevkit/VOC2012", "train_split": "train", "val_split": "val"},
            "synth": {"image_size": 48, "train_images": 2, "val_images": 2},
            "clip": {"model": "clips4-test-vit", "pretrained": "models/clip.pt", "window": 48, "stride": 16},
            "cache": {"chunk_mb": 0.02, "images_per_file": 0},
            "ucm": {"regions": 8, "quality_images": 2},
            "train": {"model": "pspnet-test", "score_images": 500},
            "eval": {"knn": {"train_images": 0}, "linear": {"train_images": 0}},
            "video": {"name": "none"},
        },
    )


def test_train_scores_a_checkpoint_as_evaluate_does(voc_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clips4.clip import load_clip
    from clips4.stages import train as train_stage
    from clips4.stages.clip_dense import run_clip_dense
    from clips4.stages.contours import run_contours
    from clips4.stages.evaluate import run_evaluate
    from clips4.stages.ucm import run_ucm

    monkeypatch.chdir(voc_project)
    params = load_params("params.yaml")
    run_contours(params)
    run_ucm(params, reports_dir=voc_project / "reports")
    run_clip_dense(params)
    checkpoint = write_student_checkpoint(voc_project)
    loaded = load_clip(params.clip.model, params.clip.pretrained)
    trained = train_stage._score(
        params, loaded, checkpoint, "data/cache/clip_dense.zarr", "data/cache/superpixels.zarr", "cpu"
    )
    result = run_evaluate(params, voc_project / "reports", methods=None)
    metrics = json.loads((voc_project / "reports" / "metrics.json").read_text())
    scored = result.scores["clips4"]
    assert "background" not in scored.per_class and len(scored.per_class) == 20
    assert trained.images == scored.images == 3
    assert abs(trained.miou - metrics["clips4"]["miou"]) < 0.01
    assert abs(trained.pacc - metrics["clips4"]["pacc"]) < 0.01
    assert abs(trained.avgsim - metrics["clips4"]["avgsim"]) < 1e-4

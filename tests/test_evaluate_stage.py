"""The evaluate stage end to end on the tiny train world with a trained tiny student: metrics.json's key sets with
and without a fold, a student checkpoint per method (maskclip_plus scored like clips4 when its file exists), the
DAVIS results layout, and the files DVC reads (plain nested JSON numbers, per-class rows of every method)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from train_world import build_train_project, train_project
from typer.testing import CliRunner

from clips4.cli import app
from clips4.data.synth_video import write_videos
from clips4.errors import Clips4Error
from clips4.eval.davis import evaluate_results
from clips4.eval.methods import METHODS, build_maskclip
from clips4.params import ParamsError, load_params
from clips4.stages.evaluate import run_evaluate

pytestmark = pytest.mark.slow

PROBES = {"knn_miou", "linear_miou"}
VIDEO = {"davis_j_mean", "davis_f_mean"}
CLASS_FREE = {"miou_known", "miou_unknown", "hiou"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_train_project(tmp_path_factory.mktemp("evaluate"))
    params = load_params(root / "params.yaml")
    synth = dataclasses.replace(params.synth, video_sequences=2, video_frames=4)
    write_videos(synth, params.synth.seed, root / "data" / "synth_video")
    return train_project(root)


def _numbers_only(payload: dict) -> bool:
    return all(
        isinstance(value, float | int) and not isinstance(value, bool)
        for block in payload.values()
        for value in block.values()
    )


def test_metrics_blocks_without_fold(params, project):
    shutil.copy(project / "models" / "clips4.pt", project / "models" / "maskclip_plus.pt")
    try:
        result = run_evaluate(params, project / "reports")
    finally:
        (project / "models" / "maskclip_plus.pt").unlink()
    written = json.loads((project / "reports" / "metrics.json").read_text())
    assert list(written) == ["maskclip", "clips4", "maskclip_plus"]
    base = {"miou", "pacc"} | PROBES | VIDEO
    assert set(written["maskclip"]) == base
    assert set(written["clips4"]) == set(written["maskclip_plus"]) == base | {"avgsim"}
    assert written["clips4"] == written["maskclip_plus"]  # the same checkpoint scores the same
    assert _numbers_only(written)
    assert all(0 <= v <= 100 for block in written.values() for k, v in block.items() if k != "avgsim")
    assert -1 <= written["clips4"]["avgsim"] <= 1
    for method, block in written.items():
        assert block["miou"] == result.methods[method].scores.miou
        # The written masks, scored again from the files, give the reported J and F.
        davis = evaluate_results(
            project / "data" / "synth_video", project / "reports" / "davis" / method, ["synth000", "synth001"]
        )
        assert round(davis.j_mean, 2) == block["davis_j_mean"] and round(davis.f_mean, 2) == block["davis_f_mean"]
        frames = sorted((project / "reports" / "davis" / method / "synth001").glob("*.png"))
        assert [f.stem for f in frames] == ["00000", "00001", "00002", "00003"]
    rows = json.loads((project / "reports" / "per_class_iou.json").read_text())
    assert {"maskclip", "clips4", "maskclip_plus"} <= set().union(*rows)

    # Without the maskclip_plus checkpoint, that method gets no block (and no stale video folder is scored).
    run_evaluate(params, project / "reports")
    assert list(json.loads((project / "reports" / "metrics.json").read_text())) == ["maskclip", "clips4"]
    assert sorted(p.name for p in (project / "reports" / "davis").iterdir()) == ["clips4", "maskclip"]


def test_metrics_blocks_with_fold_and_switched_off_parts(params, project, tmp_path):
    eval_params = dataclasses.replace(
        params.eval,
        knn=dataclasses.replace(params.eval.knn, train_images=0),
        linear=dataclasses.replace(params.eval.linear, train_images=0),
    )
    video = dataclasses.replace(params.video, name="none")
    folded = dataclasses.replace(params, fold=0, eval=eval_params, video=video)
    # A student trained without the fold is refused: its class-free scores would be meaningless.
    with pytest.raises(Clips4Error, match=r"clips4\.pt: trained with fold None, but params\.yaml has fold 0"):
        run_evaluate(folded, tmp_path / "refused")
    result = run_evaluate(folded, tmp_path / "maskclip", methods={"maskclip": build_maskclip})
    written = json.loads((tmp_path / "maskclip" / "metrics.json").read_text())
    assert set(written["maskclip"]) == {"miou", "pacc"} | CLASS_FREE and _numbers_only(written)
    assert result.davis_dir is None and not list((tmp_path / "maskclip" / "davis").iterdir())  # a DVC out, empty

    # A student whose checkpoint records the fold gets the class-free keys and avgsim.
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(project / "models" / "clip.pt", models / "clip.pt")
    checkpoint = torch.load(project / "models" / "clips4.pt", weights_only=True)
    checkpoint["params"]["fold"] = 0
    torch.save(checkpoint, models / "clips4.pt")
    run_evaluate(folded, tmp_path / "student", models_dir=models, methods={"clips4": METHODS["clips4"]})
    block = json.loads((tmp_path / "student" / "metrics.json").read_text())["clips4"]
    assert set(block) == {"miou", "pacc", "avgsim"} | CLASS_FREE
    known, unknown = block["miou_known"], block["miou_unknown"]
    expected = 0.0 if known + unknown == 0 else 2 * known * unknown / (known + unknown)
    assert block["hiou"] == pytest.approx(expected, abs=0.01)


def test_cli_prints_every_block_and_the_time_split(params, project, tmp_path):
    out = CliRunner().invoke(app, ["evaluate", "--reports-dir", str(tmp_path / "cli")])
    assert out.exit_code == 0, out.output
    assert "knn_miou" in out.output and "seconds: language" in out.output and "davis" in out.output
    assert (tmp_path / "cli" / "davis" / "clips4" / "synth000" / "00000.png").is_file()


def test_video_params_are_validated_naming_the_key(project, tmp_path):
    path = tmp_path / "params.yaml"
    for raw, key in (
        ({"video": {"name": "kinetics"}}, "video.name"),
        ({"video": {"topk": 0}}, "video.topk"),
        ({"video": {"temperature": 0}}, "video.temperature"),
        ({"eval": {"knn": {"k": 0}}}, "eval.knn.k"),
        ({"eval": {"linear": {"trian_images": 5}}}, "eval.linear.trian_images"),
    ):
        path.write_text(json.dumps(raw))
        with pytest.raises(ParamsError, match=re.escape(f"params.yaml: {key}: ")):
            load_params(path)


def test_missing_videos_name_the_key_and_the_way_out(params, tmp_path):
    moved = dataclasses.replace(params, video=dataclasses.replace(params.video, root=str(tmp_path / "nowhere")))
    with pytest.raises(Clips4Error, match=r"^video\.root: .*nowhere.*set video\.name: none$"):
        run_evaluate(moved, tmp_path / "reports")

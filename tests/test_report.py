"""`clips4 report` on a tiny project: the report renders with every figure present and linked, its table holds
metrics.json's numbers, a method that did not run says so, and the same inputs give the same files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from clips4.cli import app
from clips4.eval.davis import read_annotations, write_results
from tests.fixtures import make_davis
from tests.train_world import build_train_project

pytestmark = pytest.mark.slow

FIGURES = ("pixel_embeddings_pca", "segment_projection", "retrieval", "predictions", "propagation")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, write_params) -> Path:
    """The tiny world with its caches, a trained student, evaluate's reports and propagated video masks."""
    root = build_train_project(tmp_path_factory.mktemp("report"))
    video = make_davis(root / "video", sequences=2, frames=5)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.setdefault("video", {})["root"] = "video"  # evaluate and report read the videos from video.root
    write_params(root, params)
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for command in (["train"], ["evaluate"]):
            result = runner.invoke(app, command)
            assert result.exit_code == 0, result.output
        for method, shift in (("maskclip", 1), ("clips4", 0)):
            for sequence in ("seq0", "seq1"):
                frame_ids, truth = read_annotations(video, sequence)
                write_results(root / "reports" / "davis" / method, sequence, frame_ids, np.roll(truth, shift, axis=2))
    return root


def _report(project: Path, monkeypatch: pytest.MonkeyPatch, reports: Path | None = None) -> str:
    monkeypatch.chdir(project)
    reports = reports or project / "reports"
    result = CliRunner().invoke(app, ["report", "--reports-dir", str(reports)])
    assert result.exit_code == 0, result.output
    return (reports / "report.md").read_text()


def _table_row(text: str, title: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith(f"| {title} |"))
    return [cell.strip() for cell in line.strip("|").split("|")[1:]]


def test_report_renders_every_figure_linked_with_metrics_json_numbers(project, monkeypatch):
    text = _report(project, monkeypatch)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert [Path(link).stem for link in links] == list(FIGURES)
    for link in links:
        path = project / "reports" / link
        assert path.is_file() and path.read_bytes().startswith(b"\x89PNG"), link
    assert "Not drawn" not in text
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    assert _table_row(text, "metric") == ["MaskCLIP", "MaskCLIP+-style", "CLIP-S4"]
    miou = _table_row(text, "mIoU, language-driven (%)")
    assert float(miou[0]) == round(metrics["maskclip"]["miou"], 2)
    assert float(miou[2]) == round(metrics["clips4"]["miou"], 2)
    assert miou[1] == "not run" and "MaskCLIP+-style: not run" in text
    per_class = json.loads((project / "reports" / "per_class_iou.json").read_text())
    first = per_class[0]
    assert float(_table_row(text, first["class"])[0]) == round(first["maskclip"], 2)
    assert "fold 0 (no fold is held out in this run" in text  # retrieval names where its classes come from


def test_same_inputs_give_the_same_report_and_figures(project, monkeypatch):
    text = _report(project, monkeypatch)
    figures = {p.name: p.read_bytes() for p in (project / "reports" / "figures" / "report").glob("*.png")}
    assert _report(project, monkeypatch) == text
    again = {p.name: p.read_bytes() for p in (project / "reports" / "figures" / "report").glob("*.png")}
    assert again == figures
    assert not re.search(r"\d{4}-\d{2}-\d{2}", text)  # no date or time in the report


def test_a_maskclip_plus_model_and_block_join_the_report(project, monkeypatch, tmp_path):
    monkeypatch.chdir(project)
    reports = tmp_path / "reports"
    shutil.copytree(project / "reports", reports)
    metrics = json.loads((reports / "metrics.json").read_text())
    metrics["maskclip_plus"] = {"miou": 12.34, "pacc": 56.78}
    (reports / "metrics.json").write_text(json.dumps(metrics))
    shutil.copy(project / "models" / "clips4.pt", project / "models" / "maskclip_plus.pt")
    try:
        text = _report(project, monkeypatch, reports)
    finally:
        (project / "models" / "maskclip_plus.pt").unlink()
    assert _table_row(text, "mIoU, language-driven (%)")[1] == "12.34" and "not run" not in text
    assert (reports / "figures" / "report" / "retrieval.png").is_file()


def test_without_propagated_masks_the_video_figure_is_not_run(project, monkeypatch, tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    for name in ("metrics.json", "per_class_iou.json"):
        shutil.copy(project / "reports" / name, reports / name)
    text = _report(project, monkeypatch, reports)
    assert "Not drawn: not run: no propagated masks" in text
    assert not (reports / "figures" / "report" / "propagation.png").exists()


def test_missing_metrics_is_one_line_naming_the_file(project, monkeypatch, tmp_path):
    monkeypatch.chdir(project)
    result = CliRunner().invoke(app, ["report", "--reports-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "metrics.json: missing; run `clips4 evaluate`" in result.output and "Traceback" not in result.output

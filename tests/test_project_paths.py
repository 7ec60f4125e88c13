"""Every path a stage reads or writes is the project's: the params file's folder, wherever the command runs from.

A tiny project's caches are built, and ``evaluate`` is run, from another working folder with ``--params
/abs/project/params.yaml``: the stages read and write the project's data/cache, models/ and reports/, never the
working folder's (which holds a decoy models/clip.pt, as the repository's own pipeline did for the user who found
``evaluate`` scoring it), and the metrics equal those of a run from the project folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clips4.cli import app
from clips4.params import ParamsError, load_params, params_from_dict
from tests.fixtures import make_tiny_project
from tests.segment_world import write_student_checkpoint

#: 6 images of 48 px, the 32-d test CLIP and student; language-driven scores and avgsim only (no probes, no videos).
TINY = {
    "synth": {"image_size": 48, "train_images": 2, "val_images": 4},
    "clip": {"model": "clips4-test-vit", "pretrained": "synth", "window": 48, "stride": 16},
    "cache": {"chunk_mb": 0.02, "images_per_file": 0},
    "ucm": {"regions": 8, "quality_images": 2},
    "train": {"model": "pspnet-test"},
    "eval": {"knn": {"train_images": 0}, "linear": {"train_images": 0}},
    "video": {"name": "none"},
}
#: The cache stages that evaluate's avgsim reads, in pipeline order, with their options.
CACHE_COMMANDS = (("contours", "--workers", "1"), ("ucm", "--workers", "1"), ("clip-dense",))


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder outside the project, with a decoy models/clip.pt (other weights than the project's)."""
    from tests.fixtures import save_tiny_clip

    folder = tmp_path_factory.mktemp("elsewhere")
    save_tiny_clip(folder / "models" / "clip.pt", seed=1)
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, elsewhere: Path) -> Path:
    """The tiny project with a student at models/clips4.pt; its caches built by the CLI from ``elsewhere``."""
    root = make_tiny_project(tmp_path_factory.mktemp("project"), TINY)
    write_student_checkpoint(root)
    previous = Path.cwd()
    os.chdir(elsewhere)
    try:
        for command in CACHE_COMMANDS:
            _invoke(*command, "--params", str(root / "params.yaml"))
    finally:
        os.chdir(previous)
    return root


def _files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def test_cache_stages_write_into_the_project_from_another_folder(project: Path, elsewhere: Path) -> None:
    for store in ("contours", "superpixels", "clip_dense"):
        assert (project / "data" / "cache" / f"{store}.zarr").is_dir()
    assert (project / "reports" / "segments.json").is_file()  # ucm's quality report: the project's reports/
    assert _files(elsewhere) == ["models/clip.pt"]  # only the decoy: nothing read from or written to this folder


def test_evaluate_gives_the_same_metrics_from_any_folder(
    project: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports = project / "reports"
    monkeypatch.chdir(project)
    _invoke("evaluate")
    from_project = {name: json.loads((reports / name).read_text()) for name in ("metrics.json", "per_class_iou.json")}
    assert set(from_project["metrics.json"]) == {"maskclip", "clips4"}  # the project's student was scored
    for name in from_project:
        (reports / name).unlink()

    monkeypatch.chdir(elsewhere)
    output = _invoke("evaluate", "--params", str(project / "params.yaml"))
    assert f"wrote {reports / 'metrics.json'}" in output
    assert {name: json.loads((reports / name).read_text()) for name in from_project} == from_project
    assert _files(elsewhere) == ["models/clip.pt"]  # the decoy CLIP was not read (its scores would differ)


def test_project_paths_are_relative_inside_the_working_folder(
    project: Path, elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From the project folder (as dvc.yaml runs), the resolved paths are the same relative strings as the defaults,
    so what stages record names no machine folder; from elsewhere they are absolute."""
    monkeypatch.chdir(project)
    params = load_params("params.yaml")
    assert str(params.project_path("models/clips4.pt")) == "models/clips4.pt"
    assert params.dataset.root == "data/synth"
    monkeypatch.chdir(elsewhere)
    assert params.project_path("models/clips4.pt") == project / "models" / "clips4.pt"
    assert params_from_dict({}).project_path("reports") == Path("reports")  # no params file: the working folder


def test_paths_in_the_params_file_are_the_projects(tmp_path: Path, write_params, monkeypatch) -> None:
    project = tmp_path / "project"
    write_params(
        project,
        {
            "dataset": {"root": "data/synth"},
            "clip": {"pretrained": "weights/clip.pt"},
            "contours": {"hed_weights": "weights/hed.pytorch"},
            "train": {"backbone_weights": "weights/resnet50.pth"},
        },
    )
    params = load_params(project / "params.yaml")  # from the test's own empty folder
    assert params.clip.pretrained == str(project / "weights" / "clip.pt")
    assert params.contours.hed_weights == str(project / "weights" / "hed.pytorch")
    assert params.train.backbone_weights == str(project / "weights" / "resnet50.pth")
    for tag in ("synth", "openai"):  # not files: kept as written
        assert load_params(project / "params.yaml", {"clip.pretrained": tag}).clip.pretrained == tag


def test_project_dir_is_not_a_params_key(tmp_path: Path, write_params) -> None:
    params = load_params(write_params(tmp_path, {"dataset": {"root": "data/synth"}}))
    assert params.project_dir == tmp_path.resolve()
    assert "project_dir" not in params.to_dict()  # not recorded (models/clips4.json, checkpoints) nor hashed
    with pytest.raises(ParamsError, match=r"params\.yaml: project_dir: unknown key"):
        load_params(write_params(tmp_path, {"dataset": {"root": "data/synth"}, "project_dir": "/elsewhere"}))

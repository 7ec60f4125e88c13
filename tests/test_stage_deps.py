"""dvc.yaml declares what each stage reads: every clips4 module a stage loads while it runs is one of its deps.

Each stage's own command (as dvc.yaml writes it) runs on a tiny project in a fresh interpreter, which then lists
the clips4 modules in ``sys.modules``. A module missing from the stage's ``deps`` (as a file, or under a folder) is
a change DVC would not see, so the stage would not rerun when that code changes.
"""

from __future__ import annotations

import ast
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "synth": {"image_size": 32, "train_images": 16, "val_images": 6, "video_sequences": 1, "video_frames": 3},
    "clip": {
        "model": "clips4-test-vit",
        "pretrained": "synth",
        "window": 32,
        "stride": 16,
        "batch_size": 8,
        "pretrain": {"epochs": 1, "batch_size": 8, "warmup_steps": 1},
    },
    "cache": {"chunk_mb": 0.05},
    "ucm": {"regions": 8, "quality_images": 2},
    "unknowns": 4,
    "top_m": 2,
    "segments_per_view": 4,
    "train": {
        "iterations": 2,
        "batch_size": 2,
        "model": "pspnet-test",
        "crop_size": 32,
        "checkpoint_every": 1,
        "workers": 0,
        "score_images": 2,
    },
}

# Runs one `clips4 ...` command in this interpreter, then prints the files of the clips4 modules it loaded and
# the folders of the dataset or videos it read files in (the readers open files through builtins.open or io.open).
RUNNER = """
import builtins, io, json, os, sys
from clips4.cli import app
opened_roots = set()
real_open = io.open
def recording_open(file, *args, **kwargs):
    mode = args[0] if args else kwargs.get("mode", "r")
    if isinstance(file, (str, os.PathLike)) and not set(mode) & set("wax+"):
        relative = os.path.relpath(os.path.abspath(file))
        for root in ("data/synth_video", "data/synth"):
            if relative == root or relative.startswith(root + os.sep):
                opened_roots.add(root)
                break
    return real_open(file, *args, **kwargs)
builtins.open = io.open = recording_open  # pathlib's read_text goes through io.open
try:
    app(sys.argv[1:], prog_name="clips4", standalone_mode=False)
except SystemExit as exit:
    if exit.code:
        raise
files = sorted({m.__file__ for name, m in list(sys.modules.items())
                if name.split(".")[0] == "clips4" and getattr(m, "__file__", None)})
print("MODULES " + json.dumps(files))
print("OPENED " + json.dumps(sorted(opened_roots)))
"""

# Modules every command loads that hold no stage computation: the package version, the CLI's argument parsing and
# its logging set-up, the params schema (params values are tracked by each stage's `params:`) with the dataset names
# it accepts, the default folders the CLI passes (each stage's outs name its files), and the error classes.
EXEMPT = {
    "clips4/__init__.py",
    "clips4/cli.py",
    "clips4/logs.py",
    "clips4/params.py",
    "clips4/data/names.py",
    "clips4/paths.py",
    "clips4/errors.py",
}


def _is_reexport(path: Path) -> bool:
    """A package ``__init__`` that defines no function or class (it only re-exports its modules' names)."""
    tree = ast.parse(path.read_text())
    return path.name == "__init__.py" and not any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) for node in tree.body
    )


def _stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.fixture(scope="module")
def stage_runs(tmp_path_factory: pytest.TempPathFactory, write_params) -> dict[str, dict[str, list[str]]]:
    """{"modules": {stage: repo-relative files of the clips4 modules its command loaded}, "opened": {stage: the
    dataset or video folders it opened files in}}, running the stages in order on a tiny project."""
    project = tmp_path_factory.mktemp("deps")
    write_params(project, TINY)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    loaded = {}
    opened = {}
    for name, stage in _stages().items():
        argv = shlex.split(stage["cmd"])
        assert argv[0] == "clips4", f"stage {name}: expected a clips4 command, got {stage['cmd']!r}"
        run = subprocess.run(
            [sys.executable, "-c", RUNNER, *argv[1:]], cwd=project, env=env, capture_output=True, text=True
        )
        assert run.returncode == 0, f"stage {name} failed on the tiny project:\n{run.stderr[-3000:]}"
        line = next(line for line in run.stdout.splitlines() if line.startswith("MODULES "))
        files = [Path(file).resolve() for file in json.loads(line.removeprefix("MODULES "))]
        loaded[name] = sorted(str(file.relative_to(REPO)) for file in files if file.is_relative_to(REPO))
        line = next(line for line in run.stdout.splitlines() if line.startswith("OPENED "))
        opened[name] = json.loads(line.removeprefix("OPENED "))
    return {"modules": loaded, "opened": opened}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(_stages()))
def test_every_loaded_module_is_a_declared_dep(stage: str, stage_runs: dict[str, dict[str, list[str]]]) -> None:
    loaded_modules = stage_runs["modules"]
    deps = [str(dep).rstrip("/") for dep in _stages()[stage].get("deps", [])]

    def covered(file: str) -> bool:
        return any(file == dep or file.startswith(dep + "/") for dep in deps)

    missing = [
        file
        for file in loaded_modules[stage]
        if file not in EXEMPT and not _is_reexport(REPO / file) and not covered(file)
    ]
    assert not missing, f"dvc.yaml: stage {stage!r} loads {missing} but does not list them in its deps"
    assert any(file.startswith("clips4/stages/") for file in loaded_modules[stage]), "the stage runner did not load"


# The folder each manifest lists (dvc.yaml's dataset_manifest stage); the tiny project keeps params' default roots.
MANIFESTS = {"data/synth": "data/manifests/dataset.md5", "data/synth_video": "data/manifests/video.md5"}
FOLDER_DEPS = {"data/synth": "${dataset.root}", "data/synth_video": "${video.root}"}


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(_stages()))
def test_a_stage_that_reads_the_dataset_depends_on_its_manifest(
    stage: str, stage_runs: dict[str, dict[str, list[str]]]
) -> None:
    """DVC reruns a stage when its deps change: one that reads dataset files without depending on the manifest of
    that folder (or, for the manifest stage itself, on the folder) would not rerun when the dataset changes."""
    deps = [str(dep).rstrip("/") for dep in _stages()[stage].get("deps", [])]
    for root in stage_runs["opened"][stage]:
        expected = FOLDER_DEPS[root] if stage == "dataset_manifest" else MANIFESTS[root]
        assert expected in deps, f"dvc.yaml: stage {stage!r} reads files under {root} but does not depend on {expected}"
    if stage != "dataset_manifest":
        # Only the manifest stage walks the folders: a folder dep costs a walk of the dataset per `dvc status`.
        assert not set(FOLDER_DEPS.values()) & set(deps), f"dvc.yaml: stage {stage!r}: depend on the manifest instead"

"""File-system errors a user can fix are one line naming the file and the fix, with a non-zero exit (issue 22,
finding 11): `experiments collect` with a bad or missing `--show-json` or an unwritable `--out`, `segment --out` in
a read-only folder, a stage on a read-only cache folder.

Tests run as root, whom chmod does not stop: the read-only folders are made by making the writes under them raise
the error the operating system gives (EROFS, EACCES), as a read-only mount does for every user (checked by hand with
`unshare -m` and a read-only bind mount: the same messages)."""

from __future__ import annotations

import errno
import json
import pathlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from segment_world import build_segment_project
from typer.testing import CliRunner

from clips4.cli import app
from tests.fixtures import make_voc

EXPERIMENTS = Path(__file__).resolve().parents[1] / "pipeline" / "experiments.yaml"


def read_only(monkeypatch: pytest.MonkeyPatch, folder: Path, code: int = errno.EROFS) -> None:
    """Every folder made and file written under ``folder`` fails as on a read-only (or forbidden) folder."""
    under = str(folder)

    def refuse(path: object) -> None:
        if str(path) == under or str(path).startswith(under + "/"):
            raise OSError(code, "Read-only file system" if code == errno.EROFS else "Permission denied", str(path))

    real_mkdir, real_open = pathlib.Path.mkdir, pathlib.Path.open

    def mkdir(self, *args, **kwargs):
        refuse(self)
        return real_mkdir(self, *args, **kwargs)

    def open_(self, mode="r", *args, **kwargs):
        if set(mode) & set("wax+"):
            refuse(self)
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    monkeypatch.setattr(pathlib.Path, "open", open_)


def _one_line_error(result, *expected: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not a traceback
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.output
    for text in expected:
        assert text in errors[0], (text, errors[0])


def test_collect_with_a_missing_or_bad_show_json_names_it(tmp_path):
    args = ["experiments", "collect", "table8", "--file", str(EXPERIMENTS), "--show-json"]
    missing = tmp_path / "missing.json"
    _one_line_error(CliRunner().invoke(app, [*args, str(missing)]), f"{missing}: --show-json file not found")
    truncated = tmp_path / "truncated.json"
    truncated.write_text('[{"rev": "work')
    _one_line_error(
        CliRunner().invoke(app, [*args, str(truncated)]), f"{truncated}: --show-json is not valid JSON", "dvc exp show"
    )
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"metrics": {}}))
    _one_line_error(CliRunner().invoke(app, [*args, str(other)]), f"{other}: --show-json is not `dvc exp show --json`")
    odd = tmp_path / "odd.json"  # the right outline, hand-edited inside: skipped, not a traceback
    odd.write_text(json.dumps([{"experiments": "none"}, {"experiments": [{"revs": [None, {"data": []}]}]}]))
    assert CliRunner().invoke(app, [*args, str(odd)]).exit_code == 0


def test_collect_to_an_unwritable_out_names_it(tmp_path, monkeypatch):
    show = tmp_path / "show.json"
    show.write_text("[]")
    folder = tmp_path / "locked"
    folder.mkdir()
    read_only(monkeypatch, folder, errno.EACCES)
    out = folder / "tables.md"
    args = ["experiments", "collect", "table8", "--file", str(EXPERIMENTS), "--show-json", str(show), "--out", str(out)]
    _one_line_error(CliRunner().invoke(app, args), f"--out {out}: permission denied")
    assert not out.exists()


def test_segment_into_a_read_only_folder_names_it(tmp_path, monkeypatch):
    (tmp_path / "project").mkdir()
    project = build_segment_project(tmp_path / "project")
    monkeypatch.chdir(project)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "x.png")
    folder = tmp_path / "readonly"
    folder.mkdir()
    read_only(monkeypatch, folder)
    out = folder / "seg"
    result = CliRunner().invoke(app, ["segment", str(tmp_path / "x.png"), "--classes", "a,b", "--out", str(out)])
    _one_line_error(result, f"--out {out}: the file system is read-only: choose a writable folder")


def test_a_stage_on_a_read_only_cache_folder_names_it(tmp_path, monkeypatch):
    root = make_voc(tmp_path / "data")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"dataset": {"name": "voc", "root": str(root)}}))
    cache = tmp_path / "cache"
    cache.mkdir()
    read_only(monkeypatch, cache)
    result = CliRunner().invoke(app, ["contours", "--params", str(params), "--cache-dir", str(cache)])
    _one_line_error(result, f"{cache / 'contours.zarr'}: the file system is read-only: choose a writable folder")


def test_other_os_errors_stay_tracebacks():
    """Only the errors a user fixes by choosing another place are turned into a line; others are bugs."""
    from clips4.errors import describe_os_error

    assert describe_os_error(OSError(errno.EBADF, "Bad file descriptor", "x")) is None
    assert describe_os_error(PermissionError(errno.EACCES, "Permission denied", "/a/b")).startswith("/a/b: permission")

"""The dataset manifest (clips4/data/manifest.py, stage dataset_manifest): the md5 of every file of the dataset, so
that the other stages depend on one small file and a no-change `dvc status` walks the dataset once (issue 12)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clips4.data.manifest import dataset_manifest, format_manifest, write_manifest
from clips4.errors import DatasetError
from tests.dvc_runs import logged_runs, run_dvc


def _tree(root: Path) -> Path:
    files = {
        "ImageSets/Segmentation/train.txt": b"a\nb\n",
        "JPEGImages/a.jpg": b"\xff\xd8 image a",
        "JPEGImages/b.jpg": b"\xff\xd8 image b",
        "SegmentationClass/a.png": b"\x89PNG label a",
        "classes.txt": b"grass\nsky\n",
    }
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    return root


def test_manifest_lists_every_file_with_its_md5_sorted_by_path(tmp_path):
    root = _tree(tmp_path / "world")
    entries = dataset_manifest(root)
    assert [relative for relative, _ in entries] == sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
    )
    for relative, md5 in entries:
        assert md5 == hashlib.md5((root / relative).read_bytes()).hexdigest()
    assert format_manifest(entries).splitlines()[1] == f"{entries[1][1]}  JPEGImages/a.jpg"


def test_manifest_verifies_with_md5sum(tmp_path):
    md5sum = shutil.which("md5sum")
    if md5sum is None:
        pytest.skip("md5sum (coreutils) is not installed")
    root = _tree(tmp_path / "world")
    write_manifest(root, tmp_path / "dataset.md5")
    check = subprocess.run([md5sum, "-c", str(tmp_path / "dataset.md5")], cwd=root, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    (root / "JPEGImages/b.jpg").write_bytes(b"\xff\xd8 image B")  # same size, other bytes
    assert subprocess.run([md5sum, "-c", str(tmp_path / "dataset.md5")], cwd=root, capture_output=True).returncode


def test_manifest_changes_exactly_when_a_file_changes(tmp_path):
    root = _tree(tmp_path / "world")
    manifest = tmp_path / "m" / "dataset.md5"
    assert write_manifest(root, manifest) == 5
    first, first_mtime = manifest.read_bytes(), manifest.stat().st_mtime_ns
    os.utime(root / "JPEGImages/a.jpg", ns=(1, 1))  # a new time, the same bytes
    write_manifest(root, manifest)
    assert manifest.read_bytes() == first and manifest.stat().st_mtime_ns == first_mtime  # not even rewritten

    (root / "JPEGImages/a.jpg").write_bytes(b"\xff\xd8 image A")  # one byte, the same size
    write_manifest(root, manifest)
    changed = set(manifest.read_text().splitlines()) ^ set(first.decode().splitlines())
    assert {line.split("  ")[1] for line in changed} == {"JPEGImages/a.jpg"}

    (root / "JPEGImages/c.jpg").write_bytes(b"new")
    (root / "classes.txt").unlink()
    assert write_manifest(root, manifest) == 5
    names = [line.split("  ")[1] for line in manifest.read_text().splitlines()]
    assert "JPEGImages/c.jpg" in names and "classes.txt" not in names
    assert not list(manifest.parent.glob(".*tmp*"))


def test_a_missing_dataset_folder_names_the_folder_and_the_key(tmp_path):
    with pytest.raises(DatasetError, match=r"missing: no such dataset folder; set dataset.root"):
        dataset_manifest(tmp_path / "missing")


# A stage that reads the dataset, as the real ones do, but depends on the manifest only (as dvc.yaml declares).
READER = "open('log.txt', 'a').write('reader\\n'); open('out.txt', 'w').write(open('world/classes.txt').read())"


def _dvc_yaml(clips4: str) -> dict:
    return {
        "stages": {
            "dataset_manifest": {
                "cmd": f"{clips4} data manifest",
                "deps": ["world", "videos"],
                "params": ["dataset.root", "video.root"],
                "outs": ["data/manifests/dataset.md5", "data/manifests/video.md5"],
            },
            "reader": {
                "cmd": f'{sys.executable} -c "{READER}"',
                "deps": ["data/manifests/dataset.md5"],
                "outs": ["out.txt"],
            },
        }
    }


@pytest.mark.slow
def test_dvc_reruns_a_reader_when_a_dataset_file_changes_and_only_then(tmp_path, write_params):
    repo = tmp_path / "repo"
    repo.mkdir()
    _tree(repo / "world")
    _tree(repo / "videos")
    clips4 = f'{sys.executable} -c "from clips4.cli import main; main()"'
    (repo / "dvc.yaml").write_text(yaml.safe_dump(_dvc_yaml(clips4)))
    write_params(repo, {"dataset": {"root": "world"}, "video": {"root": "videos"}})
    assert run_dvc(repo, "init", "--no-scm", "-q").returncode == 0

    first = run_dvc(repo, "repro")
    assert first.returncode == 0, first.stderr
    assert logged_runs(repo) == ["reader"] and (repo / "data/manifests/dataset.md5").read_text().count("\n") == 5
    assert run_dvc(repo, "repro").returncode == 0 and logged_runs(repo) == []  # no change: nothing runs

    forced = run_dvc(repo, "repro", "--force", "--single-item", "dataset_manifest")
    assert forced.returncode == 0, forced.stderr
    assert "changed" not in run_dvc(repo, "status").stdout  # the same manifest bytes: the reader stays up to date

    (repo / "world/JPEGImages/b.jpg").write_bytes(b"\xff\xd8 image B")  # one byte of one image, same size
    assert "dataset_manifest" in run_dvc(repo, "status").stdout
    assert run_dvc(repo, "repro").returncode == 0 and logged_runs(repo) == ["reader"]

    (repo / "videos/classes.txt").write_text("other\n")  # a video file: the reader does not read the videos
    assert run_dvc(repo, "repro").returncode == 0 and logged_runs(repo) == []

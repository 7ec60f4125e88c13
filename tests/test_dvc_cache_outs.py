"""The derived caches are DVC outputs with `cache: false` and `persist: true` (issue 12): no second copy in
.dvc/cache, a killed stage resumes, and `dvc repro` still reruns exactly what changed."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.dvc_runs import logged_runs, run_dvc

ROOT = Path(__file__).resolve().parents[1]


def _cache_outs() -> dict[str, dict]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    found = {}
    for stage in stages.values():
        for out in stage.get("outs", []):
            path, options = next(iter(out.items())) if isinstance(out, dict) else (out, {})
            if path.startswith("data/cache/") and path.endswith(".zarr"):
                found[path] = options or {}
    return found


def test_every_cache_store_is_persisted_and_not_copied_into_the_dvc_cache():
    outs = _cache_outs()
    expected = {
        f"data/cache/{name}.zarr" for name in ("contours", "superpixels", "clip_dense", "segments", "prototypes")
    }
    assert set(outs) == expected
    for path, options in outs.items():
        assert options.get("cache") is False, f"{path}: add `cache: false` (no second copy in .dvc/cache)"
        assert options.get("persist") is True, f"{path}: add `persist: true` (a killed stage resumes)"


# A resumable stage like the cache stages: one file per work unit, skipped when present; it can be "killed".
WRITER = textwrap.dedent(
    """
    import os, sys, yaml
    params = yaml.safe_load(open("params.yaml"))
    out, units = sys.argv[1], int(sys.argv[2])
    os.makedirs(out, exist_ok=True)
    for unit in range(units):
        path = os.path.join(out, f"unit{unit}")
        if os.path.exists(path):
            continue
        if os.environ.get("KILL_AT") == str(unit):
            sys.exit(9)
        with open(path + ".tmp", "w") as handle:
            handle.write(f"{params['a']} {unit}")
        os.replace(path + ".tmp", path)
        with open("log.txt", "a") as log:
            log.write(f"{out} {unit}\\n")
    """
)

DVC_YAML = textwrap.dedent(
    """
    stages:
      a:
        cmd: python writer.py data/cache/a.zarr 4
        params: [a]
        outs:
          - data/cache/a.zarr:
              cache: false
              persist: true
      b:
        cmd: python writer.py data/cache/b.zarr 2
        deps: [data/cache/a.zarr]
        params: [b]
        outs:
          - data/cache/b.zarr:
              cache: false
              persist: true
    """
)


@pytest.mark.slow
def test_cache_false_outputs_resume_after_a_kill_and_rerun_exactly_what_changed(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "writer.py").write_text(WRITER)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "params.yaml").write_text("a: 1\nb: 1\n")
    assert run_dvc(repo, "init", "--no-scm", "-q").returncode == 0

    killed = run_dvc(repo, "repro", env={"KILL_AT": "2"})
    assert killed.returncode != 0 and logged_runs(repo) == ["data/cache/a.zarr 0", "data/cache/a.zarr 1"]
    resumed = run_dvc(repo, "repro")
    assert resumed.returncode == 0, resumed.stderr
    # persist: DVC left the two finished units; only the missing ones were computed.
    resumed_units = ["data/cache/a.zarr 2", "data/cache/a.zarr 3", "data/cache/b.zarr 0", "data/cache/b.zarr 1"]
    assert logged_runs(repo) == resumed_units
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert lock["stages"]["a"]["outs"][0]["md5"].endswith(".dir")  # the hash is recorded ...
    cache = repo / ".dvc" / "cache"
    assert not cache.exists() or not [p for p in cache.rglob("*") if p.is_file()]  # ... but nothing is copied

    assert "changed" not in run_dvc(repo, "status").stdout
    assert run_dvc(repo, "repro").returncode == 0 and logged_runs(repo) == []  # no change: nothing runs

    (repo / "params.yaml").write_text("a: 1\nb: 2\n")
    shutil.rmtree(repo / "data/cache/b.zarr")  # a stale store is rebuilt by its stage (--rebuild); here by hand
    assert run_dvc(repo, "repro").returncode == 0
    assert logged_runs(repo) == ["data/cache/b.zarr 0", "data/cache/b.zarr 1"]  # b only: a did not change

    (repo / "data/cache/a.zarr/unit3").write_text("edited")  # a changed output reruns its stage
    status = run_dvc(repo, "status").stdout
    assert "a:" in status and "modified" in status

"""pipeline/experiments.yaml: the runs each paper table queues (their exact `dvc exp run` argument lists), and the
Markdown tables `clips4 experiments collect` makes from a hand-made `dvc exp show --json` (DVC 3.67's format)."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clips4.cli import app
from clips4.errors import Clips4Error
from clips4.experiments import (
    collect_markdown,
    experiment_names,
    experiment_results,
    ledger_payload,
    load_tables,
    mean_std,
    merge_results,
    queue_command,
    queue_table,
    run_name,
    set_value,
)

ROOT = Path(__file__).resolve().parents[1]
FILE = ROOT / "pipeline" / "experiments.yaml"


def _rev(name: str, metrics: dict | None, error: dict | None = None, state: str | None = None, **files: dict) -> dict:
    """One experiment as `dvc exp show --json` lists it under its baseline commit (``files``: other metrics files,
    ``reports_prototypes`` for reports/prototypes.json)."""
    data = {"rev": "0" * 40, "params": {"params.yaml": {"data": {}}}, "deps": {}, "outs": {}, "meta": {}}
    data["metrics"] = {} if metrics is None else {"reports/metrics.json": {"data": metrics}}
    data["metrics"] |= {key.replace("_", "/", 1) + ".json": {"data": value} for key, value in files.items()}
    state = state or ("failed" if error else "success")
    executor = {"state": state, "local": {"log": f".dvc/tmp/exps/run/{name}.out"}}
    revs = [{"rev": "0" * 40, "name": name, "data": data, "error": error, "experiments": None}]
    return {"revs": revs, "name": name, "executor": executor}


def _show(*experiments: dict) -> list[dict]:
    workspace = {"rev": "workspace", "name": None, "data": {"metrics": {}}, "error": None, "experiments": None}
    commit = {"rev": "1" * 40, "name": "main", "data": {"metrics": {}}, "error": None, "experiments": list(experiments)}
    return [workspace, commit]


def test_the_paper_tables_have_the_runs_the_issue_asks_for():
    tables = load_tables(FILE)
    table3 = tables["table3"]
    assert len(table3.runs) == 12 and table3.runs[0].name == "table3-fold0-seed0"  # 4 folds x 3 seeds
    assert {(r.values["fold"], r.values["seed"]) for r in table3.runs} == set(itertools.product(range(4), range(3)))
    subsets = [
        tuple(r.overrides[f"losses.{k}"] for k in ("contrastive", "embedding", "semantic"))
        for r in tables["table6"].runs
    ]
    assert len(subsets) == 21 and set(subsets) == set(itertools.product([True, False], repeat=3)) - {(False,) * 3}
    assert [r.overrides for r in tables["table7"].runs] == [
        {"losses.use_unknowns": True, "seed": s, "unknowns": n} for s in range(3) for n in (16, 32, 64, 128, 256)
    ]
    assert "clips4.knn_miou" in tables["table7"].metrics  # the paper's Table 7 is the unsupervised mIoU
    assert [r.values["top_m"] for r in tables["table8"].runs] == [1, 8, 16, 32, 64, 128, 256]
    assert tables["table8"].metrics[0] == "reports/prototypes.json:cosine_to_m32"  # the paper's Table 8 measure
    assert all(table.copy_paths == ("data/cache",) for table in tables.values())
    assert [r.values["prototypes.source"] for r in tables["prototype_source"].runs] == ["superpixels", "clip_kmeans"]


def test_queue_commands_are_the_exact_dvc_argument_lists():
    tables = load_tables(FILE)
    assert queue_command(tables["table7"].runs[0], ["data/cache"]) == [
        "dvc", "exp", "run", "--queue", "-S", "losses.use_unknowns=true", "-S", "seed=0", "-S", "unknowns=16",
        "-C", "data/cache", "-n", "table7-seed0-unknowns16",
    ]  # fmt: skip
    assert queue_command(tables["table3"].runs[-1])[4:] == ["-S", "fold=3", "-S", "seed=2", "-n", "table3-fold3-seed2"]
    assert set_value(None) == "null" and set_value(False) == "false" and set_value("clip_kmeans") == "clip_kmeans"
    assert (
        run_name("t", {"prototypes.source": "clip_kmeans", "losses.embedding": False})
        == "t-sourceclip_kmeans-embedding-off"
    )


def test_queue_runs_dvc_once_per_run_and_stops_on_a_failure(monkeypatch, tmp_path):
    table = load_tables(FILE)["table8"]
    calls = []

    def fake_run(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 1 if len(calls) == 2 else 0, "", "ERROR: exists")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert queue_table(table, root=tmp_path, dry_run=True) and calls == []
    with pytest.raises(Clips4Error, match="dvc exp remove"):
        queue_table(table, root=tmp_path)
    assert calls == [queue_command(run) for run in table.runs[:2]]  # no data/cache under root: nothing to copy
    (tmp_path / "data" / "cache").mkdir(parents=True)
    done = {"table8-top_m1", "table8-top_m16"}  # already in `dvc exp show`: queued again, they would clash
    commands = queue_table(table, existing=done, root=tmp_path, dry_run=True)
    assert [argv[-1] for argv in commands] == [run.name for run in table.runs if run.name not in done]
    assert all(argv[-4:-2] == ["-C", "data/cache"] for argv in commands)


def test_collect_averages_seeds_and_skips_failed_and_unfinished_runs():
    tables = load_tables(FILE)
    show = _show(
        _rev("table3-fold0-seed0", {"clips4": {"miou_unknown": 10.0, "hiou": 20}, "maskclip": {"miou_unknown": 30}}),
        _rev("table3-fold0-seed1", {"clips4": {"miou_unknown": 20.0, "hiou": 40}, "maskclip": {"miou_unknown": 30}}),
        _rev("table3-fold0-seed2", {"clips4": {"miou_unknown": 99.0}}, error={"type": "ReproError", "msg": "failed"}),
        _rev("table3-fold1-seed0", None),  # no metrics yet
        _rev("table3-fold1-seed1", {"clips4": {"miou_unknown": 99.0}}, state="running"),  # the baseline's files
        *[_rev(f"table3-fold2-seed{s}", {"clips4": {"miou_unknown": 50.0 + s}}) for s in range(3)],
    )
    found = experiment_results(show)
    finished = {"table3-fold0-seed0", "table3-fold0-seed1", *(f"table3-fold2-seed{s}" for s in range(3))}
    assert set(found) == finished | {"table3-fold0-seed2"}  # the queued fold1 run has no result yet
    assert found["table3-fold0-seed2"].error == "ReproError: failed" and not found["table3-fold0-seed2"].metrics
    assert experiment_names(show) == set(found) | {"table3-fold1-seed0", "table3-fold1-seed1"}
    text = collect_markdown([tables["table3"]], found)
    lines = text.splitlines()
    assert lines[0].startswith("Collected by `clips4 experiments collect`") and "`111111111111` (5 runs)" in lines[0]
    lines = lines[2:]
    assert lines[0] == "## " + tables["table3"].title
    assert lines[2].startswith("| fold | clips4.miou_unknown | clips4.miou_known | clips4.hiou |")
    fold0 = next(line for line in lines if line.startswith("| 0 |")).split(" | ")
    assert fold0[1] == "15.00 ± 7.07 (n=2)"  # mean 15, sample std sqrt(50): 2 of the 3 seeds found, 1 failed
    assert fold0[2] == "-" and fold0[3] == "30.00 ± 14.14 (n=2)" and fold0[-1] == "2/3 |"
    assert fold0[7] == "30.00 ± 0.00 (n=2)"  # maskclip.miou_unknown
    fold2 = next(line for line in lines if line.startswith("| 2 |")).split(" | ")
    assert fold2[1] == "51.00 ± 1.00" and fold2[-1] == "3/3 |"  # std of 50, 51, 52
    assert next(line for line in lines if line.startswith("| 1 |")).endswith("| 0/3 |")
    assert "- `table3-fold0-seed2`: ReproError: failed (log: .dvc/tmp/exps/run/table3-fold0-seed2.out)" in lines


def test_mean_std_of_one_value_has_no_std():
    assert mean_std([3.0]) == (3.0, None)
    assert mean_std([1.0, 3.0]) == pytest.approx((2.0, 2**0.5))


def _collect(tmp_path, show: list[dict], *args: str):
    """`clips4 experiments collect table8` on ``show`` saved as a `dvc exp show --json` file."""
    saved = tmp_path / "show.json"
    saved.write_text(json.dumps(show))
    argv = ["experiments", "collect", "table8", "--file", str(FILE), "--show-json", str(saved), *args]
    return CliRunner().invoke(app, argv)


def test_cli_collect_from_a_saved_show_json(tmp_path):
    run = _rev("table8-top_m8", {"clips4": {"miou": 55.5, "avgsim": 0.8}}, reports_prototypes={"cosine_to_m32": 0.9})
    out = tmp_path / "tables.md"
    result = _collect(tmp_path, _show(run), "--out", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "| top_m | cosine_to_m32 | clips4.miou | clips4.avgsim | runs |" in text
    assert "| 8 | 0.9000 | 55.50 | 0.800 | 1/1 |" in text
    bad = CliRunner().invoke(app, ["experiments", "queue", "table9", "--file", str(FILE), "--dry-run"])
    assert bad.exit_code == 2 and "no table 'table9'" in bad.output


def test_the_ledger_keeps_runs_that_dvc_no_longer_lists(tmp_path):
    """A fresh clone has no `refs/exps`: the ledger keeps the earlier runs, so a table fills up over several
    queues; a rerun replaces its kept result, a failed rerun does not, and the Markdown names both commits."""
    ledger, out = tmp_path / "runs.json", tmp_path / "tables.md"
    first = [_rev(f"table8-top_m{m}", {"clips4": {"miou": float(m)}}, reports_prototypes={"cosine_to_m32": 0.5})
             for m in (1, 8)]  # fmt: skip
    assert _collect(tmp_path, _show(*first), "--ledger", str(ledger), "--out", str(out)).exit_code == 0
    kept = json.loads(ledger.read_text())
    assert sorted(kept["runs"]) == ["table8-top_m1", "table8-top_m8"]
    assert kept["runs"]["table8-top_m8"]["params"] == {"top_m": 8} and kept["runs"]["table8-top_m8"]["baseline"]
    # another clone, another baseline commit: m = 16 is new, m = 8 reran, m = 1 failed its rerun
    later = _show(
        _rev("table8-top_m16", {"clips4": {"miou": 16.0}}),
        _rev("table8-top_m8", {"clips4": {"miou": 80.0}}),
        _rev("table8-top_m1", None, error={"type": "ReproError", "msg": "killed"}),
    )
    later[1]["rev"] = "2" * 40
    result = _collect(tmp_path, later, "--ledger", str(ledger), "--out", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "| 1 | 0.5000 | 1.00 | - | 1/1 |" in text  # kept from the first clone; its failed rerun not listed
    assert "| 8 | - | 80.00 | - | 1/1 |" in text and "| 16 | - | 16.00 | - | 1/1 |" in text
    assert "`111111111111` (1 run), `222222222222` (2 runs)" in text and "Runs from commits" in text
    assert "table8-top_m1`: ReproError" not in text
    assert sorted(json.loads(ledger.read_text())["runs"]) == ["table8-top_m1", "table8-top_m16", "table8-top_m8"]


def test_merge_lists_a_failure_only_without_a_kept_run():
    tables = load_tables(FILE)
    ok = experiment_results(_show(_rev("table8-top_m1", {"clips4": {"miou": 1.0}})))
    failed = experiment_results(_show(_rev("table8-top_m1", None, error={"type": "E"}), _rev("adhoc", {})))
    assert merge_results(ok, failed)["table8-top_m1"].metrics and merge_results({}, failed)["table8-top_m1"].error
    assert list(ledger_payload(merge_results(ok, failed), tables.values())["runs"]) == ["table8-top_m1"]


def test_a_bad_ledger_is_one_line_naming_it(tmp_path):
    ledger = tmp_path / "runs.json"
    for text, words in (("{", "not valid JSON"), ('{"runs": []}', "not a clips4 runs ledger"),
                        ('{"format": 1, "runs": {"x": {}}}', "has no reports/metrics.json")):  # fmt: skip
        ledger.write_text(text)
        result = _collect(tmp_path, _show(), "--ledger", str(ledger))
        assert result.exit_code != 0 and words in result.output and str(ledger) in result.output
        assert ledger.read_text() == text  # left as it was


def test_a_bad_experiments_file_is_one_line(tmp_path):
    path = tmp_path / "experiments.yaml"
    path.write_text("tables:\n  t:\n    grid: {seed: []}\n    metrics: [clips4.miou]\n")
    with pytest.raises(Clips4Error, match="non-empty list"):
        load_tables(path)
    path.write_text("tables:\n  t:\n    rows: [{seed: 0}, {seed: 0}]\n    metrics: [clips4.miou]\n")
    with pytest.raises(Clips4Error, match="repeats a run"):
        load_tables(path)

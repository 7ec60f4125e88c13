"""The paper's tables as DVC experiments: which runs a table needs (pipeline/experiments.yaml), the
``dvc exp run --queue`` command of each, and the Markdown table of their metrics from ``dvc exp show --json``.

A table is ``set`` (params every run sets) plus ``rows`` (explicit runs) crossed with a ``grid`` (every combination
of its values). A run's name is the table's name and its own values (``table3-fold0-seed0``), so collecting finds
each run by name. Runs that differ only in ``seed`` are one line of the Markdown table: mean ± sample standard
deviation over the seeds found (a cell shows ``(n=k)`` when some seeds are missing, ``-`` when none has the metric).
A metric is ``<method>.<key>`` of reports/metrics.json, or ``<file>:<key>`` of another DVC metrics file
(``reports/prototypes.json:cosine_to_m32``).

A queued run executes in a copy of the repository (``.dvc/tmp/exps``) that holds git's files and DVC's cached
outputs only; the file's ``copy_paths`` (the Zarr caches, which are ``cache: false``) are copied in with
``dvc exp run --copy-paths``, so a run reruns the stages its params change and not the caches above them.

DVC keeps experiments as git refs of the clone that ran them (``refs/exps``): a fresh clone, another machine or
``dvc exp remove`` loses them, and a table of 21 runs takes longer than one working session. The *ledger*, a JSON
file committed with the tables (``collect --ledger docs/results_runs.json``), keeps every finished run's metrics
files, its baseline commit and its params, so tables fill up over several queues, clones and machines, and the
Markdown names the commits its runs come from.

Pure functions, so the parsing and the arithmetic are tested on hand-made ``dvc exp show --json`` samples; only
:func:`queue_table` and :func:`exp_show` run DVC.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clips4.errors import Clips4Error

EXPERIMENTS_FILE = Path("pipeline/experiments.yaml")
METRICS_FILE = "reports/metrics.json"
SEED_KEY = "seed"
LEDGER_FORMAT = 1
UNFINISHED_STATES = ("queued", "running")  # dvc exp show's executor states of runs without their own results


@dataclass(frozen=True)
class Run:
    """One experiment of a table: its DVC name and the params it sets (``{dotted key: value}``)."""

    name: str
    values: dict[str, Any]  # the row's own values (in the name)
    fixed: dict[str, Any]  # the table's ``set`` (not in the name)

    @property
    def overrides(self) -> dict[str, Any]:
        return self.fixed | self.values

    @property
    def group(self) -> tuple[tuple[str, Any], ...]:
        """The line of the table this run averages into: its values without the seed."""
        return tuple((k, v) for k, v in self.values.items() if k != SEED_KEY)


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    runs: tuple[Run, ...]
    metrics: tuple[str, ...]
    copy_paths: tuple[str, ...] = ()  # the file's: untracked outputs each queued run starts from

    def present_copy_paths(self, root: str | Path = ".") -> list[str]:
        """The ``copy_paths`` that exist under ``root`` (a missing one is rebuilt by every run)."""
        return [path for path in self.copy_paths if (Path(root) / path).exists()]


@dataclass(frozen=True)
class Result:
    """One finished experiment of ``dvc exp show --json``: ``{metrics file: data}``, or the failure and its log."""

    metrics: dict[str, dict]
    error: str | None = None
    log: str | None = None
    baseline: str | None = None  # the commit the run was queued from
    rev: str | None = None  # the experiment's own commit (a ref only in the clone that ran it)


def load_tables(path: str | Path = EXPERIMENTS_FILE) -> dict[str, Table]:
    """Every table of the experiments file, or one line naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise Clips4Error(f"{path}: no experiments file; run from the project root or pass --file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise Clips4Error(f"{path}: not valid YAML ({err}); fix the file") from None
    tables = raw.get("tables") if isinstance(raw, dict) else None
    if not isinstance(tables, dict) or not tables:
        raise Clips4Error(f"{path}: expected a mapping `tables: {{name: {{grid, rows, set, metrics}}}}`")
    copy_paths = raw.get("copy_paths") or []
    if not isinstance(copy_paths, list) or not all(isinstance(item, str) and item for item in copy_paths):
        raise Clips4Error(f"{path}: `copy_paths` must be a list of paths (relative to the project), e.g. [data/cache]")
    return {name: _table(name, spec, path, tuple(copy_paths)) for name, spec in tables.items()}


def _table(name: str, spec: Any, path: Path, copy_paths: tuple[str, ...] = ()) -> Table:
    if not isinstance(spec, dict) or not spec.get("metrics"):
        raise Clips4Error(f"{path}: table {name!r} needs `metrics: [<method>.<key>, ...]`")
    unknown = set(spec) - {"title", "set", "rows", "grid", "metrics"}
    if unknown:
        raise Clips4Error(f"{path}: table {name!r} has unknown keys {sorted(unknown)}; use title/set/rows/grid/metrics")
    grid = spec.get("grid") or {}
    if any(not isinstance(values, list) or not values for values in grid.values()):
        raise Clips4Error(f"{path}: table {name!r}: every grid key needs a non-empty list of values")
    rows = spec.get("rows") or [{}]
    combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    runs = [
        Run(run_name(name, row | combo), row | combo, dict(spec.get("set") or {})) for row in rows for combo in combos
    ]
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise Clips4Error(f"{path}: table {name!r} repeats a run ({names}); make its rows differ")
    return Table(name, str(spec.get("title", name)), tuple(runs), tuple(spec["metrics"]), copy_paths)


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "null" if value is None else str(value)


def run_name(table: str, values: dict[str, Any]) -> str:
    """``<table>-<key><value>-...`` with each key's last part; a valid git ref name (what DVC requires)."""
    parts = [table]
    for key, value in values.items():
        short = key.rsplit(".", 1)[-1]
        parts.append(f"{short}-{_word(value)}" if isinstance(value, bool) else f"{short}{_word(value)}")
    return re.sub(r"[^A-Za-z0-9_-]+", "_", "-".join(parts))


def set_value(value: Any) -> str:
    """A params value as ``-S key=value`` writes it (DVC parses it as YAML)."""
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def queue_command(run: Run, copy_paths: Sequence[str] = ()) -> list[str]:
    """``dvc exp run --queue -S key=value ... [-C PATH ...] -n NAME``: the argument list that queues ``run``."""
    argv = ["dvc", "exp", "run", "--queue"]
    for key, value in run.overrides.items():
        argv += ["-S", f"{key}={set_value(value)}"]
    for path in copy_paths:
        argv += ["-C", path]
    return [*argv, "-n", run.name]


def queue_table(
    table: Table, *, existing: Iterable[str] = (), root: str | Path = ".", dry_run: bool = False
) -> list[list[str]]:
    """Queue the runs of ``table`` whose names are not in ``existing`` (what ``dvc exp show`` lists: done, failed
    or queued), so queueing a table again adds only what is missing; or only return the commands, ``dry_run``.
    The table's ``copy_paths`` that exist under ``root`` go with each run. A failing ``dvc`` stops it."""
    skip = set(existing)
    copy_paths = table.present_copy_paths(root)
    commands = [queue_command(run, copy_paths) for run in table.runs if run.name not in skip]
    if not dry_run:
        for argv in commands:
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode != 0:
                raise Clips4Error(
                    f"{' '.join(argv)}: dvc failed ({done.stderr.strip().splitlines()[-1:] or done.returncode}); "
                    "a run of that name may exist already: remove it with `dvc exp remove NAME`"
                )
    return commands


def exp_show(rev: str | None = None) -> list[dict[str, Any]]:
    """``dvc exp show --json`` of the current repository: the experiments of ``rev`` (default HEAD) as baseline."""
    argv = ["dvc", "exp", "show", "--json", *(["--rev", rev] if rev else [])]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        fix = "give --rev a commit of this repository" if rev else "run it inside the project"
        raise Clips4Error(f"{' '.join(argv)}: failed ({done.stderr.strip()[-300:]}); {fix}")
    return json.loads(done.stdout or "[]")


def read_exp_show(path: str | Path) -> list[dict[str, Any]]:
    """A saved ``dvc exp show --json`` output, or :class:`Clips4Error` naming the file and how to write it."""
    path = Path(path)
    how = f"write it with `dvc exp show --json > {path}`"
    try:
        show = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Clips4Error(f"{path}: --show-json file not found; {how}, or leave --show-json out") from None
    except IsADirectoryError:
        raise Clips4Error(f"{path}: --show-json is a folder, not a file; {how}") from None
    except UnicodeDecodeError:
        raise Clips4Error(f"{path}: --show-json is not UTF-8 text; {how}") from None
    except json.JSONDecodeError as err:
        raise Clips4Error(f"{path}: --show-json is not valid JSON (line {err.lineno}: {err.msg}); {how}") from None
    if not isinstance(show, list) or not all(isinstance(commit, dict) for commit in show):
        raise Clips4Error(
            f"{path}: --show-json is not `dvc exp show --json` output (expected a list of commits); {how}"
        )
    return show


def _named_revs(
    show: Sequence[dict[str, Any]],
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any], str | None]]:
    """``(name, rev, its experiment, baseline commit)`` of every named run in ``dvc exp show --json``, newest
    first."""
    for commit in show:
        baseline = commit.get("rev") if isinstance(commit.get("rev"), str) else None
        for experiment in _dicts(commit.get("experiments")):
            for rev in _dicts(experiment.get("revs")):
                if isinstance(name := rev.get("name") or experiment.get("name"), str):
                    yield name, rev, experiment, baseline


def experiment_names(show: Sequence[dict[str, Any]]) -> set[str]:
    """Every experiment name in ``dvc exp show --json``, whatever its state (queued, running, done, failed)."""
    return {name for name, _, _, _ in _named_revs(show)}


def experiment_results(show: Sequence[dict[str, Any]]) -> dict[str, Result]:
    """``{experiment name: Result}`` from ``dvc exp show --json`` (DVC 3): each commit's ``experiments`` list holds
    ``{"name", "revs": [{"name", "data": {"metrics": {file: {"data": {...}}}}, "error"}], "executor": {...}}``.
    The newest run of a name wins. A failed run (``error`` set) keeps its message and log and no metrics; a queued
    or running one is left out: DVC lists it with the baseline's metrics files until it finishes."""
    found: dict[str, Result] = {}
    for name, rev, experiment, baseline in _named_revs(show):
        executor = _dict(experiment.get("executor"))
        if name in found or executor.get("state") in UNFINISHED_STATES:
            continue
        own = rev.get("rev") if isinstance(rev.get("rev"), str) else None
        if rev.get("error"):
            error = _dict(rev["error"])
            message = ": ".join(str(part) for part in (error.get("type"), error.get("msg")) if part)
            log = _dict(executor.get("local")).get("log")
            found[name] = Result({}, message or "failed", log if isinstance(log, str) else None, baseline, own)
            continue
        files = {
            file: entry["data"]
            for file, entry in _dict(_dict(rev.get("data")).get("metrics")).items()
            if isinstance(entry, dict) and isinstance(entry.get("data"), dict)
        }
        if METRICS_FILE in files:
            found[name] = Result(files, baseline=baseline, rev=own)
    return found


def read_ledger(path: str | Path) -> dict[str, Result]:
    """The runs a ledger file keeps (``{}`` when it does not exist yet), or one line naming the file and the fix."""
    path = Path(path)
    if not path.exists():
        return {}
    fix = f"restore it with `git checkout -- {path}`, or pass another --ledger"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except IsADirectoryError:
        raise Clips4Error(f"{path}: --ledger is a folder, not a file; give a .json file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise Clips4Error(f"{path}: the runs ledger is not valid JSON ({err}); {fix}") from None
    runs = raw.get("runs") if isinstance(raw, dict) else None
    if not isinstance(runs, dict) or raw.get("format") != LEDGER_FORMAT:
        raise Clips4Error(
            f'{path}: not a clips4 runs ledger (expected {{"format": {LEDGER_FORMAT}, "runs": {{...}}}}); {fix}'
        )
    kept: dict[str, Result] = {}
    for name, entry in runs.items():
        metrics = _dict(_dict(entry).get("metrics"))
        if METRICS_FILE not in metrics:
            raise Clips4Error(f"{path}: run {name!r} has no {METRICS_FILE} metrics; {fix}")
        kept[name] = Result(metrics, baseline=entry.get("baseline"), rev=entry.get("rev"))
    return kept


def merge_results(kept: dict[str, Result], found: dict[str, Result]) -> dict[str, Result]:
    """The ledger's runs updated by ``dvc exp show``'s: a finished run replaces the kept one of its name (it is a
    rerun), a failed one is listed only where no finished run of that name is kept."""
    merged = dict(kept)
    for name, result in found.items():
        if not result.error or name not in kept:
            merged[name] = result
    return merged


def ledger_payload(results: dict[str, Result], tables: Iterable[Table]) -> dict[str, Any]:
    """The ledger's content: every finished run of the ``tables`` with its metrics files, baseline commit and the
    params it set, sorted by name so a commit's diff shows just the new runs."""
    runs = {run.name: run for table in tables for run in table.runs}
    entries = {
        name: {
            "baseline": result.baseline,
            "rev": result.rev,
            "params": runs[name].overrides,
            "metrics": result.metrics,
        }
        for name, result in sorted(results.items())
        if name in runs and not result.error
    }
    return {"format": LEDGER_FORMAT, "runs": entries}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    """The mappings of a list (anything else, as in a hand-edited file, holds none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def metric_value(files: dict[str, dict], metric: str) -> float | None:
    """``metric`` of one run's metrics files: ``<file>:<dotted key>``, or a dotted key of reports/metrics.json."""
    file, _, dotted = metric.rpartition(":")
    node: Any = files.get(file or METRICS_FILE)
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) and not isinstance(node, bool) else None


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof 1; None for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _cell(values: Sequence[float], expected: int, digits: int) -> str:
    if not values:
        return "-"
    mean, std = mean_std(values)
    text = f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"
    return text if len(values) == expected else f"{text} (n={len(values)})"


def table_markdown(table: Table, found: dict[str, Result]) -> str:
    """The Markdown of one table: a line per group of runs (mean ± std over seeds), a column per metric, then the
    failed runs with their logs."""
    groups: dict[tuple, list[Run]] = {}
    for run in table.runs:
        groups.setdefault(run.group, []).append(run)
    keys = list(dict.fromkeys(k for group in groups for k, _ in group))
    header = [*(k.rsplit(".", 1)[-1] for k in keys), *(m.rsplit(":", 1)[-1] for m in table.metrics), "runs"]
    lines = [f"## {table.title}", ""]  # DESIGN.md: one `## Table N` section each
    fixed = {k: v for run in table.runs[:1] for k, v in run.fixed.items()}
    if fixed:
        lines += ["Every run sets " + ", ".join(f"`{k}={set_value(v)}`" for k, v in fixed.items()) + ".", ""]
    commits = baseline_counts([table], found)
    if len(commits) > 1:  # runs queued from several commits (the ledger's): say which, as their code may differ
        lines += ["Runs from commits " + ", ".join(f"`{rev[:12]}` ({n})" for rev, n in commits.items()) + ".", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group, runs in groups.items():
        values = dict(group)
        present = [found[run.name].metrics for run in runs if run.name in found and not found[run.name].error]
        cells = [_word(values.get(k)) for k in keys]
        for metric in table.metrics:
            numbers = [v for m in present if (v := metric_value(m, metric)) is not None]
            cells.append(_cell(numbers, len(runs), 4 if "cosine" in metric else 3 if metric.endswith("avgsim") else 2))
        cells.append(f"{len(present)}/{len(runs)}")
        lines.append("| " + " | ".join(cells) + " |")
    failed = [(run.name, found[run.name]) for run in table.runs if run.name in found and found[run.name].error]
    if failed:
        lines += ["", "Failed runs (not in the means; `dvc exp remove NAME`, then queue the table again):"]
        for name, result in failed:
            lines.append(f"- `{name}`: {result.error}" + (f" (log: {result.log})" if result.log else ""))
    return "\n".join(lines) + "\n"


def baseline_counts(tables: Iterable[Table], found: dict[str, Result]) -> dict[str, int]:
    """``{baseline commit: finished runs of the tables}``, the commits first met first."""
    counts: dict[str, int] = {}
    for table in tables:
        for run in table.runs:
            result = found.get(run.name)
            if result is not None and not result.error:
                key = result.baseline or "unknown"
                counts[key] = counts.get(key, 0) + 1
    return counts


def collect_markdown(tables: Iterable[Table], found: dict[str, Result]) -> str:
    """Every table's Markdown from the runs ``found`` (``dvc exp show --json``'s, merged with a ledger's), under a
    line naming the baseline commits: each run's params are its commit's params.yaml plus the run's own values and
    its table's ``set``."""
    tables = list(tables)
    counts = baseline_counts(tables, found)
    commits = ", ".join(f"`{rev[:12]}` ({n} run{'s' * (n != 1)})" for rev, n in counts.items())
    commits = commits or "none (no runs found)"
    head = (
        f"Collected by `clips4 experiments collect` from `dvc exp show --json` (and `--ledger`'s runs). Baseline "
        f"commits: {commits}; each run is its commit's params.yaml plus the values in the run's row (and its "
        "table's `set`), mean ± sample std over seeds; the last column counts the runs found against the table's "
        "grid.\n"
    )
    return "\n".join([head, *(table_markdown(table, found) for table in tables)])

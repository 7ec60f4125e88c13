"""What the report reads from ``evaluate``: reports/metrics.json (one block per method, shared/DESIGN.md) and
reports/per_class_iou.json (rows ``{"class": name, <method>: IoU}``), checked, with errors naming the file."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clips4.errors import Clips4Error


@dataclass(frozen=True)
class EvaluationResults:
    """``metrics``: method -> metric key -> value; ``per_class``: the rows in file order."""

    metrics: dict[str, dict[str, float]]
    per_class: list[dict[str, Any]]


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise Clips4Error(f"{path}: missing; run `clips4 evaluate` (dvc repro evaluate) before the report")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise Clips4Error(f"{path}: not valid JSON ({err}); rerun `clips4 evaluate` to rewrite it") from None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_metrics(path: Path) -> dict[str, dict[str, float]]:
    """``{method: {key: value}}`` from metrics.json; each block must map keys to numbers."""
    payload = _read_json(path)
    if not isinstance(payload, dict) or not all(isinstance(block, dict) for block in payload.values()):
        raise Clips4Error(
            f'{path}: expected one object per method ({{"maskclip": {{"miou": ...}}}}); rerun `clips4 evaluate`'
        )
    for method, block in payload.items():
        bad = [key for key, value in block.items() if not _number(value)]
        if bad:
            raise Clips4Error(f"{path}: {method}.{bad[0]} is {block[bad[0]]!r}, not a number; rerun `clips4 evaluate`")
    return {method: {key: float(value) for key, value in block.items()} for method, block in payload.items()}


def read_per_class(path: Path) -> list[dict[str, Any]]:
    """The rows of per_class_iou.json; each has a ``class`` name and numeric IoUs."""
    rows = _read_json(path)
    if not isinstance(rows, list) or not all(isinstance(row, dict) and "class" in row for row in rows):
        raise Clips4Error(f'{path}: expected a list of {{"class": name, <method>: IoU}} rows; rerun `clips4 evaluate`')
    for row in rows:
        bad = [key for key, value in row.items() if key != "class" and not _number(value)]
        if bad:
            raise Clips4Error(f"{path}: class {row['class']!r}: {bad[0]} is {row[bad[0]]!r}, not a number")
    return rows


def read_results(reports_dir: Path) -> EvaluationResults:
    """metrics.json and per_class_iou.json of ``reports_dir``."""
    return EvaluationResults(
        read_metrics(reports_dir / "metrics.json"), read_per_class(reports_dir / "per_class_iou.json")
    )


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)

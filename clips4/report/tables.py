"""Markdown tables of the evaluation: the methods side by side on every metric, and the per-class IoU.

Methods come in a fixed order (:data:`METHOD_TITLES`, then any other block of metrics.json by name); a known
method with no block is shown as ``not run``. A metric key appears when some method has it; a method without it
gets ``–`` (the key does not apply to it in this run). Values are printed as metrics.json holds them, rounded to
the 2 decimals (4 for avgsim) that ``evaluate`` writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from clips4.report.inputs import finite

#: Method key in metrics.json -> column title, in the order the report shows them.
METHOD_TITLES: dict[str, str] = {
    "maskclip": "MaskCLIP",
    "maskclip_plus": "MaskCLIP+-style",
    "clips4": "CLIP-S4",
}

#: Metric key -> row title, in the order the report shows them (other keys follow, by name).
METRIC_TITLES: dict[str, str] = {
    "miou": "mIoU, language-driven (%)",
    "pacc": "pixel accuracy (%)",
    "miou_known": "mIoU, known classes (%)",
    "miou_unknown": "mIoU, held-out classes (%)",
    "hiou": "hIoU, harmonic mean (%)",
    "knn_miou": "kNN mIoU (%)",
    "linear_miou": "linear-probe mIoU (%)",
    "davis_j_mean": "DAVIS J-mean (%)",
    "davis_f_mean": "DAVIS F-mean (%)",
    "avgsim": "avgsim (cosine to CLIP)",
}

NOT_RUN = "not run"
ABSENT = "–"


def method_order(present: Iterable[str]) -> list[str]:
    """The known methods (run or not), then the other methods present, by name."""
    present = set(present)
    return [*METHOD_TITLES, *sorted(present - set(METHOD_TITLES))]


def method_title(method: str) -> str:
    return METHOD_TITLES.get(method, method)


def format_value(key: str, value: float | None) -> str:
    """``value`` as the table prints it: 4 decimals for avgsim, 2 for percentages; ``n/a`` when not finite."""
    if value is None:
        return ABSENT
    if not finite(value):
        return "n/a"
    return f"{value:.4f}" if key == "avgsim" else f"{value:.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def metrics_table(metrics: Mapping[str, Mapping[str, float]]) -> str:
    """Rows = metric keys present in any block, columns = methods (a method without a block: ``not run``)."""
    methods = method_order(metrics)
    keys_present = {key for block in metrics.values() for key in block}
    keys = [key for key in METRIC_TITLES if key in keys_present] + sorted(keys_present - set(METRIC_TITLES))
    rows = []
    for key in keys:
        cells = [format_value(key, metrics[method].get(key)) if method in metrics else NOT_RUN for method in methods]
        rows.append([METRIC_TITLES.get(key, key), *cells])
    header = ["metric", *(method_title(m) for m in methods)]
    return _table(header, rows, [":--", *["--:"] * len(methods)])


def per_class_table(rows: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any], held_out: Sequence[str] = ()) -> str:
    """Rows = classes (held-out ones marked), columns = methods; ``not run`` for a method without results, ``–``
    for a class without an IoU (its union is empty on val)."""
    methods = method_order(set(metrics) | {key for row in rows for key in row if key != "class"})
    table_rows = []
    for row in rows:
        name = str(row["class"]) + (" (held out)" if row["class"] in held_out else "")
        cells = []
        for method in methods:
            ran = method in metrics or any(method in r for r in rows)
            cells.append(format_value("iou", row.get(method)) if ran else NOT_RUN)
        table_rows.append([name, *cells])
    header = ["class", *(method_title(m) for m in methods)]
    return _table(header, table_rows, [":--", *["--:"] * len(methods)])

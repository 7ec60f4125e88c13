"""reports/report.md: the run's settings, the side-by-side metrics, the per-class IoU and the figures, linked by
paths relative to the report. Nothing in it depends on the time or the machine, so the same inputs give the same
file (a second ``dvc repro`` has nothing to change)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FigureEntry:
    """One figure of the report: drawn (``file``, relative to report.md) or not (``missing`` says why)."""

    title: str
    caption: str
    file: str | None = None
    missing: str | None = None


def render_report(
    settings: Sequence[str],
    metrics_table: str,
    per_class_table: str,
    figures: Sequence[FigureEntry],
    notes: Sequence[str] = (),
) -> str:
    """The Markdown text of the report."""
    lines = ["# CLIP-S4 evaluation report", "", "Settings of this run:", ""]
    lines += [f"- {item}" for item in settings]
    lines += ["", "## Methods side by side", "", metrics_table, ""]
    lines += [f"- {note}" for note in notes]
    if notes:
        lines.append("")
    lines += ["## Per-class IoU (%)", "", per_class_table, "", "## Figures", ""]
    for number, figure in enumerate(figures, start=1):
        lines += [f"### {number}. {figure.title}", ""]
        if figure.file is not None:
            lines += [f"![{figure.title}]({figure.file})", "", figure.caption, ""]
        else:
            lines += [f"Not drawn: {figure.missing}", ""]
    return "\n".join(lines).rstrip() + "\n"

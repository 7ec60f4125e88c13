"""Loss curves and metrics with dvclive, in the folder that dvc.yaml declares as the train stage's plots.

A resumed run continues the curves at its checkpoint's iteration: the rows a killed run logged after its last
checkpoint are dropped first, so every step appears once and ``dvc plots show`` draws one line per metric.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from clips4.io import atomic_write


class TrainLog:
    """dvclive's ``Live`` over ``directory`` (no report, no DVC experiment, no edit of dvc.yaml)."""

    def __init__(self, directory: str | Path, *, resume: bool, start: int = 0) -> None:
        from dvclive import Live

        self.directory = Path(directory)
        if resume:
            _drop_steps_from(self.directory / "plots" / "metrics", start)
        self.live = Live(str(directory), resume=resume, report=None, save_dvc_exp=False, dvcyaml=None)

    def step(self, iteration: int, values: dict[str, float]) -> None:
        self.live.step = iteration
        for name, value in values.items():
            self.live.log_metric(f"train/{name}", float(value))
        self.live.make_summary()

    def restore_summary(self, iteration: int, values: dict[str, float]) -> None:
        """Write the summary (metrics.json) of a finished run again, without adding a row to its curves."""
        self.live.step = iteration
        for name, value in values.items():
            self.live.log_metric(f"train/{name}", float(value), plot=False)
        self.live.make_summary()

    def close(self) -> None:
        self.live.end()


def _drop_steps_from(folder: Path, start: int) -> None:
    """Remove rows with ``step > start`` from every dvclive TSV under ``folder``."""
    if not folder.is_dir():
        return
    for path in folder.rglob("*.tsv"):
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle, delimiter="\t"))
        if not rows or "step" not in rows[0]:
            continue
        column = rows[0].index("step")
        kept = [rows[0], *(row for row in rows[1:] if row and int(row[column]) <= start)]
        text = io.StringIO(newline="")
        csv.writer(text, delimiter="\t", lineterminator="\n").writerows(kept)
        atomic_write(path, text.getvalue())  # a kill mid-rewrite keeps the old curves, not half of them

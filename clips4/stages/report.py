"""The ``report`` stage: reports/report.md, with the methods side by side on every metric ``evaluate`` wrote,
the per-class IoU, and the paper's figures in reports/figures/report/ (the ``ucm`` stage owns the other files
of reports/figures/; DVC forbids overlapping outputs, hence the subfolder).

Inputs: reports/metrics.json, reports/per_class_iou.json, reports/davis/ (when ``evaluate`` propagated masks),
the val split, models/clip.pt (through clip.pretrained), models/clips4.pt and models/maskclip_plus.pt (each when
present), and the superpixels and segments caches. Every method is run with the evaluation's own inference code
(clips4.eval), so the figures show what was scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clips4.cache.api import open_complete
from clips4.classes import class_folds
from clips4.clip.loading import compute_device, load_project_clip
from clips4.data.layouts import open_dataset
from clips4.data.splits import require_images
from clips4.errors import Clips4Error
from clips4.inference.language import language_classes
from clips4.io import atomic_write
from clips4.params import Params
from clips4.paths import DEFAULT_CACHE_DIR, MODELS_DIR, REPORTS_DIR
from clips4.report.compose import FIGURE_FILES, ImageFigureInputs, draw_image_figures
from clips4.report.encoders import STUDENT_FILES, build_methods
from clips4.report.inputs import read_results
from clips4.report.markdown import render_report
from clips4.report.tables import METHOD_TITLES, metrics_table, per_class_table
from clips4.report.video import draw_video_figure

#: Figures' folder inside the reports folder, and how report.md links it.
FIGURES_SUBDIR = "figures/report"


@dataclass(frozen=True, kw_only=True)
class ReportResult:
    report: Path
    figures: tuple[Path, ...]
    methods: tuple[str, ...]  # the methods whose models ran for the figures
    not_drawn: tuple[str, ...]  # titles of the figures that could not be drawn


def retrieval_classes(params: Params, class_names: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
    """The class names the retrieval figure searches for, and the words that say which they are: the held-out
    fold when ``fold`` is set, else fold 0's classes (not held out in this run), else the first 4 classes."""
    try:
        folds = class_folds(params)
    except Clips4Error:
        return tuple(class_names[:4]), f"the first 4 classes (no class folds for dataset {params.dataset.name})"
    if params.fold is not None:
        return tuple(folds[params.fold]), f"fold {params.fold}, held out of training in this run"
    return tuple(folds[0]), "fold 0 (no fold is held out in this run: these classes were named in training)"


def settings_lines(params: Params, images: int, classes: int, held_out: tuple[str, ...]) -> list[str]:
    fold = (
        "none (every class named in training)"
        if params.fold is None
        else (f"{params.fold}, held out: {', '.join(held_out)}")
    )
    return [
        f"dataset: {params.dataset.name}, split {params.dataset.val_split!r} ({images} images, {classes} scored "
        "classes)",
        f"CLIP: {params.clip.model} ({params.clip.pretrained} weights), dense mode {params.clip.dense_mode}",
        f"fold: {fold}",
        f"protocol: {params.eval.protocol} (window {params.clip.window}, stride {params.clip.stride})",
    ]


def run_report(
    params: Params,
    *,
    reports_dir: Path | None = None,
    cache_dir: str | None = None,
    models_dir: Path | None = None,
) -> ReportResult:
    """Write ``reports_dir``/report.md and its figures; see the module docstring for what is read. The folders
    default to the project's (reports/, data/cache, models/ beside the params file), wherever this runs from."""
    reports_dir = params.project_path(REPORTS_DIR) if reports_dir is None else Path(reports_dir)
    cache_dir = str(params.project_path(DEFAULT_CACHE_DIR)) if cache_dir is None else cache_dir
    models_dir = params.project_path(MODELS_DIR) if models_dir is None else Path(models_dir)
    results = read_results(reports_dir)
    split = params.dataset.val_split
    dataset = open_dataset(params.dataset.name, params.dataset.root, split)
    require_images(params.dataset.name, dataset, split, "val_split")
    classes = language_classes(params.dataset.name, dataset.class_names)
    device = compute_device()
    loaded = load_project_clip(params, device, models_dir=models_dir)
    methods = build_methods(params, loaded, classes, models_dir, device)
    searched, source = retrieval_classes(params, dataset.class_names)
    held_out = searched if params.fold is not None else ()

    figures_dir = reports_dir / FIGURES_SUBDIR
    for stale in FIGURE_FILES.values():  # a figure not drawn this time must not survive from an earlier run
        (figures_dir / stale).unlink(missing_ok=True)
    inputs = ImageFigureInputs(
        dataset=dataset,
        split=split,
        classes=classes,
        methods=methods,
        superpixels=open_complete(f"{cache_dir}/superpixels.zarr", "superpixels", "ucm"),  # type: ignore[arg-type]
        segments=open_complete(f"{cache_dir}/segments.zarr", "segments", "segments"),  # type: ignore[arg-type]
        retrieval_classes=searched,
        retrieval_source=source,
    )
    entries = draw_image_figures(inputs, figures_dir, FIGURES_SUBDIR)
    video_file = figures_dir / FIGURE_FILES["video"]
    entries.append(
        draw_video_figure(
            reports_dir / "davis", Path(params.video.root), video_file, f"{FIGURES_SUBDIR}/{video_file.name}"
        )
    )

    not_run = [
        f"{METHOD_TITLES[name]}: not run (no {models_dir / STUDENT_FILES[name]} and no results in metrics.json)"
        for name in STUDENT_FILES
        if name not in methods and name not in results.metrics
    ]
    text = render_report(
        settings_lines(params, len(dataset), len(classes.names), held_out),
        metrics_table(results.metrics),
        per_class_table(results.per_class, results.metrics, held_out),
        entries,
        notes=[
            "Values as `evaluate` wrote them to metrics.json; `–`: the key does not apply to that method.",
            *not_run,
        ],
    )
    report = reports_dir / "report.md"
    atomic_write(report, text)
    return ReportResult(
        report=report,
        figures=tuple(reports_dir / e.file for e in entries if e.file is not None),
        methods=tuple(methods),
        not_drawn=tuple(e.title for e in entries if e.file is None),
    )

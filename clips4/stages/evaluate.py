"""The ``evaluate`` stage: every available method scored on the val split, with every metric of the paper, into
reports/metrics.json (one block per method, shared/DESIGN.md), reports/per_class_iou.json and the propagated
video masks under reports/davis/<method>/ (the official DAVIS results layout).

One stage writes reports/metrics.json (DVC lets one stage own an output), so this runner scores all methods in
one run: the methods and their blocks are :mod:`clips4.eval.methods`'s, the scores :func:`clips4.eval.scoring.
score_segmenter`'s.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from clips4.classes import class_folds
from clips4.clip.loading import compute_device
from clips4.data.layouts import open_dataset
from clips4.data.splits import require_images
from clips4.eval.methods import (
    METHODS,
    Builder,
    EvalContext,
    is_student,
    metrics_block,
    per_class_rows,
    probe_data,
    probe_settings,
    video_set,
)
from clips4.eval.propagation import PropagationConfig
from clips4.eval.scoring import SegmentationScores, score_segmenter
from clips4.eval.video import propagate_video_set
from clips4.inference.language import language_classes
from clips4.io import atomic_write_json
from clips4.params import Params
from clips4.paths import DEFAULT_CACHE_DIR, MODELS_DIR
from clips4.stages.common import DENSE_STORE, SUPERPIXELS_STORE


@dataclass(frozen=True)
class MethodResult:
    """One method's scores: language-driven, its metrics.json block, and seconds per part."""

    scores: SegmentationScores
    block: dict[str, float]
    seconds: dict[str, float]


@dataclass(frozen=True)
class EvaluateResult:
    methods: dict[str, MethodResult]
    protocol: str
    dense_mode: str
    device: str
    metrics_path: Path | None  # None when nothing was written (a side-by-side run)
    per_class_path: Path | None
    davis_dir: Path | None

    @property
    def scores(self) -> dict[str, SegmentationScores]:
        return {method: result.scores for method, result in self.methods.items()}


def run_evaluate(
    params: Params,
    reports_dir: Path | None,
    dense_mode: str | None = None,
    *,
    cache_dir: Path | None = None,
    models_dir: Path | None = None,
    methods: dict[str, Builder] | None = None,
    split: str | None = None,
) -> EvaluateResult:
    """Score every available method on ``split`` (default ``dataset.val_split``; ``dataset.tune_split`` to choose
    by); write the reports into ``reports_dir`` (the project's: ``params.project_path("reports")``; ``None``: write
    nothing, and propagate the videos into a temporary folder). ``dense_mode`` overrides ``clip.dense_mode``;
    ``cache_dir`` holds superpixels.zarr and clip_dense.zarr (which must hold the split), ``models_dir`` the
    checkpoints (defaults: the project's data/cache and models/, beside the params file, wherever this runs from)."""
    cache_dir = params.project_path(DEFAULT_CACHE_DIR) if cache_dir is None else Path(cache_dir)
    models_dir = params.project_path(MODELS_DIR) if models_dir is None else Path(models_dir)
    mode = dense_mode or params.clip.dense_mode
    split = split or params.dataset.val_split
    val = open_dataset(params.dataset.name, params.dataset.root, split)
    require_images(params.dataset.name, val, split, "val_split" if split == params.dataset.val_split else None)
    classes = language_classes(params.dataset.name, val.class_names)
    held_out = None if params.fold is None else list(class_folds(params)[params.fold])
    probes = probe_settings(params)
    train_count = max(params.eval.knn.train_images, params.eval.linear.train_images)
    train = open_dataset(params.dataset.name, params.dataset.root, params.dataset.train_split) if train_count else []
    videos = video_set(params)
    propagation = PropagationConfig(
        topk=params.video.topk,
        context=params.video.context,
        radius=params.video.radius,
        temperature=params.video.temperature,
    )
    context = EvalContext(params, classes, compute_device(), mode, models_dir)
    segmenters = {name: s for name, build in (methods or METHODS).items() if (s := build(context)) is not None}
    students = any(is_student(s) for s in segmenters.values())
    data = probe_data(
        params,
        context.clip() if students else None,
        superpixels_path=cache_dir / SUPERPIXELS_STORE,
        dense_path=cache_dir / DENSE_STORE,
        split=split,
        train_count=params.eval.knn.train_images,
        avgsim=students,
    )
    davis_dir = None if reports_dir is None else reports_dir / "davis"
    if davis_dir is not None:
        # This run's methods only (a method absent now leaves no masks of an earlier run); the folder exists even
        # without videos, since dvc.yaml declares it as an output.
        shutil.rmtree(davis_dir, ignore_errors=True)
        davis_dir.mkdir(parents=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="clips4-davis-") as scratch:
        for method, segmenter in segmenters.items():
            scores = score_segmenter(
                segmenter,
                val,
                classes,
                where=f"{params.dataset.root} (split {split!r})",
                desc=f"evaluate {method}",
                split_name=split,
                data=data,
                avgsim=is_student(segmenter),
                train=train,
                **probes,
            )
            seconds, davis = dict(scores.seconds), None
            if videos is not None:
                start = time.perf_counter()
                out = (davis_dir if davis_dir is not None else Path(scratch)) / method
                davis = propagate_video_set(
                    segmenter, videos, out, propagation, params.video.stride, desc=f"evaluate {method} videos"
                )
                seconds["davis"] = time.perf_counter() - start
            block = metrics_block(scores, held_out, classes, davis)
            results[method] = MethodResult(scores=scores.language, block=block, seconds=seconds)
    metrics_path = per_class_path = None
    if reports_dir is not None:
        metrics_path, per_class_path = reports_dir / "metrics.json", reports_dir / "per_class_iou.json"
        atomic_write_json(metrics_path, {method: result.block for method, result in results.items()}, durable=True)
        atomic_write_json(per_class_path, per_class_rows({method: result.scores for method, result in results.items()}))
    return EvaluateResult(
        methods=results,
        protocol=params.eval.protocol,
        dense_mode=mode,
        device=str(context.device),
        metrics_path=metrics_path,
        per_class_path=per_class_path,
        davis_dir=davis_dir if videos is not None and reports_dir is not None else None,
    )

"""The ``evaluate`` stage: every available method scored on the val split, with every metric of the paper, into
reports/metrics.json (one block per method, shared/DESIGN.md), reports/per_class_iou.json and the propagated
video masks under reports/davis/<method>/ (the official DAVIS results layout).

One stage writes reports/metrics.json (DVC lets one stage own an output), so this runner scores all methods in
one run. A method is a builder in :data:`METHODS` that returns a segmenter, or ``None`` when it does not apply
to this run (e.g. a student before its stage has written the checkpoint); a method that does not run gets no
block. Keys that do not apply are left out of a block, never filled with placeholders:

- ``miou``, ``pacc``: language-driven segmentation (always);
- ``miou_known``, ``miou_unknown``, ``hiou``: only when ``fold`` is set (:mod:`clips4.eval.class_free`);
- ``knn_miou``, ``linear_miou``: the Table 4 probes, unless ``eval.knn.train_images`` / ``eval.linear.train_images``
  is 0;
- ``davis_j_mean``, ``davis_f_mean``: mask propagation over ``video`` (unless ``video.name`` is ``none``);
- ``avgsim``: students only (a cosine; every other value is in percent).
Percentages are rounded to 2 decimals, avgsim to 4.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clips4.clip.loading import LoadedClip, compute_device, load_clip
from clips4.data.layouts import open_dataset
from clips4.data.splits import require_images
from clips4.errors import Clips4Error
from clips4.eval.class_free import class_free_scores
from clips4.eval.davis import DavisSummary
from clips4.eval.language import LanguageClasses, language_classes
from clips4.eval.linear import LinearProbeConfig
from clips4.eval.maskclip import MaskClipSegmenter
from clips4.eval.method_scores import ImageScores, KnnSettings, ProbeData, score_images
from clips4.eval.metrics import per_class_iou
from clips4.eval.protocol import reading_options
from clips4.eval.scoring import SegmentationScores, scores_from_confusion
from clips4.eval.student import StudentSegmenter, check_teacher
from clips4.params import Params


@dataclass
class EvalContext:
    """What every method's builder gets: the classes to score (with prompt names), where to run, the folder of the
    checkpoints, and the CLIP teacher (loaded once, on first use)."""

    params: Params
    classes: LanguageClasses
    device: torch.device
    dense_mode: str
    models_dir: Path = Path("models")
    _clip: LoadedClip | None = field(default=None, repr=False)

    def clip(self) -> LoadedClip:
        if self._clip is None:
            pretrained = self.params.clip.pretrained
            if pretrained == "synth" and self.models_dir != Path("models"):
                pretrained = str(self.models_dir / "clip.pt")  # the tiny CLIP that clip_pretrain wrote there
            self._clip = load_clip(self.params.clip.model, pretrained, device=self.device)
        return self._clip


Builder = Callable[[EvalContext], "MaskClipSegmenter | StudentSegmenter | None"]


def build_maskclip(context: EvalContext) -> MaskClipSegmenter:
    return MaskClipSegmenter(
        context.clip(), context.classes, dense_mode=context.dense_mode, **reading_options(context.params)
    )


def check_fold(checkpoint: dict, fold: int | None, path: Path) -> None:
    """A student scored on a fold's held-out classes must have been trained without them (and the reverse)."""
    trained = checkpoint.get("params", {})
    if isinstance(trained, dict) and "fold" in trained and trained["fold"] != fold:
        raise Clips4Error(
            f"{path}: trained with fold {trained['fold']}, but params.yaml has fold {fold}; its class-free scores "
            "would be wrong: set fold to the one it was trained with, or retrain (`dvc repro`)"
        )


def student_builder(filename: str) -> Builder:
    """The builder of a student scored like CLIP-S4 from ``<models_dir>/<filename>`` (a checkpoint in
    clips4/train/checkpoint.py's format), labelled by CLIP's text embeddings; it builds ``None`` while the file
    does not exist, so the method gets no block."""

    def build(context: EvalContext) -> StudentSegmenter | None:
        path = context.models_dir / filename
        if not path.is_file():
            return None
        from clips4.train.checkpoint import load_student

        student, checkpoint = load_student(path, context.device)
        check_teacher(checkpoint, context.clip(), path)
        check_fold(checkpoint, context.params.fold, path)
        return StudentSegmenter(student, context.clip(), context.classes, **reading_options(context.params))

    build.__name__ = f"build_{Path(filename).stem}"
    return build


build_clips4 = student_builder("clips4.pt")

#: Method name -> builder; a builder returns None when its method does not apply to this run. ``maskclip_plus`` is
#: the MaskCLIP+-style baseline (the student trained on MaskCLIP's pseudo-labels, stage ``train_maskclip_plus``).
METHODS: dict[str, Builder] = {
    "maskclip": build_maskclip,
    "clips4": build_clips4,
    "maskclip_plus": student_builder("maskclip_plus.pt"),
}

#: Keys of a method's block, in order (shared/DESIGN.md); a block holds those that apply.
METRIC_KEYS = (
    "miou",
    "pacc",
    "miou_known",
    "miou_unknown",
    "hiou",
    "knn_miou",
    "linear_miou",
    "davis_j_mean",
    "davis_f_mean",
    "avgsim",
)


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


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def per_class_rows(scores: dict[str, SegmentationScores]) -> list[dict[str, Any]]:
    """One row per class, ``{"class": name, <method>: IoU, ...}`` (a method's class without IoU is left out),
    the record list ``dvc plots`` reads."""
    names = next(iter(scores.values())).per_class if scores else {}
    rows = []
    for name in names:
        row: dict[str, Any] = {"class": name}
        row.update({method: s.per_class[name] for method, s in scores.items() if s.per_class[name] is not None})
        rows.append(row)
    return rows


def metrics_block(
    scores: SegmentationScores,
    image_scores: ImageScores,
    held_out: list[str] | None,
    classes: LanguageClasses,
    davis: DavisSummary | None,
) -> dict[str, float]:
    """The metrics.json block of one method: the keys of :data:`METRIC_KEYS` that apply, rounded."""
    values: dict[str, float | None] = {"miou": scores.miou, "pacc": scores.pacc}
    if held_out is not None:
        class_free = class_free_scores(per_class_iou(image_scores.confusion), classes.names, held_out)
        values |= {
            "miou_known": class_free.miou_known,
            "miou_unknown": class_free.miou_unknown,
            "hiou": class_free.hiou,
        }
    values |= {"knn_miou": image_scores.knn_miou, "linear_miou": image_scores.linear_miou}
    if davis is not None:
        values |= {"davis_j_mean": davis.j_mean, "davis_f_mean": davis.f_mean}
    block = {key: round(float(values[key]), 2) for key in METRIC_KEYS if values.get(key) is not None}
    if image_scores.avgsim is not None:
        block["avgsim"] = round(image_scores.avgsim, 4)
    for key, value in block.items():
        if not np.isfinite(value):  # a NaN or infinite score is a bug upstream, never a result
            raise Clips4Error(f"evaluate: {key} is {value}; nothing was written")
    return block


def _split_rows(store: Any, split: str, count: int, path: str) -> list[Any]:
    """``store.image(row)`` for the first ``count`` images of ``split`` (one chunk read at a time)."""
    from clips4.cache.store import StoreError

    if split not in store.splits:
        raise StoreError(f"{path}: no split {split!r}; rebuild the caches for this dataset (dvc repro)")
    first, stop = store.splits[split]
    stop = min(stop, first + count)
    rows = list(store.iter_rows(first, stop))
    if [row for row, _ in rows] != list(range(first, stop)):
        raise StoreError(f"{path}: rows {first}..{stop - 1} are not all written; finish the store (dvc repro)")
    return [value for _, value in rows]


def probe_data(params: Params, context: EvalContext, cache_dir: Path, train_count: int, students: bool) -> ProbeData:
    """The cached superpixels (kNN probe, avgsim) and CLIP features (avgsim) that this run reads."""
    import clips4.cache

    needs_superpixels = students or params.eval.knn.train_images > 0
    if not needs_superpixels:
        return ProbeData()
    superpixels_path = str(cache_dir / "superpixels.zarr")
    superpixels = clips4.cache.open(superpixels_path)
    val_split = params.dataset.val_split
    val_count = superpixels.splits.get(val_split, (0, 0))[1] - superpixels.splits.get(val_split, (0, 0))[0]
    data = ProbeData(
        train_superpixels=[
            s.labels for s in _split_rows(superpixels, params.dataset.train_split, train_count, superpixels_path)
        ]
        if params.eval.knn.train_images > 0
        else None,
        val_superpixels=[s.labels for s in _split_rows(superpixels, val_split, val_count, superpixels_path)],
    )
    if not students:
        return data
    dense_path = str(cache_dir / "clip_dense.zarr")
    dense = clips4.cache.open(dense_path)
    built_with = dense.attrs.get("weights_sha256")
    if context.clip().sha256 is not None and built_with != context.clip().sha256:
        raise Clips4Error(
            f"{dense_path}: built with CLIP weights {built_with}, but clip.* now loads {context.clip().sha256}; "
            "avgsim compares the student with that CLIP: rerun `dvc repro` so that caches and models share one CLIP"
        )
    return ProbeData(
        train_superpixels=data.train_superpixels,
        val_superpixels=data.val_superpixels,
        val_clip_dense=_split_rows(dense, val_split, val_count, dense_path),
        feature_stride=dense.feature_stride,
    )


def _video_set(params: Params):
    if params.video.name == "none":
        return None
    from clips4.data.davis import open_davis
    from clips4.errors import DatasetError

    try:
        return open_davis(params.video.root, params.video.split)
    except DatasetError as err:
        raise DatasetError(
            f"video.root: {err}; point video.root at the videos (DAVIS 2017 layout) or set video.name: none",
            params.video.root,
        ) from None


def run_evaluate(
    params: Params,
    reports_dir: Path | None = Path("reports"),
    dense_mode: str | None = None,
    *,
    cache_dir: Path = Path("data/cache"),
    models_dir: Path = Path("models"),
    methods: dict[str, Builder] | None = None,
) -> EvaluateResult:
    """Score every available method on ``dataset.val_split``; write the reports into ``reports_dir`` (``None``:
    write nothing, and propagate the videos into a temporary folder). ``dense_mode`` overrides
    ``clip.dense_mode``; ``cache_dir`` holds superpixels.zarr and clip_dense.zarr, ``models_dir`` the checkpoints."""
    import tempfile

    from clips4.eval.propagation import PropagationConfig
    from clips4.eval.video import propagate_video_set
    from clips4.stages.prototypes import class_folds

    mode = dense_mode or params.clip.dense_mode
    split = params.dataset.val_split
    val = open_dataset(params.dataset.name, params.dataset.root, split)
    require_images(params.dataset.name, val, split, "val_split")
    classes = language_classes(params.dataset.name, val.class_names)
    held_out = None if params.fold is None else list(class_folds(params)[params.fold])
    knn, linear = params.eval.knn, params.eval.linear
    train_count = max(knn.train_images, linear.train_images)
    train = open_dataset(params.dataset.name, params.dataset.root, params.dataset.train_split) if train_count else []
    videos = _video_set(params)
    propagation = PropagationConfig(
        topk=params.video.topk,
        context=params.video.context,
        radius=params.video.radius,
        temperature=params.video.temperature,
    )
    context = EvalContext(params, classes, compute_device(), mode, Path(models_dir))
    segmenters = {}
    for method, build in (methods or METHODS).items():
        segmenter = build(context)
        if segmenter is not None:
            segmenters[method] = segmenter
    students = any(isinstance(s, StudentSegmenter) for s in segmenters.values())
    data = probe_data(params, context, Path(cache_dir), knn.train_images, students)
    davis_dir = None if reports_dir is None else reports_dir / "davis"
    if davis_dir is not None:
        # This run's methods only (a method absent now leaves no masks of an earlier run); the folder exists even
        # without videos, since dvc.yaml declares it as an output.
        shutil.rmtree(davis_dir, ignore_errors=True)
        davis_dir.mkdir(parents=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="clips4-davis-") as scratch:
        for method, segmenter in segmenters.items():
            image_scores = score_images(
                segmenter,
                train,
                val,
                classes,
                data,
                student=isinstance(segmenter, StudentSegmenter),
                knn=KnnSettings(knn.train_images, knn.k, knn.clusters, params.seed) if knn.train_images else None,
                linear=(
                    linear.train_images,
                    LinearProbeConfig(linear.pixels_per_image, linear.steps, linear.weight_decay, params.seed),
                )
                if linear.train_images
                else None,
                where=f"{params.dataset.root} (split {split!r})",
                desc=f"evaluate {method}",
            )
            davis = None
            if videos is not None:
                start = time.perf_counter()
                out = (davis_dir if davis_dir is not None else Path(scratch)) / method
                davis = propagate_video_set(
                    segmenter, videos, out, propagation, params.video.stride, desc=f"evaluate {method} videos"
                )
                image_scores.seconds["davis"] = time.perf_counter() - start
            scores = scores_from_confusion(image_scores.confusion, classes.names, image_scores.images)
            block = metrics_block(scores, image_scores, held_out, classes, davis)
            results[method] = MethodResult(scores, block, dict(image_scores.seconds))
    metrics_path = per_class_path = None
    if reports_dir is not None:
        metrics_path, per_class_path = reports_dir / "metrics.json", reports_dir / "per_class_iou.json"
        _write_json(metrics_path, {method: result.block for method, result in results.items()})
        _write_json(per_class_path, per_class_rows({method: result.scores for method, result in results.items()}))
    return EvaluateResult(
        methods=results,
        protocol=params.eval.protocol,
        dense_mode=mode,
        device=str(context.device),
        metrics_path=metrics_path,
        per_class_path=per_class_path,
        davis_dir=davis_dir if videos is not None and reports_dir is not None else None,
    )

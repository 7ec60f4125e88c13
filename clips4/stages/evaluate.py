"""The ``evaluate`` stage: every available method segments the val split by language, scored against the ground
truth, into reports/metrics.json (one block per method, shared/DESIGN.md) and reports/per_class_iou.json.

One stage writes reports/metrics.json (DVC lets one stage own an output), so this runner scores all methods in
one run. A method is a builder in :data:`METHODS` that returns a segmenter, or ``None`` when it does not apply
to this run (e.g. the student before ``train`` has written its checkpoint); a method that does not run gets no
block. Keys that do not apply are left out of a block, never filled with placeholders.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from clips4.clip.loading import compute_device, load_clip
from clips4.data.layouts import open_dataset
from clips4.data.splits import require_images
from clips4.eval.language import LanguageClasses, language_classes
from clips4.eval.maskclip import MaskClipSegmenter
from clips4.eval.scoring import SegmentationScores, Segmenter, score_segmenter
from clips4.eval.student import StudentSegmenter, check_teacher
from clips4.params import Params


@dataclass(frozen=True)
class EvalContext:
    """What every method's builder gets: the classes to score (with prompt names) and where to run."""

    classes: LanguageClasses
    device: torch.device
    dense_mode: str


def build_maskclip(params: Params, context: EvalContext) -> Segmenter | None:
    loaded = load_clip(params.clip.model, params.clip.pretrained, device=context.device)
    return MaskClipSegmenter(
        loaded,
        context.classes,
        protocol=params.eval.protocol,
        dataset_name=params.dataset.name,
        window=params.clip.window,
        stride=params.clip.stride,
        dense_mode=context.dense_mode,
    )


#: The trained student, written by the ``train`` stage.
STUDENT_CHECKPOINT = Path("models/clips4.pt")


def build_clips4(params: Params, context: EvalContext) -> Segmenter | None:
    """The CLIP-S4 student, labelled by CLIP's text embeddings; ``None`` before ``train`` has written it."""
    if not STUDENT_CHECKPOINT.is_file():
        return None
    from clips4.train.checkpoint import load_student

    student, checkpoint = load_student(STUDENT_CHECKPOINT, context.device)
    loaded = load_clip(params.clip.model, params.clip.pretrained, device=context.device)
    check_teacher(checkpoint, loaded, STUDENT_CHECKPOINT)
    return StudentSegmenter(
        student,
        loaded,
        context.classes,
        protocol=params.eval.protocol,
        dataset_name=params.dataset.name,
        window=params.clip.window,
        stride=params.clip.stride,
    )


#: Method name -> builder; a builder returns None when its method does not apply to this run.
METHODS: dict[str, Callable[[Params, EvalContext], Segmenter | None]] = {
    "maskclip": build_maskclip,
    "clips4": build_clips4,
}


@dataclass(frozen=True)
class EvaluateResult:
    scores: dict[str, SegmentationScores]
    protocol: str
    dense_mode: str
    device: str
    metrics_path: Path | None  # None when nothing was written (a side-by-side run)
    per_class_path: Path | None


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


def run_evaluate(
    params: Params, reports_dir: Path | None = Path("reports"), dense_mode: str | None = None
) -> EvaluateResult:
    """Score every available method on ``dataset.val_split``; write the reports into ``reports_dir`` (``None``:
    write nothing). ``dense_mode`` overrides ``clip.dense_mode``."""
    mode = dense_mode or params.clip.dense_mode
    split = params.dataset.val_split
    dataset = open_dataset(params.dataset.name, params.dataset.root, split)
    require_images(params.dataset.name, dataset, split, "val_split")
    context = EvalContext(language_classes(params.dataset.name, dataset.class_names), compute_device(), mode)
    scores = {}
    for method, build in METHODS.items():
        segmenter = build(params, context)
        if segmenter is not None:
            where = f"{params.dataset.root} (split {split!r})"
            scores[method] = score_segmenter(segmenter, dataset, context.classes, where, desc=f"evaluate {method}")
    metrics_path = per_class_path = None
    if reports_dir is not None:
        metrics_path, per_class_path = reports_dir / "metrics.json", reports_dir / "per_class_iou.json"
        _write_json(metrics_path, {method: {"miou": s.miou, "pacc": s.pacc} for method, s in scores.items()})
        _write_json(per_class_path, per_class_rows(scores))
    return EvaluateResult(
        scores=scores,
        protocol=params.eval.protocol,
        dense_mode=mode,
        device=str(context.device),
        metrics_path=metrics_path,
        per_class_path=per_class_path,
    )

"""Evaluation: segmentation metrics (mmsegmentation's conventions), language-driven classes and prompts,
the test-time protocols, scorers, and the MaskCLIP baseline. The ``evaluate`` stage (clips4/stages/evaluate.py)
runs them.

The names below are imported on first use (PEP 562), so that ``clips4.eval.metrics``, which the superpixel
quality report also uses, stays a numpy-only import and does not load torch or open_clip.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "confusion_matrix": "metrics",
    "mean_iou": "metrics",
    "per_class_iou": "metrics",
    "pixel_accuracy": "metrics",
    "UNPROMPTED_LABELS": "language",
    "LanguageClasses": "language",
    "language_classes": "language",
    "segment_with_text": "language",
    "PROTOCOLS": "protocol",
    "TEST_SCALES": "protocol",
    "protocol_features": "protocol",
    "rescale_size": "protocol",
    "SegmentationScores": "scoring",
    "Segmenter": "scoring",
    "score_segmenter": "scoring",
    "scores_from_confusion": "scoring",
    "MaskClipSegmenter": "maskclip",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)

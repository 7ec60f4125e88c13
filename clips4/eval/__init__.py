"""Evaluation: segmentation metrics (mmsegmentation's conventions), the one scorer (:mod:`clips4.eval.scoring`),
the probes, video propagation, and the methods ``evaluate`` scores (:mod:`clips4.eval.methods`). The
``evaluate`` stage (clips4/stages/evaluate.py) runs them; segmenters come from :mod:`clips4.inference`.

The names below are imported on first use (PEP 562), so that importing one module does not load torch and
open_clip for the others. The metrics themselves live in :mod:`clips4.ops.metrics` (numpy only), which the
superpixels' quality report shares.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SegmentationScores": "scoring",
    "SplitScores": "scoring",
    "score_segmenter": "scoring",
    "scores_from_confusion": "scoring",
    "METHODS": "methods",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)

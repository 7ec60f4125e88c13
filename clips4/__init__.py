"""clips4: CLIP-S4 language-guided self-supervised semantic segmentation, as reproducible software."""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("clips4")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

#: Imported on first use, so that ``import clips4`` (and ``clips4 --help``) does not load torch.
_LAZY = {"Segmenter": "clips4.inference.segmenter", "SegmentResult": "clips4.inference.segmenter"}

__all__ = ["SegmentResult", "Segmenter", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'clips4' has no attribute {name!r}")

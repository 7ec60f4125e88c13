"""Inference: segment any image with any class names (``Segmenter``), write its pictures, serve a web page."""

from clips4.inference.reading import ReadSettings
from clips4.inference.segmenter import UNLABELLED, Segmenter, SegmentResult, parse_classes

__all__ = ["UNLABELLED", "ReadSettings", "SegmentResult", "Segmenter", "parse_classes"]

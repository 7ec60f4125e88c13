"""Boundary quality (BSDS-style ODS P/R/F and AP) and time per image of the contour detectors on synth val.

Usage (single-threaded, from the repository root):

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/bench_boundary_quality.py [N]

N: the first N images of data/synth's val split (default 200). Detectors: ``pmi`` and ``gradient``
(``clips4.superpixels.contours.detect_gradient``; skipped, with a note, if that module cannot be imported yet).
Scoring: clips4.superpixels.quality -- ground-truth boundaries are label changes (void excluded), predicted pixels
(strength >= t, 25 thresholds) are matched one-to-one to them within tolerance_px (0.0075 x diagonal, >= 1 px),
counts summed over the images, ODS = the best single threshold. Time per image covers detection only; the scoring
time is printed separately.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np

from clips4.data.layouts import open_dataset
from clips4.params import ContourParams
from clips4.superpixels.contours import detect_gradient
from clips4.superpixels.pmi import detect_pmi
from clips4.superpixels.quality import DEFAULT_THRESHOLDS, boundary_counts, boundary_map, ods, tolerance_px
from clips4.superpixels.types import ContourMap

Detector = Callable[[np.ndarray], ContourMap]


def detectors() -> dict[str, Detector]:
    """The detectors to score."""
    return {
        "pmi": lambda image: detect_pmi(image, ContourParams(method="pmi")),
        "gradient": lambda image: detect_gradient(image, ContourParams(method="gradient")),
    }


def main(n_images: int = 200) -> None:
    dataset = open_dataset("synth", "data/synth", "val")
    n_images = min(n_images, len(dataset))
    methods = detectors()
    counts = {name: np.zeros((len(DEFAULT_THRESHOLDS), 4), np.int64) for name in methods}
    detect_time = dict.fromkeys(methods, 0.0)
    score_time = 0.0
    for detect in methods.values():  # warm-up (imports, caches), not timed
        detect(dataset[0].image)
    shape: tuple[int, ...] = ()
    for index in range(n_images):
        sample = dataset[index]
        shape = sample.label.shape
        gt = boundary_map(sample.label)
        tolerance = tolerance_px(shape)
        for name, detect in methods.items():
            t0 = time.perf_counter()
            strength = detect(sample.image).strength
            t1 = time.perf_counter()
            counts[name] += boundary_counts(strength, gt, DEFAULT_THRESHOLDS, tolerance)
            detect_time[name] += t1 - t0
            score_time += time.perf_counter() - t1

    print(
        f"synth val, first {n_images} images of {shape[0]}x{shape[1]}, tolerance {tolerance_px(shape):.2f} px, "
        f"{len(DEFAULT_THRESHOLDS)} thresholds, one-to-one matching"
    )
    print(f"{'detector':10s} {'P':>6s} {'R':>6s} {'ODS-F':>6s} {'thresh':>6s} {'AP':>6s} {'s/image':>8s}")
    for name in methods:
        r = ods(counts[name], DEFAULT_THRESHOLDS)
        print(
            f"{name:10s} {r['precision']:6.3f} {r['recall']:6.3f} {r['f']:6.3f} {r['threshold']:6.2f} "
            f"{r['ap']:6.3f} {detect_time[name] / n_images:8.4f}"
        )
    n_maps = n_images * len(methods)
    print(f"scoring: {score_time:.2f} s for {n_maps} maps x {len(DEFAULT_THRESHOLDS)} thresholds")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)

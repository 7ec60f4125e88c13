"""Throughput per core of contour detection, OWT-UCM, and both, for the gradient and pmi detectors.

    python benchmarks/bench_segments.py                          # 50 synth val images (96x96) + 5 at 500x375
    python benchmarks/bench_segments.py --small 200 --large 10 --methods gradient

Single thread: the script sets OMP/OPENBLAS/MKL_NUM_THREADS to 1 before numpy is imported, so the numbers are
images/s on *one* core (scipy.ndimage and higra are single-threaded anyway). Two image sets:

- ``96x96``: the first ``--small`` images of the synth val split (``--root``, default data/synth);
- ``500x375``: synth-world scenes rendered at 500x500 by ``clips4.data.synth.generate_image`` (same textures and
  shapes at the same pixel scale, so more structure than an upscaled 96x96 image) and cropped to 375 rows.

"contours" is ``detect_contours``; "ucm" is ``owt_ucm`` + ``edge_saliency()`` + one ``cut(regions=32)`` on the
stored contour maps; "both" is the two in sequence, timed end to end. Each is preceded by one untimed warm-up call.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402

from clips4.data.layouts import open_dataset  # noqa: E402
from clips4.data.synth import generate_image  # noqa: E402
from clips4.params import ContourParams, SynthParams  # noqa: E402
from clips4.superpixels.contours import detect_contours  # noqa: E402
from clips4.superpixels.types import ContourMap  # noqa: E402
from clips4.superpixels.ucm import owt_ucm  # noqa: E402

REGIONS = 32


def large_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` synth-world scenes rendered at 500x500, cropped to 375x500."""
    params = SynthParams(image_size=500)
    return [generate_image(params, seed, "val", i).image[:375] for i in range(n)]


def small_images(root: str, n: int) -> list[np.ndarray]:
    dataset = open_dataset("synth", root, "val")
    return [dataset[i].image for i in range(min(n, len(dataset)))]


def ucm_step(contours: ContourMap) -> np.ndarray:
    ucm = owt_ucm(contours)
    ucm.edge_saliency()
    return ucm.cut(regions=REGIONS)


def per_second(fn: Callable[[object], object], items: Sequence[object]) -> float:
    """Items per second of ``fn`` over ``items`` (after one warm-up call)."""
    fn(items[0])
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def bench(label: str, images: list[np.ndarray], method: str) -> None:
    params = ContourParams(method=method)
    maps = [detect_contours(image, params) for image in images]
    contours = per_second(lambda image: detect_contours(image, params), images)
    ucm = per_second(ucm_step, maps)
    both = per_second(lambda image: ucm_step(detect_contours(image, params)), images)
    print(
        f"{label:8s} {method:9s} {len(images):4d} images | images/s per core: contours {contours:7.1f}  "
        f"ucm {ucm:7.1f}  both {both:7.1f}  ({1000 / both:6.1f} ms/image)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=50, help="synth val images (96x96)")
    parser.add_argument("--large", type=int, default=5, help="generated 500x375 images")
    parser.add_argument("--methods", nargs="+", default=["gradient", "pmi"], choices=["gradient", "pmi"])
    parser.add_argument("--root", default="data/synth", help="the synth world (Pascal VOC layout)")
    args = parser.parse_args()
    sets = []
    if args.small > 0:
        sets.append(("96x96", small_images(args.root, args.small)))
    if args.large > 0:
        sets.append(("500x375", large_images(args.large)))
    for label, images in sets:
        for method in args.methods:
            bench(label, images, method)


if __name__ == "__main__":
    main()

"""kNN-over-segments and linear-probe mIoU and time on a segmentation dataset, with a model-free feature.

Usage (from the repository root):

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_probes.py [ROOT] [TRAIN_IMAGES] [VAL_IMAGES]

ROOT is a dataset in the synth layout (default data/synth). The feature is each 8 x 8 cell's mean RGB, centred
and unit-normalised, and the superpixels are SLIC's (32 per image): a floor that checks the probes' mechanics and
cost at the pipeline's sizes, not a number from the paper. CLIP or student features replace ``colour_features``.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from skimage.segmentation import slic

from clips4.data.layouts import open_dataset
from clips4.eval.knn import evaluate_knn
from clips4.eval.linear import LinearProbeConfig, evaluate_linear
from clips4.eval.probe_inputs import DenseItem


def colour_features(image: np.ndarray) -> torch.Tensor:
    rgb = torch.tensor(image).permute(2, 0, 1).float() / 255.0 - 0.5  # a copy: decoded images are read-only
    return F.normalize(F.avg_pool2d(rgb[None], 8, ceil_mode=True)[0], dim=0)


def items(root: str, split: str, count: int) -> list[DenseItem]:
    dataset = open_dataset("synth", root, split)
    out = []
    for index in range(min(count, len(dataset))):
        sample = dataset[index]
        superpixels = slic(sample.image, n_segments=32, start_label=0)
        out.append(DenseItem(colour_features(sample.image), sample.label, superpixels))
    return out


def main() -> None:
    root = sys.argv[1] if len(sys.argv) > 1 else "data/synth"
    train_count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    val_count = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    start = time.perf_counter()
    train, val = items(root, "train", train_count), items(root, "val", val_count)
    num_classes = len(open_dataset("synth", root, "val").class_names)
    print(
        f"{len(train)} train, {len(val)} val images, {num_classes} classes: inputs {time.perf_counter() - start:.1f} s"
    )
    start = time.perf_counter()
    knn = evaluate_knn(train, val, num_classes)
    print(
        f"kNN     mIoU {knn.miou:5.1f}  ({knn.train_segments} train / {knn.val_segments} val segments)"
        f"  {time.perf_counter() - start:.1f} s"
    )
    start = time.perf_counter()
    linear = evaluate_linear(train, val, num_classes, LinearProbeConfig())
    print(f"linear  mIoU {linear.miou:5.1f}  ({linear.train_pixels} train pixels)  {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()

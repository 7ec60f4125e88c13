"""kNN-over-segments and linear-probe mIoU and time on a segmentation dataset, with a model-free feature.

Usage (from the repository root):

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_probes.py [ROOT] [TRAIN_IMAGES] [VAL_IMAGES] [CLIP]

ROOT is a dataset in the synth layout (default data/synth). The superpixels are SLIC's (32 per image). The
features are each 8 x 8 cell's mean RGB, centred and unit-normalised (a model-free floor that checks the probes'
mechanics and cost at the pipeline's sizes), and, when CLIP (a tiny-CLIP checkpoint, model clips4-tiny-vit) is
given, MaskCLIP's dense features of that model.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

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


def clip_features(checkpoint: str) -> Callable[[np.ndarray], torch.Tensor]:
    from clips4.clip.dense import dense_clip_features, normalize_images, to_rgb_batch
    from clips4.clip.loading import load_clip

    loaded = load_clip("clips4-tiny-vit", checkpoint)
    loaded.model.eval()

    @torch.no_grad()
    def features(image: np.ndarray) -> torch.Tensor:
        batch = normalize_images(to_rgb_batch(image), loaded.mean, loaded.std)
        return dense_clip_features(loaded.model, batch)[0].permute(2, 0, 1)

    return features


def items(root: str, split: str, count: int, extractors: dict) -> dict[str, list[DenseItem]]:
    dataset = open_dataset("synth", root, split)
    out: dict[str, list[DenseItem]] = {name: [] for name in extractors}
    for index in range(min(count, len(dataset))):
        sample = dataset[index]
        superpixels = slic(sample.image, n_segments=32, start_label=0)
        for name, extract in extractors.items():
            out[name].append(DenseItem(extract(sample.image), sample.label, superpixels))
    return out


def main() -> None:
    root = sys.argv[1] if len(sys.argv) > 1 else "data/synth"
    train_count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    val_count = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    extractors: dict[str, Callable[[np.ndarray], torch.Tensor]] = {"colour": colour_features}
    if len(sys.argv) > 4:
        extractors["maskclip"] = clip_features(sys.argv[4])
    start = time.perf_counter()
    train, val = items(root, "train", train_count, extractors), items(root, "val", val_count, extractors)
    num_classes = len(open_dataset("synth", root, "val").class_names)
    seconds = time.perf_counter() - start
    print(f"{train_count} train, {val_count} val images, {num_classes} classes: inputs {seconds:.1f} s")
    for name in extractors:
        start = time.perf_counter()
        knn = evaluate_knn(train[name], val[name], num_classes)
        print(
            f"{name:8s} kNN     mIoU {knn.miou:5.1f}  ({knn.train_segments} train / {knn.val_segments} val segments)"
            f"  {time.perf_counter() - start:.1f} s"
        )
        start = time.perf_counter()
        linear = evaluate_linear(train[name], val[name], num_classes, LinearProbeConfig())
        seconds = time.perf_counter() - start
        print(f"{name:8s} linear  mIoU {linear.miou:5.1f}  ({linear.train_pixels} train pixels)  {seconds:.1f} s")


if __name__ == "__main__":
    main()

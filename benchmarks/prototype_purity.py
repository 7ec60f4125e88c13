"""How often the top-m segments behind each known-class prototype really belong to that class (synthetic world).

For every known class, the ground-truth class of each of its top-m segments is the majority label of the
segment's pixels (ignore 255): a superpixel's (``prototypes.source: superpixels``), or a k-means cluster's of
CLIP's features (``clip_kmeans``, the default: the clusters are recomputed as the prototypes stage made them, and
each feature stands for the pixel at its patch's centre); purity = the share whose class is the prototype's class.
Also for the unknown prototypes: the spread of their segments' classes. Reads the caches that `dvc repro` built.

Usage (from the project root, after `dvc repro`):  python benchmarks/prototype_purity.py
    [--params params.yaml] [--cache-dir data/cache]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import clips4.cache
from clips4.clip_kmeans import image_clusters
from clips4.data.layouts import open_dataset
from clips4.params import load_params


def segment_classes(rows: np.ndarray, segments, superpixels, params) -> np.ndarray:
    """Majority ground-truth class of each segment row (255 where the superpixel has no labelled pixel)."""
    dataset = open_dataset(params.dataset.name, params.dataset.root, params.dataset.train_split)
    offsets = segments.offsets
    images = np.searchsorted(offsets, rows, side="right") - 1
    classes = np.full(len(rows), 255, np.int64)
    for k, (row, image) in enumerate(zip(rows.tolist(), images.tolist(), strict=True)):
        labels = superpixels.image(image).labels
        truth = dataset.read_label(image)
        inside = (labels == row - offsets[image]) & (truth != 255)
        if inside.any():
            classes[k] = np.bincount(truth[inside]).argmax()
    return classes


def cluster_classes(rows: np.ndarray, dense, params, expected_rows: int) -> np.ndarray:
    """Majority ground-truth class of each clip_kmeans segment row, the clusters recomputed in the prototypes
    stage's order (one generator over the train images, seeded with ``seed``)."""
    dataset = open_dataset(params.dataset.name, params.dataset.root, params.dataset.train_split)
    wanted = set(rows.tolist())
    generator = torch.Generator().manual_seed(params.seed)
    first, stop = dense.splits[params.dataset.train_split]
    found: dict[int, int] = {}
    next_row = 0
    for row, features in dense.iter_rows(first, stop):
        _, assignment = image_clusters(features, params.prototypes.clusters, generator)
        count = int(assignment.max()) + 1
        hits = [r for r in range(next_row, next_row + count) if r in wanted]
        if hits:
            truth = dataset.read_label(row - first)
            stride = truth.shape[0] // assignment.shape[0]
            centres = truth[stride // 2 :: stride, stride // 2 :: stride][: assignment.shape[0], : assignment.shape[1]]
            for r in hits:
                inside = (assignment == r - next_row) & (centres != 255)
                found[r] = int(np.bincount(centres[inside]).argmax()) if inside.any() else 255
        next_row += count
    if next_row != expected_rows:  # not the clusters the prototypes were searched among
        raise SystemExit(f"recomputed {next_row} clusters, the prototypes store has {expected_rows}: rerun dvc repro")
    return np.array([found.get(r, 255) for r in rows.tolist()], np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--cache-dir", default="data/cache")
    args = parser.parse_args()
    params = load_params(args.params)
    prototypes, segments, superpixels, dense = (
        clips4.cache.open(f"{args.cache_dir}/{name}.zarr")
        for name in ("prototypes", "segments", "superpixels", "clip_dense")
    )
    indices = prototypes.group["known_indices"][:]
    unknown_rows = prototypes.group["unknown_indices"][:]
    every = np.unique(np.concatenate([indices.ravel(), unknown_rows]))
    source = prototypes.attrs.get("source", "superpixels")
    if source == "clip_kmeans":  # one pass over the images for every row wanted
        searched = prototypes.group["segment_image_rows"].shape[0]
        classes = dict(zip(every.tolist(), cluster_classes(every, dense, params, searched).tolist(), strict=True))
    else:
        classes = dict(zip(every.tolist(), segment_classes(every, segments, superpixels, params).tolist(), strict=True))

    def classes_of(rows: np.ndarray) -> np.ndarray:
        return np.array([classes[r] for r in rows.tolist()], np.int64)

    names = open_dataset(params.dataset.name, params.dataset.root, params.dataset.train_split).class_names
    class_ids = prototypes.attrs["known_class_ids"]
    print(f"top_m={indices.shape[1]}  logit_scale={prototypes.attrs['logit_scale']:.2f}  source={source}")
    purities = []
    for name, class_id, rows in zip(prototypes.known_classes, class_ids, indices, strict=True):
        truth = classes_of(rows)
        purity = float((truth == class_id).mean())
        purities.append(purity)
        wrong = [names[c] if c != 255 else "void" for c in truth[truth != class_id]]
        common = max(set(wrong), key=wrong.count) if wrong else "-"
        print(f"  {name:10s} purity {100 * purity:5.1f} %   most common other: {common}")
    print(f"mean purity of the known prototypes' segments: {100 * np.mean(purities):.1f} %")
    unknown = classes_of(unknown_rows)
    spread = np.bincount(unknown[unknown != 255], minlength=len(names))
    print(f"unknown prototypes: {len(unknown)} segments over {int((spread > 0).sum())} of {len(names)} classes")


if __name__ == "__main__":
    main()

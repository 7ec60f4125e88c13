"""How often the top-m segments behind each known-class prototype really belong to that class (synthetic world).

For every known class, the ground-truth class of each of its top-m segments is the majority label of the
superpixel's pixels (ignore 255); purity = the share whose class is the prototype's class. Also for the
unknown prototypes: the spread of their segments' classes. Reads the caches that `dvc repro` built.

Usage (from the project root, after `dvc repro`):  python benchmarks/prototype_purity.py
    [--params params.yaml] [--cache-dir data/cache]
"""

from __future__ import annotations

import argparse

import numpy as np

import clips4.cache
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--cache-dir", default="data/cache")
    args = parser.parse_args()
    params = load_params(args.params)
    prototypes, segments, superpixels = (
        clips4.cache.open(f"{args.cache_dir}/{name}.zarr") for name in ("prototypes", "segments", "superpixels")
    )
    names = open_dataset(params.dataset.name, params.dataset.root, params.dataset.train_split).class_names
    indices = prototypes.group["known_indices"][:]
    class_ids = prototypes.attrs["known_class_ids"]
    print(f"top_m={indices.shape[1]}  logit_scale={prototypes.attrs['logit_scale']:.2f}")
    purities = []
    for name, class_id, rows in zip(prototypes.known_classes, class_ids, indices, strict=True):
        truth = segment_classes(rows, segments, superpixels, params)
        purity = float((truth == class_id).mean())
        purities.append(purity)
        wrong = [names[c] if c != 255 else "void" for c in truth[truth != class_id]]
        common = max(set(wrong), key=wrong.count) if wrong else "-"
        print(f"  {name:10s} purity {100 * purity:5.1f} %   most common other: {common}")
    print(f"mean purity of the known prototypes' segments: {100 * np.mean(purities):.1f} %")
    unknown = segment_classes(prototypes.group["unknown_indices"][:], segments, superpixels, params)
    spread = np.bincount(unknown[unknown != 255], minlength=len(names))
    print(f"unknown prototypes: {len(unknown)} segments over {int((spread > 0).sum())} of {len(names)} classes")


if __name__ == "__main__":
    main()

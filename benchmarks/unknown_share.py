"""Why CLIP's argmax sends segments to the unknown prototypes (issue 20, deliverable 3), and what each way of
drawing the unknowns gives: for the train superpixels of the first ``--images`` train images, CLIP's pseudo-label
over known + unknown prototypes (``clips4.train.losses.pseudo_labels``, the target L_s trains against), and per
ground-truth class (each superpixel's majority pixel label; the unnamed concepts are 255, "unnamed") the share
labelled unknown.

Unknown prototypes compared (all ``unknowns`` rows of unit length, drawn with the params' seed):
- ``random``: the stage's draw, segments uniform over the train split (prototypes.zarr's ``unknown``);
- ``far``: uniform among the 10 % of train segments farthest from every known prototype (lowest max cosine);
- ``far_kmeans``: spherical k-means centres of those far segments;
- each with a margin: a segment is unknown only where its best unknown beats its best known by > ``--margin``.

Usage (from a project after `dvc repro`):  python benchmarks/unknown_share.py [--params params.yaml]
    [--cache-dir data/cache] [--images 300] [--margin 0.05]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

import clips4.cache
from clips4.data.layouts import open_dataset
from clips4.ops.kmeans import spherical_kmeans
from clips4.params import load_params

FAR_SHARE = 0.10  # the farthest tenth of the train segments: the candidates of the `far` draws


def majority_classes(segments, superpixels, dataset, images: int) -> tuple[np.ndarray, np.ndarray]:
    """Store rows of the first ``images`` train images' superpixels and each one's majority pixel label
    (255 counted as a label: mostly-unnamed superpixels are 255)."""
    offsets = segments.offsets
    rows, classes = [], []
    for image in range(images):
        labels = superpixels.image(image).labels
        truth = dataset.read_label(image)
        for local in range(int(offsets[image + 1] - offsets[image])):
            inside = truth[labels == local]
            if inside.size:
                rows.append(offsets[image] + local)
                classes.append(np.bincount(inside, minlength=256).argmax())
    return np.array(rows), np.array(classes)


def unknown_shares(embeddings: torch.Tensor, known: torch.Tensor, unknown: torch.Tensor, margin: float) -> torch.Tensor:
    """Boolean [S]: CLIP's pseudo-label is an unknown prototype (its cosine above the best known by > margin)."""
    best_known = (embeddings @ known.T).max(dim=1).values
    best_unknown = (embeddings @ unknown.T).max(dim=1).values
    return best_unknown > best_known + margin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--cache-dir", default="data/cache")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--margin", type=float, default=0.05)
    args = parser.parse_args()
    params = load_params(args.params)
    prototypes, segments, superpixels = (
        clips4.cache.open(f"{args.cache_dir}/{name}.zarr") for name in ("prototypes", "segments", "superpixels")
    )
    dataset = open_dataset(params.dataset.name, params.dataset.root, params.dataset.train_split)
    names = {i: n for i, n in enumerate(dataset.class_names)} | {255: "unnamed"}
    known = F.normalize(torch.from_numpy(np.asarray(prototypes.group["known"][:], np.float32)), dim=1)
    random_unknown = F.normalize(torch.from_numpy(np.asarray(prototypes.group["unknown"][:], np.float32)), dim=1)
    first, stop = prototypes.attrs["train_segment_rows"]
    every = F.normalize(torch.from_numpy(np.asarray(segments.embeddings[first:stop], np.float32)), dim=1)
    closeness = (every @ known.T).max(dim=1).values
    far = torch.argsort(closeness)[: int(FAR_SHARE * len(every))]
    generator = torch.Generator().manual_seed(params.seed)
    count = len(random_unknown)
    draws = {
        "random": random_unknown,
        "far": every[far[torch.randperm(len(far), generator=generator)[:count]]],
        "far_kmeans": None,
    }
    labels = spherical_kmeans(every[far], count, 10, generator)
    centres = torch.zeros(count, every.shape[1]).index_add_(0, labels, every[far])
    draws["far_kmeans"] = F.normalize(centres[centres.norm(dim=1) > 0], dim=1)

    rows, classes = majority_classes(segments, superpixels, dataset, args.images)
    sample = F.normalize(torch.from_numpy(np.asarray(segments.embeddings[rows], np.float32)), dim=1)
    present = [c for c in sorted(set(classes.tolist()))]
    header = f"{'class':10s} {'segments':>8s}" + "".join(f" {d + m:>15s}" for d in draws for m in ("", "+margin"))
    print(f"{len(rows)} superpixels of {args.images} train images; {len(known)} known, {count} unknown prototypes")
    print(header)
    table = {}
    for draw, unknown in draws.items():
        for margin in (0.0, args.margin):
            table[draw, margin] = unknown_shares(sample, known, unknown, margin).numpy()
    for c in present:
        pick = classes == c
        cells = "".join(f" {100 * table[key][pick].mean():14.1f}%" for key in table)
        print(f"{names[c]:10s} {int(pick.sum()):8d}{cells}")
    named = classes != 255
    for label, pick in (("all named", named), ("all 255", ~named), ("all", np.ones_like(named))):
        print(
            f"{label:10s} {int(pick.sum()):8d}" + "".join(f" {100 * table[key][pick].mean():14.1f}%" for key in table)
        )


if __name__ == "__main__":
    main()

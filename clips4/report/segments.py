"""The val superpixels behind the segment figures (the paper's Fig. 4): for each superpixel of the first val
images, its ground-truth majority class, its bounding box, CLIP's embedding (read from segments.zarr, never
recomputed) and each student's embedding (the normalised mean of its pixel embeddings over the superpixel, as
avgsim does, :func:`clips4.ops.segment_means.upsampled_superpixel_means`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import find_objects

from clips4.cache.api import SegmentsStore, SuperpixelsStore
from clips4.cache.store import StoreError
from clips4.data.segmentation import SegmentationDataset
from clips4.data.types import IGNORE_INDEX
from clips4.ops.batches import same_size_batches
from clips4.ops.segment_means import upsampled_superpixel_means


@dataclass(frozen=True)
class ValSegments:
    """``S`` superpixels (those with pixels) of ``images`` val images, flat, in image then superpixel order."""

    image: np.ndarray  # int [S]: the val image index
    region: np.ndarray  # int [S]: the superpixel id in that image
    majority: np.ndarray  # uint8 [S]: ground-truth majority label id (255 when no labelled pixel)
    boxes: np.ndarray  # int [S, 4]: top, left, bottom, right (exclusive)
    clip: np.ndarray  # float32 [S, D]: CLIP's segment embeddings
    methods: dict[str, np.ndarray]  # method -> float32 [S, D']


def majority_labels(regions: np.ndarray, label: np.ndarray | None, count: int) -> np.ndarray:
    """Per superpixel ``0..count-1``, the most frequent label id of its labelled pixels (255 when none; the
    smallest id on a tie)."""
    if label is None:
        return np.full(count, IGNORE_INDEX, np.uint8)
    keep = label != IGNORE_INDEX
    votes = np.zeros((count, 256), np.int64)
    np.add.at(votes, (regions[keep].astype(np.int64), label[keep].astype(np.int64)), 1)
    majority = votes.argmax(axis=1).astype(np.uint8)
    majority[votes.sum(axis=1) == 0] = IGNORE_INDEX
    return majority


def bounding_boxes(regions: np.ndarray, count: int) -> np.ndarray:
    """``[count, 4]`` top, left, bottom, right (exclusive) of each superpixel id (zeros for an empty one)."""
    boxes = np.zeros((count, 4), np.int64)
    for k, found in enumerate(find_objects(regions.astype(np.int64) + 1, max_label=count)):
        if found is not None:
            boxes[k] = found[0].start, found[1].start, found[0].stop, found[1].stop
    return boxes


#: Images per forward pass (consecutive images of one size).
BATCH_SIZE = 16


def collect_val_segments(
    dataset: SegmentationDataset,
    split: str,
    superpixels: SuperpixelsStore,
    segments: SegmentsStore,
    embedders: Mapping[str, Callable[[Sequence[np.ndarray]], torch.Tensor]],
    images: int,
    on_embeddings: Callable[[int, str, torch.Tensor], None] | None = None,
) -> ValSegments:
    """The superpixels of the first ``images`` images of ``dataset`` (the ``split`` rows of the stores).

    ``embedders`` map each student to its batch pixel encoder (``[B, h, w, D]`` of same-size images);
    ``on_embeddings(index, method, embeddings)`` sees every image's pixel embeddings (for the pixel figures)."""
    first, _ = superpixels.splits[split]
    count = min(images, len(dataset))
    pictures = [dataset.read_image(index) for index in range(count)]
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("image", "region", "majority", "boxes", "clip")}
    per_method: dict[str, list[np.ndarray]] = {name: [] for name in embedders}
    for batch in same_size_batches(range(count), lambda index: pictures[index].shape, BATCH_SIZE):
        embedded = {name: embed([pictures[i] for i in batch]) for name, embed in embedders.items()}
        for k, index in enumerate(batch):
            image_id = dataset.ids[index]
            stored = superpixels.attrs["image_ids"][first + index]
            if stored != image_id:
                raise StoreError(
                    f"{superpixels.path}: row {first + index} is image {stored!r}, not val image {image_id!r}; "
                    "the caches are from another dataset: rebuild them with `dvc repro`"
                )
            regions = superpixels.image(first + index).labels
            clip = segments.segments_of(image_id)
            regions_count = len(clip.area)
            present = np.asarray(clip.area) > 0
            parts["image"].append(np.full(present.sum(), index))
            parts["region"].append(np.flatnonzero(present))
            parts["majority"].append(majority_labels(regions, dataset.read_label(index), regions_count)[present])
            parts["boxes"].append(bounding_boxes(regions, regions_count)[present])
            parts["clip"].append(np.asarray(clip.embeddings, np.float32)[present])
            for name, embeddings in embedded.items():
                if on_embeddings is not None:
                    on_embeddings(index, name, embeddings[k])
                means = upsampled_superpixel_means(embeddings[k], regions, regions_count).numpy()
                per_method[name].append(means[present])
    return ValSegments(
        image=np.concatenate(parts["image"]),
        region=np.concatenate(parts["region"]),
        majority=np.concatenate(parts["majority"]),
        boxes=np.concatenate(parts["boxes"]),
        clip=np.concatenate(parts["clip"]),
        methods={name: np.concatenate(values) for name, values in per_method.items()},
    )

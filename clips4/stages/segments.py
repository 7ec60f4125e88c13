"""The ``segments`` stage: the CLIP embedding of every superpixel, into data/cache/segments.zarr.

Its "segments" are the OWT-UCM superpixels of clips4.superpixels (the design card's "segment embeddings"); the
student's segments, clusters of its own pixel embeddings made during training, are another thing (clips4.train).

Ragged layout: the superpixels of all images, flat, image after image (train then val), and CSR offsets:

- ``embeddings``  float16 [S, D]  unit mean dense CLIP feature of each superpixel
- ``image_index`` int32   [S]     row of its image (in image_ids)
- ``area``        int32   [S]     its size in pixels
- ``offsets``     int64   [N+1]   image i's superpixels are rows offsets[i]:offsets[i+1]; superpixel k of
                                  image i (label k in superpixels.zarr) is row offsets[i] + k

The row axis is chunked and filled chunk by chunk like the image stores: a chunk's writer computes every image
that has a superpixel in the chunk (an image spanning two chunks is computed by both, each writing its rows), so
writers of disjoint chunk ranges never share a file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clips4.cache.store import (
    ArraySpec,
    ChunkedStore,
    StoreError,
    code_digest,
    open_for_reading,
    rows_per_chunk,
    sharded_layout,
)
from clips4.params import Params
from clips4.stages.common import (
    DENSE_STORE,
    SEGMENTS_STORE,
    SUPERPIXELS_STORE,
    StageResult,
    fill_units,
    store_or_default,
)


def dense_rows_for(superpixel_ids: list[str], dense_ids: list[str], dense_path: str | Path) -> np.ndarray:
    """The dense-store row of every superpixel-store image; a clear error naming the first image it lacks."""
    index = {image_id: row for row, image_id in enumerate(dense_ids)}
    missing = [image_id for image_id in superpixel_ids if image_id not in index]
    if missing:
        raise StoreError(
            f"{dense_path}: image {missing[0]!r} is missing from the dense CLIP store ({len(missing)} of "
            f"{len(superpixel_ids)} images missing); the stores were built from different datasets: "
            "rerun `clips4 clip-dense` (or `dvc repro clip_dense`) on the dataset of superpixels.zarr"
        )
    return np.array([index[image_id] for image_id in superpixel_ids], np.int64)


def require_same_sizes(
    image_ids: list[str], extents: np.ndarray, image_sizes: np.ndarray, superpixels: str | Path, dense: str | Path
) -> None:
    """Every image as large in the superpixel store (``extents``) as in the dense one (``image_sizes``, its rows in
    the superpixel store's order); a clear error naming the first that is not."""
    mismatched = np.flatnonzero((extents != image_sizes).any(axis=1))
    if len(mismatched):
        image = int(mismatched[0])
        (height, width), (dense_height, dense_width) = extents[image], image_sizes[image]
        raise StoreError(
            f"{dense}: image {image_ids[image]!r} is {dense_height}x{dense_width} in the dense store but "
            f"{height}x{width} in {superpixels}; rebuild both from the same dataset"
        )


def run_segments(
    params: Params,
    superpixels: str | Path | None = None,
    dense: str | Path | None = None,
    out: str | Path | None = None,
    *,
    workers: int = 0,
    shard: tuple[int, int] = (0, 1),
    rebuild: bool = False,
) -> StageResult:
    """Mean dense CLIP embedding of every superpixel; resumes an interrupted store (a stale one holding finished
    work is replaced only with ``rebuild``). The stores default to the project's, in data/cache beside the params
    file."""
    from clips4.ops.segment_means import grid_segment_rows

    superpixels = store_or_default(params, superpixels, SUPERPIXELS_STORE)
    dense = store_or_default(params, dense, DENSE_STORE)
    out = store_or_default(params, out, SEGMENTS_STORE)

    regions = open_for_reading(superpixels, "superpixels", stage="ucm")
    features = open_for_reading(dense, "clip_dense", stage="clip-dense")
    image_ids = list(regions.attrs["image_ids"])
    dense_rows = dense_rows_for(image_ids, list(features.attrs["image_ids"]), dense)
    require_same_sizes(image_ids, regions["extent"][:], features["image_size"][:][dense_rows], superpixels, dense)
    num_regions = np.asarray(regions["num_regions"][:], np.int64)
    offsets = np.concatenate([[0], np.cumsum(num_regions)]).astype(np.int64)
    stride = int(features.attrs["feature_stride"])
    dim = int(features["features"].shape[-1])
    total = int(offsets[-1])
    layout = sharded_layout(
        "segments",
        total,
        rows_per_chunk(2 * dim + 8, params.cache.chunk_mb, total),
        {
            "embeddings": ArraySpec((dim,), "float16"),
            "image_index": ArraySpec((), "int32"),
            "area": ArraySpec((), "int32"),
        },
        params.cache.images_per_file,
        rows_per_image=total / max(1, len(image_ids)),
        static_arrays=1,  # offsets
    )
    inputs = {
        "superpixels": {"path": str(superpixels), "fingerprint": regions.attrs["fingerprint"]},
        "clip_dense": {"path": str(dense), "fingerprint": features.attrs["fingerprint"]},
    }
    image_splits = regions.attrs["splits"]
    attrs = {
        "image_ids": image_ids,
        "splits": image_splits,
        "segment_splits": {name: [int(offsets[a]), int(offsets[b])] for name, (a, b) in image_splits.items()},
        "dataset": regions.attrs["dataset"],
        "embed_dim": dim,
        "feature_stride": stride,
        "model_name": features.attrs["model_name"],
        "weights_sha256": features.attrs["weights_sha256"],
        "dense_mode": features.attrs["dense_mode"],
        "inputs": inputs,
    }
    parts = {  # the inputs' content, not their paths: a moved cache folder stays valid
        "kind": "segments",
        "inputs": {name: source["fingerprint"] for name, source in inputs.items()},
        "code": code_digest("clips4.ops.segment_means", "clips4.stages.segments"),
    }
    store = ChunkedStore.open(
        out,
        layout,
        parts,
        attrs,
        stage="segments",
        clevel=params.cache.clevel,
        static={"offsets": offsets},
        rebuild=rebuild,
        shard=shard,
    )

    def compute(start: int, stop: int) -> dict[str, np.ndarray]:
        return grid_segment_rows(
            regions["labels"], regions["extent"], features["features"], dense_rows, stride, offsets, start, stop
        )

    pending = store.pending(shard)
    fill_units(store, pending, compute, workers=workers, desc="segments")
    return StageResult(str(out), total, len(pending), layout.num_units, store.finish())

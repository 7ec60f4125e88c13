"""The ``prototypes`` stage: CLIP-S4's class prototypes from the train split's segments, into
data/cache/prototypes.zarr.

- ``known``          float32 [k, D]  per known class, the normalised mean of its ``top_m`` segments by
                                     p(class | segment)
- ``known_indices``  int64   [k, m]  those segments (rows of segments.zarr), best first
- ``known_log_probability`` float32 [k, m]  their log p(class | segment)
- ``class_text``     float32 [k, D]  the known classes' prompt-ensembled text embeddings
- ``unknown``        float32 [u, D]  ``unknowns`` segment embeddings drawn at random with ``seed``
- ``unknown_indices`` int64  [u]     their rows in segments.zarr

With ``prototypes.source: clip_kmeans`` the segments searched are per-image k-means clusters of CLIP's dense
features (clip_dense.zarr, :mod:`clips4.clip_kmeans`) instead of segments.zarr's superpixels; the indices then
point into those clusters, and ``segment_image_rows`` int64 [S] gives each cluster's clip_dense row. The clustering
lives here, not in the segments stage: segments.zarr stays the superpixels' (what avgsim and the figures read), and
switching the source reruns prototypes -> train -> evaluate only.

Beside the store, reports/prototypes.json (a DVC metric) gives the paper's Table 8 measure: per known class, the
cosine between its prototype of ``top_m`` segments and its prototype of 32 (``REFERENCE_M``; fewer when the train
split has fewer segments), and their mean ``cosine_to_m32``. One search of ``max(top_m, 32)`` serves both, as the
best ``top_m`` are the first ``top_m`` of the best 32 (the ranking breaks ties by row).

The classes of the held-out fold (``fold``) are left out of the softmax and of every output, so a class-free
experiment never names them. Attributes: ``known_classes``, ``held_out_classes``, ``logit_scale`` and provenance.
Everything is checked before the store is written, and it is written beside the old one and renamed into place,
so a failed run leaves the previous store (dvc.yaml marks it ``persist``, so DVC does not delete it first).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clips4.cache.store import StoreError, fingerprint, open_for_reading, write_small_store
from clips4.classes import class_text, held_out_classes
from clips4.errors import Clips4Error
from clips4.io import atomic_write_json
from clips4.params import Params, ParamsError
from clips4.paths import PROTOTYPES_REPORT
from clips4.stages.common import DENSE_STORE, PROTOTYPES_STORE, SEGMENTS_STORE, reports_beside, store_or_default

REFERENCE_M = 32  # the paper's Table 8 compares each top_m's prototypes to those of m = 32


@dataclass(frozen=True, kw_only=True)
class PrototypesResult:
    path: str
    known_classes: tuple[str, ...]
    held_out_classes: tuple[str, ...]
    train_segments: int
    unknowns: int
    search: str  # the FAISS build and index that ran, e.g. "faiss 1.15.1 (no GPU), IndexFlatIP"
    report: str  # reports/prototypes.json
    cosine_to_m32: float  # mean over the known classes


def train_rows(attrs: Any, path: str | Path, split: str) -> tuple[int, int]:
    """``(first, stop)`` rows of ``split``'s segments in the segments store, or one line naming the fix."""
    splits = attrs.get("segment_splits", {})
    if split not in splits:
        raise StoreError(
            f"{path}: no split {split!r} (the store has {', '.join(map(repr, splits))}); set dataset.train_split "
            "in params.yaml to one of them, or rebuild the caches for the new split (dvc repro)"
        )
    first, stop = (int(v) for v in splits[split])
    if stop <= first:
        raise StoreError(
            f"{path}: the {split!r} split has no segments (its split file lists no images); list the training "
            "images in the dataset's split file (check with `clips4 data check`) and rebuild with `dvc repro`"
        )
    return first, stop


def check_counts(params: Params, train_segments: int, path: str | Path) -> None:
    """``top_m`` and ``unknowns`` must fit in the train split (params.py checks them alone, not against data)."""
    for key in ("top_m", "unknowns"):
        if getattr(params, key) > train_segments:
            raise ParamsError(
                f"{key}: {getattr(params, key)} is more than the {train_segments} train segments in {path}; "
                f"lower {key} in params.yaml (or train on more images)"
            )


def clip_identity(attrs: Any, path: str | Path) -> dict[str, Any]:
    """The CLIP a store was computed with: model name and weights (the file's sha256, else the open_clip tag)."""
    weights = attrs.get("weights_sha256") or attrs.get("weights_source")
    if weights is None and "clip_dense" in attrs.get("inputs", {}):  # segments stores record the source upstream
        dense = attrs["inputs"]["clip_dense"]["path"]
        try:
            weights = open_for_reading(dense, "clip_dense").attrs.get("weights_source")
        except Clips4Error as err:
            raise StoreError(
                f"{path}: records no CLIP weights and its clip_dense store is unreadable ({err})"
            ) from None
    return {"model_name": attrs.get("model_name"), "weights": weights}


def faiss_build(index: str) -> str:
    """The log line: which FAISS build searched, on which device, with which index."""
    from clips4.faiss_utils import faiss_build_info

    return f"{faiss_build_info().describe()} with {index}"


@dataclass(frozen=True)
class SegmentSource:
    """The segment embeddings searched: an array ``[S, D]`` (zarr or numpy), the train rows in it, the store they
    come from (its attributes name the CLIP), the inputs to record, and extra arrays to write."""

    embeddings: Any
    rows: tuple[int, int]
    path: str
    attrs: Any
    inputs: dict[str, Any]
    extra: dict[str, np.ndarray]


def superpixel_segments(params: Params, segments: str | Path) -> SegmentSource:
    """segments.zarr's superpixel embeddings (``prototypes.source: superpixels``)."""
    store = open_for_reading(segments, "segments", stage="segments")
    if "embeddings" not in store:
        raise StoreError(f"{segments}: no 'embeddings' array; rebuild it with `clips4 segments --rebuild`")
    rows = train_rows(store.attrs, segments, params.dataset.train_split)
    inputs = {"segments": {"path": str(segments), "fingerprint": store.attrs["fingerprint"]}}
    return SegmentSource(store["embeddings"], rows, str(segments), store.attrs, inputs, {})


def clip_cluster_segments(params: Params, dense: str | Path) -> SegmentSource:
    """Per-image k-means clusters of clip_dense.zarr's train features (``prototypes.source: clip_kmeans``)."""
    import clips4.cache
    from clips4.clip_kmeans import clip_kmeans_segments

    store = open_for_reading(dense, "clip_dense", stage="clip-dense")  # complete, or one line naming the fix
    typed = clips4.cache.open(str(dense))
    split = params.dataset.train_split
    if split not in typed.splits:
        raise StoreError(f"{dense}: no split {split!r}; set dataset.train_split or rebuild the caches (dvc repro)")
    found = clip_kmeans_segments(typed, typed.splits[split], params.prototypes.clusters, params.seed)
    if len(found.embeddings) == 0:
        raise StoreError(f"{dense}: no computed {split!r} image to cluster; rerun `clips4 clip-dense`")
    inputs = {"clip_dense": {"path": str(dense), "fingerprint": store.attrs["fingerprint"]}}
    extra = {"segment_image_rows": found.image_rows}
    return SegmentSource(found.embeddings, (0, len(found.embeddings)), str(dense), store.attrs, inputs, extra)


def run_prototypes(
    params: Params,
    segments: str | Path | None = None,
    out: str | Path | None = None,
    dense: str | Path | None = None,
    reports_dir: str | Path | None = None,
) -> PrototypesResult:
    """Known prototypes by FAISS top-m over the train segments (``prototypes.source``), and random unknown ones.
    The stores default to the project's, in data/cache beside the params file; prototypes.json in ``reports_dir``
    (default: the reports folder beside ``out``'s, :func:`reports_beside`) gets each prototype's cosine to its
    m = 32 one."""
    import torch

    from clips4.clip import load_project_clip
    from clips4.data.layouts import open_dataset
    from clips4.prototypes import (
        draw_unknowns,
        known_classes,
        known_prototypes,
        prototype_cosines,
        top_m_segments,
        unknown_prototypes,
    )

    segments = store_or_default(params, segments, SEGMENTS_STORE)
    out = store_or_default(params, out, PROTOTYPES_STORE)
    dense = store_or_default(params, dense, DENSE_STORE)
    report = (reports_beside(params, out) if reports_dir is None else Path(reports_dir)) / Path(PROTOTYPES_REPORT).name
    kmeans = params.prototypes.source == "clip_kmeans"
    source = clip_cluster_segments(params, dense) if kmeans else superpixel_segments(params, segments)
    embeddings, (first, stop) = source.embeddings, source.rows
    check_counts(params, stop - first, source.path)
    class_names = open_dataset(params.dataset.name, params.dataset.root, params.dataset.train_split).class_names
    held_out = held_out_classes(params)
    names, indices = known_classes(class_names, held_out)

    loaded = load_project_clip(params)
    identity = {"model_name": loaded.model_name, "weights": loaded.sha256 or loaded.source}
    recorded = clip_identity(source.attrs, source.path)
    if identity != recorded:
        raise Clips4Error(
            f"{source.path}: computed with CLIP {recorded['model_name']} ({recorded['weights']}), but clip.model and "
            f"clip.pretrained now load {identity['model_name']} ({identity['weights']}); rerun `dvc repro` so the "
            "caches and the prototypes share one CLIP"
        )
    text = class_text(loaded, params.dataset.name, names)
    with torch.no_grad():
        logit_scale = float(loaded.model.logit_scale.exp())

    m, reference_m = params.top_m, min(REFERENCE_M, stop - first)
    try:
        top = top_m_segments(embeddings, text, logit_scale, max(m, reference_m), rows=(first, stop))
        cosines = prototype_cosines(embeddings, top.indices, m, reference_m)
        drawn = first + draw_unknowns(stop - first, params.unknowns, params.seed)
        arrays = {
            "known": known_prototypes(embeddings, top.indices[:, :m]),
            "known_indices": top.indices[:, :m],
            "known_log_probability": top.log_probability[:, :m],
            "class_text": text,
            "unknown": unknown_prototypes(embeddings, drawn),
            "unknown_indices": drawn,
            **source.extra,
        }
    except Clips4Error as err:  # a damaged row: name the store
        raise StoreError(f"{source.path}: {err}") from None
    attrs = {
        "kind": "prototypes",
        "known_classes": list(names),
        "known_class_ids": indices.tolist(),
        "held_out_classes": list(held_out),
        "fold": params.fold,
        "top_m": params.top_m,
        "unknowns": params.unknowns,
        "seed": params.seed,
        "logit_scale": logit_scale,
        "train_segment_rows": [first, stop],
        "model_name": loaded.model_name,
        "weights_sha256": loaded.sha256,
        "weights_source": loaded.source,
        "dataset": {"name": params.dataset.name, "train_split": params.dataset.train_split},
        "inputs": source.inputs,
        "source": params.prototypes.source,
    }
    keys = ("known_classes", "top_m", "unknowns", "seed", "model_name", "weights_sha256", "weights_source", "inputs")
    if kmeans:  # (the default's fingerprint stays what it was before the option existed)
        attrs["clusters"] = params.prototypes.clusters
        keys += ("source", "clusters")
    attrs["fingerprint"] = fingerprint(**{key: attrs[key] for key in keys})
    write_small_store(out, arrays, attrs, clevel=params.cache.clevel)
    summary = {
        "top_m": m,
        "reference_m": reference_m,
        "cosine_to_m32": round(float(cosines.mean()), 4),
        "cosine_to_m32_min": round(float(cosines.min()), 4),
        "per_class": {name: round(float(c), 4) for name, c in zip(names, cosines, strict=True)},
    }
    atomic_write_json(report, summary)
    search = faiss_build(top.index)
    return PrototypesResult(
        path=str(out),
        known_classes=tuple(names),
        held_out_classes=tuple(held_out),
        train_segments=stop - first,
        unknowns=len(drawn),
        search=search,
        report=str(report),
        cosine_to_m32=summary["cosine_to_m32"],
    )

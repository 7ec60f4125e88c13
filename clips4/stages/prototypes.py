"""The ``prototypes`` stage: CLIP-S4's class prototypes from the train split's segments, into
data/cache/prototypes.zarr.

- ``known``          float32 [k, D]  per known class, the normalised mean of its ``top_m`` segments by
                                     p(class | segment)
- ``known_indices``  int64   [k, m]  those segments (rows of segments.zarr), best first
- ``known_log_probability`` float32 [k, m]  their log p(class | segment)
- ``class_text``     float32 [k, D]  the known classes' prompt-ensembled text embeddings
- ``unknown``        float32 [u, D]  ``unknowns`` segment embeddings drawn at random with ``seed``
- ``unknown_indices`` int64  [u]     their rows in segments.zarr

The classes of the held-out fold (``fold``) are left out of the softmax and of every output, so a class-free
experiment never names them. Attributes: ``known_classes``, ``held_out_classes``, ``logit_scale`` and provenance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clips4.cache.store import fingerprint, open_for_reading, write_small_store
from clips4.errors import Clips4Error
from clips4.params import Params
from clips4.stages.common import PROTOTYPES_STORE, SEGMENTS_STORE


@dataclass(frozen=True)
class PrototypesResult:
    path: str
    known_classes: tuple[str, ...]
    held_out_classes: tuple[str, ...]
    train_segments: int
    unknowns: int


def class_folds(params: Params) -> dict[int, list[str]]:
    """The held-out class folds of the dataset: the synthetic world's folds.json, or Pascal Context-59's."""
    if params.dataset.name == "synth":
        path = Path(params.dataset.root) / "folds.json"
        if not path.is_file():
            raise Clips4Error(f"{path}: missing; regenerate the world with `clips4 synth`")
        return {int(k): v for k, v in json.loads(path.read_text()).items()}
    if params.dataset.name == "context":
        from clips4.resources import context59_folds

        return context59_folds()
    raise Clips4Error(
        f"params.yaml: fold: no class folds are defined for dataset {params.dataset.name!r} "
        "(folds exist for synth and context); set fold: null"
    )


def held_out_classes(params: Params) -> list[str]:
    return [] if params.fold is None else class_folds(params)[params.fold]


def run_prototypes(
    params: Params, segments: str | Path = SEGMENTS_STORE, out: str | Path = PROTOTYPES_STORE
) -> PrototypesResult:
    """Known prototypes by FAISS top-m over the train segments, and random unknown ones."""
    import torch

    from clips4.clip import load_clip, text_embeddings
    from clips4.data.layouts import open_dataset
    from clips4.prototypes import draw_unknowns, known_classes, known_prototypes, top_m_segments, unknown_prototypes

    store = open_for_reading(segments, "segments", stage="segments")
    embeddings = store["embeddings"]
    first, stop = (int(v) for v in store.attrs["segment_splits"][params.dataset.train_split])
    class_names = open_dataset(params.dataset.name, params.dataset.root, params.dataset.train_split).class_names
    held_out = held_out_classes(params)
    names, indices = known_classes(class_names, held_out)

    loaded = load_clip(params.clip.model, params.clip.pretrained)
    if loaded.sha256 != store.attrs["weights_sha256"]:
        raise Clips4Error(
            f"{segments}: built with CLIP weights {store.attrs['weights_sha256']}, but clip.* now loads "
            f"{loaded.sha256}; rerun `dvc repro` so that the caches and the prototypes share one CLIP"
        )
    class_text = text_embeddings(loaded, list(names)).numpy().astype(np.float32)
    with torch.no_grad():
        logit_scale = float(loaded.model.logit_scale.exp())

    top = top_m_segments(embeddings, class_text, logit_scale, params.top_m, rows=(first, stop))
    drawn = first + draw_unknowns(stop - first, params.unknowns, params.seed)
    arrays = {
        "known": known_prototypes(embeddings, top.indices),
        "known_indices": top.indices,
        "known_log_probability": top.log_probability,
        "class_text": class_text,
        "unknown": unknown_prototypes(embeddings, drawn),
        "unknown_indices": drawn,
    }
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
        "dataset": params.dataset,
        "inputs": {"segments": {"path": str(segments), "fingerprint": store.attrs["fingerprint"]}},
    }
    identity = ("known_classes", "top_m", "unknowns", "seed", "weights_sha256", "inputs")
    attrs["fingerprint"] = fingerprint(**{key: attrs[key] for key in identity})
    write_small_store(out, arrays, attrs, clevel=params.cache.clevel)
    return PrototypesResult(str(out), tuple(names), tuple(held_out), stop - first, len(drawn))

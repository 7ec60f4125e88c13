"""CLIP-S4's class prototypes: known ones from the top-m segments per class, unknown ones drawn at random.

Inputs: ``segment_embeddings`` ``[S, D]`` unit rows (float16 in segments.zarr), a ``zarr.Array`` or numpy array,
read in blocks of rows so that S may exceed memory; ``class_text`` ``[C, D]`` the classes' unit text embeddings;
``logit_scale`` tau, CLIP's ``logit_scale.exp()`` (100 for OpenAI's CLIP).

Ranking: per class c, segments are ranked by p(c|s) = softmax over the C classes of tau <e_s, t_c>. The key is
its log-odds z_c(s) = l_c - logsumexp_{c' != c} l_c' (l = tau <e_s, t>): it orders exactly like p, but does not
saturate where p rounds to 1 (tau = 100 gives p = 1 - 1e-18 to confident segments, whose log p all round to 0).
z is an inner product, of the row ``[tau e_s, -lse_1(s), ..., -lse_C(s)]`` (lse_c: the logsumexp without c) with
the query ``[t_c, onehot(c)]``, so a FAISS flat inner-product index (on the GPU when faiss has GPUs) finds each
block's top m per class, and a running top m is kept (ties to the smaller index). The scores are float32, so
segments within ~1e-5 of each other may swap places from one device to another; on one device the result is
deterministic. :func:`top_m_segments_torch` is the float64 brute-force reference.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from clips4.errors import Clips4Error

BLOCK_ROWS = 16384  # rows per read (D=512 float32: 32 MB)
GPU_MAX_K = 2048  # the largest k a FAISS GPU index selects; a larger top_m runs on the CPU index


class TopM(NamedTuple):
    """Per class, the best segments first: ``indices`` int64 ``[C, m]``, ``log_probability`` float32 ``[C, m]``;
    ``index`` names the FAISS index that searched (``"reference"`` for the torch reference)."""

    indices: np.ndarray
    log_probability: np.ndarray
    index: str


def log_odds(logits: torch.Tensor) -> torch.Tensor:
    """``z_c = l_c - logsumexp_{c' != c} l_c'`` of logits ``[n, C]``, without cancellation at the top class."""
    top, arg = logits.max(dim=1, keepdim=True)
    e = torch.exp(logits - top)
    others = top + torch.log(e.sum(dim=1, keepdim=True) - e)  # the top's own exp(0) = 1 keeps this >= top
    others_of_top = torch.logsumexp(logits.scatter(1, arg, -torch.inf), dim=1, keepdim=True)
    return logits - others.scatter(1, arg, others_of_top)


def _blocks(segment_embeddings: Any, rows: tuple[int, int], block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, float32 block)`` over ``rows``; a row that is not a unit vector (NaN: a chunk never written;
    zeros: a lost one) stops the search rather than giving a wrong prototype."""
    for start in range(rows[0], rows[1], block_rows):
        block = np.asarray(segment_embeddings[start : min(start + block_rows, rows[1])], dtype=np.float32)
        yield start, _checked(block, start)


def _checked(block: np.ndarray, first_row: int, where: Sequence[int] | None = None) -> np.ndarray:
    norms = np.linalg.norm(block, axis=1)
    bad = ~(np.abs(norms - 1) < 0.01)  # NaN fails too
    if bad.any():
        k = int(np.argmax(bad))
        row = int(where[k]) if where is not None else first_row + k
        raise Clips4Error(
            f"segment embeddings: row {row} is not a unit vector (norm {norms[k]:.3f}); the segments store is "
            "damaged: check it with `clips4 cache verify` and rebuild it"
        )
    return block


def _merge(best: tuple[np.ndarray, np.ndarray], new: tuple[np.ndarray, np.ndarray], m: int) -> tuple:
    """The top m per class of two ``(scores [C, n], indices [C, n])`` lists, best first, ties to the smaller index."""
    scores, indices = (np.concatenate(pair, axis=1) for pair in zip(best, new, strict=True))
    order = np.lexsort((indices, -scores), axis=-1)[:, :m]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(indices, order, 1)


def _start(segment_embeddings: Any, class_text: Any, m: int, rows: tuple[int, int] | None) -> tuple:
    text = torch.as_tensor(np.asarray(class_text, dtype=np.float32))
    first, stop = (0, int(segment_embeddings.shape[0])) if rows is None else rows
    if text.ndim != 2 or len(text) < 2 or text.shape[1] != segment_embeddings.shape[1]:
        raise ValueError(f"class_text must be [C >= 2, {segment_embeddings.shape[1]}], got {tuple(text.shape)}")
    if not 1 <= m <= stop - first:
        raise ValueError(f"m must be in [1, {stop - first}] (the rows searched), got {m}")
    empty = (np.empty((len(text), 0), np.float64), np.empty((len(text), 0), np.int64))
    return text, (first, stop), empty


def make_index(dim: int, use_gpu: bool | None, k: int) -> Any:
    """A FAISS flat inner-product index: on the GPU when asked (``None``: when faiss has GPUs) and ``k`` fits."""
    import faiss

    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu and not gpus:
        raise Clips4Error("use_gpu: faiss sees no GPU; install faiss-gpu (see docs/caches.md) or leave use_gpu unset")
    if (gpus if use_gpu is None else use_gpu) and k <= GPU_MAX_K:
        return faiss.GpuIndexFlatIP(faiss.StandardGpuResources(), dim)  # the index keeps its resources alive
    return faiss.IndexFlatIP(dim)


def top_m_segments(
    segment_embeddings: Any,
    class_text: Any,
    logit_scale: float,
    m: int,
    *,
    rows: tuple[int, int] | None = None,
    block_rows: int = BLOCK_ROWS,
    use_gpu: bool | None = None,
) -> TopM:
    """Per class, the ``m`` segments of ``rows`` (default: all) with the highest ``p(c|s)``, by FAISS.

    ``class_text`` holds only the classes the softmax runs over (a held-out fold is left out, see
    :func:`known_classes`). Indices are rows of ``segment_embeddings``.
    """
    text, rows, best = _start(segment_embeddings, class_text, m, rows)
    index = make_index(text.shape[1] + len(text), use_gpu, m)
    queries = torch.cat([text, torch.eye(len(text))], dim=1).numpy()  # [t_c, onehot(c)]
    for start, block in _blocks(segment_embeddings, rows, block_rows):
        scaled = torch.from_numpy(block) * logit_scale
        logits = scaled @ text.T
        others = logits - log_odds(logits)  # lse_c(s): the logsumexp without class c
        index.reset()
        index.add(torch.cat([scaled, -others], dim=1).numpy())
        scores, found = index.search(queries, min(m, len(block)))
        best = _merge(best, (scores.astype(np.float64), found + start), m)
    return TopM(best[1], log_probability(best[0]), type(index).__name__)


def top_m_segments_torch(
    segment_embeddings: Any,
    class_text: Any,
    logit_scale: float,
    m: int,
    *,
    rows: tuple[int, int] | None = None,
    block_rows: int = BLOCK_ROWS,
) -> TopM:
    """Brute-force reference of :func:`top_m_segments`: every row's log-odds in float64 by torch."""
    text, rows, best = _start(segment_embeddings, class_text, m, rows)
    for start, block in _blocks(segment_embeddings, rows, block_rows):
        z = log_odds(logit_scale * (torch.from_numpy(block).double() @ text.double().T)).T.numpy()
        best = _merge(best, (z, np.broadcast_to(np.arange(start, start + len(block)), z.shape)), m)
    return TopM(best[1], log_probability(best[0]), "reference")


def log_probability(z: np.ndarray) -> np.ndarray:
    """float32 ``log p = -log(1 + exp(-z))`` of log-odds ``z``, without overflow."""
    return (-np.logaddexp(0.0, -np.asarray(z, dtype=np.float64))).astype(np.float32)


def gather_rows(segment_embeddings: Any, indices: np.ndarray) -> np.ndarray:
    """Rows ``indices`` ``[...]`` of the array as float64 ``[..., D]``, each read once (zarr: only their chunks)."""
    unique, inverse = np.unique(np.asarray(indices, dtype=np.int64), return_inverse=True)
    getter = segment_embeddings.oindex if hasattr(segment_embeddings, "oindex") else segment_embeddings
    rows = _checked(np.asarray(getter[unique], dtype=np.float32), 0, unique)
    return rows.astype(np.float64)[inverse.reshape(np.shape(indices))]


def _normalised(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)).astype(np.float32)


def known_prototypes(segment_embeddings: Any, indices: np.ndarray) -> np.ndarray:
    """float32 ``[C, D]``: the normalised mean of each class's rows ``indices [C, m]``, summed in index order
    (so the same sets give bit-identical prototypes, whatever their ranking)."""
    return _normalised(gather_rows(segment_embeddings, np.sort(indices, axis=1)).sum(axis=1))


def prototype_cosines(segment_embeddings: Any, indices: np.ndarray, m: int, reference_m: int) -> np.ndarray:
    """float64 ``[C]``: per class, the cosine between its prototype of the best ``m`` rows of ``indices [C, M]``
    (best first) and its prototype of the best ``reference_m`` (the paper's Table 8 compares every m to 32)."""
    if not 1 <= max(m, reference_m) <= indices.shape[1]:
        raise ValueError(f"m {m} and reference_m {reference_m} must be in [1, {indices.shape[1]}] (the rows given)")
    first = known_prototypes(segment_embeddings, indices[:, :m]).astype(np.float64)
    reference = known_prototypes(segment_embeddings, indices[:, :reference_m]).astype(np.float64)
    return np.clip((first * reference).sum(axis=1), -1.0, 1.0)


def draw_unknowns(num_segments: int, count: int, seed: int) -> np.ndarray:
    """``count`` distinct sorted int64 indices in ``[0, num_segments)``, drawn uniformly with ``seed``."""
    if not 1 <= count <= num_segments:
        raise ValueError(f"count must be in [1, {num_segments}], got {count}")
    return np.sort(np.random.default_rng(seed).choice(num_segments, size=count, replace=False).astype(np.int64))


def unknown_prototypes(segment_embeddings: Any, indices: np.ndarray) -> np.ndarray:
    """float32 ``[U, D]``: the drawn segments' embeddings, re-normalised after float16 rounding."""
    return _normalised(gather_rows(segment_embeddings, indices))


def known_classes(class_names: Sequence[str], held_out: Sequence[str] | None) -> tuple[tuple[str, ...], np.ndarray]:
    """The classes left after removing a held-out fold, and their int64 indices into ``class_names``.

    Pass ``class_text[indices]`` to the search: the held-out classes leave the softmax as well as the outputs.
    """
    held = set(held_out or ())
    missing = sorted(held - set(class_names))
    if missing:
        raise Clips4Error(
            f"fold: held-out classes {missing} are not among the dataset's classes; "
            "check the folds file against the class list"
        )
    keep = np.array([i for i, name in enumerate(class_names) if name not in held], dtype=np.int64)
    if len(keep) < 2:
        raise Clips4Error(f"fold: only {len(keep)} class(es) left after holding out {len(held)}; need at least 2")
    return tuple(class_names[i] for i in keep), keep

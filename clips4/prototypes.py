"""CLIP-S4's class prototypes: known ones from the top-m segments per class, unknown ones drawn at random.

Conventions
-----------
- ``segment_embeddings``: ``[S, D]``, unit rows (float16 in the Zarr cache), any array-like whose ``arr[a:b]``
  returns a numpy array (``zarr.Array``, ``np.ndarray``, ``np.memmap``). It is only ever read in blocks of rows.
- ``class_text``: ``[C, D]`` unit class text embeddings (prompt-ensembled), numpy or torch, rows in class order.
- ``logit_scale``: the multiplier ``tau`` of the cosine similarity, ``p(c|s) = softmax_c(tau * <e_s, t_c>)``;
  CLIP's ``logit_scale.exp()`` (100 for OpenAI's CLIP), *not* the log-parameter itself.
- Outputs are class-major: ``TopM.indices[c]`` are the segments of class ``c``, best first; prototypes are
  ``[C, D]``. ``class_log_probabilities`` is segment-major ``[S, C]`` like its input.

Ranking and exactness (why the design is what it is)
----------------------------------------------------
Segments are ranked per class by ``p(c|s)``. The ranking key used is its *log-odds*
``z = l_c - logsumexp_{c' != c} l_c'`` (``l = tau * cosine``), a strictly increasing function of ``p``, so the
order is exactly the softmax order; unlike ``log p`` it does not saturate at 0 when ``p`` rounds to 1 (tau=100
and a confident segment give ``p = 1 - 1e-18``), so confident segments are still told apart by how confident
they are. Exact ties (duplicate rows) go to the smaller segment index.

``log p(c|s) = <[tau e_s, -LSE_s], [t_c, 1]>`` with ``LSE_s = logsumexp_c' tau <e_s, t_c'>`` makes the search a pure
inner-product search, which FAISS (``IndexFlatIP``; a GPU flat index when faiss has GPUs) runs per block of
rows. Its float32 scores are off by up to ``delta = 2^-23 ((2D+8) tau + (D+4) max|LSE|)``, a worst-case bound
(0.014 for D=512, tau=100; measured errors reach 2e-5, enough to reorder near-equal scores, and a softmax at
tau=100 has many: a plain float32 top-k picks another top-32 set for 14 of 14 classes at D=128, C=14, see
benchmarks/bench_prototypes.py). So FAISS only
*proposes candidates*: per block it returns the top-K rows per class, they are re-scored in float64, and K is
doubled for a class until the K-th float32 score plus ``delta`` is below the current m-th float64 score
(converted to log p); a row FAISS did not return therefore cannot be in the top m. The brute-force reference
(:func:`top_m_segments_torch`) scores every row in float64 with torch. Both keep, per class, every row within
``2 eps`` (a float64 error bound, ~1e-10) of their m-th best, and the final choice is made by one canonical
scorer (:func:`_canonical_log_odds`: exact float64 products, numpy pairwise sums, the same code for every row
whatever its position). So the two paths select identical sets in identical order, and
:func:`known_prototypes` turns identical indices into bit-identical prototypes.

Cost: the LSE needs every logit of a row, so each block is multiplied twice (torch for the LSE, FAISS for the
search); the re-scoring touches only the few rows that can still enter the top m. Memory: one block plus
``C x (m + near-ties)`` candidate rows, whatever S.

Threads: torch and faiss-cpu each load their own libgomp. Run with ``OMP_WAIT_POLICY=PASSIVE`` in the
environment, or the idle threads of one spin against the other (5-10x slower on 2 cores).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import pairwise
from typing import Any, NamedTuple

import numpy as np
import torch

from clips4.errors import Clips4Error
from clips4.params import ParamsError

DEFAULT_BLOCK_ROWS = 16384  # rows per block when the array has no chunks (D=512 float32: 32 MB)
GPU_MAX_K = 2048  # the largest k a FAISS GPU flat index can select; beyond it the block is scored in full
_CPU_MAX_K = math.inf  # the CPU flat index has no such limit
_U32 = 2.0**-24
_U64 = 2.0**-53
_CANONICAL_TILE = 32  # rows per tile of the canonical scorer (results do not depend on it)
_MAX_ROW_NORM = 1.01  # segment rows are unit vectors; the error bounds allow norms up to this


class TopM(NamedTuple):
    """The top-m segments per class: ``indices`` int64 ``[C, m]`` best first, ``log_probability`` float32 ``[C, m]``."""

    indices: np.ndarray
    log_probability: np.ndarray


# ----------------------------------------------------------------------------------------------------- inputs


def _text_array(class_text: Any) -> np.ndarray:
    if isinstance(class_text, torch.Tensor):
        class_text = class_text.detach().cpu().numpy()
    text = np.ascontiguousarray(np.asarray(class_text, dtype=np.float32))
    if text.ndim != 2 or text.shape[0] < 2:
        raise ValueError(
            f"class_text must be [C, D] with C >= 2 (a softmax over one class is constant), got {text.shape}"
        )
    if not np.isfinite(text).all():
        raise ValueError("class_text holds NaN or inf values")
    return text


def _check_scale(logit_scale: float) -> float:
    tau = float(logit_scale)
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"logit_scale must be a positive multiplier (CLIP's logit_scale.exp(), e.g. 100), got {tau}")
    return tau


def _shape(segment_embeddings: Any, text: np.ndarray) -> tuple[int, int]:
    shape = tuple(segment_embeddings.shape)
    if len(shape) != 2 or shape[1] != text.shape[1]:
        raise ValueError(f"segment_embeddings must be [S, {text.shape[1]}] like class_text's rows, got {shape}")
    return int(shape[0]), int(shape[1])


def _check_top_m(m: int, num_segments: int) -> None:
    if m < 1:
        raise ParamsError(f"top_m: must be an integer >= 1, got {m}")
    if m > num_segments:
        raise ParamsError(
            f"top_m: {m} is more than the {num_segments} segments of the training set; "
            "lower top_m in params.yaml (or cache more training images)"
        )


def default_block_rows(segment_embeddings: Any) -> int:
    """Rows per read: a whole number of the array's chunks (when it has ``chunks``) near 16384 rows."""
    chunks = getattr(segment_embeddings, "chunks", None)
    chunk = int(chunks[0]) if chunks else 0
    if chunk <= 0:
        return DEFAULT_BLOCK_ROWS
    return chunk * max(1, round(DEFAULT_BLOCK_ROWS / chunk))


def _read(segment_embeddings: Any, start: int, stop: int) -> np.ndarray:
    block = np.asarray(segment_embeddings[start:stop])
    if not np.isfinite(block).all():
        bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
        raise Clips4Error(f"segment embeddings: row {bad} holds NaN or inf; rebuild the segment embedding cache")
    return block


def _row_norms(x: np.ndarray, start: int, scale: float = 1.0) -> np.ndarray:
    """Float32 norms of the rows ``e`` of ``x = scale * e``; they must be unit (float16 keeps them within 1e-3)."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float32)) / np.float32(scale)
    if len(norms) and norms.max() > _MAX_ROW_NORM:
        bad = start + int(np.argmax(norms))
        raise Clips4Error(
            f"segment embeddings: row {bad} has norm {norms.max():.4f}; they must be L2-normalised (unit) vectors"
        )
    return norms


def _blocks(first: int, stop: int, block_rows: int) -> list[tuple[int, int]]:
    """``[start, stop)`` spans covering ``[first, stop)``, cut at multiples of ``block_rows`` (chunk-aligned)."""
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    cuts = [first, *range((first // block_rows + 1) * block_rows, stop, block_rows), stop]
    return list(pairwise(cuts))


def _row_range(segment_embeddings: Any, text: np.ndarray, rows: tuple[int, int] | None) -> tuple[int, int]:
    num_segments = int(segment_embeddings.shape[0])
    _shape(segment_embeddings, text)
    first, stop = (0, num_segments) if rows is None else (int(rows[0]), int(rows[1]))
    if not 0 <= first < stop <= num_segments:
        raise ValueError(f"rows must be a non-empty [first, stop) within [0, {num_segments}], got {rows}")
    return first, stop


# ------------------------------------------------------------------------------------------ scores and keys


def class_log_probabilities(segment_embeddings: Any, class_text: Any, logit_scale: float) -> np.ndarray:
    """``log p(c|s)`` float64 ``[S, C]`` of a small ``[S, D]`` array: log-softmax over classes of tau * cosine."""
    text = _text_array(class_text)
    tau = _check_scale(logit_scale)
    x = torch.from_numpy(np.asarray(segment_embeddings[:], dtype=np.float64))
    logits = tau * (x @ torch.from_numpy(text).double().T)
    return torch.log_softmax(logits, dim=1).numpy()


def log_odds_to_log_probability(log_odds: np.ndarray) -> np.ndarray:
    """``log p = -log(1 + exp(-z))`` for log-odds ``z``, without overflow or cancellation."""
    return -np.logaddexp(0.0, -np.asarray(log_odds, dtype=np.float64))


def _log_odds_torch(logits: torch.Tensor) -> torch.Tensor:
    """Log-odds ``l_c - logsumexp_{c' != c} l_c'`` of float64 logits ``[n, C]``, stable for confident rows."""
    top, arg = logits.max(dim=1, keepdim=True)
    e = torch.exp(logits - top)
    rest = e.sum(dim=1, keepdim=True) - e  # >= 1 for every class but the top one (it holds the top's exp(0) = 1)
    lse_others = top + torch.log(rest.clamp_min(torch.finfo(torch.float64).tiny))
    others_of_top = torch.logsumexp(logits.scatter(1, arg, -math.inf), dim=1, keepdim=True)
    return logits - lse_others.scatter(1, arg, others_of_top)


def _log_odds_row(logits: np.ndarray) -> np.ndarray:
    """The same log-odds as :func:`_log_odds_torch` for one row ``[C]``, in numpy (the canonical scorer's)."""
    arg = int(np.argmax(logits))
    top = logits[arg]
    e = np.exp(logits - top)
    lse_others = top + np.log(np.maximum(e.sum() - e, np.finfo(np.float64).tiny))
    others = np.delete(logits, arg)
    second = others.max()
    lse_others[arg] = second + np.log(np.exp(others - second).sum())
    return logits - lse_others


def _canonical_log_odds(rows: np.ndarray, text64: np.ndarray, tau: float) -> np.ndarray:
    """Log-odds ``[n, C]`` whose bits depend only on each row's values, never on its position or neighbours.

    Float16/float32 products are exact in float64 and numpy sums the contiguous last axis pairwise in a fixed
    order, so a row scores the same in the FAISS path and in the torch reference. Both choose their final top m
    with it, which is what makes them select the same segments even among near-ties.
    """
    out = np.empty((len(rows), text64.shape[0]))
    for start in range(0, len(rows), _CANONICAL_TILE):
        tile = np.asarray(rows[start : start + _CANONICAL_TILE], dtype=np.float64)
        logits = tau * (tile[:, None, :] * text64[None, :, :]).sum(axis=-1)
        for i, row in enumerate(logits):
            out[start + i] = _log_odds_row(row)
    return out


def _float64_margin(tau: float, norm_product: float, dim: int, num_classes: int) -> float:
    """``eps``: a bound on the distance between two float64 log-odds of one row computed in different ways."""
    scale = tau * norm_product
    return 16.0 * _U64 * (2.0 * (dim + 2) * scale + 4.0 * (num_classes + 16) * (scale + math.log(num_classes) + 2.0))


def _float32_margin(tau: float, norm_product: float, dim: int, lse_max: float) -> float:
    """``delta``: a bound on |FAISS float32 score - log p| for a block (summation error of D+1 float32 terms)."""
    return 2.0 * _U32 * ((2 * dim + 8) * tau * norm_product + (dim + 4) * lse_max) + 1e-12


# -------------------------------------------------------------------------------- candidate pool (both paths)


class _Pool:
    """Per class: every row seen whose float64 log-odds is within ``2 eps`` of the m-th best seen so far.

    That set always contains the final top m under the canonical scorer (whose values are within ``eps`` of
    these), so the final choice can be made on the pool alone. Rows are kept as read (input dtype).
    """

    def __init__(self, num_classes: int, m: int, eps: float) -> None:
        self.m, self.eps = m, eps
        self.index = [np.empty(0, np.int64) for _ in range(num_classes)]
        self.score = [np.empty(0) for _ in range(num_classes)]
        self.rows: list[np.ndarray | None] = [None] * num_classes
        self.threshold = np.full(num_classes, -math.inf)  # m-th best log-odds seen, -inf until m rows are seen

    def add(self, c: int, index: np.ndarray, score: np.ndarray, rows: np.ndarray) -> None:
        if len(index) == 0:
            return
        old = self.rows[c]
        all_index = np.concatenate([self.index[c], index])
        all_score = np.concatenate([self.score[c], score])
        all_rows = rows if old is None else np.concatenate([old, rows])
        all_index, first = np.unique(all_index, return_index=True)  # a row proposed twice counts once
        all_score, all_rows = all_score[first], all_rows[first]
        if len(all_score) >= self.m:
            self.threshold[c] = np.partition(all_score, len(all_score) - self.m)[len(all_score) - self.m]
        keep = all_score >= self.threshold[c] - 2.0 * self.eps
        self.index[c], self.score[c], self.rows[c] = all_index[keep], all_score[keep], all_rows[keep]

    def finish(self, text64: np.ndarray, tau: float) -> TopM:
        """Top m per class by the canonical log-odds, ties to the smaller index."""
        num_classes = len(self.index)
        candidates = np.concatenate(self.index)
        unique, first = np.unique(candidates, return_index=True)
        rows = np.concatenate([r for r in self.rows if r is not None])[first]
        canonical = _canonical_log_odds(rows, text64, tau)
        indices = np.empty((num_classes, self.m), np.int64)
        log_odds = np.empty((num_classes, self.m))
        for c in range(num_classes):
            where = np.searchsorted(unique, self.index[c])
            z = canonical[where, c]
            order = np.lexsort((self.index[c], -z))[: self.m]
            indices[c], log_odds[c] = self.index[c][order], z[order]
        return TopM(indices, log_odds_to_log_probability(log_odds).astype(np.float32))


def _block_log_odds(rows: np.ndarray, text64_t: torch.Tensor, tau: float, device: torch.device) -> np.ndarray:
    """Float64 log-odds ``[n, C]`` of a batch of rows by torch matmul (fast; within ``eps / 2`` of exact)."""
    x = torch.from_numpy(np.asarray(rows, dtype=np.float64)).to(device)
    return _log_odds_torch(tau * (x @ text64_t.T)).cpu().numpy()


# ------------------------------------------------------------------------------------------------ the search


def _faiss_index(dim: int, use_gpu: bool) -> Any:
    import faiss

    if not use_gpu:
        return faiss.IndexFlatIP(dim)
    # FAISS's GPU flat search runs full float32 cuBLAS (it disallows reduced-precision math), so delta holds.
    return faiss.GpuIndexFlatIP(faiss.StandardGpuResources(), dim)  # the index keeps its resources alive


@contextmanager
def _faiss_database_tile(rows: int) -> Iterator[None]:
    """Let FAISS's CPU flat search multiply the queries by a whole block at once (its default tile of 1024
    database rows halves the throughput for C ~ 100 queries); the global setting is restored afterwards."""
    import faiss

    if not hasattr(faiss.cvar, "distance_compute_blas_database_bs"):
        yield
        return
    before = faiss.cvar.distance_compute_blas_database_bs
    faiss.cvar.distance_compute_blas_database_bs = max(before, rows)
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_database_bs = before


def _resolve_gpu(use_gpu: bool | None) -> bool:
    import faiss

    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu and gpus == 0:
        raise Clips4Error(
            "use_gpu=True but faiss sees no GPU; install faiss-gpu (pip install -e '.[gpu]') or leave use_gpu=None"
        )
    return gpus > 0 if use_gpu is None else bool(use_gpu)


def _lse_float32(scaled: np.ndarray, text32_t: torch.Tensor, device: torch.device) -> np.ndarray:
    """``logsumexp_c <tau e, t_c>`` per row of ``scaled = tau e`` (float32 dots, float64 logsumexp; within delta)."""
    x = torch.from_numpy(scaled).to(device)
    if device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        logits = (x.double() @ text32_t.double().T).float()  # TF32 would break the float32 error bound
    else:
        logits = x @ text32_t.T
    return torch.logsumexp(logits.double(), dim=1).cpu().numpy()


def _search_block(
    block: np.ndarray, start: int, pool: _Pool, index: Any, text32: np.ndarray, tau: float, kmax: float, device: Any
) -> None:
    """Propose this block's rows to the pool: FAISS top-K per class, doubled until no missed row can qualify."""
    num_rows, dim = block.shape
    num_classes = text32.shape[0]
    text32_t = torch.from_numpy(text32).to(device)
    augmented = np.empty((num_rows, dim + 1), np.float32)  # [tau e_s, -LSE_s]
    scaled = augmented[:, :dim]
    np.multiply(block, np.float32(tau), out=scaled, dtype=np.float32)
    lse = _lse_float32(scaled, text32_t, device)
    augmented[:, dim] = -lse
    queries = np.hstack([text32, np.ones((num_classes, 1), np.float32)])  # [t_c, 1]
    norm_product = (
        float(_row_norms(scaled, start, tau).max()) * (1 + 1e-4) * float(np.linalg.norm(text32, axis=1).max())
    )
    delta = _float32_margin(tau, norm_product, dim, float(np.abs(lse).max()))
    index.reset()
    index.add(augmented)

    text64_t = text32_t.double()
    scored = np.zeros(num_rows, bool)
    log_odds = np.empty((num_rows, num_classes))

    def propose(classes: np.ndarray, rows_per_class: list[np.ndarray]) -> None:
        fresh = np.unique(np.concatenate(rows_per_class))
        fresh = fresh[~scored[fresh]]
        if len(fresh):
            log_odds[fresh] = _block_log_odds(block[fresh], text64_t, tau, device)
            scored[fresh] = True
        for c, rows in zip(classes, rows_per_class, strict=True):
            rows = rows[log_odds[rows, c] >= pool.threshold[c] - 2.0 * pool.eps]  # what the pool would drop
            pool.add(int(c), start + rows, log_odds[rows, c], block[rows])

    pending = np.arange(num_classes)
    k = min(num_rows, 2 * pool.m)
    while len(pending):
        if k > kmax:  # beyond the GPU's selection limit: score the whole block for these classes
            propose(pending, [np.arange(num_rows)] * len(pending))
            return
        scores, found = index.search(queries[pending], k)
        floor = log_odds_to_log_probability(pool.threshold[pending] - 3.0 * pool.eps)
        propose(pending, [found[j][scores[j] + delta >= floor[j]] for j in range(len(pending))])
        if k == num_rows:
            return
        # A missed row scores <= the k-th score, so its log p <= kth + delta: it can qualify only if that reaches
        # the (updated) m-th best, converted to log p with the eps margin of the pool.
        floor = log_odds_to_log_probability(pool.threshold[pending] - 3.0 * pool.eps)
        pending = pending[scores[:, k - 1] + delta >= floor]
        k = min(num_rows, 2 * k)


class _Search(NamedTuple):
    text: np.ndarray
    tau: float
    spans: list[tuple[int, int]]
    pool: _Pool


def _prepare(
    segment_embeddings: Any, class_text: Any, logit_scale: float, m: int, rows: Any, block_rows: int | None
) -> _Search:
    text = _text_array(class_text)
    tau = _check_scale(logit_scale)
    first, stop = _row_range(segment_embeddings, text, rows)
    _check_top_m(m, stop - first)
    spans = _blocks(first, stop, block_rows or default_block_rows(segment_embeddings))
    eps = _float64_margin(tau, _max_norm_product(text), text.shape[1], len(text))
    return _Search(text, tau, spans, _Pool(len(text), m, eps))


def top_m_segments(
    segment_embeddings: Any,
    class_text: Any,
    logit_scale: float,
    m: int,
    *,
    rows: tuple[int, int] | None = None,
    block_rows: int | None = None,
    use_gpu: bool | None = None,
) -> TopM:
    """Per class, the ``m`` segments with the highest ``p(c|s)``, by a streamed exact FAISS inner-product search.

    ``class_text`` holds only the classes the softmax runs over (drop a held-out fold first, see
    :func:`known_classes`). ``rows=(first, stop)`` limits the search to those rows (e.g. the train split of the
    segments store); indices are always rows of ``segment_embeddings``. Reads in blocks of ``block_rows``
    (default: whole chunks, ~16k rows). ``use_gpu=None`` uses a FAISS GPU index when faiss has GPUs. Same
    result as :func:`top_m_segments_torch`, index for index.
    """
    search = _prepare(segment_embeddings, class_text, logit_scale, m, rows, block_rows)
    gpu = _resolve_gpu(use_gpu)
    device = torch.device("cuda" if gpu and torch.cuda.is_available() else "cpu")
    index = _faiss_index(search.text.shape[1] + 1, gpu)
    kmax = GPU_MAX_K if gpu else _CPU_MAX_K
    with _faiss_database_tile(max(stop - start for start, stop in search.spans)):
        for start, stop in search.spans:
            block = _read(segment_embeddings, start, stop)
            _search_block(block, start, search.pool, index, search.text, search.tau, kmax, device)
    return search.pool.finish(search.text.astype(np.float64), search.tau)


def top_m_segments_torch(
    segment_embeddings: Any,
    class_text: Any,
    logit_scale: float,
    m: int,
    *,
    rows: tuple[int, int] | None = None,
    block_rows: int | None = None,
) -> TopM:
    """Brute-force reference of :func:`top_m_segments`: every row scored in float64 by torch, per block of rows."""
    search = _prepare(segment_embeddings, class_text, logit_scale, m, rows, block_rows)
    text64_t = torch.from_numpy(search.text).double()
    pool = search.pool
    for start, stop in search.spans:
        block = _read(segment_embeddings, start, stop)
        _row_norms(block, start)  # float32 accumulation of float16 rows
        z = torch.from_numpy(_block_log_odds(block, text64_t, search.tau, torch.device("cpu")))
        kth = torch.topk(z, m, dim=0).values[-1].numpy() if len(block) >= m else -math.inf
        floor = np.maximum(pool.threshold, kth) - 2.0 * pool.eps
        z_np = z.numpy()
        for c in range(len(search.text)):
            found = np.flatnonzero(z_np[:, c] >= floor[c])
            pool.add(c, start + found, z_np[found, c], block[found])
    return pool.finish(search.text.astype(np.float64), search.tau)


def _max_norm_product(text: np.ndarray) -> float:
    """Largest |e_s| |t_c| the float64 bound allows for (rows are checked to have norm <= 1.01)."""
    return _MAX_ROW_NORM * float(np.linalg.norm(text.astype(np.float64), axis=1).max())


# ------------------------------------------------------------------------------------------------ prototypes


def gather_rows(segment_embeddings: Any, indices: Any, *, block_rows: int | None = None) -> np.ndarray:
    """Rows ``indices`` (any shape) of the array, ``[*indices.shape, D]`` in its dtype.

    Reads only spans holding wanted rows, in increasing order, at most ``block_rows`` rows at a time.
    """
    idx = np.asarray(indices, dtype=np.int64)
    num_segments, dim = (int(n) for n in segment_embeddings.shape)
    if idx.size and (idx.min() < 0 or idx.max() >= num_segments):
        raise IndexError(f"segment indices must lie in [0, {num_segments}), got {idx.min()}..{idx.max()}")
    block_rows = block_rows or default_block_rows(segment_embeddings)
    unique, inverse = np.unique(idx.ravel(), return_inverse=True)
    out = np.empty((len(unique), dim), dtype=np.dtype(segment_embeddings.dtype))
    bounds = np.searchsorted(unique // block_rows, np.unique(unique // block_rows), side="right")
    lo = 0
    for hi in bounds:
        first, last = int(unique[lo]), int(unique[hi - 1])
        out[lo:hi] = _read(segment_embeddings, first, last + 1)[unique[lo:hi] - first]
        lo = hi
    return out[inverse].reshape(*idx.shape, dim)


def _normalise(vectors: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    if (norms == 0).any():
        raise Clips4Error(f"{what}: a prototype has zero length; the segment embeddings are not unit vectors")
    return (vectors / norms).astype(np.float32)


def known_prototypes(segment_embeddings: Any, indices: Any, *, block_rows: int | None = None) -> np.ndarray:
    """Known-class prototypes float32 ``[C, D]``: the L2-normalised mean of each class's top-m segment rows.

    Rows are summed in float64 in increasing index order, so the same index sets give bit-identical prototypes
    whatever their rank order.
    """
    idx = np.sort(np.asarray(indices, dtype=np.int64), axis=1)
    rows = gather_rows(segment_embeddings, idx, block_rows=block_rows).astype(np.float64)
    return _normalise(rows.sum(axis=1) / idx.shape[1], "known prototypes")


def draw_unknowns(num_segments: int, count: int, seed: int) -> np.ndarray:
    """``count`` distinct segment indices int64, drawn uniformly without replacement from ``seed``, sorted."""
    if count < 1:
        raise ParamsError(f"unknowns: must be an integer >= 1, got {count}")
    if count > num_segments:
        raise ParamsError(
            f"unknowns: {count} is more than the {num_segments} segments of the training set; "
            "lower unknowns in params.yaml (or cache more training images)"
        )
    drawn = np.random.default_rng(seed).choice(num_segments, size=count, replace=False)
    return np.sort(drawn.astype(np.int64))


def unknown_prototypes(segment_embeddings: Any, indices: Any, *, block_rows: int | None = None) -> np.ndarray:
    """Unknown prototypes float32 ``[U, D]``: the drawn segments' embeddings, re-normalised (float16 rounding)."""
    rows = gather_rows(segment_embeddings, np.asarray(indices, dtype=np.int64), block_rows=block_rows)
    return _normalise(rows.astype(np.float64), "unknown prototypes")


def known_classes(class_names: Sequence[str], held_out: Sequence[str] | None) -> tuple[tuple[str, ...], np.ndarray]:
    """The classes left after removing a held-out fold, and their int64 indices into ``class_names``.

    Class-free experiments never name the held-out classes: pass ``class_text[indices]`` to the search, so they
    are absent from the softmax as well as from the outputs.
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

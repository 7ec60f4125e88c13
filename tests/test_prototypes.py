"""Known/unknown prototypes: FAISS top-m equals the brute-force reference, streaming, held-out folds, unknowns."""

from __future__ import annotations

import numpy as np
import pytest

from clips4.errors import Clips4Error
from clips4.params import ParamsError
from clips4.prototypes import (
    _canonical_log_odds,
    class_log_probabilities,
    draw_unknowns,
    gather_rows,
    known_classes,
    known_prototypes,
    top_m_segments,
    top_m_segments_torch,
    unknown_prototypes,
)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _random(num: int, dim: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    segments = _unit(rng.standard_normal((num, dim))).astype(np.float16)
    text = _unit(rng.standard_normal((classes, dim))).astype(np.float32)
    return segments, text


def _exhaustive(segments: np.ndarray, text: np.ndarray, tau: float, m: int) -> np.ndarray:
    """Top m per class by the canonical log-odds over *all* rows, ties to the smaller index (tiny inputs only)."""
    z = _canonical_log_odds(segments, text.astype(np.float64), tau)
    rows = np.arange(len(segments))
    return np.stack([np.lexsort((rows, -z[:, c]))[:m] for c in range(len(text))])


class _Recorder:
    """An array-like that records the row spans it is asked for (as a zarr.Array would be read)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.spans = data, data.shape, data.dtype, []

    def __getitem__(self, key: slice) -> np.ndarray:
        self.spans.append((key.start, key.stop))
        return self.data[key]


def test_two_clusters_give_two_prototypes() -> None:
    rng = np.random.default_rng(3)
    axis = np.eye(8)
    centre_a, centre_b = _unit(axis[0] + 0.3 * axis[6]), _unit(axis[1] + 0.3 * axis[7])
    cluster_a = _unit(centre_a + 0.05 * rng.standard_normal((30, 8)))
    cluster_b = _unit(centre_b + 0.05 * rng.standard_normal((30, 8)))
    ambiguous = _unit(0.6 * axis[0] + 0.8 * axis[1] + 0.05 * rng.standard_normal((20, 8)))  # between classes 0, 1
    others = _unit(axis[rng.integers(2, 6, 40)] + 0.05 * rng.standard_normal((40, 8)))  # classes 2-3, no-class axes
    segments = np.concatenate([others[:20], cluster_a, ambiguous, others[20:], cluster_b]).astype(np.float32)
    text = axis[:4].astype(np.float32)  # class c points along axis c
    top = top_m_segments(segments, text, 100.0, 10, block_rows=16)
    assert set(top.indices[0]) <= set(range(20, 50)) and set(top.indices[1]) <= set(range(90, 120))
    prototypes = known_prototypes(segments, top.indices)
    assert prototypes[0] @ centre_a > 0.995 and prototypes[1] @ centre_b > 0.995
    np.testing.assert_allclose(np.linalg.norm(prototypes, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("tau", [10.0, 100.0, 2000.0])  # 2000: p rounds to 1 for many rows (saturated softmax)
def test_faiss_equals_torch_reference(tau: float) -> None:
    segments, text = _random(1000, 16, 5)
    faiss_top = top_m_segments(segments, text, tau, 8, block_rows=128)  # 128 does not divide 1000
    torch_top = top_m_segments_torch(segments, text, tau, 8, block_rows=300)
    np.testing.assert_array_equal(faiss_top.indices, torch_top.indices)
    np.testing.assert_array_equal(faiss_top.indices, _exhaustive(segments, text, tau, 8))
    np.testing.assert_array_equal(faiss_top.log_probability, torch_top.log_probability)
    np.testing.assert_array_equal(
        known_prototypes(segments, faiss_top.indices), known_prototypes(segments, torch_top.indices)
    )
    expected = np.take_along_axis(class_log_probabilities(segments, text, tau).T, faiss_top.indices, axis=1)
    np.testing.assert_allclose(faiss_top.log_probability, expected, rtol=1e-5, atol=1e-6)
    assert (np.diff(faiss_top.log_probability, axis=1) <= 0).all()  # best first


def test_streaming_equals_one_block() -> None:
    segments, text = _random(700, 12, 4, seed=1)
    whole = top_m_segments(segments, text, 50.0, 6, block_rows=700)
    for block_rows in (1, 7, 97, 699):
        streamed = top_m_segments(segments, text, 50.0, 6, block_rows=block_rows)
        np.testing.assert_array_equal(streamed.indices, whole.indices)
        np.testing.assert_array_equal(streamed.log_probability, whole.log_probability)
    part = top_m_segments(segments, text, 50.0, 6, rows=(100, 650), block_rows=64)  # a split: rows 100..649
    np.testing.assert_array_equal(part.indices, top_m_segments(segments[100:650], text, 50.0, 6).indices + 100)
    np.testing.assert_array_equal(part.indices, top_m_segments_torch(segments, text, 50.0, 6, rows=(100, 650)).indices)


def test_selection_limit_falls_back_to_scoring_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    import clips4.prototypes

    segments, text = _random(600, 8, 4, seed=6)
    monkeypatch.setattr(clips4.prototypes, "_CPU_MAX_K", 20)  # as a GPU index's k limit, but tiny
    limited = top_m_segments(segments, text, 200.0, 12, block_rows=256)
    np.testing.assert_array_equal(limited.indices, top_m_segments_torch(segments, text, 200.0, 12).indices)


def test_duplicate_rows_tie_to_the_smaller_index() -> None:
    segments, text = _random(400, 8, 3, seed=2)
    best = int(_exhaustive(segments, text, 100.0, 1)[1, 0])
    assert 10 < best < 399
    segments[[10, 399]] = segments[best]  # three identical rows, all the best for class 1
    faiss_top = top_m_segments(segments, text, 100.0, 2, block_rows=64)
    torch_top = top_m_segments_torch(segments, text, 100.0, 2, block_rows=64)
    np.testing.assert_array_equal(faiss_top.indices[1], [10, best])
    np.testing.assert_array_equal(faiss_top.indices, torch_top.indices)


def test_held_out_classes_leave_the_softmax_and_the_outputs() -> None:
    names = ("sky", "tree", "road", "car")
    known, index = known_classes(names, held_out=["road"])
    assert known == ("sky", "tree", "car") and index.tolist() == [0, 1, 3] and index.dtype == np.int64
    segments, text = _random(300, 8, 4, seed=4)
    top = top_m_segments(segments, text[index], 20.0, 5)
    assert top.indices.shape == (3, 5)
    chosen = top.indices[2]  # "car", now row 2
    with_fold = class_log_probabilities(segments[chosen], text[index], 20.0)[:, 2]
    all_four = class_log_probabilities(segments[chosen], text, 20.0)[:, 3]
    np.testing.assert_allclose(top.log_probability[2], with_fold, rtol=1e-5, atol=1e-6)
    assert (with_fold > all_four).all()  # one competitor fewer: every probability goes up
    with pytest.raises(Clips4Error, match="fold"):
        known_classes(names, held_out=["boat"])


def test_draw_unknowns() -> None:
    first, again, other = draw_unknowns(1000, 64, seed=0), draw_unknowns(1000, 64, seed=0), draw_unknowns(1000, 64, 1)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.dtype == np.int64 and len(np.unique(first)) == 64 and first.min() >= 0 and first.max() < 1000
    assert len(np.unique(draw_unknowns(64, 64, seed=5))) == 64
    with pytest.raises(ParamsError, match="unknowns"):
        draw_unknowns(10, 11, seed=0)
    segments, _ = _random(1000, 8, 2)
    prototypes = unknown_prototypes(segments, first)
    assert prototypes.dtype == np.float32 and prototypes.shape == (64, 8)
    np.testing.assert_allclose(prototypes, _unit(segments[first].astype(np.float64)), atol=1e-6)


def test_top_m_larger_than_the_segments_names_top_m() -> None:
    segments, text = _random(10, 8, 3)
    with pytest.raises(ParamsError, match="top_m"):
        top_m_segments(segments, text, 100.0, 11)
    with pytest.raises(ParamsError, match="top_m"):
        top_m_segments_torch(segments, text, 100.0, 11)


def test_float16_input_and_block_reads() -> None:
    segments, text = _random(500, 8, 3, seed=5)
    as_float32 = segments.astype(np.float32)  # the same values
    top16 = top_m_segments(segments, text, 100.0, 4, block_rows=64)
    top32 = top_m_segments(as_float32, text, 100.0, 4, block_rows=64)
    np.testing.assert_array_equal(top16.indices, top32.indices)
    recorder = _Recorder(segments)
    prototypes = known_prototypes(recorder, top16.indices, block_rows=64)
    assert prototypes.dtype == np.float32 and prototypes.shape == (3, 8)
    np.testing.assert_array_equal(prototypes, known_prototypes(as_float32, top16.indices))
    starts = [start for start, _ in recorder.spans]
    assert starts == sorted(starts) and all(stop - start <= 64 for start, stop in recorder.spans)
    wanted = np.array([[499, 3], [64, 3]])
    np.testing.assert_array_equal(gather_rows(recorder, wanted, block_rows=64), segments[wanted])

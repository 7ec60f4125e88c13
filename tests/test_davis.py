"""DAVIS 2017 J and F against hand-computed values, with the official evaluator's rules."""

import numpy as np
import pytest

from clips4.data.images import write_palette_png
from clips4.errors import Clips4Error
from clips4.eval.davis import (
    boundary_f,
    boundary_map,
    boundary_tolerance,
    evaluate_results,
    jaccard,
    read_results,
    score_sequence,
    statistics,
    summarize,
    write_results,
)


def square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_jaccard_hand_values_and_empty_union():
    truth = square(6, 0, 0, 2)  # 4 pixels
    prediction = square(6, 0, 1, 2)  # 4 pixels, 2 shared
    assert jaccard(truth, prediction) == pytest.approx(2 / 6)
    empty = np.zeros((6, 6), bool)
    assert jaccard(empty, empty) == 1.0  # nothing to find and nothing found
    assert jaccard(truth, empty) == 0.0


def test_boundary_map_is_offset_half_a_pixel_towards_the_origin():
    boundary = boundary_map(square(5, 1, 1, 2))
    expected = np.zeros((5, 5), bool)
    expected[[0, 0, 0, 1, 1, 2, 2, 2], [0, 1, 2, 0, 2, 0, 1, 2]] = True
    np.testing.assert_array_equal(boundary, expected)
    # The image border is not a boundary: a full mask has none, a left half only its vertical edge.
    assert not boundary_map(np.ones((4, 4), bool)).any()
    half = np.zeros((10, 10), bool)
    half[:, :5] = True
    assert np.array_equal(np.argwhere(boundary_map(half)), [[r, 4] for r in range(10)])


def test_tolerance_is_ceil_of_0_008_diagonal():
    assert boundary_tolerance((10, 10)) == 1  # 0.113 -> 1
    assert boundary_tolerance((100, 100)) == 2  # 1.131 -> 2
    assert boundary_tolerance((100, 60)) == 1  # 0.933 -> 1
    assert boundary_tolerance((480, 854)) == 8  # DAVIS 480p: 7.84 -> 8


def test_one_pixel_shift_is_within_tolerance_two_pixels_is_not():
    truth = np.zeros((10, 10), bool)
    truth[:, :5] = True
    shifted_one, shifted_two = np.zeros_like(truth), np.zeros_like(truth)
    shifted_one[:, :6] = True
    shifted_two[:, :7] = True
    assert boundary_f(truth, shifted_one) == 1.0  # tolerance 1 pixel on a 10 x 10 image
    assert boundary_f(truth, shifted_two) == 0.0
    assert jaccard(truth, shifted_one) == pytest.approx(50 / 60)


def test_boundary_f_partial_match():
    truth = square(20, 2, 2, 3)  # boundary: a 4 x 4 ring of 12 pixels
    prediction = truth | square(20, 12, 12, 3)  # plus a far square: 24 boundary pixels, 12 matched
    precision, recall = 12 / 24, 1.0
    assert boundary_f(truth, prediction) == pytest.approx(2 * precision * recall / (precision + recall))


def test_boundary_f_empty_masks():
    truth, empty = square(10, 2, 2, 3), np.zeros((10, 10), bool)
    assert boundary_f(truth, empty) == 0.0  # empty prediction: P = 1, R = 0
    assert boundary_f(empty, truth) == 0.0  # empty truth: P = 0, R = 1
    assert boundary_f(empty, empty) == 1.0


def test_statistics_mean_recall_decay():
    mean, recall, decay = statistics(np.arange(8) / 10)
    assert mean == pytest.approx(0.35)
    assert recall == pytest.approx(2 / 8)  # 0.6 and 0.7 are above 0.5
    # bins start at round(linspace(1, 8, 5)) - 1 = 0, 2, 4, 5, 7: first [0, .1, .2], last [.5, .6, .7]
    assert decay == pytest.approx(0.1 - 0.6)
    assert statistics(np.array([1.0, 0.5])) == pytest.approx((0.75, 0.5, 0.5))


def test_first_and_last_frames_are_left_out():
    truth = np.stack([square(10, 2, 2, 3)] * 4).astype(np.uint8)
    prediction = truth.copy()
    prediction[0] = 0  # wrong on the first and last frames only
    prediction[3] = 0
    (scores,) = score_sequence("seq", truth, prediction)
    assert scores.name == "seq_1" and len(scores.j) == 2
    np.testing.assert_array_equal(scores.j, [1.0, 1.0])
    np.testing.assert_array_equal(scores.f, [1.0, 1.0])
    prediction[1] = 0  # a scored frame
    (scores,) = score_sequence("seq", truth, prediction)
    np.testing.assert_array_equal(scores.j, [0.0, 1.0])


def test_means_are_taken_over_objects():
    truth = np.zeros((5, 12, 12), np.uint8)
    truth[:, 1:4, 1:4] = 1
    truth[:, 7:10, 7:10] = 2
    prediction = np.where(truth == 2, 0, truth)  # object 2 is never found
    summary = summarize(score_sequence("a", truth, prediction))
    assert summary.objects == 2
    assert summary.j_mean == pytest.approx(50.0) and summary.f_mean == pytest.approx(50.0)
    assert summary.jf_mean == pytest.approx(50.0)
    assert summary.per_object == {"a_1": (100.0, 100.0), "a_2": (0.0, 0.0)}
    assert summary.j_recall == pytest.approx(50.0) and summary.j_decay == pytest.approx(0.0)


def test_void_in_truth_is_background_and_unknown_ids_are_refused():
    truth = np.stack([square(10, 2, 2, 3)] * 3).astype(np.uint8)
    truth[:, 0, :] = 255
    (scores,) = score_sequence("v", truth, np.where(truth == 255, 0, truth))
    np.testing.assert_array_equal(scores.j, [1.0])
    with pytest.raises(Clips4Error, match="predicted object id 2"):
        score_sequence("v", truth, np.full_like(truth, 2))
    with pytest.raises(Clips4Error, match="at least 3"):
        score_sequence("v", truth[:2], truth[:2])


def test_results_round_trip_and_folder_evaluation(tmp_path):
    truth = np.zeros((4, 10, 10), np.uint8)
    for t in range(4):
        truth[t, 2:5, 2 + t : 5 + t] = 1  # a square moving right by one pixel per frame
    frame_ids = [f"{t:05d}" for t in range(4)]
    for frame_id, mask in zip(frame_ids, truth, strict=True):
        write_palette_png(tmp_path / "davis" / "Annotations" / "480p" / "s" / f"{frame_id}.png", mask)
    prediction = truth.copy()
    prediction[2] = truth[1]  # frame 2 lags one pixel behind: J = 6 / 12
    write_results(tmp_path / "results", "s", frame_ids, prediction)
    np.testing.assert_array_equal(read_results(tmp_path / "results", "s", frame_ids), prediction)
    summary = evaluate_results(tmp_path / "davis", tmp_path / "results", ["s"])
    assert summary.j_mean == pytest.approx(100 * (1.0 + 0.5) / 2)
    assert summary.f_mean == pytest.approx(100.0)  # a one-pixel lag is within the 1-pixel tolerance
    (tmp_path / "results" / "s" / "00002.png").unlink()
    with pytest.raises(Clips4Error, match=r"00002\.png: predicted mask missing"):
        evaluate_results(tmp_path / "davis", tmp_path / "results", ["s"])

"""mIoU and pixel accuracy over an accumulated confusion matrix, mmsegmentation's conventions (hand-computed)."""

import numpy as np

from clips4.ops.metrics import confusion_matrix, mean_iou, per_class_iou, pixel_accuracy


def test_hand_made_confusion():
    label = np.array([[0, 0, 1, 1], [2, 2, 255, 255]], np.uint8)
    prediction = np.array([[0, 1, 1, 1], [2, 0, 3, 3]], np.uint8)
    confusion = confusion_matrix(label, prediction, 5)
    assert confusion.sum() == 6  # 255 ignored
    iou = per_class_iou(confusion)
    # class 0: TP 1, FP 1 (a 2 predicted 0), FN 1 -> 1/3; class 1: TP 2, FP 1 -> 2/3; class 2: TP 1, FN 1 -> 1/2
    np.testing.assert_allclose(iou[:3], [100 / 3, 200 / 3, 50.0])
    # class 3 is predicted only on ignored pixels, class 4 nowhere: both unions are empty -> no IoU
    assert np.isnan(iou[3]) and np.isnan(iou[4])
    assert abs(mean_iou(confusion) - np.mean([100 / 3, 200 / 3, 50.0])) < 1e-9
    assert abs(pixel_accuracy(confusion) - 400 / 6) < 1e-9


def test_predicted_but_absent_class_counts_as_zero():
    # mmsegmentation: label [0,0,1,1], prediction [0,0,1,2] -> IoU 100, 50, 0 -> mIoU 50 (not 75)
    confusion = confusion_matrix(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 2]), 3)
    np.testing.assert_allclose(per_class_iou(confusion), [100.0, 50.0, 0.0])
    assert mean_iou(confusion) == 50.0
    assert pixel_accuracy(confusion) == 75.0


def test_areas_are_summed_over_the_set_before_dividing():
    # image A: class 0 all right (4 px); image B: class 1, 1 of 2 px right, the other predicted 0.
    confusion = confusion_matrix(np.array([0, 0, 0, 0]), np.array([0, 0, 0, 0]), 2)
    confusion += confusion_matrix(np.array([1, 1]), np.array([1, 0]), 2)
    # set totals: class 0 TP 4, FP 1 -> 80; class 1 TP 1, FN 1 -> 50 (per-image averaging would differ)
    np.testing.assert_allclose(per_class_iou(confusion), [80.0, 50.0])
    assert mean_iou(confusion) == 65.0


def test_all_ignored_gives_nan_not_a_number():
    confusion = confusion_matrix(np.array([255, 255]), np.array([0, 1]), 2)
    assert confusion.sum() == 0 and np.isnan(mean_iou(confusion))


def test_perfect_prediction():
    label = np.random.default_rng(0).integers(0, 5, (8, 8)).astype(np.uint8)
    confusion = confusion_matrix(label, label, 5)
    assert mean_iou(confusion) == 100.0 and pixel_accuracy(confusion) == 100.0

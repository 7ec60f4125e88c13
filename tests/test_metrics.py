"""mIoU and pixel accuracy over an accumulated confusion matrix, mmsegmentation's conventions."""

import numpy as np

from clips4.eval.metrics import confusion_matrix, mean_iou, per_class_iou, pixel_accuracy


def test_hand_made_confusion():
    label = np.array([[0, 0, 1, 1], [2, 2, 255, 255]], np.uint8)
    prediction = np.array([[0, 1, 1, 1], [2, 0, 3, 3]], np.uint8)
    confusion = confusion_matrix(label, prediction, 4)
    assert confusion.sum() == 6  # 255 ignored
    iou = per_class_iou(confusion)
    # class 0: TP 1, FP 1 (a 2 predicted 0), FN 1 -> 1/3; class 1: TP 2, FP 1 -> 2/3; class 2: TP 1, FN 1 -> 1/2
    np.testing.assert_allclose(iou[:3], [100 / 3, 200 / 3, 50.0])
    assert np.isnan(iou[3])  # absent from the ground truth: excluded from the mean
    assert abs(mean_iou(confusion) - np.mean([100 / 3, 200 / 3, 50.0])) < 1e-9
    assert abs(pixel_accuracy(confusion) - 400 / 6) < 1e-9


def test_perfect_prediction():
    label = np.random.default_rng(0).integers(0, 5, (8, 8)).astype(np.uint8)
    confusion = confusion_matrix(label, label, 5)
    assert mean_iou(confusion) == 100.0 and pixel_accuracy(confusion) == 100.0

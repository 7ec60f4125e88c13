"""Class-free scores on hand-computed confusion matrices: known / unknown mIoU, their harmonic mean, the NaN rule."""

import math

import numpy as np
import pytest

from clips4.errors import Clips4Error
from clips4.eval.class_free import class_free_scores, harmonic_mean
from clips4.ops.metrics import per_class_iou

NAMES = ("sky", "grass", "cat", "dog")


def test_known_unknown_and_hiou_by_hand():
    # rows = truth, columns = prediction
    confusion = np.array(
        [
            [8, 2, 0, 0],  # sky: TP 8, FN 2, FP 0 -> 8 / 10 = 80
            [0, 6, 0, 0],  # grass: TP 6, FP 2 -> 6 / 8 = 75
            [0, 0, 3, 1],  # cat: TP 3, FN 1, FP 1 -> 3 / 5 = 60
            [0, 0, 1, 1],  # dog: TP 1, FN 1, FP 1 -> 1 / 3
        ]
    )
    scores = class_free_scores(per_class_iou(confusion), NAMES, ["cat", "dog"])
    unknown = (60 + 100 / 3) / 2
    assert scores.miou_known == pytest.approx(77.5)
    assert scores.miou_unknown == pytest.approx(unknown)
    assert scores.hiou == pytest.approx(2 * 77.5 * unknown / (77.5 + unknown))


def test_mmseg_nan_rule_inside_each_mean():
    confusion = np.array(
        [
            [5, 0, 5, 0],  # sky: TP 5, FN 5 -> 50
            [0, 0, 0, 0],  # grass: absent and never predicted -> NaN, left out of the known mean
            [0, 0, 0, 0],  # cat: absent but predicted 5 times -> 0, counted in the unknown mean
            [0, 0, 0, 4],  # dog: 100
        ]
    )
    iou = per_class_iou(confusion)
    assert math.isnan(iou[1]) and iou[2] == 0
    scores = class_free_scores(iou, NAMES, ["cat", "dog"])
    assert scores.miou_known == pytest.approx(50.0)  # not (50 + 0) / 2: the NaN class is no class
    assert scores.miou_unknown == pytest.approx(50.0)  # (0 + 100) / 2: predicted-but-absent counts as 0
    assert scores.hiou == pytest.approx(50.0)


def test_a_mean_of_empty_unions_is_undefined_not_nan():
    confusion = np.zeros((4, 4), np.int64)
    confusion[0, 0] = confusion[1, 1] = 3
    scores = class_free_scores(per_class_iou(confusion), NAMES, ["cat", "dog"])
    assert scores.miou_known == pytest.approx(100.0)
    assert scores.miou_unknown is None and scores.hiou is None


def test_harmonic_mean_edges():
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(80.0, 0.0) == 0.0
    assert harmonic_mean(60.0, 60.0) == pytest.approx(60.0)


def test_a_fold_naming_an_unknown_class_is_refused():
    with pytest.raises(Clips4Error, match=r"fold: held-out classes \['horse'\]"):
        class_free_scores(np.full(4, 50.0), NAMES, ["horse"])

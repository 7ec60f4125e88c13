"""The student at test time: window placement, sliding-window embeddings (the reader CLIP shares), the teacher
check."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F

from clips4.errors import Clips4Error
from clips4.inference.reading import ReadSettings, student_features
from clips4.inference.teacher import check_teacher
from clips4.ops.windows import window_starts


def test_window_starts_cover_the_side_and_end_flush():
    assert window_starts(96, 448, 224) == [0]
    assert window_starts(500, 448, 224) == [0, 52]
    assert window_starts(1000, 448, 224) == [0, 224, 448, 552]  # mmseg slide: 4 grids, the last at 552
    assert window_starts(448, 448, 224) == [0]


class PointwiseStudent(torch.nn.Module):
    """A 1x1 convolution at full resolution: its embedding of a pixel does not depend on the window around it."""

    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.projection = torch.nn.Conv2d(3, 8, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(images), dim=1)


def test_sliding_windows_equal_one_pass_for_a_pointwise_student():
    student = PointwiseStudent()
    images = torch.randn(2, 3, 37, 53)
    whole = student(images)
    slid = student_features(student, images, ReadSettings(protocol="slide", window=16, stride=7))
    assert slid.shape == whole.permute(0, 2, 3, 1).shape
    torch.testing.assert_close(slid, whole.permute(0, 2, 3, 1), atol=1e-5, rtol=1e-5)


def test_whole_protocol_resizes_to_the_dataset_scale():
    student = PointwiseStudent()
    images = torch.randn(1, 3, 40, 60)
    # Pascal Context's test scale (520, 520): the long side becomes 520.
    out = student_features(student, images, ReadSettings(protocol="whole", dataset_name="context", window=16, stride=8))
    assert out.shape == (1, 347, 520, 8)
    synth = student_features(student, images, ReadSettings(protocol="whole", dataset_name="synth", window=16, stride=8))
    assert synth.shape == (1, 40, 60, 8)


def test_a_student_of_another_clip_is_refused_naming_the_file():
    loaded = types.SimpleNamespace(model_name="clips4-tiny-vit", sha256="abc")
    check_teacher({"clip": {"model_name": "clips4-tiny-vit", "weights_sha256": "abc"}}, loaded, "models/clips4.pt")
    with pytest.raises(Clips4Error, match=r"models/clips4\.pt: trained against CLIP clips4-tiny-vit \(other\)"):
        check_teacher(
            {"clip": {"model_name": "clips4-tiny-vit", "weights_sha256": "other"}}, loaded, "models/clips4.pt"
        )

"""The student factory: registry, configs, shapes, and the ImageNet weights of the ResNet (local files only)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from clips4.errors import Clips4Error
from clips4.model import build_student, create_student, get_model_config, list_models


def test_registry_lists_the_packaged_configs_and_returns_copies():
    assert {"pspnet-r50-d8", "pspnet-synth", "pspnet-test"} <= set(list_models())
    config = get_model_config("pspnet-r50-d8")
    assert config["depth"] == 50 and config["dilations"] == [1, 1, 2, 4] and config["strides"] == [1, 2, 1, 1]
    assert config["pool_scales"] == [1, 2, 3, 6]
    config["dilations"].append(8)
    assert get_model_config("pspnet-r50-d8")["dilations"] == [1, 1, 2, 4]


def test_unknown_name_suggests_close_matches():
    with pytest.raises(Clips4Error, match="Did you mean: pspnet-synth"):
        create_student("pspnet-synt", 16)


def test_unknown_override_is_an_error():
    with pytest.raises(Clips4Error, match="unknown keys \\['width'\\]"):
        create_student("pspnet-test", 16, width=8)


@pytest.mark.parametrize("name", ["pspnet-test", "pspnet-synth"])
def test_small_students_give_unit_embeddings_at_their_output_stride(name):
    student = create_student(name, embed_dim=24).eval()
    out = student(torch.randn(2, 3, 40, 48))
    assert student.output_stride == 4 and student.embed_dim == 24
    assert out.shape == (2, 24, 10, 12)
    assert torch.allclose(out.norm(dim=1), torch.ones(2, 10, 12), atol=1e-5)
    assert student.mean == (0.485, 0.456, 0.406) and student.std == (0.229, 0.224, 0.225)


def test_overrides_win_and_config_rebuilds_the_same_model():
    student = create_student("pspnet-test", embed_dim=12, head_channels=4)
    assert student.config["head_channels"] == 4 and student.config["embed_dim"] == 12
    assert student.config["name"] == "pspnet-test"
    twin = build_student(student.config)
    twin.load_state_dict(student.state_dict(), strict=True)
    images = torch.randn(2, 3, 16, 16)
    assert torch.equal(twin.eval()(images), student.eval()(images))


def test_r50_d8_is_dilated_to_output_stride_8():
    student = create_student("pspnet-r50-d8", embed_dim=32, random_init=True).eval()
    assert student.output_stride == 8
    body = student.backbone.body
    assert body.layer3[1].conv2.dilation == (2, 2) and body.layer4[1].conv2.dilation == (4, 4)
    assert body.layer2[0].conv2.stride == (2, 2) and body.layer4[0].conv2.stride == (1, 1)
    with torch.no_grad():
        assert student(torch.randn(1, 3, 64, 64)).shape == (1, 32, 8, 8)


def test_inconsistent_dilations_are_an_error():
    with pytest.raises(Clips4Error, match="use \\[1, 1, 2, 4\\]"):
        create_student("pspnet-r50-d8", 32, random_init=True, dilations=[1, 1, 2, 2])


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    return tmp_path / "checkpoints"


def test_missing_imagenet_weights_say_where_to_put_them(hub_dir):
    with pytest.raises(Clips4Error) as err:
        create_student("pspnet-r50-d8", 32)
    message = str(err.value)
    assert str(hub_dir) in message and "resnet50-0676ba61.pth" in message and "random_init" in message
    with pytest.raises(Clips4Error, match="not found"):
        create_student("pspnet-r50-d8", 32, pretrained_backbone=hub_dir / "nothing.pth")


def test_imagenet_weights_load_from_the_hub_cache(hub_dir):
    reference = torchvision.models.resnet50()
    torch.save(reference.state_dict(), hub_dir / "resnet50-0676ba61.pth")  # with fc: dropped on load
    student = create_student("pspnet-r50-d8", 32)
    assert torch.equal(student.backbone.body.layer4[2].conv3.weight, reference.layer4[2].conv3.weight)


def test_corrupt_or_unfit_weights_are_clear_errors(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(Clips4Error, match="not a readable torch weights file"):
        create_student("pspnet-r50-d8", 32, pretrained_backbone=corrupt)
    unfit = tmp_path / "unfit.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, unfit)
    with pytest.raises(Clips4Error, match="do not fit a ResNet-50"):
        create_student("pspnet-r50-d8", 32, pretrained_backbone=unfit)


def test_convnet_has_no_imagenet_weights():
    with pytest.raises(Clips4Error, match="no ImageNet weights"):
        create_student("pspnet-test", 16, pretrained_backbone="resnet50.pth")

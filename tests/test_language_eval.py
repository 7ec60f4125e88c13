"""Language-driven evaluation: MaskCLIP's prompt names, VOC's background left unprompted, the test protocols,
and the evaluate stage on a real-layout (VOC) fixture with a tiny CLIP checkpoint."""

import json

import numpy as np
import pytest
import torch

from clips4.clip import build_model, model_config
from clips4.data.layouts import open_dataset
from clips4.eval.scoring import score_segmenter
from clips4.inference.language import language_classes
from clips4.inference.reading import ReadSettings, clip_features, rescale_size
from clips4.params import load_params
from clips4.resources import class_names, prompt_names
from tests.fixtures import make_voc


def test_prompt_names_are_maskclips_human_names():
    voc = prompt_names("voc", class_names("voc"))
    assert len(voc) == 21
    renamed = dict(zip(class_names("voc"), voc, strict=True))
    assert renamed["aeroplane"] == "airplane" and renamed["diningtable"] == "dining table"
    assert renamed["pottedplant"] == "potted plant" and renamed["tvmonitor"] == "tv monitor"
    assert renamed["motorbike"] == "motorbike"
    context = dict(zip(class_names("context"), prompt_names("context", class_names("context")), strict=True))
    assert context["aeroplane"] == "airplane" and context["tvmonitor"] == "tv monitor"
    coco = dict(zip(class_names("cocostuff"), prompt_names("cocostuff", class_names("cocostuff")), strict=True))
    assert coco["wall-other"] == "wall" and coco["building-other"] == "building" and coco["desk-stuff"] == "desk"
    assert coco["floor-marble"] == "marble floor" and coco["person"] == "person"
    assert sum(a != b for a, b in coco.items()) == 29 and len(set(coco.values())) == 171
    # a subset (a fold's known classes) maps by name; the synthetic world's names pass unchanged
    assert prompt_names("context", ["tvmonitor", "bag"]) == ["tv monitor", "bag"]
    assert prompt_names("synth", ["grass", "ball"]) == ["grass", "ball"]
    with pytest.raises(KeyError, match="not a voc class"):
        prompt_names("voc", ["airplane"])


def test_voc_background_gets_no_prompt_and_is_ignored():
    classes = language_classes("voc", class_names("voc"))
    assert classes.label_ids == tuple(range(1, 21)) and "background" not in classes.names
    assert classes.prompts[0] == "airplane" and len(classes.prompts) == 20
    label = np.array([[0, 1], [2, 255]], np.uint8)
    np.testing.assert_array_equal(classes.map_labels(label), [[255, 0], [1, 255]])
    context = language_classes("context", class_names("context"))
    assert context.label_ids == tuple(range(59))  # Context-59 has no background class left to skip


def test_background_pixels_are_ignored_in_the_score():
    classes = language_classes("voc", class_names("voc"))
    label = np.array([[0, 1], [2, 2]], np.uint8)  # background, aeroplane, bicycle x2
    prediction = np.array([[5, 0], [1, 0]])  # indices: 0 aeroplane, 1 bicycle, 5 = chair on background
    sample = type("S", (), {"label": label, "image": np.zeros((2, 2, 3), np.uint8)})()

    class Planted:  # embeddings one-hot on the predicted class, class text the identity: argmax = prediction
        def pixel_embeddings(self, images):
            return torch.nn.functional.one_hot(torch.from_numpy(prediction), len(classes.names)).float()[None]

        def class_embeddings(self, names):
            return torch.eye(len(names))

    scores = score_segmenter(Planted(), [sample], classes, where="test").language
    # aeroplane TP 1 FP 1 -> 50; bicycle TP 1 FN 1 -> 50; chair only on (ignored) background -> no IoU
    assert scores.per_class["aeroplane"] == 50.0 and scores.per_class["bicycle"] == 50.0
    assert scores.per_class["chair"] is None and "background" not in scores.per_class
    assert scores.miou == 50.0 and scores.pacc == pytest.approx(66.67)


def test_mmcv_keep_ratio_rescale():
    assert rescale_size(375, 500, (520, 520)) == (390, 520)  # Context-59: long side 520
    assert rescale_size(480, 640, (2048, 512)) == (512, 683)  # COCO-Stuff / VOC: short side 512
    assert rescale_size(100, 1000, (2048, 512)) == (205, 2048)  # ... unless the long side passes 2048


def test_whole_protocol_resizes_slide_keeps_the_size():
    model = build_model(model_config("clips4-test-vit")).eval()
    images = torch.zeros(1, 3, 48, 64)
    with torch.no_grad():
        whole = clip_features(
            model, images, ReadSettings(protocol="whole", dataset_name="context", window=32, stride=16)
        )
        slide = clip_features(
            model, images, ReadSettings(protocol="slide", dataset_name="context", window=32, stride=16)
        )
        synth = clip_features(model, images, ReadSettings("whole", "synth", window=32, stride=16))
    stride = 8  # the test ViT's patch size
    assert whole.shape[1:3] == (390 // stride + (390 % stride > 0), 520 // stride)  # 48x64 -> 390x520
    assert slide.shape[1:3] == (48 // stride, 64 // stride) == synth.shape[1:3]


def test_evaluate_on_voc_uses_prompt_names(tmp_path, monkeypatch, tiny_clip, write_params):
    from clips4.inference import segmenter
    from clips4.stages.evaluate import run_evaluate

    root = make_voc(tmp_path / "voc")
    weights = tmp_path / "clip.pt"
    tiny_clip(weights)
    write_params(
        tmp_path,
        {
            "dataset": {"name": "voc", "root": "voc"},  # relative to the params file
            "clip": {"model": "clips4-test-vit", "pretrained": str(weights), "window": 32, "stride": 16},
            # language-driven scores only: no caches for the probes, no videos
            "eval": {"protocol": "whole", "knn": {"train_images": 0}, "linear": {"train_images": 0}},
            "video": {"name": "none"},
        },
    )
    seen = []
    original = segmenter.text_embeddings
    monkeypatch.setattr(
        segmenter,
        "text_embeddings",
        lambda loaded, names, **kw: seen.append(list(names)) or original(loaded, names, **kw),
    )
    result = run_evaluate(load_params(tmp_path / "params.yaml"), tmp_path / "reports")
    assert seen == [prompt_names("voc", class_names("voc"))[1:]]  # 20 human names, no background prompt
    scores = result.scores["maskclip"]
    assert list(scores.per_class) == class_names("voc")[1:] and result.protocol == "whole"
    assert scores.images == len(open_dataset("voc", root, "val"))
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert metrics == {"maskclip": {"miou": scores.miou, "pacc": scores.pacc}}

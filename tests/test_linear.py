"""Linear probe on frozen pixel embeddings: separable, random-label and determinism checks."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clips4.eval.linear import LinearProbeConfig, evaluate_linear, features_at
from clips4.eval.probe_inputs import DenseItem


def toy_items(count: int, seed: int, random_labels: bool = False):
    """4 class blocks per image; pixel embeddings are the class direction plus noise (grid 8x8, labels 16x16)."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(count):
        grid_class = np.kron(rng.permutation(4).reshape(2, 2), np.ones((4, 4), np.int64))
        embeddings = F.one_hot(torch.from_numpy(grid_class), 6).permute(2, 0, 1).float()
        embeddings = F.normalize(embeddings + 0.2 * torch.from_numpy(rng.normal(size=(6, 8, 8))).float(), dim=0)
        label = np.kron(grid_class, np.ones((2, 2), np.int64)).astype(np.uint8)
        if random_labels:
            label = rng.integers(0, 4, label.shape).astype(np.uint8)
        label[0, :3] = 255  # ignored pixels are never sampled nor scored
        items.append(DenseItem(embeddings, label))
    return items


def test_features_at_pixel_centres_match_bilinear_upsampling():
    embeddings = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(0))
    upsampled = F.interpolate(embeddings[None], size=(8, 10), mode="bilinear", align_corners=False)[0]
    rows, cols = torch.tensor([0, 3, 7, 5]), torch.tensor([0, 9, 4, 2])
    torch.testing.assert_close(features_at(embeddings, rows, cols, (8, 10)), upsampled[:, rows, cols].T)


def test_separable_embeddings_score_100():
    config = LinearProbeConfig(pixels_per_image=64, steps=50)
    result = evaluate_linear(toy_items(6, 0), toy_items(3, 1), num_classes=4, config=config)
    np.testing.assert_allclose(result.per_class_iou, 100.0)
    assert result.miou == pytest.approx(100.0)
    assert result.train_pixels == 6 * 64
    assert result.confusion.sum() == 3 * (16 * 16 - 3)


def test_random_train_labels_score_low():
    config = LinearProbeConfig(pixels_per_image=64, steps=50)
    result = evaluate_linear(toy_items(6, 0, random_labels=True), toy_items(3, 1), num_classes=4, config=config)
    assert result.miou < 40.0  # every class is in the val truth, so mIoU is the same under any NaN rule


def test_same_seed_same_probe():
    config = LinearProbeConfig(pixels_per_image=32, steps=20, seed=3)
    first = evaluate_linear(toy_items(4, 0, random_labels=True), toy_items(2, 1), 4, config)
    second = evaluate_linear(toy_items(4, 0, random_labels=True), toy_items(2, 1), 4, config)
    np.testing.assert_array_equal(first.confusion, second.confusion)

"""kNN segment probe: hand-made votes, segments and separable/shuffled toy sets."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clips4.data.types import IGNORE_INDEX
from clips4.eval.knn import evaluate_knn, form_segments, knn_vote, majority_labels, probe_segment_means
from clips4.eval.probe_inputs import DenseItem, nearest_cells


def unit(*rows):
    array = np.asarray(rows, np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def test_majority_vote_by_hand():
    train = unit([1, 0], [1, 0], [0.9, 0.436], [0, 1], [0, 1])
    labels = np.array([0, 0, 1, 1, 1])
    query = unit([1, 0])
    assert knn_vote(train, labels, query, k=3).tolist() == [0]  # 0, 0, 1
    assert knn_vote(train, labels, query, k=5).tolist() == [1]  # 0, 0, 1, 1, 1
    assert knn_vote(train, labels, query, k=4).tolist() == [0]  # 2 - 2 tie: class 0 has the nearest member
    assert knn_vote(train, labels, unit([0, 1]), k=4).tolist() == [1]


def test_majority_labels_ignore_255():
    segments = np.array([[0, 0, 1], [0, 1, 1], [2, 2, 2]])
    label = np.array([[2, 2, 1], [255, 1, 2], [255, 255, 255]], np.uint8)
    assert majority_labels(segments, label, 3).tolist() == [2, 1, IGNORE_INDEX]


def test_nearest_cells_matches_torch_nearest():
    grid = torch.arange(12.0).view(1, 1, 3, 4)
    expected = F.interpolate(grid, size=(7, 10), mode="nearest")[0, 0].long().numpy()
    np.testing.assert_array_equal(nearest_cells((3, 4), (7, 10)), expected)


def test_segments_are_clusters_split_by_superpixels():
    embeddings = torch.zeros(2, 4, 4)
    embeddings[0, :, :2] = 1  # left half one direction, right half another
    embeddings[1, :, 2:] = 1
    superpixels = np.zeros((8, 8), np.int32)
    superpixels[4:] = 7  # top and bottom halves
    segments = form_segments(embeddings, superpixels, clusters=2)
    assert len(np.unique(segments)) == 4
    for rows in (slice(0, 4), slice(4, 8)):
        for cols in (slice(0, 4), slice(4, 8)):
            assert len(np.unique(segments[rows, cols])) == 1  # each quadrant is one segment


def test_segment_embedding_is_the_pixel_weighted_mean():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    embeddings = torch.stack([a, b], dim=1)[:, None, :]  # [2, 1, 2]: cell 0 = a, cell 1 = b
    segments = np.array([[0, 0, 0, 1], [0, 0, 0, 1]])  # pixel columns 0-1 read cell 0, columns 2-3 cell 1
    means = probe_segment_means(embeddings, segments)
    torch.testing.assert_close(means[0], F.normalize(4 * a + 2 * b, dim=0))
    torch.testing.assert_close(means[1], b)


def toy_items(count: int, seed: int, label_map=None):
    """Images of 4 class blocks; each pixel embedding is its class direction plus noise; superpixels are 4x4 blocks."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(count):
        grid_class = np.kron(rng.permutation(4).reshape(2, 2), np.ones((4, 4), np.int64))  # [8, 8]
        embeddings = F.one_hot(torch.from_numpy(grid_class), 6).permute(2, 0, 1).float()
        embeddings = F.normalize(embeddings + 0.1 * torch.from_numpy(rng.normal(size=(6, 8, 8))).float(), dim=0)
        label = np.kron(grid_class, np.ones((2, 2), np.int64))  # [16, 16]
        label = label if label_map is None else label_map[label]
        superpixels = np.kron(np.arange(16).reshape(4, 4), np.ones((4, 4), np.int64))
        items.append(DenseItem(embeddings, label.astype(np.uint8), superpixels))
    return items


def test_separable_embeddings_score_100():
    result = evaluate_knn(toy_items(6, 0), toy_items(3, 1), num_classes=4, k=5, clusters=4)
    np.testing.assert_allclose(result.per_class_iou, 100.0)
    assert result.miou == pytest.approx(100.0)
    assert result.confusion.sum() == 3 * 16 * 16 and result.val_segments > 0


def test_shuffled_train_labels_score_zero():
    shifted = np.array([1, 2, 3, 0])  # every train segment carries the next class's name
    result = evaluate_knn(toy_items(6, 0, shifted), toy_items(3, 1), num_classes=4, k=5, clusters=4)
    assert np.trace(result.confusion) == 0
    np.testing.assert_allclose(result.per_class_iou, 0.0)  # every class is in the val truth: same under any rule


def test_identical_embeddings_give_one_cluster_so_segments_are_the_superpixels():
    embeddings = torch.ones(3, 4, 4)  # one distinct point: k-means++ stops seeding after one centre
    superpixels = np.kron(np.array([[5, 9], [9, 2]]), np.ones((4, 4), np.int64))
    segments = form_segments(embeddings, superpixels, clusters=8)
    assert len(np.unique(segments)) == 3
    for value in (5, 9, 2):
        assert len(np.unique(segments[superpixels == value])) == 1

"""clips4.clip_kmeans: per-image clusters of CLIP's features, the paper's segments behind the prototypes."""

from __future__ import annotations

import numpy as np
import torch

from clips4.clip_kmeans import cluster_image, image_clusters


def _two_regions() -> np.ndarray:
    """A 4 x 6 feature map: the left half near one direction, the right half near another."""
    rng = np.random.default_rng(0)
    features = np.zeros((4, 6, 8), np.float32)
    features[:, :3, 0] = 1.0
    features[:, 3:, 1] = 1.0
    return features + 0.01 * rng.standard_normal(features.shape).astype(np.float32)


def test_each_feature_maps_to_the_segment_whose_mean_it_is() -> None:
    features = _two_regions()
    segments, assignment = image_clusters(features, 5, torch.Generator().manual_seed(0))
    assert assignment.shape == (4, 6) and assignment.min() == 0 and assignment.max() == len(segments) - 1
    assert set(assignment.ravel().tolist()) == set(range(len(segments)))  # empty clusters dropped, rows compact
    assert len(np.unique(assignment[:, :3])) + len(np.unique(assignment[:, 3:])) == len(np.unique(assignment))
    unit = features / np.linalg.norm(features, axis=-1, keepdims=True)
    for row, segment in enumerate(segments):
        mean = unit[assignment == row].mean(0)
        np.testing.assert_allclose(segment, mean / np.linalg.norm(mean), atol=1e-5)


def test_cluster_image_is_image_clusters_segments_in_the_same_generator_order() -> None:
    features = _two_regions()
    first, second = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for _ in range(2):  # one generator over several images, as the prototypes stage draws them
        np.testing.assert_array_equal(cluster_image(features, 4, first), image_clusters(features, 4, second)[0])

"""Spherical k-means, segments split by superpixel, and the memory bank of past segments."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clips4.ops.kmeans import segments_within_superpixels, spherical_kmeans, split_by_superpixel
from clips4.train.memory import MemoryBank


def _three_directions(per_cluster: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    axes = torch.eye(3)
    truth = torch.arange(3).repeat_interleave(per_cluster)
    points = F.normalize(axes[truth] + 0.1 * torch.randn(len(truth), 3, generator=generator), dim=1)
    return points, truth


def _same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a[:, None] == a[None, :]).eq(b[:, None] == b[None, :]).all())


def test_spherical_kmeans_recovers_separated_directions():
    points, truth = _three_directions()
    exact = [
        _same_partition(spherical_kmeans(points, 3, 10, torch.Generator().manual_seed(seed)), truth)
        for seed in range(10)
    ]
    assert all(exact)  # k-means++ seeds one centre per cluster here (uniform random starts fail 3 of these 10)
    assert _same_partition(spherical_kmeans(points, 3, 10), truth)  # evenly spaced starts: one per cluster here


def test_spherical_kmeans_uses_cosine_not_length_and_batches_independently():
    points, truth = _three_directions()
    scaled = points * torch.linspace(0.5, 3, len(points))[:, None]
    assert _same_partition(spherical_kmeans(F.normalize(scaled, dim=1), 3, 10), truth)
    batch = torch.stack([points, points.flip(0)])
    labels = spherical_kmeans(batch, 3, 10)
    assert labels.shape == (2, len(points))
    assert _same_partition(labels[0], truth) and _same_partition(labels[1], truth.flip(0))


def test_kmeans_is_deterministic_given_the_generator_and_handles_k_above_n():
    points, _ = _three_directions(per_cluster=2)
    a = spherical_kmeans(points, 4, 5, torch.Generator().manual_seed(3))
    b = spherical_kmeans(points, 4, 5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert spherical_kmeans(points, 50, 5, torch.Generator()).unique().numel() <= len(points)


def test_segments_lie_in_one_superpixel_and_are_unique_across_the_batch():
    generator = torch.Generator().manual_seed(0)
    embeddings = F.normalize(torch.randn(3, 8, 6, 6, generator=generator), dim=1)
    superpixels = torch.randint(0, 5, (3, 6, 6), generator=generator)
    segments = segments_within_superpixels(embeddings, superpixels, 4, generator=generator)
    ids = segments.ids
    assert ids.shape == (3, 6, 6) and ids.dtype == torch.long
    assert ids.unique().tolist() == list(range(segments.count))
    image_of_pixel = torch.arange(3).view(3, 1, 1).expand_as(ids)
    assert torch.equal(segments.image[ids], image_of_pixel)
    assert torch.equal(segments.superpixel[ids], superpixels)
    # at most k segments per superpixel
    for image in range(3):
        for sp in superpixels[image].unique():
            assert ids[image][superpixels[image] == sp].unique().numel() <= 4


def test_clusters_split_by_superpixel():
    clusters = torch.tensor([[[0, 0, 1, 1]]])
    superpixels = torch.tensor([[[0, 1, 1, 1]]])
    segments = split_by_superpixel(clusters, superpixels)
    assert segments.ids.tolist() == [[[0, 1, 2, 2]]]
    assert segments.superpixel.tolist() == [0, 1, 1] and segments.image.tolist() == [0, 0, 0]


def test_location_weight_makes_clusters_spatially_compact():
    embeddings = F.normalize(torch.randn(1, 8, 12, 12, generator=torch.Generator().manual_seed(0)), dim=1)
    superpixels = torch.zeros(1, 12, 12, dtype=torch.long)
    counts = {}
    for weight in (0.0, 10.0):
        segments = segments_within_superpixels(
            embeddings, superpixels, 4, generator=torch.Generator().manual_seed(1), location_weight=weight
        )
        ids = segments.ids[0]
        # neighbouring pixels in different segments: few when clusters are compact
        counts[weight] = int((ids[1:] != ids[:-1]).sum() + (ids[:, 1:] != ids[:, :-1]).sum())
    assert counts[10.0] < counts[0.0] / 3


def test_k_zero_uses_the_superpixels_as_segments():
    superpixels = torch.tensor([[[3, 3], [1, 1]], [[0, 2], [2, 2]]])
    segments = segments_within_superpixels(torch.randn(2, 4, 2, 2), superpixels, 0)
    assert segments.count == 4
    assert torch.equal(segments.superpixel[segments.ids], superpixels)


def test_memory_bank_keeps_the_last_batches_and_round_trips(tmp_path):
    bank = MemoryBank(2)
    assert bank.embeddings() is None
    for value in (1.0, 2.0, 3.0):
        source = torch.full((value.__int__(), 4), value, requires_grad=True)
        bank.push(source * 1)
    held = bank.embeddings()
    assert len(bank) == 2 and held.shape == (5, 4) and not held.requires_grad
    assert held[:2].eq(2).all() and held[2:].eq(3).all()  # oldest first, the first batch dropped
    torch.save(bank.state_dict(), tmp_path / "bank.pt")
    restored = MemoryBank(2)
    restored.load_state_dict(torch.load(tmp_path / "bank.pt", weights_only=True))
    assert torch.equal(restored.embeddings(), held)
    smaller = MemoryBank(1)
    smaller.load_state_dict(bank.state_dict())
    assert smaller.embeddings().eq(3).all()
    off = MemoryBank(0)
    off.push(torch.ones(2, 4))
    assert off.embeddings() is None


def test_memory_bank_copies_what_it_is_given():
    bank = MemoryBank(1)
    source = torch.zeros(2, 3)
    bank.push(source)
    source += 1
    assert bank.embeddings().eq(0).all()

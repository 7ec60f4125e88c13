"""The four CLIP-S4 losses on hand-made inputs whose values are known in closed form, and the criterion."""

from __future__ import annotations

import math

import pytest
import torch

from clips4.model import create_student
from clips4.train.losses import (
    ClipS4Criterion,
    PixelPseudoLabelCriterion,
    ViewBatch,
    embedding_consistency,
    pixel_segment_contrastive,
    pixel_text_cross_entropy,
    pseudo_labels,
    segment_means,
    semantic_consistency,
    unknown_prototype_loss,
)

X, Y = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])


def test_contrastive_one_positive_one_negative():
    kappa = 10.0
    loss = pixel_segment_contrastive(X[None], torch.tensor([0]), torch.stack([X, Y]), torch.tensor([0, 1]), kappa)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-kappa)), rel=1e-5)


def test_contrastive_sums_every_positive_and_counts_the_memory_as_negatives():
    kappa = 2.0
    prototypes, keys = torch.stack([X, Y, -X]), torch.tensor([0, 0, 1])
    pixel_keys = torch.tensor([0, 7])  # the second pixel has no positive segment: left out
    memory = -Y[None]
    loss = pixel_segment_contrastive(torch.stack([X, X]), pixel_keys, prototypes, keys, kappa, negatives=memory)
    positives = math.exp(kappa) + 1  # cos 1 with X, cos 0 with Y
    everything = positives + math.exp(-kappa) + 1  # -X, and the memory's -Y
    assert loss.item() == pytest.approx(-math.log(positives / everything), rel=1e-5)


def test_contrastive_memory_never_counts_as_positive():
    with_memory = pixel_segment_contrastive(X[None], torch.tensor([0]), X[None], torch.tensor([0]), 1.0, X[None])
    assert with_memory.item() == pytest.approx(math.log(2), rel=1e-5)  # the bank's copy of X is a negative


def test_contrastive_can_leave_out_the_pixels_own_segment_where_another_positive_exists():
    kappa = 2.0
    prototypes, keys = torch.stack([X, Y, -X]), torch.tensor([0, 0, 1])
    pixels, pixel_keys = torch.stack([X, -X]), torch.tensor([0, 1])
    loss = pixel_segment_contrastive(pixels, pixel_keys, prototypes, keys, kappa, own_segments=torch.tensor([0, 2]))
    # pixel 0: own segment (X) left out, positive Y (cos 0), negative -X; pixel 1: its only positive is its own
    first = -math.log(1 / (1 + math.exp(-kappa)))
    second = -math.log(math.exp(kappa) / (math.exp(kappa) + math.exp(-kappa) + 1))
    assert loss.item() == pytest.approx((first + second) / 2, rel=1e-5)


@pytest.mark.parametrize("kappa", [10.0, 100.0])
def test_contrastive_stays_exact_when_the_positive_is_far_below_the_negatives(kappa):
    loss = pixel_segment_contrastive(X[None], torch.tensor([0]), torch.stack([-X, X]), torch.tensor([0, 1]), kappa)
    assert loss.item() == pytest.approx(math.log1p(math.exp(2 * kappa)), rel=1e-5)  # about 2 kappa, finite


def test_contrastive_without_negatives_is_zero_with_finite_gradients():
    pixels = X[None].clone().requires_grad_()
    loss = pixel_segment_contrastive(pixels, torch.tensor([0]), X[None], torch.tensor([0]), 10.0)
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(pixels.grad).all()


def test_embedding_consistency_is_one_minus_cosine():
    student = torch.stack([X, X])
    clip = torch.stack([Y, 3 * (X + Y)])  # scale does not matter
    assert embedding_consistency(student, clip).item() == pytest.approx((1 + 1 - 1 / math.sqrt(2)) / 2, rel=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_semantic_consistency_is_cross_entropy_against_clips_label(temperature):
    prototypes = torch.stack([X, Y])
    loss = semantic_consistency(X[None], Y[None], prototypes, temperature)  # CLIP says class 1, student class 0
    assert loss.item() == pytest.approx(math.log(1 + math.exp(1 / temperature)), rel=1e-5)
    agree = semantic_consistency(Y[None], Y[None], prototypes, temperature)
    assert agree.item() == pytest.approx(math.log(1 + math.exp(-1 / temperature)), rel=1e-5)


def test_soft_semantic_consistency_is_minimal_where_the_student_predicts_as_clip():
    prototypes = torch.stack([X, Y])
    p = math.e / (math.e + 1)  # softmax([1, 0]) at temperature 1
    entropy = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert semantic_consistency(X[None], X[None], prototypes, 1.0, soft=True).item() == pytest.approx(entropy, rel=1e-5)
    student = X[None].clone().requires_grad_()
    semantic_consistency(student, X[None], prototypes, 1.0, soft=True).backward()
    assert student.grad.abs().max() < 1e-6  # no pull away from CLIP's embedding
    hard = X[None].clone().requires_grad_()
    semantic_consistency(hard, X[None], prototypes, 1.0).backward()
    assert hard.grad.abs().max() > 0.1  # the hard label keeps pulling (toward the prototype, sharper)


def test_pseudo_labels_use_cosine_not_length():
    prototypes = torch.stack([10 * X, Y])
    assert pseudo_labels(torch.stack([X + 2 * Y, 2 * X + Y]), prototypes).tolist() == [1, 0]


def test_unknown_margin_keeps_a_segment_known_unless_an_unknown_wins_by_more():
    # known prototype X, unknown prototype Y; the segment is a little nearer Y (cos 0.8 vs 0.6)
    prototypes, segment = torch.stack([X, Y]), (0.6 * X + 0.8 * Y)[None]
    assert pseudo_labels(segment, prototypes).tolist() == [1]  # the paper's argmax: unknown
    assert pseudo_labels(segment, prototypes, known=1, margin=0.1).tolist() == [1]  # 0.8 - 0.1 > 0.6
    assert pseudo_labels(segment, prototypes, known=1, margin=0.3).tolist() == [0]  # 0.8 - 0.3 < 0.6
    assert pseudo_labels(segment, prototypes, known=2, margin=0.3).tolist() == [1]  # both known: no margin
    # L_s's target follows the margin: the student on Y is right without it and wrong with it
    plain = semantic_consistency(Y[None], segment, prototypes, 0.1)
    assert semantic_consistency(Y[None], segment, prototypes, 0.1, known=1, margin=0.3) > plain + 5


def test_criterion_unknown_margin_sends_fewer_segments_to_the_unknowns():
    _, views = _student_views()
    plain, margin = _criterion(), _criterion(unknown_margin=2.0)  # cosines differ by at most 2: nothing unknown
    assert plain(views).terms["unknown"].item() > 0
    assert margin(views).terms["unknown"].item() == 0


def test_unknown_prototype_loss_over_assigned_segments_only():
    unknown = torch.stack([X, Y])
    clip = torch.stack([X + Y, Y, X])
    loss = unknown_prototype_loss(unknown, clip, torch.tensor([0, -1, 1]))
    assert loss.item() == pytest.approx((1 - 1 / math.sqrt(2) + 1) / 2, rel=1e-6)
    nothing = unknown_prototype_loss(unknown.requires_grad_(), clip, torch.tensor([-1, -1, -1]))
    assert nothing.item() == 0 and nothing.requires_grad


def test_segment_means():
    values = torch.tensor([[2.0, 0.0], [0.0, 2.0], [4.0, 0.0]])
    ids = torch.tensor([0, 0, 1])
    assert torch.allclose(segment_means(values, ids, 2, normalize=False), torch.tensor([[1.0, 1.0], [4.0, 0.0]]))
    unit = segment_means(values, ids, 2)
    assert torch.allclose(unit, torch.tensor([[1 / math.sqrt(2)] * 2, [1.0, 0.0]]))


def _two_views_of_halves(kappa_pixels: int = 4) -> list[ViewBatch]:
    """One image, two views, superpixel 0 on the left and 1 on the right, embeddings X / Y by superpixel."""
    superpixels = torch.zeros(1, 4, kappa_pixels, dtype=torch.long)
    superpixels[..., kappa_pixels // 2 :] = 1
    embeddings = torch.where(superpixels[:, None] == 0, X.view(1, 2, 1, 1), Y.view(1, 2, 1, 1))
    return [ViewBatch(embeddings, embeddings.clone(), superpixels) for _ in range(2)]


def test_criterion_counts_the_other_views_segment_of_the_same_superpixel_as_positive():
    kappa = 3.0
    criterion = ClipS4Criterion(
        torch.stack([X]),
        torch.stack([Y]),
        embedding=False,
        semantic=False,
        kappa=kappa,
        segments_per_view=0,
        sampled_pixels=0,
    )
    out = criterion(_two_views_of_halves())
    # each pixel: 2 positives (its superpixel in both views, cos 1), 2 negatives (the other superpixel, cos 0)
    expected = -math.log(2 * math.exp(kappa) / (2 * math.exp(kappa) + 2))
    assert out.terms["contrastive"].item() == pytest.approx(expected, rel=1e-5)
    assert out.segment_embeddings.shape == (4, 2)
    criterion.contrastive.exclude_own_segment = True  # the positive is then the other view's segment only
    expected = -math.log(math.exp(kappa) / (math.exp(kappa) + 2))
    assert criterion(_two_views_of_halves()).terms["contrastive"].item() == pytest.approx(expected, rel=1e-5)


def _student_views(seed: int = 0, batch: int = 2, size: int = 16):
    torch.manual_seed(seed)
    student = create_student("pspnet-test", embed_dim=16)
    views = []
    for _ in range(2):
        images = torch.randn(batch, 3, size, size)
        embeddings = student(images)
        grid = embeddings.shape[-1]
        clip = torch.nn.functional.normalize(torch.randn(batch, 16, grid, grid), dim=1)
        superpixels = (torch.arange(grid)[None, :] // 2 + 2 * (torch.arange(grid)[:, None] // 2)).expand(batch, -1, -1)
        views.append(ViewBatch(embeddings, clip, superpixels))
    return student, views


def _criterion(**kwargs):
    torch.manual_seed(1)
    known = torch.nn.functional.normalize(torch.randn(3, 16), dim=1)
    unknown = torch.nn.functional.normalize(torch.randn(4, 16), dim=1)
    return ClipS4Criterion(known, unknown, segments_per_view=3, **kwargs)


def test_criterion_all_terms_and_weights():
    _, views = _student_views()
    out = _criterion()(views, memory=torch.nn.functional.normalize(torch.randn(5, 16), dim=1))
    assert set(out.terms) == {"contrastive", "embedding", "semantic", "unknown"}
    assert out.total.item() == pytest.approx(sum(v.item() for v in out.terms.values()), rel=1e-5)
    weighted = _criterion(contrastive_weight=0.5, semantic_weight=0.0)(views)
    expected = 0.5 * weighted.terms["contrastive"] + weighted.terms["embedding"] + weighted.terms["unknown"]
    assert weighted.total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.segment_embeddings.shape[0] == sum(s.count for s in out.segments)
    assert not out.segment_embeddings.requires_grad


def test_criterion_switches_and_validation():
    _, views = _student_views()
    assert set(_criterion(contrastive=False, semantic=False)(views).terms) == {"embedding"}
    assert set(_criterion(contrastive=False, embedding=False)(views).terms) == {"semantic", "unknown"}
    with pytest.raises(ValueError, match="at least one"):
        _criterion(contrastive=False, embedding=False, semantic=False)


def test_unknown_loss_trains_the_prototypes_only():
    student, views = _student_views()
    criterion = _criterion(contrastive=False, embedding=False, semantic_weight=0.0, unknown_weight=1.0)
    out = criterion(views)
    assert out.terms["unknown"].item() > 0
    out.total.backward()
    assert criterion.unknown.grad is not None and criterion.unknown.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in student.parameters())


def test_semantic_loss_trains_the_encoder_not_the_prototypes():
    student, views = _student_views()
    criterion = _criterion(contrastive=False, embedding=False, semantic_weight=1.0, unknown_weight=0.0)
    criterion(views).total.backward()
    assert criterion.unknown.grad is None or criterion.unknown.grad.abs().sum() == 0
    assert sum(p.grad.abs().sum() for p in student.parameters() if p.grad is not None) > 0


def test_criterion_is_deterministic_given_the_generator():
    _, views = _student_views()
    criterion = _criterion(sampled_pixels=20)
    first = criterion(views, generator=torch.Generator().manual_seed(5))
    second = criterion(views, generator=torch.Generator().manual_seed(5))
    for name in first.terms:
        assert torch.equal(first.terms[name], second.terms[name])


# ---------------------------------------------------------------------------------- the MaskCLIP+-style baseline


def test_pixel_text_cross_entropy_in_closed_form():
    text = torch.stack([X, Y]) * 3.0  # lengths do not matter: cosines
    # Pixel 0: CLIP says class 0, the student agrees (cos 1 vs 0); pixel 1: CLIP says class 1, the student says 0.
    pixels, clip = torch.stack([X, 2 * X]), torch.stack([X, Y])
    t = 0.5
    agree = math.log(1 + math.exp(-1 / t))  # -log(e^{2} / (e^{2} + e^{0}))
    disagree = math.log(1 + math.exp(1 / t))  # -log(e^{0} / (e^{2} + e^{0}))
    loss = pixel_text_cross_entropy(pixels, clip, text, t)
    assert loss.item() == pytest.approx((agree + disagree) / 2, rel=1e-5)


def test_pixel_text_cross_entropy_trains_only_the_student():
    pixels, clip = torch.stack([X, Y]).requires_grad_(), torch.stack([Y, Y]).requires_grad_()
    pixel_text_cross_entropy(pixels, clip, torch.stack([X, Y]), 0.1).backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0 and clip.grad is None


def test_pixel_criterion_scores_every_pixel_of_every_view_and_has_no_segments_or_unknowns():
    # Two views of one 1 x 2 image: view 0's pixels agree with CLIP, view 1's disagree (CLIP says Y, student X).
    emb0 = torch.stack([X, Y], dim=1)[None, :, None, :]  # [1, D=2, h=1, w=2]
    emb1 = torch.stack([X, X], dim=1)[None, :, None, :]
    clip = torch.stack([X, Y], dim=1)[None, :, None, :]
    clip1 = torch.stack([Y, Y], dim=1)[None, :, None, :]
    superpixels = torch.zeros(1, 1, 2, dtype=torch.long)
    views = [ViewBatch(emb0, clip, superpixels), ViewBatch(emb1, clip1, superpixels)]
    criterion = PixelPseudoLabelCriterion(torch.stack([X, Y]), temperature=1.0)
    out = criterion(views)
    agree, disagree = math.log(1 + math.exp(-1)), math.log(1 + math.exp(1))
    assert out.total.item() == pytest.approx((2 * agree + 2 * disagree) / 4, rel=1e-5)
    assert set(out.terms) == {"pixel_semantic"} and out.segment_embeddings.shape == (0, 2) and out.segments == []
    assert criterion.unknown.numel() == 0 and criterion.known.shape == (2, 2)

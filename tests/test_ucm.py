"""OWT-UCM: an ultrametric hierarchy whose cuts are nested, exact region counts, re-cuts from the stored saliency."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.ndimage as ndi

from clips4.params import ContourParams
from clips4.superpixels.contours import detect_gradient
from clips4.superpixels.types import ContourMap
from clips4.superpixels.ucm import Ucm, canonical_labels, labels_from_saliency, owt_ucm, superpixel_rows, ucm_image

SIZE = 40


def two_squares() -> tuple[np.ndarray, np.ndarray]:
    """A grey background with a red and a blue square; and the true labels (0 background, 1 red, 2 blue)."""
    rng = np.random.default_rng(5)
    img = np.full((SIZE, SIZE, 3), 120.0) + rng.normal(0.0, 3.0, (SIZE, SIZE, 3))
    truth = np.zeros((SIZE, SIZE), np.int32)
    img[6:18, 5:20] = (210.0, 40.0, 40.0)
    truth[6:18, 5:20] = 1
    img[22:35, 20:36] = (30.0, 60.0, 200.0)
    truth[22:35, 20:36] = 2
    return np.clip(img, 0, 255).astype(np.uint8), truth


def blobs(seed: int = 0) -> np.ndarray:
    """Smooth random colour blobs: many boundaries of varied strength, for the hierarchy's invariants."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.normal(size=(SIZE, SIZE, 3)), (4, 4, 0))
    field = (field - field.min()) / np.ptp(field)
    return (np.round(field * 4) * 60 + rng.normal(0, 2, field.shape)).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def blob_ucm() -> Ucm:
    return owt_ucm(detect_gradient(blobs(), ContourParams()))


def _is_refinement(fine: np.ndarray, coarse: np.ndarray) -> bool:
    """Every region of ``fine`` lies inside one region of ``coarse``."""
    pairs = np.unique(np.stack([fine.ravel(), coarse.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1]


def test_blob_image_has_a_real_hierarchy(blob_ucm: Ucm) -> None:
    assert blob_ucm.num_basins >= 10  # otherwise the tests below prove little


def test_altitudes_are_an_ultrametric(blob_ucm: Ucm) -> None:
    alt = blob_ucm.altitudes
    parents = blob_ucm.tree.parents()
    assert alt.min() >= 0.0 and alt.max() <= 1.0
    assert np.all(alt[parents] >= alt)  # non-decreasing towards the root
    assert np.all(alt[: blob_ucm.num_basins] == 0.0)


def test_threshold_cuts_are_nested(blob_ucm: Ucm) -> None:
    levels = np.unique(blob_ucm.altitudes)
    thresholds = [0.0, *np.quantile(levels, [0.2, 0.4, 0.6, 0.8]), 1.0]
    cuts = [blob_ucm.cut(threshold=t) for t in thresholds]
    counts = [c.max() + 1 for c in cuts]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1] == 1
    for fine, coarse in itertools.pairwise(cuts):
        assert _is_refinement(fine, coarse)


def test_region_cuts_are_exact_and_nested(blob_ucm: Ucm) -> None:
    cuts = {n: blob_ucm.cut(regions=n) for n in (1, 2, 3, 5, 8, blob_ucm.num_basins)}
    for n, labels in cuts.items():
        assert labels.dtype == np.int32 and labels.shape == (SIZE, SIZE)
        assert np.array_equal(np.unique(labels), np.arange(n))  # exactly n, consecutive
    ns = sorted(cuts)
    for coarse, fine in itertools.pairwise(ns):
        assert _is_refinement(cuts[fine], cuts[coarse])
    assert blob_ucm.cut(regions=10**6).max() + 1 == blob_ucm.num_basins  # clipped: the finest partition


def test_regions_are_connected(blob_ucm: Ucm) -> None:
    labels = blob_ucm.cut(regions=6)
    for k in range(6):
        assert ndi.label(labels == k)[1] == 1


def test_labels_from_saliency_equal_the_tree_cut(blob_ucm: Ucm) -> None:
    saliency = blob_ucm.edge_saliency()
    assert saliency.dtype == np.float32 and saliency.shape == (2, SIZE, SIZE)
    levels = np.unique(saliency)
    # Exactly at stored levels (the <= convention matters there), between them, and outside.
    thresholds = [0.0, *levels[1::3], *((levels[1:] + levels[:-1]) / 2)[::3], 1.0]
    for t in thresholds:
        assert np.array_equal(labels_from_saliency(saliency, float(t)), blob_ucm.cut(threshold=float(t))), t


def test_saliency_is_the_merge_level_of_neighbours(blob_ucm: Ucm) -> None:
    """Two neighbours share a region of the cut at t iff their edge saliency is <= t (checked on direct edges)."""
    saliency = blob_ucm.edge_saliency()
    t = float(np.median(np.unique(saliency)))
    labels = blob_ucm.cut(threshold=t)
    right_cut = labels[:, 1:] != labels[:, :-1]
    down_cut = labels[1:] != labels[:-1]
    assert np.array_equal(right_cut, saliency[0, :, :-1] > t)
    assert np.array_equal(down_cut, saliency[1, :-1, :] > t)
    assert not saliency[0, :, -1].any() and not saliency[1, -1, :].any()


def test_two_squares_cut_at_three_regions_recovers_them() -> None:
    image, truth = two_squares()
    labels = owt_ucm(detect_gradient(image, ContourParams())).cut(regions=3)
    assert labels.max() == 2
    for k in range(3):  # each true region matches one superpixel (IoU >= 0.95)
        region = truth == k
        best = np.bincount(labels[region]).argmax()
        predicted = labels == best
        assert (region & predicted).sum() / (region | predicted).sum() >= 0.95


def test_saliency_layout_on_the_square_sides() -> None:
    """Channel 0 is the edge to the right neighbour, channel 1 the one below: the red square's sides (rows / cols
    6..17 / 5..19, corners left out) carry the strongest values, in the right channel."""
    image, truth = two_squares()
    saliency = owt_ucm(detect_gradient(image, ContourParams())).edge_saliency()
    sides = np.concatenate([saliency[0, 8:16, 4], saliency[0, 8:16, 19], saliency[1, 5, 7:18], saliency[1, 17, 7:18]])
    wrong_channel = np.concatenate([saliency[1, 8:15, 4], saliency[0, 5, 7:17]])
    boundary = np.zeros(truth.shape, bool)
    boundary[:, 1:] |= truth[:, 1:] != truth[:, :-1]
    boundary[:, :-1] |= truth[:, 1:] != truth[:, :-1]
    boundary[1:] |= truth[1:] != truth[:-1]
    boundary[:-1] |= truth[1:] != truth[:-1]
    far = ndi.distance_transform_edt(~boundary) > 3
    assert sides.min() > 0.5
    assert sides.min() > max(wrong_channel.max(), saliency[0][far].max(), saliency[1][far].max())


def _line_map(orientation: float) -> ContourMap:
    """A vertical 2-px boundary between columns 9|10 of a 20x20 map, all pixels of normal angle ``orientation``."""
    strength = np.zeros((20, 20), np.float32)
    strength[:, 9:11] = 1.0
    return ContourMap(strength, np.full((20, 20), orientation, np.float32))


def test_owt_weights_boundaries_by_orientation_agreement() -> None:
    aligned = owt_ucm(_line_map(0.0))  # normal along x: agrees with a vertical arc
    across = owt_ucm(_line_map(np.pi / 2))  # claims a horizontal edge: disagrees
    assert aligned.num_basins == 2 and across.num_basins == 2
    assert aligned.altitudes.max() == pytest.approx(1.0, abs=1e-6)
    assert across.altitudes.max() < 0.05
    labels = aligned.cut(regions=2)
    assert np.array_equal(labels[:, :10], np.zeros((20, 10))) and np.array_equal(labels[:, 10:], np.ones((20, 10)))


def test_flat_map_is_one_region() -> None:
    ucm = owt_ucm(ContourMap(np.zeros((6, 7), np.float32), np.zeros((6, 7), np.float32)))
    assert ucm.num_basins == 1
    assert not ucm.cut(regions=5).any() and not ucm.cut(threshold=0.5).any()
    assert not ucm.edge_saliency().any() and ucm.edge_saliency().shape == (2, 6, 7)


@pytest.mark.parametrize("shape", [(1, 9), (9, 1)])
def test_one_row_or_one_column(shape: tuple[int, int]) -> None:
    strength = np.zeros(shape, np.float32)
    strength.ravel()[4:6] = 1.0  # a boundary between pixels 4 and 5
    across = 0.0 if shape[0] == 1 else np.pi / 2
    ucm = owt_ucm(ContourMap(strength, np.full(shape, across, np.float32)))
    assert ucm.cut(regions=2).ravel().tolist() == [0] * 5 + [1] * 4
    saliency = ucm.edge_saliency()[0 if shape[0] == 1 else 1]
    assert saliency.ravel()[4] > 0.9 and np.count_nonzero(saliency) == 1


def test_cut_needs_exactly_one_criterion(blob_ucm: Ucm) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        blob_ucm.cut()
    with pytest.raises(ValueError, match="exactly one"):
        blob_ucm.cut(regions=3, threshold=0.5)


def test_ucm_image_takes_the_max_of_incident_edges() -> None:
    saliency = np.zeros((2, 2, 3), np.float32)
    saliency[0, 0, 0] = 0.3  # between (0,0) and (0,1)
    saliency[1, 0, 2] = 0.7  # between (0,2) and (1,2)
    expected = np.array([[0.3, 0.3, 0.7], [0.0, 0.0, 0.7]], np.float32)
    assert np.array_equal(ucm_image(saliency), expected)


def test_canonical_labels_number_by_first_appearance() -> None:
    assert np.array_equal(canonical_labels(np.array([[7, 7, 3], [9, 3, 3]])), [[0, 0, 1], [2, 1, 1]])


@pytest.mark.parametrize("cut", [{"regions": 5}, {"threshold": 0.2}])
def test_superpixel_rows_pad_each_hierarchy_and_its_cut(cut: dict) -> None:
    """The superpixels store's rows: each map's UCM and cut at the top-left, 0 / -1 around, and their sizes."""
    maps = [detect_gradient(image, ContourParams()) for image in (blobs(0), blobs(1)[:31, :25])]
    rows = superpixel_rows(iter(maps), len(maps), (SIZE + 2, SIZE), **cut)
    assert rows["ucm"].dtype == np.float32 and rows["ucm"].shape == (2, 2, SIZE + 2, SIZE)
    assert rows["labels"].dtype == rows["num_regions"].dtype == rows["extent"].dtype == np.int32
    for k, contour_map in enumerate(maps):
        height, width = contour_map.strength.shape
        hierarchy = owt_ucm(contour_map)
        labels = hierarchy.cut(**cut)
        np.testing.assert_array_equal(rows["ucm"][k, :, :height, :width], hierarchy.edge_saliency())
        np.testing.assert_array_equal(rows["labels"][k, :height, :width], labels)
        assert (rows["labels"][k] == -1).sum() == rows["labels"][k].size - height * width
        padding = rows["ucm"][k].copy()
        padding[:, :height, :width] = 0
        assert not padding.any()
        assert rows["num_regions"][k] == labels.max() + 1
        np.testing.assert_array_equal(rows["extent"][k], (height, width))

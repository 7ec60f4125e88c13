"""PMI detector: finds a synthetic square's boundary within 2 px, with the right orientation."""

from __future__ import annotations

import numpy as np
import pytest

from clips4.params import ContourParams
from clips4.superpixels.nms import oriented_nms
from clips4.superpixels.pmi import detect_pmi, pmi_tables
from tests.fixtures import SQUARE_HI, SQUARE_LO, distance_to_square_outline

LO, HI = SQUARE_LO, SQUARE_HI  # the square covers rows/cols LO..HI-1; its border lies between LO-1|LO and HI-1|HI


@pytest.fixture(scope="module")
def square() -> np.ndarray:
    rng = np.random.default_rng(1)
    img = 40.0 + rng.normal(0.0, 4.0, (48, 48, 3))
    img[LO:HI, LO:HI] = 200.0 + rng.normal(0.0, 4.0, (HI - LO, HI - LO, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_square_boundary_within_2px(square: np.ndarray) -> None:
    cmap = detect_pmi(square, ContourParams(method="pmi"))
    assert cmap.strength.shape == (48, 48) and cmap.orientation.shape == (48, 48)
    assert cmap.strength.dtype == np.float32 and cmap.strength.min() >= 0.0 and cmap.strength.max() <= 1.0
    strongest = np.argsort(cmap.strength.ravel())[::-1][:80]  # ~ the square's perimeter (4 * 24 = 96)
    ys, xs = np.unravel_index(strongest, cmap.strength.shape)
    assert distance_to_square_outline(ys.astype(float), xs.astype(float)).max() <= 2.0
    # Every side is found, not just one.
    assert (ys < 24).any() and (ys > 24).any() and (xs < 24).any() and (xs > 24).any()


def test_square_orientation_is_normal_to_the_sides(square: np.ndarray) -> None:
    theta = detect_pmi(square, ContourParams(method="pmi")).orientation
    assert theta.min() >= 0.0 and theta.max() < np.pi
    left_side = theta[16:32, LO - 1 : LO + 1]  # vertical edge: normal along x, angle 0 (or ~pi)
    top_side = theta[LO - 1 : LO + 1, 16:32]  # horizontal edge: normal along y, angle pi/2
    assert np.all(np.minimum(left_side, np.pi - left_side) < 0.2)
    assert np.all(np.abs(top_side - np.pi / 2) < 0.2)


def test_flat_image_has_no_boundary_structure() -> None:
    """The square test must fail without a square: a flat noisy image gives no line of strong pixels at the border."""
    rng = np.random.default_rng(2)
    flat = np.clip(100.0 + rng.normal(0.0, 4.0, (48, 48, 3)), 0, 255).astype(np.uint8)
    strength = detect_pmi(flat, ContourParams(method="pmi")).strength
    strongest = np.argsort(strength.ravel())[::-1][:80]
    ys, xs = np.unravel_index(strongest, strength.shape)
    assert (distance_to_square_outline(ys.astype(float), xs.astype(float)) <= 2.0).mean() < 0.9


def test_pmi_is_higher_for_cooccurring_values() -> None:
    """Two flat regions: pairs within a region have higher PMI than pairs across the edge."""
    q = np.zeros((32, 32, 1), dtype=np.int64)
    q[:, 16:] = 20
    tables = pmi_tables(q, np.random.default_rng(0))
    assert tables[0, 0, 0] > tables[0, 0, 20] and tables[0, 20, 20] > tables[0, 0, 20]


def test_oriented_nms_thins_a_ridge() -> None:
    ridge = np.tile(np.array([0.0, 0.5, 1.0, 0.5, 0.0]), (5, 1))  # a vertical ridge at column 2
    thin = oriented_nms(ridge, np.zeros_like(ridge))  # normal along x
    assert np.array_equal(np.nonzero(thin.any(axis=0))[0], [2])


def test_downsampled_working_grid_still_finds_the_square(square: np.ndarray) -> None:
    """contours.pmi_max_side below the image size: computed on a 32x32 grid, resampled back to 48x48."""
    cmap = detect_pmi(square, ContourParams(method="pmi", pmi_max_side=32))
    assert cmap.strength.shape == (48, 48)
    strongest = np.argsort(cmap.strength.ravel())[::-1][:60]
    ys, xs = np.unravel_index(strongest, cmap.strength.shape)
    assert distance_to_square_outline(ys.astype(float), xs.astype(float)).max() <= 2.0

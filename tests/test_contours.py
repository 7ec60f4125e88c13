"""Gradient detector: square boundaries within 2 px, texture-only boundaries, orientation; the detector dispatcher."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import clips4.superpixels.contours as contours
from clips4.params import ContourParams
from clips4.superpixels.contours import DETECTORS, detect_contours, detect_gradient, normalise
from clips4.superpixels.types import ContourMap
from tests.fixtures import SQUARE_HI, SQUARE_LO, distance_to_square_outline

LO, HI = SQUARE_LO, SQUARE_HI  # the square covers rows/cols LO..HI-1; its border lies between LO-1|LO and HI-1|HI
SIZE = 48


@pytest.fixture(scope="module")
def square() -> np.ndarray:
    rng = np.random.default_rng(1)
    img = 40.0 + rng.normal(0.0, 4.0, (SIZE, SIZE, 3))
    img[LO:HI, LO:HI] = 200.0 + rng.normal(0.0, 4.0, (HI - LO, HI - LO, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def textured_halves() -> np.ndarray:
    """Left half: vertical stripes (period 4 px); right half: fine noise; same mean grey (128) on both sides."""
    rng = np.random.default_rng(3)
    xx = np.mgrid[0:SIZE, 0:SIZE][1]
    left = 128.0 + 50.0 * np.sin(2 * np.pi * xx / 4.0)
    right = 128.0 + rng.normal(0.0, 6.0, (SIZE, SIZE))
    grey = np.where(xx < SIZE // 2, left, right) + rng.normal(0.0, 3.0, (SIZE, SIZE))
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def _strongest(strength: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.unravel_index(np.argsort(strength.ravel(), kind="stable")[::-1][:n], strength.shape)
    return ys.astype(float), xs.astype(float)


def test_square_boundary_within_2px(square: np.ndarray) -> None:
    cmap = detect_gradient(square, ContourParams())
    assert cmap.strength.shape == (SIZE, SIZE) and cmap.orientation.shape == (SIZE, SIZE)
    assert cmap.strength.dtype == np.float32 and cmap.orientation.dtype == np.float32
    assert cmap.strength.min() >= 0.0 and cmap.strength.max() <= 1.0
    ys, xs = _strongest(cmap.strength, 80)  # the outline has 4 * 24 = 96 pixel edges
    assert distance_to_square_outline(ys, xs).max() <= 2.0
    assert (ys < 24).any() and (ys > 24).any() and (xs < 24).any() and (xs > 24).any()  # every side


def test_boundary_pixels_straddle_the_edge(square: np.ndarray) -> None:
    """Both pixels flanking a side are marked (the edge runs between them), nothing further out on that row."""
    strength = detect_gradient(square, ContourParams()).strength
    row = strength[24]
    assert row[LO - 1] > 0.5 and row[LO] > 0.5 and row[HI - 1] > 0.5 and row[HI] > 0.5
    assert row[LO + 2 : HI - 2].max() < 0.2 and row[: LO - 3].max() < 0.2


def test_square_orientation_is_normal_to_the_sides(square: np.ndarray) -> None:
    theta = detect_gradient(square, ContourParams()).orientation
    assert theta.min() >= 0.0 and theta.max() < np.pi
    left_side = theta[16:32, LO - 1 : LO + 1]  # vertical edge: normal along x, angle 0 (or ~pi)
    top_side = theta[LO - 1 : LO + 1, 16:32]  # horizontal edge: normal along y, angle pi/2
    assert np.all(np.minimum(left_side, np.pi - left_side) < 0.2)
    assert np.all(np.abs(top_side - np.pi / 2) < 0.2)


def test_texture_only_boundary_is_found() -> None:
    image = textured_halves()
    half = SIZE // 2
    assert abs(image[:, :half].mean() - image[:, half:].mean()) < 3.0  # no mean-colour step to find
    strength = detect_gradient(image, ContourParams()).strength
    ys, xs = _strongest(strength, SIZE)
    assert np.all(np.abs(xs - (half - 0.5)) <= 2.5)
    assert np.ptp(ys) >= SIZE // 2  # along the boundary, not one blob


def test_texture_boundary_needs_the_texture_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard for the test above: with colour alone the same boundary is not what stands out."""
    monkeypatch.setattr(contours, "TEXTURE_WEIGHT", 0.0)
    strength = detect_gradient(textured_halves(), ContourParams()).strength
    _, xs = _strongest(strength, SIZE)
    assert np.mean(np.abs(xs - (SIZE // 2 - 0.5)) <= 2.5) < 0.9


def test_flat_noisy_image_stays_weak() -> None:
    """The normaliser has an absolute floor: sensor noise alone is not stretched to full-strength boundaries."""
    rng = np.random.default_rng(2)
    flat = np.clip(100.0 + rng.normal(0.0, 4.0, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
    assert detect_gradient(flat, ContourParams()).strength.max() < 0.5


def test_normalise_is_robust_to_a_few_strong_pixels() -> None:
    thin = np.zeros((50, 50))
    thin[10, :] = 0.2  # a long, moderate boundary
    thin[30, :5] = 5.0  # a few very strong pixels
    out = normalise(thin, 99.0, 0.05)
    assert out.max() == 1.0 and out[10].min() == 1.0  # not crushed to 0.04
    assert normalise(np.full((10, 10), 0.01), 99.0, 0.05).max() == pytest.approx(0.2)  # the floor


def test_scales_params_are_used(square: np.ndarray) -> None:
    one = detect_gradient(square, ContourParams(num_scales=1)).strength
    three = detect_gradient(square, ContourParams(num_scales=3)).strength
    assert not np.array_equal(one, three)


def test_rejects_non_rgb_images() -> None:
    with pytest.raises(ValueError, match="RGB"):
        detect_gradient(np.zeros((8, 8), np.uint8), ContourParams())
    with pytest.raises(ValueError, match="RGB"):
        detect_gradient(np.zeros((8, 8, 3), np.float32), ContourParams())


def test_detectors_match_the_params_choices() -> None:
    assert ContourParams.__dataclass_fields__["method"].metadata["choices"] == DETECTORS


def test_dispatcher_routes_every_detector(square: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    import clips4.superpixels.pmi as pmi

    sentinel = {}
    for name in ("pmi", "hed"):
        sentinel[name] = ContourMap(np.full((2, 2), 0.5, np.float32), np.zeros((2, 2), np.float32))
    monkeypatch.setattr(pmi, "detect_pmi", lambda image, params: sentinel["pmi"])
    assert detect_contours(square, ContourParams(method="pmi")) is sentinel["pmi"]
    pytest.importorskip("torch")
    import clips4.superpixels.hed as hed

    monkeypatch.setattr(hed, "detect_hed", lambda image, params: sentinel["hed"])
    assert detect_contours(square, ContourParams(method="hed")) is sentinel["hed"]
    gradient = detect_contours(square, ContourParams(method="gradient"))
    assert np.array_equal(gradient.strength, detect_gradient(square, ContourParams()).strength)


def test_dispatcher_rejects_unknown_methods(square: np.ndarray) -> None:
    with pytest.raises(ValueError, match="gradient, pmi, hed"):
        detect_contours(square, ContourParams(method="sobel"))


def test_hed_without_weights_is_an_error_not_a_fallback(square: np.ndarray) -> None:
    pytest.importorskip("torch")
    from clips4.errors import Clips4Error

    with pytest.raises(Clips4Error, match="hed_weights"):
        detect_contours(square, ContourParams(method="hed", hed_weights=None))


def test_gradient_does_not_import_torch() -> None:
    code = (
        "import sys, numpy as np\n"
        "from clips4.params import ContourParams\n"
        "from clips4.superpixels.contours import detect_contours\n"
        "detect_contours(np.zeros((16, 16, 3), np.uint8), ContourParams())\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120, cwd=root)


def test_contour_rows_pad_each_image_to_the_store_size(square: np.ndarray) -> None:
    """The contours store's rows: each image's map at the top-left (float16), zeros around, orientation only on
    boundary pixels, and the image's extent."""
    images = [square, square[:30, :41], square[5:, :20]]
    params = ContourParams()
    rows = contours.contour_rows(iter(images), len(images), (SIZE, SIZE + 3), params)
    assert rows["strength"].dtype == rows["orientation"].dtype == np.float16 and rows["extent"].dtype == np.int32
    assert rows["strength"].shape == rows["orientation"].shape == (3, SIZE, SIZE + 3)
    for k, image in enumerate(images):
        height, width = image.shape[:2]
        expected = detect_contours(image, params)
        np.testing.assert_array_equal(rows["extent"][k], (height, width))
        np.testing.assert_array_equal(rows["strength"][k, :height, :width], expected.strength.astype(np.float16))
        on_boundary = np.where(expected.strength > 0, expected.orientation, 0).astype(np.float16)
        np.testing.assert_array_equal(rows["orientation"][k, :height, :width], on_boundary)
        for name in ("strength", "orientation"):
            padding = rows[name][k].copy()
            padding[:height, :width] = 0
            assert not padding.any()


def test_contour_rows_refuse_a_short_image_stream(square: np.ndarray) -> None:
    with pytest.raises(ValueError):
        contours.contour_rows(iter([square]), 2, (SIZE, SIZE), ContourParams())

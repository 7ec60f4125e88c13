"""Joint augmentation: the image, its superpixels and its CLIP map stay aligned through crop and flip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clips4.train.transforms import JointAugment, resample_feature_grid, resize_labels

SIZE, STRIDE, BLOCK = 64, 8, 8


def _coordinate_world():
    """An image whose red/green encode x/y, 8x8 block superpixels, and a CLIP grid whose features encode the
    centres of their cells: ``(x, y, 1)`` (ratios survive the renormalisation to unit length)."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    image = np.stack([4 * xs, 4 * ys, np.full_like(xs, 128)], axis=-1).astype(np.uint8)
    superpixels = (ys // BLOCK) * (SIZE // BLOCK) + xs // BLOCK
    grid = SIZE // STRIDE
    gy, gx = np.mgrid[0:grid, 0:grid]
    features = np.stack([(gx + 0.5) * STRIDE, (gy + 0.5) * STRIDE, np.ones_like(gx, dtype=float)], axis=-1)
    return image, superpixels.astype(np.int32), features.astype(np.float32)


def _expected_coordinates(view, size):
    """Continuous image coordinates (pixel centres at k + 1/2) of each output pixel of a view."""
    top, left, height, width = view.crop_box
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    ys = top + centres * height
    xs = left + (1 - centres if view.flipped else centres) * width
    return torch.meshgrid(ys, xs, indexing="ij")


@pytest.mark.parametrize("seed", range(8))
def test_crop_and_flip_keep_image_superpixels_and_clip_aligned(seed):
    image, superpixels, features = _coordinate_world()
    augment = JointAugment(40, (0.2, 1.0), True, 0.0, False, clip_stride=STRIDE, mean=(0, 0, 0), std=(1, 1, 1))
    view = augment(image, superpixels, features, torch.Generator().manual_seed(seed))
    ys, xs = _expected_coordinates(view, 40)

    # superpixels: nearest neighbour at pixel centres, exactly
    expected_labels = (ys.floor().long() // BLOCK) * (SIZE // BLOCK) + xs.floor().long() // BLOCK
    assert torch.equal(view.superpixels, expected_labels)

    # CLIP: a linear function of position survives bilinear resampling wherever no border clamping happens
    clip = view.clip_dense.double()
    inside = (ys > STRIDE / 2) & (ys < SIZE - STRIDE / 2) & (xs > STRIDE / 2) & (xs < SIZE - STRIDE / 2)
    assert torch.allclose((clip[0] / clip[2])[inside], xs[inside], atol=1e-3)
    assert torch.allclose((clip[1] / clip[2])[inside], ys[inside], atol=1e-3)
    assert torch.allclose(view.clip_dense.norm(dim=0), torch.ones(40, 40), atol=1e-5)

    # image: red = 4 x (pixel index), so red / 4 + 1/2 is the x coordinate, away from the borders
    red, green = view.image[0].double() * 255 / 4 + 0.5, view.image[1].double() * 255 / 4 + 0.5
    border = (ys > 2) & (ys < SIZE - 2) & (xs > 2) & (xs < SIZE - 2)
    assert (red - xs)[border].abs().max() < 0.5 and (green - ys)[border].abs().max() < 0.5


def test_flip_and_no_flip_both_happen_and_crop_respects_scale():
    image, superpixels, features = _coordinate_world()
    augment = JointAugment(32, (0.25, 0.5), True, 0.0, False, clip_stride=STRIDE)
    generator = torch.Generator().manual_seed(0)
    views = [augment(image, superpixels, features, generator) for _ in range(20)]
    assert {v.flipped for v in views} == {True, False}
    areas = [v.crop_box[2] * v.crop_box[3] / SIZE**2 for v in views]
    assert min(areas) > 0.2 and max(areas) < 0.55
    assert not any(
        JointAugment(32, (0.5, 1), False, 0, False, clip_stride=8)(image, superpixels, features, generator).flipped
        for _ in range(10)
    )


def test_clip_map_on_the_student_grid_and_photometric_changes_only_the_image():
    image, superpixels, features = _coordinate_world()
    augment = JointAugment(40, (0.3, 1.0), True, 1.0, True, clip_stride=STRIDE, clip_size=10)
    view = augment(image, superpixels, features, torch.Generator().manual_seed(3))
    assert view.clip_dense.shape == (3, 10, 10)
    again = resample_feature_grid(torch.as_tensor(features), view.crop_box, view.flipped, STRIDE, 10)
    assert torch.equal(view.clip_dense, again)
    ys, xs = _expected_coordinates(view, 40)
    assert torch.equal(view.superpixels, (ys.floor().long() // BLOCK) * (SIZE // BLOCK) + xs.floor().long() // BLOCK)


def test_random_choices_come_from_the_generator_only():
    image, superpixels, features = _coordinate_world()
    augment = JointAugment(32, (0.2, 1.0), True, 0.8, True, clip_stride=STRIDE)
    torch.manual_seed(1)
    first = augment(image, superpixels, features, torch.Generator().manual_seed(7))
    global_state = torch.get_rng_state()
    torch.manual_seed(2)
    second = augment(image, superpixels, features, torch.Generator().manual_seed(7))
    torch.manual_seed(1)
    augment(image, superpixels, features, torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), global_state)  # the global RNG was not drawn from
    assert first.crop_box == second.crop_box and torch.equal(first.image, second.image)
    assert torch.equal(first.clip_dense, second.clip_dense)
    other = augment(image, superpixels, features, torch.Generator().manual_seed(8))
    assert other.crop_box != first.crop_box or not torch.equal(other.image, first.image)


def test_misaligned_inputs_are_refused():
    image, superpixels, features = _coordinate_world()
    augment = JointAugment(32, (0.5, 1.0), True, 0.0, False, clip_stride=16)
    with pytest.raises(ValueError, match="CLIP map"):
        augment(image, superpixels, features, torch.Generator())
    with pytest.raises(ValueError, match="uint8 \\[H, W, 3\\]"):
        augment(image[..., 0], superpixels, features, torch.Generator())
    with pytest.raises(ValueError, match="superpixels"):
        JointAugment(32, (0.5, 1.0), True, 0.0, False, clip_stride=8)(
            image, superpixels[:-1], features, torch.Generator()
        )


def test_resize_labels_samples_pixel_centres():
    labels = torch.arange(16).view(1, 4, 4)
    assert resize_labels(labels, (2, 2)).tolist() == [[[5, 7], [13, 15]]]
    big = torch.tensor([[2**31 - 2]])
    assert resize_labels(big, (2, 2)).unique().item() == 2**31 - 2

"""Mask propagation by embedding affinities on synthetic videos whose answer is known."""

import numpy as np
import torch
import torch.nn.functional as F

from clips4.eval.davis import jaccard
from clips4.eval.propagation import PropagationConfig, context_frames, propagate_labels, propagate_masks


def upsample_ids(grid_ids: np.ndarray, factor: int) -> np.ndarray:
    return np.kron(grid_ids, np.ones((factor, factor), grid_ids.dtype))


def test_context_is_first_frame_plus_previous_frames_clamped_at_zero():
    assert context_frames(3, 5) == [0, 0, 0, 0, 1, 2]
    assert context_frames(10, 3) == [0, 7, 8, 9]


def test_identity_embeddings_propagate_perfectly():
    """Two squares move by one cell per frame; each pixel's embedding is its object's id: exact labels."""
    frames, grid = 6, 8
    grid_ids = np.zeros((frames, grid, grid), np.int64)
    for t in range(frames):
        grid_ids[t, 1:3, t : t + 2] = 1
        grid_ids[t, 5:7, 6 - t : 8 - t] = 2
    one_hot = F.one_hot(torch.from_numpy(grid_ids), 3).permute(0, 3, 1, 2).float()  # [T, 3, h, w]
    soft = propagate_labels(one_hot, one_hot[0])  # the embedding of a pixel is its object's id
    torch.testing.assert_close(soft, one_hot)
    masks = propagate_masks(one_hot, grid_ids[0].astype(np.uint8))  # frames at the grid's size
    assert masks.dtype == np.uint8
    np.testing.assert_array_equal(masks, grid_ids)
    # At 4x the grid, bilinear upsampling of the soft labels rounds off only the squares' corner pixels.
    big = propagate_masks(one_hot, upsample_ids(grid_ids[0], 4).astype(np.uint8))
    for t in range(1, frames):
        assert (big[t] != upsample_ids(grid_ids[t], 4)).sum() == 8  # 4 corners of 2 squares


def test_textured_square_is_tracked_across_the_frame():
    """A textured square crosses a textured background; it ends where the first mask no longer overlaps it."""
    generator = torch.Generator().manual_seed(0)
    frames, grid, side, dim, factor = 9, 16, 4, 32, 2
    background = F.normalize(torch.randn(dim, grid, grid, generator=generator), dim=0)
    texture = F.normalize(torch.randn(dim, side, side, generator=generator), dim=0)
    embeddings, grid_ids = [], []
    for t in range(frames):
        frame, ids = background.clone(), np.zeros((grid, grid), np.int64)
        top, left = 2 + t, 1 + t  # one cell down and right per frame: 8 cells in all
        frame[:, top : top + side, left : left + side] = texture
        ids[top : top + side, left : left + side] = 1
        embeddings.append(frame)
        grid_ids.append(ids)
    truth = np.stack([upsample_ids(g, factor) for g in grid_ids]).astype(np.uint8)
    masks = propagate_masks(torch.stack(embeddings), truth[0])
    assert jaccard(truth[0] == 1, truth[-1] == 1) == 0.0  # copying the first mask would score 0
    scores = [jaccard(truth[t] == 1, masks[t] == 1) for t in range(1, frames)]
    assert min(scores) > 0.9, scores


def test_radius_restricts_matches_in_previous_frames():
    """Frame 2's object matches only frame 1's object, 20 cells away: found without the radius, not with it."""
    grid_h, grid_w = 3, 32
    back = torch.tensor([1.0, 0.0, 0.0])
    first = torch.tensor([0.0, 1.0, 0.0])  # the object in frame 0
    last = torch.tensor([0.1, 0.0, 0.99**0.5])  # the object in frame 2: orthogonal to `first`, 0.1 to `back`
    middle = F.normalize(first + last, dim=0)  # frame 1: halfway, so it is labelled from frame 0
    embeddings = back[None, :, None, None].repeat(3, 1, grid_h, grid_w)
    embeddings[0, :, :, 0:3] = first[:, None, None]
    embeddings[1, :, :, 0:3] = middle[:, None, None]
    embeddings[2, :, :, 20:23] = last[:, None, None]
    first_mask = np.zeros((grid_h, grid_w), np.uint8)
    first_mask[:, 0:3] = 1
    near = propagate_masks(embeddings, first_mask, PropagationConfig(radius=12))
    far = propagate_masks(embeddings, first_mask, PropagationConfig(radius=100))
    assert (near[1][:, 0:3] == 1).all() and (far[1][:, 0:3] == 1).all()
    assert (far[2][:, 20:23] == 1).all()  # matched to frame 1's object
    assert (near[2][:, 20:23] == 0).all()  # out of reach: nearest allowed matches are background
    assert (near[2] == 0).sum() == near[2].size  # and nothing else is labelled as the object


def test_chunked_affinity_gives_the_same_labels():
    generator = torch.Generator().manual_seed(1)
    embeddings = torch.randn(4, 8, 6, 6, generator=generator)
    first_mask = np.zeros((12, 12), np.uint8)
    first_mask[2:8, 3:9] = 1
    whole = propagate_masks(embeddings, first_mask)
    chunked = propagate_masks(embeddings, first_mask, PropagationConfig(max_affinity_elements=100))
    np.testing.assert_array_equal(whole, chunked)


def test_first_frame_is_searched_whole():
    """An object that vanishes and reappears far away is recovered from the first frame (long-term memory)."""
    back, thing = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    embeddings = back[None, :, None, None].repeat(3, 1, 3, 32)
    embeddings[0, :, :, 0:3] = thing[:, None, None]
    embeddings[2, :, :, 25:28] = thing[:, None, None]  # absent from frame 1, 25 cells from where it started
    first_mask = np.zeros((3, 32), np.uint8)
    first_mask[:, 0:3] = 1
    masks = propagate_masks(embeddings, first_mask, PropagationConfig(radius=12))
    assert (masks[1] == 0).all()
    expected = np.zeros((3, 32), np.uint8)
    expected[:, 25:28] = 1
    np.testing.assert_array_equal(masks[2], expected)

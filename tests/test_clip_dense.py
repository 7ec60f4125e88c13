"""MaskCLIP dense features match a straightforward re-implementation written from the raw weights."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clips4.clip import (
    build_model,
    dense_clip_features,
    dense_clip_features_sliding,
    model_config,
    to_rgb_batch,
)
from clips4.errors import Clips4Error


def _layer_norm(x, module):
    return F.layer_norm(x, (x.shape[-1],), module.weight, module.bias, module.eps)


def _attention(block, x):
    heads = block.attn.num_heads
    batch, length, width = x.shape
    q, k, v = (x @ block.attn.in_proj_weight.T + block.attn.in_proj_bias).split(width, dim=-1)
    q, k, v = (t.reshape(batch, length, heads, -1).transpose(1, 2) for t in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-1, -2) / (width // heads) ** 0.5, dim=-1)
    mixed = (weights @ v).transpose(1, 2).reshape(batch, length, width)
    return mixed @ block.attn.out_proj.weight.T + block.attn.out_proj.bias


def _mlp(block, x):
    hidden = F.gelu(x @ block.mlp.c_fc.weight.T + block.mlp.c_fc.bias)
    return hidden @ block.mlp.c_proj.weight.T + block.mlp.c_proj.bias


def reference_vit(visual, images, mode):
    """Plain matmuls over the weights, written independently of clips4.clip.dense."""
    patch = visual.patch_size[0]
    batch, _, height, width = images.shape
    grid_h, grid_w = height // patch, width // patch
    patches = images.unfold(2, patch, patch).unfold(3, patch, patch)  # B, 3, gh, gw, p, p
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(batch, grid_h * grid_w, -1)
    tokens = patches @ visual.conv1.weight.reshape(visual.conv1.weight.shape[0], -1).T
    pos = visual.positional_embedding
    if (grid_h, grid_w) != tuple(visual.grid_size):
        old = pos[1:].reshape(1, *visual.grid_size, -1).permute(0, 3, 1, 2)
        new = F.interpolate(old, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        pos = torch.cat([pos[:1], new.permute(0, 2, 3, 1).reshape(grid_h * grid_w, -1)])
    cls = visual.class_embedding.expand(batch, 1, -1)
    x = _layer_norm(torch.cat([cls, tokens], 1) + pos, visual.ln_pre)
    blocks = list(visual.transformer.resblocks)
    for block in blocks[:-1]:
        x = x + _attention(block, _layer_norm(x, block.ln_1))
        x = x + _mlp(block, _layer_norm(x, block.ln_2))
    last = blocks[-1]
    width_ = x.shape[-1]
    value = _layer_norm(x, last.ln_1) @ last.attn.in_proj_weight[2 * width_ :].T + last.attn.in_proj_bias[2 * width_ :]
    value = value @ last.attn.out_proj.weight.T + last.attn.out_proj.bias
    if mode == "maskclip":
        y = x + value
        y = y + _mlp(last, _layer_norm(y, last.ln_2))
    else:
        y = value
    y = _layer_norm(y[:, 1:], visual.ln_post) @ visual.proj
    y = y.reshape(batch, grid_h, grid_w, -1)
    return y / y.norm(dim=-1, keepdim=True)


def reference_resnet(visual, images):
    x = visual.stem(images)
    for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
        x = layer(x)
    pool = visual.attnpool
    v = torch.einsum("bchw,oc->bhwo", x, pool.v_proj.weight) + pool.v_proj.bias
    y = torch.einsum("bhwc,oc->bhwo", v, pool.c_proj.weight) + pool.c_proj.bias
    return y / y.norm(dim=-1, keepdim=True)


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return build_model(model_config("clips4-test-vit")).eval()


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return build_model(model_config("clips4-test-rn")).eval()


@pytest.mark.parametrize("mode", ["maskclip", "clearclip"])
@pytest.mark.parametrize("size", [(32, 32), (40, 56)])  # the config's own grid, and one needing a pos-emb resize
@torch.no_grad()
def test_vit_matches_reference(vit, mode, size):
    images = torch.randn(2, 3, *size)
    ours = dense_clip_features(vit, images, mode)
    reference = reference_vit(vit.visual, images, mode)
    assert ours.shape == (2, size[0] // 8, size[1] // 8, 32)
    assert (ours - reference).abs().max() < 1e-5
    assert torch.allclose(ours.norm(dim=-1), torch.ones(ours.shape[:3]), atol=1e-5)


@torch.no_grad()
def test_modes_differ(vit):
    images = torch.randn(1, 3, 32, 32)
    assert (
        dense_clip_features(vit, images, "maskclip") - dense_clip_features(vit, images, "clearclip")
    ).abs().max() > 1e-3


@torch.no_grad()
def test_resnet_matches_reference(resnet):
    images = torch.randn(2, 3, 64, 96)
    ours = dense_clip_features(resnet, images)
    assert ours.shape == (2, 2, 3, 32)
    assert (ours - reference_resnet(resnet.visual, images)).abs().max() < 1e-5


@torch.no_grad()
def test_odd_sizes_are_padded(vit):
    features = dense_clip_features(vit, torch.randn(1, 3, 33, 50))
    assert features.shape[1:3] == (5, 7)  # ceil(33 / 8), ceil(50 / 8)


@torch.no_grad()
def test_sliding_window_equals_direct_call_on_one_window(vit):
    images = torch.randn(1, 3, 32, 32)
    direct = dense_clip_features(vit, images)
    assert (dense_clip_features_sliding(vit, images, window=32, stride=16) - direct).abs().max() < 1e-6


@torch.no_grad()
def test_sliding_window_covers_large_images(vit):
    features = dense_clip_features_sliding(vit, torch.randn(1, 3, 48, 72), window=32, stride=16)
    assert features.shape == (1, 6, 9, 32)
    assert torch.allclose(features.norm(dim=-1), torch.ones(1, 6, 9), atol=1e-5)
    with pytest.raises(Clips4Error, match="multiples of 8"):
        dense_clip_features_sliding(vit, torch.randn(1, 3, 48, 72), window=30, stride=16)


@torch.no_grad()
def test_sliding_windows_on_sizes_off_the_grid(vit):
    """A 500x375-like case: 44 - 32 = 12 is no multiple of the 8-px grid, yet every cell is covered, finite,
    and each window's features land on the cells they belong to."""
    images = torch.randn(1, 3, 37, 44)
    features = dense_clip_features_sliding(vit, images, window=32, stride=16)
    assert features.shape == (1, 5, 6, 32) and torch.isfinite(features).all()
    assert torch.allclose(features.norm(dim=-1), torch.ones(1, 5, 6), atol=1e-5)
    # Padded to 40x48: windows start at rows 0, 8 and columns 0, 16, all on the grid. Cell (0, 5) is seen by the
    # window at (0, 16) alone, as its cell (0, 3).
    padded = torch.nn.functional.pad(images, (0, 4, 0, 3))
    corner_window = dense_clip_features(vit, padded[..., :32, 16:48])
    assert (features[0, 0, 5] - corner_window[0, 0, 3]).abs().max() < 1e-5


def test_channel_conversion_and_rejection():
    gray = np.full((4, 6), 200, np.uint8)
    rgba = np.zeros((4, 6, 4), np.uint8)
    assert to_rgb_batch(gray).shape == (1, 3, 4, 6)
    assert to_rgb_batch(rgba).shape == (1, 3, 4, 6)
    assert torch.allclose(to_rgb_batch(gray)[0, 2], torch.full((4, 6), 200 / 255))
    with pytest.raises(Clips4Error, match="5 channels"):
        to_rgb_batch(np.zeros((4, 6, 5), np.uint8))


def test_unknown_mode_is_refused(vit):
    with pytest.raises(Clips4Error, match="dense_mode"):
        dense_clip_features(vit, torch.randn(1, 3, 32, 32), "fancy")


def test_padded_dense_features_batch_each_size_in_order_of_first_appearance(vit, monkeypatch):
    """All images of one size go together (sizes in order of first appearance), ``batch_size`` at a time; each
    image's features equal its own forward pass, padded with zeros to the store's grid."""
    import clips4.clip.dense as dense

    rng = np.random.default_rng(0)
    sizes = [(32, 32), (24, 40), (32, 32), (24, 40), (32, 32), (16, 16), (32, 32)]
    images = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in sizes]
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    options = {"window": 32, "stride": 16, "mode": "maskclip", "device": torch.device("cpu")}
    real, batches, updates = dense.dense_features_batch, [], []

    def recording(model, stack, *args, **kwargs):
        batches.append(stack.shape[1:3])
        return real(model, stack, *args, **kwargs)

    monkeypatch.setattr(dense, "dense_features_batch", recording)
    features = dense.padded_dense_features(
        vit, images, mean, std, shape=(4, 5, 32), batch_size=3, progress=updates.append, **options
    )
    assert batches == [(32, 32), (32, 32), (24, 40), (16, 16)] and updates == [3, 1, 2, 1]
    assert features.dtype == np.float16 and features.shape == (7, 4, 5, 32)
    for k, image in enumerate(images):
        alone = real(vit, image[None], mean, std, **options)[0]
        height, width = alone.shape[:2]
        np.testing.assert_allclose(features[k, :height, :width].astype(np.float32), alone.astype(np.float32), atol=2e-3)
        assert not features[k, height:].any() and not features[k, :, width:].any()


def test_all_windows_of_a_batch_go_through_one_forward(vit):
    """Issue 23: one batch of B x windows crops on the GPU, not one forward per window; the same features."""
    from clips4.clip import feature_stride
    from clips4.ops.windows import sliding_window_mean, window_starts

    images, step = torch.randn(2, 3, 64, 96), feature_stride(vit.visual)
    calls: list[int] = []

    def forward(crop: torch.Tensor) -> torch.Tensor:
        calls.append(len(crop))
        return dense_clip_features(vit, crop)

    windows = len(window_starts(64, 48, 32)) * len(window_starts(96, 48, 32))
    batched = sliding_window_mean(forward, images, 48, 32, step=step)
    assert calls == [2 * windows] and windows == 6
    calls.clear()
    one_window_at_a_time = sliding_window_mean(forward, images, 48, 32, step=step, crops_per_forward=2)
    assert calls == [2] * windows
    torch.testing.assert_close(batched, one_window_at_a_time, atol=1e-5, rtol=0)

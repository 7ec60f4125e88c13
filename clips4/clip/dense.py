"""Dense CLIP pixel embeddings, following MaskCLIP (Zhou et al., ECCV 2022).

CLIP's image embedding comes out of a pooling step whose query mixes every location. MaskCLIP drops the
query-key part of that last step and keeps only the value path, applied at every location, which leaves
each patch token in the joint image-text space:

- ViT: all blocks but the last run as usual (with the positional embedding resized bicubically to the
  input's patch grid); in the last block ``v = out_proj(W_v · ln_1(x) + b_v)``, ``y = x + v``,
  ``y = y + mlp(ln_2(y))``; then ``ln_post`` and ``proj`` on the patch tokens (the class token is dropped).
- ``clearclip`` mode (ClearCLIP, Lan et al. ECCV 2024): the last block keeps only ``v``, no residual and
  no feed-forward, which ClearCLIP found less noisy.
- ModifiedResNet (RN50 family): the attention pool's value and output projections applied as 1x1
  convolutions to the final feature map (query, key and positional embedding dropped).

Inputs of any size are padded on the right and bottom to a multiple of the feature stride; the output
grid is ``ceil(H / stride) x ceil(W / stride)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer

from clips4.errors import Clips4Error
from clips4.ops.windows import sliding_window_mean

DENSE_MODES = ("maskclip", "clearclip")


def feature_stride(visual: torch.nn.Module) -> int:
    """Pixels per dense feature along each axis (the ViT patch size, or 32 for a ModifiedResNet)."""
    if isinstance(visual, VisionTransformer):
        return int(visual.patch_size[0])
    if isinstance(visual, ModifiedResNet):
        return 32
    raise Clips4Error(f"dense features need a ViT or ModifiedResNet image tower, not {type(visual).__name__}")


def to_rgb_batch(images: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 images (``[H, W]``, ``[H, W, C]`` or ``[B, H, W, C]``) as a float ``[B, 3, H, W]`` batch in [0, 1].

    Grayscale is repeated to RGB and RGBA loses its alpha; any other channel count is an error.
    """
    if isinstance(images, (list, tuple)):
        return torch.cat([to_rgb_batch(image) for image in images])
    array = torch.tensor(np.asarray(images))  # a copy: decoded images are often read-only arrays
    if array.ndim == 2:
        array = array[None, ..., None]
    elif array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        raise Clips4Error(f"image batch has shape {tuple(array.shape)}; expected [B, H, W, C] uint8 RGB images")
    channels = array.shape[-1]
    if channels == 1:
        array = array.expand(-1, -1, -1, 3)
    elif channels == 4:
        array = array[..., :3]
    elif channels != 3:
        raise Clips4Error(f"image has {channels} channels; expected RGB (3), or grayscale (1) / RGBA (4) to convert")
    return array.permute(0, 3, 1, 2).float() / 255.0


def normalize_images(batch: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    mean_t = torch.tensor(mean, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    return (batch - mean_t) / std_t


def _pad_to_multiple(images: torch.Tensor, stride: int) -> torch.Tensor:
    height, width = images.shape[-2:]
    pad_h, pad_w = (-height) % stride, (-width) % stride
    return F.pad(images, (0, pad_w, 0, pad_h)) if pad_h or pad_w else images


def resize_positional_embedding(
    pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]
) -> torch.Tensor:
    """Class-token row kept; the grid rows resized bicubically from ``old_grid`` to ``new_grid``."""
    if tuple(old_grid) == tuple(new_grid):
        return pos
    cls_pos, grid_pos = pos[:1], pos[1:]
    grid = grid_pos.reshape(1, old_grid[0], old_grid[1], -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False)
    return torch.cat([cls_pos, grid.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], -1)])


def _value_path(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``out_proj(W_v · x + b_v)`` of a block's attention, on already layer-normed tokens."""
    attention = block.attn
    if getattr(attention, "in_proj_weight", None) is None:
        raise Clips4Error(f"unsupported attention module {type(attention).__name__} (no fused in_proj_weight)")
    width = x.shape[-1]
    weight, bias = attention.in_proj_weight[2 * width :], attention.in_proj_bias[2 * width :]
    return attention.out_proj(F.linear(x, weight, bias))


def _vit_dense(visual: VisionTransformer, images: torch.Tensor, mode: str) -> torch.Tensor:
    if getattr(visual, "attn_pool", None) is not None:
        raise Clips4Error("dense features are not defined for attention-pooler (CoCa-style) ViTs")
    tokens = visual.conv1(images)  # [B, C, gh, gw]
    batch, width, grid_h, grid_w = tokens.shape
    tokens = tokens.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(tokens.dtype).expand(batch, 1, width)
    pos = resize_positional_embedding(visual.positional_embedding, visual.grid_size, (grid_h, grid_w))
    x = visual.ln_pre(torch.cat([cls, tokens], dim=1) + pos.to(tokens.dtype))

    transformer = visual.transformer
    batch_first = getattr(transformer, "batch_first", True)
    if not batch_first:
        x = x.transpose(0, 1)
    for block in transformer.resblocks[:-1]:
        x = block(x)
    if not batch_first:
        x = x.transpose(0, 1)

    last = transformer.resblocks[-1]
    value = last.ls_1(_value_path(last, last.ln_1(x)))
    if mode == "maskclip":
        y = x + value
        y = y + last.ls_2(last.mlp(last.ln_2(y)))
    else:  # clearclip: the value path alone
        y = value
    y = visual.ln_post(y[:, 1:])
    if visual.proj is not None:
        y = y @ visual.proj
    return y.reshape(batch, grid_h, grid_w, -1)


def _resnet_dense(visual: ModifiedResNet, images: torch.Tensor) -> torch.Tensor:
    x = visual.stem(images)
    x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))
    pool = visual.attnpool
    x = F.conv2d(x, pool.v_proj.weight[:, :, None, None], pool.v_proj.bias)
    x = F.conv2d(x, pool.c_proj.weight[:, :, None, None], pool.c_proj.bias)
    return x.permute(0, 2, 3, 1)


def dense_clip_features(model: torch.nn.Module, images: torch.Tensor, mode: str = "maskclip") -> torch.Tensor:
    """L2-normalised dense CLIP embeddings ``[B, h, w, D]`` of normalised images ``[B, 3, H, W]``.

    ``model`` is an open_clip CLIP (or its ``.visual`` tower). ``mode`` is ``maskclip`` or ``clearclip``
    (ResNets have one dense form, used for both).
    """
    if mode not in DENSE_MODES:
        raise Clips4Error(f"clip.dense_mode: must be one of {', '.join(DENSE_MODES)}, got {mode!r}")
    visual = getattr(model, "visual", model)
    images = _pad_to_multiple(images, feature_stride(visual))
    if isinstance(visual, VisionTransformer):
        features = _vit_dense(visual, images, mode)
    else:
        features = _resnet_dense(visual, images)
    return F.normalize(features, dim=-1)


def dense_clip_features_sliding(
    model: torch.nn.Module, images: torch.Tensor, window: int, stride: int, mode: str = "maskclip"
) -> torch.Tensor:
    """Dense features of images larger than ``window``: windows every ``stride`` pixels, overlaps averaged
    (:func:`clips4.ops.windows.sliding_window_mean`, the reader the student shares).

    ``window`` and ``stride`` must be multiples of the feature stride, so windows align with the grid.
    The averaged features are re-normalised.
    """
    visual = getattr(model, "visual", model)
    step = feature_stride(visual)
    if window % step or stride % step:
        raise Clips4Error(f"clip.window ({window}) and clip.stride ({stride}) must be multiples of {step}")
    # Pad first, so that the last window (flush with the padded border) also starts on the feature grid: a
    # start off the grid would shift its features by a fraction of a cell and leave the last column uncovered.
    images = _pad_to_multiple(images, step)
    return sliding_window_mean(lambda crop: dense_clip_features(model, crop, mode), images, window, stride, step)


@torch.no_grad()
def dense_features_batch(
    model: torch.nn.Module,
    images: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    window: int,
    stride: int,
    mode: str,
    device: torch.device,
    precision: str = "fp32",
) -> np.ndarray:
    """float16 dense features ``[B, h, w, D]`` of a stack of same-sized uint8 images ``[B, H, W, C]``, normalised
    by the model's ``mean`` and ``std`` on ``device``; in sliding windows (``window``, every ``stride`` pixels)
    when an image side exceeds ``window``. ``precision`` (:mod:`clips4.ops.precision`) runs the tower under
    autocast; the features are re-normalised in fp32 before the float16 store cast."""
    from clips4.ops.precision import autocast, resolve_precision

    batch = to_rgb_batch(images).to(device, non_blocking=True)
    batch = normalize_images(batch, mean, std)
    with autocast(precision, device):
        if max(batch.shape[-2:]) > window:
            features = dense_clip_features_sliding(model, batch, window, stride, mode)
        else:
            features = dense_clip_features(model, batch, mode)
    if resolve_precision(precision, device) != "fp32":
        features = F.normalize(features.float(), dim=-1)
    return features.to(torch.float16).cpu().numpy()


def padded_dense_features(
    model: torch.nn.Module,
    images: Sequence[np.ndarray],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    shape: tuple[int, int, int],
    window: int,
    stride: int,
    mode: str,
    batch_size: int,
    device: torch.device,
    progress: Callable[[int], object] | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """float16 ``[len(images), *shape]``: the dense features (:func:`dense_features_batch`) of uint8 images of any
    sizes, each padded with zeros at the bottom and right to ``shape`` (grid height, grid width, D).

    The images of one size go together, sizes in order of first appearance, in batches of ``batch_size``;
    ``progress(n)`` is called after each batch of ``n`` images.
    """
    from clips4.ops.batches import same_size_batches  # here: the other users of clips4.clip need no batcher

    by_size: dict[tuple[int, ...], list[int]] = {}
    for k, image in enumerate(images):
        by_size.setdefault(image.shape[:2], []).append(k)
    grouped = [k for members in by_size.values() for k in members]
    features = np.zeros((len(images), *shape), np.float16)
    for batch in same_size_batches(grouped, lambda k: images[k].shape[:2], batch_size):
        dense = dense_features_batch(
            model,
            np.stack([images[k] for k in batch]),
            mean,
            std,
            window=window,
            stride=stride,
            mode=mode,
            device=device,
            precision=precision,
        )
        for k, grid in zip(batch, dense, strict=True):
            height, width, dim = grid.shape
            features[k, :height, :width, :dim] = grid
        if progress is not None:
            progress(len(batch))
    return features

"""The one segmenter: ``Segmenter.from_checkpoint(path).segment(image, ["cat", "dog"])``.

It is what every use of a method goes through: ``clips4 evaluate`` (MaskCLIP, the MaskCLIP+-style baseline and
CLIP-S4, :mod:`clips4.eval.methods`), the training's val score, the report's figures, ``clips4 segment`` and
``clips4 serve``. Pixel embeddings come from the student or, for the MaskCLIP baseline, from CLIP itself, read as
:mod:`clips4.inference.reading` says; class names are embedded with the 85-template prompt ensemble
(:func:`clips4.clip.text.text_embeddings`); cosine scores are upsampled to the image before the argmax
(:func:`clips4.inference.language.text_scores`). So on a dataset's val images with its class names it gives the
labels ``clips4 evaluate`` scores.

How images are read is recorded in the checkpoint (its resolved params), shown in :attr:`Segmenter.settings`:
``eval.protocol`` (``slide``: images larger than ``clip.window`` read in windows every ``clip.stride`` pixels,
overlaps averaged), ``dataset.name`` (the ``whole`` protocol's test scale), ``clip.dense_mode`` (MaskCLIP only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clips4.clip.dense import normalize_images, to_rgb_batch
from clips4.clip.loading import LoadedClip, compute_device
from clips4.clip.text import text_embeddings
from clips4.errors import Clips4Error
from clips4.inference.language import text_scores
from clips4.inference.names import check_name_lengths
from clips4.inference.reading import ReadSettings, clip_features, student_features
from clips4.paths import STUDENT_CHECKPOINT

#: Label value of pixels left unlabelled by ``threshold`` (and the most classes one label PNG can hold).
UNLABELLED = 255
METHODS = ("clips4", "maskclip")

ImageInput = str | Path | np.ndarray | Any  # a path, an array [H, W], [H, W, 1|3|4], or a PIL image


@dataclass(frozen=True)
class SegmentResult:
    """One image's segmentation.

    ``labels`` ``[H, W]`` uint8 indices into ``classes``, 255 where the best cosine is below ``threshold``;
    ``scores`` ``[C, H, W]`` float32 cosine similarities (``None`` when not asked for); ``best`` ``[H, W]`` the
    highest score of each pixel.
    """

    labels: np.ndarray
    scores: np.ndarray | None
    best: np.ndarray
    classes: tuple[str, ...]
    threshold: float | None
    method: str

    def fractions(self) -> dict[str, float]:
        """Share of the image's pixels given to each class (in ``classes`` order)."""
        counts = np.bincount(self.labels.ravel(), minlength=UNLABELLED + 1)
        return {name: float(counts[i]) / self.labels.size for i, name in enumerate(self.classes)}


def parse_classes(text: str | Sequence[str], where: str = "--classes") -> tuple[str, ...]:
    """Class names from ``"cat, dog"`` or a list: stripped, none empty or repeated, at most 255."""
    names = [part.strip() for part in (text.split(",") if isinstance(text, str) else text)]
    names = [name for name in names if name]
    if not names:
        raise Clips4Error(f'{where}: no class names; give them comma-separated, e.g. --classes "cat,dog,sky"')
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise Clips4Error(f"{where}: class names repeated ({', '.join(repeated)}); give each class once")
    if len(names) > UNLABELLED:
        raise Clips4Error(f"{where}: {len(names)} classes; a label PNG holds at most {UNLABELLED}")
    check_name_lengths(names, where)  # at most MAX_CLASS_NAME_CHARS characters each
    return tuple(names)


def as_rgb_array(image: ImageInput) -> np.ndarray:
    """``image`` (a path, a PIL image or an array) as uint8 ``[H, W, 3]``; grayscale and RGBA are converted."""
    from PIL import Image

    if isinstance(image, str | Path):
        from clips4.data.images import read_rgb

        return read_rgb(image)
    if isinstance(image, Image.Image):
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)
    array = np.asarray(image)
    if array.dtype == bool or np.issubdtype(array.dtype, np.floating):
        if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1):
            raise Clips4Error("float image array: values must lie in [0, 1] (or pass uint8 in [0, 255])")
        array = np.round(np.nan_to_num(array.astype(np.float32)) * 255)
    elif array.dtype != np.uint8:
        raise Clips4Error(f"image array of dtype {array.dtype}; expected uint8 [0, 255] or float [0, 1]")
    if array.ndim not in (2, 3) or min(array.shape[:2], default=0) < 1:
        raise Clips4Error(f"image array of shape {array.shape}; expected [H, W] or [H, W, 1|3|4]")
    array = array.astype(np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] not in (1, 3, 4):
        raise Clips4Error(f"image has {array.shape[-1]} channels; expected RGB (3), grayscale (1) or RGBA (4)")
    return np.ascontiguousarray(np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array[..., :3])


class Segmenter:
    """Language-driven segmentation with a trained student (``method="clips4"``) or MaskCLIP (``"maskclip"``).

    Build it with :meth:`from_checkpoint`; ``teacher()`` gives the MaskCLIP baseline of the same CLIP.

    Examples:
        >>> segmenter = Segmenter.from_checkpoint("models/clips4.pt")  # doctest: +SKIP
        >>> result = segmenter.segment("photo.jpg", ["sky", "grass", "dog"], threshold=0.2)  # doctest: +SKIP
        >>> result.labels.shape, result.scores.shape  # ([H, W], [3, H, W])  # doctest: +SKIP
        >>> segmenter.embed("photo.jpg").shape  # [h, w, D] unit pixel embeddings  # doctest: +SKIP
    """

    def __init__(
        self,
        model: torch.nn.Module,
        clip: LoadedClip,
        settings: ReadSettings,
        *,
        method: str = "clips4",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        checkpoint: str | Path | None = None,
        text_cache: str | Path | None = None,
    ) -> None:
        if method not in METHODS:
            raise Clips4Error(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self.model = model.eval()
        self.clip = clip
        self.settings = settings
        self.method = method
        self.mean = tuple(mean if mean is not None else (model.mean if method == "clips4" else clip.mean))
        self.std = tuple(std if std is not None else (model.std if method == "clips4" else clip.std))
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.text_cache = text_cache
        self.device = next(model.parameters()).device

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path = STUDENT_CHECKPOINT,
        *,
        device: str | torch.device | None = None,
        teacher: bool = False,
        clip: str | None = None,
        text_cache: str | Path | None = None,
    ) -> Segmenter:
        """The student of a ``clips4 train`` checkpoint, ready to segment (or, with ``teacher=True``, the MaskCLIP
        baseline of the CLIP it was trained against). The CLIP comes from the checkpoint's recorded reference,
        checked by sha256 (``clip``: another place to read the same weights from: a file or an open_clip tag).
        ``text_cache``: a folder where class text embeddings are kept between processes (they take minutes for
        real CLIP on a CPU; only for CLIP weights read from a file, whose sha256 keys them).

        Raises:
            clips4.model.checkpoint.CheckpointError: the file is missing, corrupt, of another format version, or
                its CLIP cannot be found or does not match; the message names the file.
        """
        from clips4.inference.teacher import load_teacher_clip
        from clips4.model.checkpoint import load_student

        device = compute_device() if device is None else torch.device(device)
        student, checkpoint = load_student(path, device)
        loaded = load_teacher_clip(checkpoint, path, device, clip)
        settings = ReadSettings.from_recorded(checkpoint.get("params", {}))
        segmenter = cls(
            student, loaded, settings, mean=checkpoint.get("mean"), std=checkpoint.get("std"), text_cache=text_cache
        )
        segmenter.checkpoint = Path(path)
        return segmenter.teacher() if teacher else segmenter

    def teacher(self) -> Segmenter:
        """The MaskCLIP baseline read with the same settings and the same (shared, not copied) CLIP."""
        return Segmenter.maskclip(self.clip, self.settings, checkpoint=self.checkpoint, text_cache=self.text_cache)

    def describe(self) -> str:
        """One line with every inference setting, so that none is hidden."""
        s = self.settings
        read = f"{s.protocol}, window {s.window}, stride {s.stride}" if s.protocol == "slide" else s.protocol
        mode = f", dense mode {s.dense_mode}" if self.method == "maskclip" else ""
        clip = f"{self.clip.model_name} ({(self.clip.sha256 or self.clip.source)[:12]})"
        return f"{self.method}: CLIP {clip}, {read}{mode}, 85-template prompts, device {self.device}"

    @classmethod
    def maskclip(cls, clip: LoadedClip, settings: ReadSettings, **kwargs: Any) -> Segmenter:
        """The MaskCLIP baseline: ``clip``'s own dense features, read with ``settings``."""
        return cls(clip.model, clip, settings, method="maskclip", **kwargs)

    @torch.no_grad()
    def pixel_embeddings(self, images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """Unit pixel embeddings ``[B, h, w, D]`` of same-size uint8 RGB images (or one), on the model's device."""
        images = [images] if isinstance(images, np.ndarray) else list(images)
        batch = normalize_images(to_rgb_batch(images).to(self.device), self.mean, self.std)
        if self.method == "clips4":
            return student_features(self.model, batch, self.settings)
        return clip_features(self.clip.model, batch, self.settings)

    @torch.no_grad()
    def embed(self, image: ImageInput) -> torch.Tensor:
        """Unit pixel embeddings ``[h, w, D]`` (float32, CPU) on the model's output grid (``h, w`` = the image size
        over the output stride; the full size where sliding windows were used), in CLIP's text space."""
        return self.pixel_embeddings([as_rgb_array(image)])[0].float().cpu()

    def class_embeddings(self, classes: Sequence[str]) -> torch.Tensor:
        """Prompt-ensembled text embeddings ``[C, D]`` of class names (cached per CLIP and class list)."""
        return text_embeddings(self.clip, list(classes), cache_dir=self.text_cache).to(self.device)

    def segment(
        self,
        image: ImageInput,
        classes: str | Sequence[str],
        threshold: float | None = None,
        *,
        scores: bool = True,
    ) -> SegmentResult:
        """Labels (and cosine scores) of one image of any size; see :class:`SegmentResult`."""
        return self.segment_batch([as_rgb_array(image)], classes, threshold, scores=scores)[0]

    @torch.no_grad()
    def segment_batch(
        self,
        images: Sequence[np.ndarray],
        classes: str | Sequence[str],
        threshold: float | None = None,
        *,
        scores: bool = True,
    ) -> list[SegmentResult]:
        """:meth:`segment` for uint8 RGB images of one size, in one forward pass (a GPU batch)."""
        names = parse_classes(classes)
        size = images[0].shape[:2]
        if any(image.shape[:2] != size for image in images):
            raise Clips4Error("segment_batch: images of different sizes; batch only images of one size")
        cosine = text_scores(self.pixel_embeddings(images), self.class_embeddings(names), size)
        labels, best = cosine.argmax(dim=1).to(torch.uint8), cosine.amax(dim=1)
        if threshold is not None:
            labels[best < threshold] = UNLABELLED
        return [
            SegmentResult(
                labels=labels[i].cpu().numpy(),
                scores=cosine[i].float().cpu().numpy() if scores else None,
                best=best[i].float().cpu().numpy(),
                classes=names,
                threshold=threshold,
                method=self.method,
            )
            for i in range(len(images))
        ]

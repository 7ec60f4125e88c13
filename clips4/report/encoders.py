"""Each method of the report as the evaluation builds it (clips4.eval): its segmenter, and the pixel embeddings
that segmenter labels, so that the figures show exactly what ``evaluate`` scores.

- ``maskclip``: CLIP's dense features (:class:`clips4.eval.maskclip.MaskClipSegmenter`);
- ``maskclip_plus``: the MaskCLIP+-style student, models/maskclip_plus.pt, when that stage has run;
- ``clips4``: the CLIP-S4 student, models/clips4.pt, when ``train`` has run.

A student file that is absent means the method did not run: it is left out (the report says "not run").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clips4.clip.dense import normalize_images, to_rgb_batch
from clips4.clip.loading import LoadedClip
from clips4.eval.language import LanguageClasses, segment_with_text
from clips4.eval.maskclip import MaskClipSegmenter
from clips4.eval.protocol import protocol_features, reading_options
from clips4.eval.student import StudentSegmenter, check_teacher, student_embeddings
from clips4.params import Params

#: Student methods and their checkpoint files in the models folder (clips4/train/checkpoint.py's format).
STUDENT_FILES: dict[str, str] = {"maskclip_plus": "maskclip_plus.pt", "clips4": "clips4.pt"}


@dataclass(frozen=True)
class MethodModel:
    """One method's segmenter; :meth:`embed` gives the unit pixel embeddings it labels."""

    name: str
    segmenter: MaskClipSegmenter | StudentSegmenter

    @property
    def class_text(self) -> torch.Tensor:
        """The class text embeddings ``[C, D]`` the segmenter labels pixels with."""
        return self.segmenter.class_text

    @torch.no_grad()
    def embed(self, image: np.ndarray) -> torch.Tensor:
        """Unit pixel embeddings ``[h, w, D]`` (float32, CPU) of one uint8 image ``[H, W, 3]``, on the method's
        own feature grid, read with the evaluation protocol."""
        return self.embed_batch([image])[0]

    @torch.no_grad()
    def embed_batch(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """:meth:`embed` of images of one size, in one forward pass: ``[B, h, w, D]``."""
        segmenter = self.segmenter
        if isinstance(segmenter, StudentSegmenter):
            student = segmenter.student
            batch = normalize_images(to_rgb_batch(list(images)).to(segmenter.device), student.mean, student.std)
            features = student_embeddings(student, batch, **segmenter.read)
        else:
            loaded = segmenter.loaded
            batch = normalize_images(to_rgb_batch(list(images)).to(segmenter.device), loaded.mean, loaded.std)
            features = protocol_features(loaded.model, batch, **segmenter.read)
        return features.float().cpu()

    @torch.no_grad()
    def predict(self, embeddings: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """Class indices ``[H, W]`` (into the language classes) from :meth:`embed`'s output: the segmenter's rule."""
        return segment_with_text(embeddings[None], self.class_text.cpu(), size)[0].numpy()


def build_methods(
    params: Params, loaded: LoadedClip, classes: LanguageClasses, models_dir: Path, device: torch.device
) -> dict[str, MethodModel]:
    """The methods that can run, in report order: MaskCLIP always, each student whose checkpoint exists."""
    from clips4.train.checkpoint import load_student

    read = reading_options(params)
    methods = {
        "maskclip": MethodModel(
            "maskclip", MaskClipSegmenter(loaded, classes, dense_mode=params.clip.dense_mode, **read)
        )
    }
    for name in ("maskclip_plus", "clips4"):
        path = models_dir / STUDENT_FILES[name]
        if not path.is_file():
            continue
        student, checkpoint = load_student(path, device)
        check_teacher(checkpoint, loaded, path)
        methods[name] = MethodModel(name, StudentSegmenter(student, loaded, classes, **read))
    return methods

"""Each method of the report as the evaluation builds it (:mod:`clips4.eval.methods`): its
:class:`~clips4.inference.segmenter.Segmenter` and the class text it labels with, so that the figures show exactly
what ``evaluate`` scores.

- ``maskclip``: CLIP's dense features;
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

from clips4.clip.loading import LoadedClip
from clips4.eval.methods import student_segmenter
from clips4.inference.language import LanguageClasses, segment_with_text
from clips4.inference.reading import ReadSettings
from clips4.inference.segmenter import Segmenter
from clips4.params import Params

#: Student methods and their checkpoint files in the models folder (clips4/model/checkpoint.py's format).
STUDENT_FILES: dict[str, str] = {"maskclip_plus": "maskclip_plus.pt", "clips4": "clips4.pt"}


@dataclass(frozen=True)
class MethodModel:
    """One method's segmenter and its class text ``[C, D]``; :meth:`embed` gives the unit pixel embeddings it
    labels."""

    name: str
    segmenter: Segmenter
    class_text: torch.Tensor

    @torch.no_grad()
    def embed(self, image: np.ndarray) -> torch.Tensor:
        """Unit pixel embeddings ``[h, w, D]`` (float32, CPU) of one uint8 image ``[H, W, 3]``, on the method's
        own feature grid, read with the evaluation protocol."""
        return self.embed_batch([image])[0]

    @torch.no_grad()
    def embed_batch(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """:meth:`embed` of images of one size, in one forward pass: ``[B, h, w, D]``."""
        return self.segmenter.pixel_embeddings(images).float().cpu()

    @torch.no_grad()
    def predict(self, embeddings: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
        """Class indices ``[H, W]`` (into the language classes) from :meth:`embed`'s output: the scorer's rule."""
        return segment_with_text(embeddings[None], self.class_text.cpu(), size)[0].numpy()


def build_methods(
    params: Params, loaded: LoadedClip, classes: LanguageClasses, models_dir: Path, device: torch.device
) -> dict[str, MethodModel]:
    """The methods that can run, in report order: MaskCLIP always, each student whose checkpoint exists."""
    segmenters = {"maskclip": Segmenter.maskclip(loaded, ReadSettings.from_params(params))}
    for name in ("maskclip_plus", "clips4"):
        path = models_dir / STUDENT_FILES[name]
        if path.is_file():
            segmenters[name] = student_segmenter(path, loaded, params, device)
    return {
        name: MethodModel(name=name, segmenter=segmenter, class_text=segmenter.class_embeddings(classes.prompts))
        for name, segmenter in segmenters.items()
    }

"""Language-driven segmentation: each pixel takes the class whose text embedding is nearest its embedding.

Which classes get a text prompt, and under which name (:func:`language_classes`):

- every class of the dataset, named by :func:`clips4.resources.prompt_names` (MaskCLIP's human names);
- except Pascal VOC's ``background`` (label 0). "Background" is no visual concept a text prompt can describe, and
  MaskCLIP scores VOC on its 20 object classes with no background prompt (``PascalVOCDataset20``,
  ``reduce_zero_label``). So here too: background pixels are ignored, as if labelled 255, class 0 gets no prompt,
  is never predicted, and is left out of the mean. VOC numbers are therefore mIoU over 20 classes, comparable to
  MaskCLIP's annotation-free VOC results (not to 21-class results with a learned background).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from clips4.data.types import IGNORE_INDEX
from clips4.resources import prompt_names

# Label ids that get no text prompt: their pixels are ignored in language-driven evaluation.
UNPROMPTED_LABELS: dict[str, tuple[int, ...]] = {"voc": (0,)}


@dataclass(frozen=True)
class LanguageClasses:
    """The classes scored by text: their label ids in the dataset, label names and prompt names (same order).

    Predictions are indices into these tuples; :meth:`map_labels` turns dataset labels into the same indices.
    """

    label_ids: tuple[int, ...]
    names: tuple[str, ...]
    prompts: tuple[str, ...]

    def map_labels(self, label: np.ndarray) -> np.ndarray:
        """Dataset labels ``[H, W]`` as indices into this class list; unprompted classes and 255 become 255."""
        lookup = np.full(256, IGNORE_INDEX, np.uint8)
        lookup[list(self.label_ids)] = np.arange(len(self.label_ids), dtype=np.uint8)
        return lookup[label]


def language_classes(dataset_name: str, class_names: Sequence[str]) -> LanguageClasses:
    """The classes of ``dataset_name`` that text scores, with their prompt names (see the module docstring)."""
    skipped = set(UNPROMPTED_LABELS.get(dataset_name, ()))
    label_ids = tuple(i for i in range(len(class_names)) if i not in skipped)
    names = tuple(class_names[i] for i in label_ids)
    return LanguageClasses(label_ids, names, tuple(prompt_names(dataset_name, names)))


def text_scores(dense_features: torch.Tensor, class_text: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Cosine scores ``[B, C, H, W]`` of dense features ``[B, h, w, D]`` against class embeddings ``[C, D]``.

    The scores are computed on the feature grid and upsampled bilinearly to ``size``, as MaskCLIP does
    (upsampling scores keeps boundaries smoother than upsampling labels).
    """
    scores = torch.einsum("bhwd,cd->bchw", dense_features, class_text.to(dense_features.dtype))
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)


def segment_with_text(dense_features: torch.Tensor, class_text: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Class ids ``[B, H, W]`` from dense features ``[B, h, w, D]`` and class embeddings ``[C, D]``: the argmax
    of :func:`text_scores`."""
    return text_scores(dense_features, class_text, size).argmax(dim=1)

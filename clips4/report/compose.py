"""The report's figures from their inputs: the first val images, the caches, the methods' models and the
propagated masks in reports/davis. Each ``draw_*`` writes its PNGs and returns the report's entries (a figure
that cannot be drawn says why instead: a method that did not run is named, never faked).

How many images each figure uses is fixed here, so the stage stays within its time budget (docs/report.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clips4.cache.api import SegmentsStore, SuperpixelsStore
from clips4.data.segmentation import SegmentationDataset
from clips4.data.types import IGNORE_INDEX
from clips4.inference.language import LanguageClasses
from clips4.report.encoders import MethodModel
from clips4.report.figures_pixels import plot_pca_embeddings, plot_predictions
from clips4.report.figures_segments import RetrievedSegment, plot_retrieval, plot_segment_projection, segment_crop
from clips4.report.markdown import FigureEntry
from clips4.report.segments import ValSegments, collect_val_segments
from clips4.report.tables import method_title

#: Val images shown in the pixel figures (PCA-RGB, masks).
SHOWN_IMAGES = 4
#: Val images whose superpixels feed the segment map and the retrieval.
SEGMENT_IMAGES = 80
#: Segments shown per class name in the retrieval figure.
TOP_SEGMENTS = 5

FIGURE_FILES = {
    "pca": "pixel_embeddings_pca.png",
    "predictions": "predictions.png",
    "projection": "segment_projection.png",
    "retrieval": "retrieval.png",
    "video": "propagation.png",
}


@dataclass(frozen=True)
class ImageFigureInputs:
    """What the image figures read: the val split, its classes, the methods, the val superpixel caches, and the
    class names to retrieve segments for (with the words that say where they come from)."""

    dataset: SegmentationDataset
    split: str
    classes: LanguageClasses
    methods: dict[str, MethodModel]
    superpixels: SuperpixelsStore
    segments: SegmentsStore
    retrieval_classes: tuple[str, ...]
    retrieval_source: str


def _students(methods: dict[str, MethodModel]) -> dict[str, MethodModel]:
    return {name: model for name, model in methods.items() if name != "maskclip"}


def _label_ids(classes: LanguageClasses, indices: np.ndarray) -> np.ndarray:
    """Predicted indices into the language classes as dataset label ids (for the palette)."""
    return np.asarray(classes.label_ids, np.uint8)[indices]


def draw_image_figures(inputs: ImageFigureInputs, out_dir: Path, link_prefix: str) -> list[FigureEntry]:
    """Figures (a) PCA-RGB pixel embeddings, (b) the segment map, (c) retrieval and (d) masks, in report order."""
    dataset, students = inputs.dataset, _students(inputs.methods)
    shown_count = min(SHOWN_IMAGES, len(dataset))
    shown: dict[str, list[torch.Tensor]] = {name: [] for name in inputs.methods}

    def keep_shown(index: int, method: str, embeddings: torch.Tensor) -> None:
        if index < shown_count:
            shown[method].append(embeddings)

    segments = collect_val_segments(
        dataset,
        inputs.split,
        inputs.superpixels,
        inputs.segments,
        {name: model.embed_batch for name, model in students.items()},
        SEGMENT_IMAGES,
        keep_shown,
    )
    images = [dataset.read_image(i) for i in range(shown_count)]
    shown["maskclip"] = [inputs.methods["maskclip"].embed(image) for image in images]  # few: one at a time
    titles = {name: method_title(name) for name in inputs.methods}
    link = {key: f"{link_prefix}/{name}" for key, name in FIGURE_FILES.items()}
    used = f"the first {shown_count} val images"
    entries = []

    plot_pca_embeddings(images, {titles[n]: shown[n] for n in inputs.methods}, out_dir / FIGURE_FILES["pca"])
    entries.append(
        FigureEntry(
            "Pixel embeddings as PCA-RGB (paper Fig. 1a)",
            f"Each method's pixel embeddings of {used}, projected on their top 3 principal components (one PCA per "
            "method over the images shown) and shown as RGB, on the method's own feature grid.",
            link["pca"],
        )
    )

    segment_map = {"CLIP (MaskCLIP features)": segments.clip}
    segment_map |= {titles[name]: segments.methods[name] for name in students}
    plot_segment_projection(segment_map, segments.majority, dataset.class_names, out_dir / FIGURE_FILES["projection"])
    labelled = int(np.count_nonzero(segments.majority != IGNORE_INDEX))
    entries.append(
        FigureEntry(
            "Segment embeddings in 2-D (paper Fig. 4a)",
            f"{labelled} superpixels of the first {SEGMENT_IMAGES} val images (their mean embedding; CLIP's from "
            "the segments cache), each source projected by its own 2-D PCA, coloured by the superpixel's "
            "ground-truth majority class.",
            link["projection"],
        )
    )

    entries.append(_retrieval_entry(inputs, segments, students, out_dir, link["retrieval"]))

    predictions = {
        titles[name]: [
            _label_ids(inputs.classes, model.predict(shown[name][i], images[i].shape[:2])) for i in range(shown_count)
        ]
        for name, model in inputs.methods.items()
    }
    truths = [dataset.read_label(i) for i in range(shown_count)]
    plot_predictions(images, truths, predictions, dataset.class_names, out_dir / FIGURE_FILES["predictions"])
    entries.append(
        FigureEntry(
            "Predicted against true masks",
            f"Language-driven segmentation of {used} by each method (the rule `evaluate` scores), beside the ground "
            "truth; one colour per class (as in the segment map), ignored pixels light grey.",
            link["predictions"],
        )
    )
    return entries


def _retrieval_entry(
    inputs: ImageFigureInputs,
    segments: ValSegments,
    students: dict[str, MethodModel],
    out_dir: Path,
    link: str,
) -> FigureEntry:
    title = "Segments retrieved for class names (paper Fig. 4b)"
    if not students:
        return FigureEntry(title, "", missing="no student model ran (models/clips4.pt is absent), so none searched")
    names = [name for name in inputs.retrieval_classes if name in inputs.classes.names]
    if not names:
        return FigureEntry(title, "", missing=f"none of {', '.join(inputs.retrieval_classes)} is a scored class")
    rows: dict[str, list[RetrievedSegment]] = {}
    cached: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    first = inputs.superpixels.splits[inputs.split][0]
    for name in names:
        for method in ("clips4", "maskclip_plus"):
            if method not in students:
                continue
            text = students[method].class_text[inputs.classes.names.index(name)].cpu().numpy()
            cosine = segments.methods[method] @ text
            found = []
            for row in np.argsort(-cosine, kind="stable")[:TOP_SEGMENTS]:
                index = int(segments.image[row])
                if index not in cached:
                    cached[index] = (inputs.dataset.read_image(index), inputs.superpixels.image(first + index).labels)
                image, regions = cached[index]
                majority = int(segments.majority[row])
                truth = inputs.dataset.class_names[majority] if majority != IGNORE_INDEX else "unlabelled"
                crop = segment_crop(image, regions, int(segments.region[row]), segments.boxes[row])
                found.append(RetrievedSegment(crop, float(cosine[row]), truth))
            rows[f"{name} · {method_title(method)}"] = found
    plot_retrieval(rows, out_dir / FIGURE_FILES["retrieval"])
    return FigureEntry(
        title,
        f"For each class name of {inputs.retrieval_source}, the {TOP_SEGMENTS} superpixels of the first "
        f"{SEGMENT_IMAGES} val images whose student segment embedding is nearest (cosine) the class's "
        "prompt-ensembled text embedding; under each crop its ground-truth majority class (green: the class "
        "searched) and the cosine.",
        link,
    )

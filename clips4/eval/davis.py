"""DAVIS 2017 semi-supervised scores (region J and boundary F) with the official evaluator's semantics.

The rules follow davis2017-evaluation (``davis2017/metrics.py``, ``evaluation.py``, ``utils.py``), so that a
results folder scored here and by the official code gives the same numbers:

- objects are the ids ``1..K`` with ``K`` the largest id in the first ground-truth frame; ground-truth pixels
  labelled 255 count as background (the official reader maps 255 to 0 before scoring);
- the first frame (given to the method) and the last frame are left out of every score;
- J is the IoU of the object's predicted and true masks, 1 when both are empty;
- F is the boundary F-measure: one-pixel boundaries from :func:`boundary_map`, matched within
  ``ceil(0.008 * image diagonal)`` pixels (dilation by a disk); an empty predicted boundary against a non-empty
  true one gets precision 1 and recall 0 (F = 0), the reverse precision 0 and recall 1 (F = 0), both empty 1;
- per object: mean, recall (fraction of frames above 0.5) and decay (mean of the first quarter of the frames
  minus the mean of the last quarter) over its frames; then means over all objects of all sequences;
  J&F-Mean is the average of J-Mean and F-Mean.

One deliberate difference: the official evaluator refuses a results folder in which an object id never
appears; here that object scores as an empty prediction (J and F are 0 where it is present).
Results are written and read in the official layout ``<root>/<sequence>/<frame>.png`` (palette PNGs whose
pixel values are object ids).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation

from clips4.data.images import read_label, write_palette_png
from clips4.errors import Clips4Error, DatasetError

BOUNDARY_THRESHOLD = 0.008
"""Boundary tolerance as a fraction of the image diagonal (the official ``bound_th``)."""

VOID_LABEL = 255


def jaccard(true_mask: np.ndarray, predicted_mask: np.ndarray) -> float:
    """Region similarity J of two boolean ``[H, W]`` masks: IoU, and 1 when their union is empty."""
    _check_same_shape(true_mask, predicted_mask)
    true_mask, predicted_mask = true_mask.astype(bool), predicted_mask.astype(bool)
    union = np.count_nonzero(true_mask | predicted_mask)
    if union == 0:
        return 1.0
    return np.count_nonzero(true_mask & predicted_mask) / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary ``[H, W]`` of a boolean mask, as the official ``_seg2bmap`` draws it.

    A pixel is on the boundary when it differs from its right, lower or lower-right neighbour; along the last
    row only the right neighbour counts, along the last column only the lower one, and the bottom-right pixel
    never does. The frame's own border is therefore not a boundary: a mask filling the image has none.
    """
    mask = mask.astype(bool)
    right = np.zeros_like(mask)
    below = np.zeros_like(mask)
    below_right = np.zeros_like(mask)
    right[:, :-1] = mask[:, 1:]
    below[:-1, :] = mask[1:, :]
    below_right[:-1, :-1] = mask[1:, 1:]
    boundary = (mask ^ right) | (mask ^ below) | (mask ^ below_right)
    boundary[-1, :] = mask[-1, :] ^ right[-1, :]
    boundary[:, -1] = mask[:, -1] ^ below[:, -1]
    boundary[-1, -1] = False
    return boundary


def boundary_tolerance(shape: tuple[int, int], bound_th: float = BOUNDARY_THRESHOLD) -> int:
    """Matching distance in pixels: ``bound_th`` itself when it is >= 1, else ``ceil(bound_th * diagonal)``."""
    if bound_th >= 1:
        return int(bound_th)
    return math.ceil(bound_th * math.hypot(*shape))


def _disk(radius: int) -> np.ndarray:
    """Boolean disk ``x^2 + y^2 <= radius^2`` (skimage.morphology.disk's shape)."""
    offsets = np.arange(-radius, radius + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2


def boundary_f(true_mask: np.ndarray, predicted_mask: np.ndarray, bound_th: float = BOUNDARY_THRESHOLD) -> float:
    """Contour accuracy F of two boolean ``[H, W]`` masks (the official ``f_measure``)."""
    _check_same_shape(true_mask, predicted_mask)
    radius = boundary_tolerance(true_mask.shape, bound_th)
    predicted_boundary = boundary_map(predicted_mask)
    true_boundary = boundary_map(true_mask)
    n_predicted, n_true = np.count_nonzero(predicted_boundary), np.count_nonzero(true_boundary)
    if n_predicted == 0 and n_true == 0:
        return 1.0
    if n_predicted == 0 or n_true == 0:
        return 0.0  # precision 1, recall 0 (empty prediction) or precision 0, recall 1 (empty truth)
    disk = _disk(radius)
    # Zero padding outside the image, as cv2.dilate's default border does for dilation.
    predicted_dilated = binary_dilation(predicted_boundary, structure=disk)
    true_dilated = binary_dilation(true_boundary, structure=disk)
    precision = np.count_nonzero(predicted_boundary & true_dilated) / n_predicted
    recall = np.count_nonzero(true_boundary & predicted_dilated) / n_true
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def statistics(per_frame: np.ndarray) -> tuple[float, float, float]:
    """Mean, recall (fraction > 0.5) and decay of one object's per-frame scores (the official ``db_statistics``).

    Decay splits the frames into 4 overlapping bins at ``round(linspace(1, N, 5)) - 1`` and subtracts the last
    bin's mean from the first's.
    """
    values = np.asarray(per_frame, dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(np.mean(values))
    recall = float(np.mean(values > 0.5))
    edges = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.int64)
    first, last = values[edges[0] : edges[1] + 1], values[edges[3] : edges[4] + 1]
    decay = float(np.mean(first) - np.mean(last))
    return mean, recall, decay


@dataclass(frozen=True)
class ObjectScores:
    """Per-frame J and F of one object over the scored frames (the first and last frames left out)."""

    name: str
    j: np.ndarray
    f: np.ndarray


def score_sequence(
    name: str, true_masks: np.ndarray, predicted_masks: np.ndarray, bound_th: float = BOUNDARY_THRESHOLD
) -> list[ObjectScores]:
    """J and F of each object of one sequence, from ``[T, H, W]`` id maps (0 = background).

    Objects are ``1..K`` with ``K`` the largest id of the first true frame; they are named ``<name>_<id>`` as
    in the official per-sequence table. Frames ``1..T-2`` are scored.
    """
    true_masks, predicted_masks = np.asarray(true_masks), np.asarray(predicted_masks)
    if true_masks.ndim != 3 or true_masks.shape != predicted_masks.shape:
        raise Clips4Error(
            f"sequence {name}: true masks {true_masks.shape} and predicted masks {predicted_masks.shape} must both "
            "be [T, H, W] of the same size; write one prediction per annotated frame at the frame's size"
        )
    if true_masks.shape[0] < 3:
        raise Clips4Error(
            f"sequence {name}: {true_masks.shape[0]} frames; DAVIS scores leave out the first and last frames, so a "
            "sequence needs at least 3"
        )
    true_masks = np.where(true_masks == VOID_LABEL, 0, true_masks)
    num_objects = int(true_masks[0].max())
    extra = int(predicted_masks[1:-1].max(initial=0))
    if extra > num_objects:
        raise Clips4Error(
            f"sequence {name}: predicted object id {extra} but the first frame has {num_objects} objects; "
            "predictions must use the first frame's ids"
        )
    scores = []
    for object_id in range(1, num_objects + 1):
        truth, prediction = true_masks[1:-1] == object_id, predicted_masks[1:-1] == object_id
        j = np.array([jaccard(t, p) for t, p in zip(truth, prediction, strict=True)])
        f = np.array([boundary_f(t, p, bound_th) for t, p in zip(truth, prediction, strict=True)])
        scores.append(ObjectScores(f"{name}_{object_id}", j, f))
    return scores


@dataclass(frozen=True)
class DavisSummary:
    """The official global table, in percent (the official CSV prints the same numbers as fractions)."""

    jf_mean: float
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float
    objects: int
    per_object: dict[str, tuple[float, float]] = field(default_factory=dict)
    """``<sequence>_<id>`` -> (J-Mean, F-Mean) in percent."""


def summarize(objects: Iterable[ObjectScores]) -> DavisSummary:
    """Means over objects of the per-object mean, recall and decay of J and F."""
    objects = list(objects)
    if not objects:
        raise Clips4Error("DAVIS scores: no object to score; the first ground-truth frames hold no object ids")
    j_stats = np.array([statistics(o.j) for o in objects])
    f_stats = np.array([statistics(o.f) for o in objects])
    j_mean, j_recall, j_decay = (100.0 * np.mean(j_stats, axis=0)).tolist()
    f_mean, f_recall, f_decay = (100.0 * np.mean(f_stats, axis=0)).tolist()
    per_object = {
        o.name: (100.0 * float(j[0]), 100.0 * float(f[0])) for o, j, f in zip(objects, j_stats, f_stats, strict=True)
    }
    return DavisSummary(
        jf_mean=(j_mean + f_mean) / 2,
        j_mean=j_mean,
        j_recall=j_recall,
        j_decay=j_decay,
        f_mean=f_mean,
        f_recall=f_recall,
        f_decay=f_decay,
        objects=len(objects),
        per_object=per_object,
    )


def write_results(root: str | Path, sequence: str, frame_ids: Sequence[str], masks: np.ndarray) -> None:
    """Write ``[T, H, W]`` object-id maps as ``<root>/<sequence>/<frame>.png`` palette PNGs (the DAVIS palette)."""
    masks = np.asarray(masks)
    if masks.ndim != 3 or len(frame_ids) != masks.shape[0]:
        raise Clips4Error(f"{sequence}: {len(frame_ids)} frame ids for masks of shape {masks.shape}; one per frame")
    if masks.max(initial=0) > 254:
        raise Clips4Error(f"{sequence}: object ids above 254 cannot be written as DAVIS masks; use ids 1..254")
    folder = Path(root) / sequence
    for frame_id, mask in zip(frame_ids, masks, strict=True):
        write_palette_png(folder / f"{frame_id}.png", mask.astype(np.uint8))


def read_results(root: str | Path, sequence: str, frame_ids: Sequence[str]) -> np.ndarray:
    """Read ``<root>/<sequence>/<frame>.png`` for each frame id as one ``[T, H, W]`` uint8 array."""
    masks = []
    for frame_id in frame_ids:
        path = Path(root) / sequence / f"{frame_id}.png"
        if not path.is_file():
            raise DatasetError(f"{path}: predicted mask missing; write one indexed PNG per frame of the sequence", path)
        masks.append(read_label(path))
    return np.stack(masks)


def read_annotations(davis_root: str | Path, sequence: str, resolution: str = "480p") -> tuple[list[str], np.ndarray]:
    """Frame ids and ``[T, H, W]`` ground-truth id maps of ``Annotations/<resolution>/<sequence>/*.png``."""
    folder = Path(davis_root) / "Annotations" / resolution / sequence
    files = sorted(folder.glob("*.png"))
    if not files:
        raise DatasetError(f"{folder}: no annotation PNGs; point the DAVIS root at the DAVIS 2017 layout", folder)
    return [f.stem for f in files], np.stack([read_label(f, require_palette=True) for f in files])


def evaluate_results(
    davis_root: str | Path,
    results_root: str | Path,
    sequences: Sequence[str],
    resolution: str = "480p",
    bound_th: float = BOUNDARY_THRESHOLD,
) -> DavisSummary:
    """Score a results folder against the DAVIS ground truth of ``sequences`` (the official semi-supervised task)."""
    objects: list[ObjectScores] = []
    for sequence in sequences:
        frame_ids, truth = read_annotations(davis_root, sequence, resolution)
        prediction = read_results(results_root, sequence, frame_ids[1:-1])
        if prediction.shape[1:] != truth.shape[1:]:
            raise Clips4Error(
                f"{Path(results_root) / sequence}: predicted masks are {prediction.shape[1:]} but the annotations "
                f"are {truth.shape[1:]}; write the predictions at the annotation size"
            )
        # The first and last frames are never scored (nor read); zeros stand in for them.
        padded = np.zeros_like(truth)
        padded[1:-1] = prediction
        objects.extend(score_sequence(sequence, truth, padded, bound_th))
    return summarize(objects)


def _check_same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim != 2:
        raise Clips4Error(f"DAVIS masks must be two [H, W] arrays of one size; got {a.shape} and {b.shape}")

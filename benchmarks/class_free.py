"""Class-free segmentation (the paper's Table 3) scored by hand: MaskCLIP, the CLIP-S4 student and the
MaskCLIP+-style baseline label every val pixel among ALL classes; the IoUs of the fold's held-out classes and of the
known ones are averaged apart, and hIoU is their harmonic mean.

Run from a project folder whose models/ hold clips4.pt and maskclip_plus.pt trained with ``fold`` set:

    python benchmarks/class_free.py --params params.yaml --out reports/class_free.json

(The ``evaluate`` stage computes the same keys once a fold is set; this script reads only clips4.eval's scorers.)
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from clips4.clip.loading import compute_device, load_clip
from clips4.data.layouts import open_dataset
from clips4.inference.language import language_classes
from clips4.eval.maskclip import MaskClipSegmenter
from clips4.inference.reading import reading_options
from clips4.eval.scoring import score_segmenter
from clips4.eval.student import StudentSegmenter, check_teacher
from clips4.params import load_params
from clips4.classes import held_out_classes
from clips4.model.checkpoint import load_student


def class_free_scores(per_class: dict[str, float | None], held_out: list[str]) -> dict[str, float]:
    """``miou_unknown`` (held-out classes), ``miou_known`` (the others) and ``hiou``, their harmonic mean; classes
    with no IoU (empty union) are left out of the means, as mmseg's nanmean does."""
    unknown = [v for k, v in per_class.items() if k in held_out and v is not None]
    known = [v for k, v in per_class.items() if k not in held_out and v is not None]
    mu, mk = float(np.mean(unknown)), float(np.mean(known))
    hiou = 0.0 if mu + mk == 0 else 2 * mu * mk / (mu + mk)
    return {"miou_unknown": round(mu, 2), "miou_known": round(mk, 2), "hiou": round(hiou, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--models", default="models", help="folder of clips4.pt and maskclip_plus.pt")
    parser.add_argument("--out", default="reports/class_free.json")
    args = parser.parse_args()
    params = load_params(args.params)
    held_out = held_out_classes(params)
    dataset = open_dataset(params.dataset.name, params.dataset.root, params.dataset.val_split)
    classes = language_classes(params.dataset.name, dataset.class_names)
    device = compute_device()
    loaded = load_clip(params.clip.model, params.clip.pretrained, device=device)
    read = reading_options(params)
    segmenters = {"maskclip": MaskClipSegmenter(loaded, classes, dense_mode=params.clip.dense_mode, **read)}
    for method, file in (("clips4", "clips4.pt"), ("maskclip_plus", "maskclip_plus.pt")):
        path = Path(args.models) / file
        if path.is_file():
            student, checkpoint = load_student(path, device)
            check_teacher(checkpoint, loaded, path)
            segmenters[method] = StudentSegmenter(student, loaded, classes, **read)
    results = {"fold": params.fold, "held_out": held_out}
    for method, segmenter in segmenters.items():
        scores = score_segmenter(segmenter, dataset, classes, args.params, desc=method)
        block = {"miou": scores.miou, "pacc": scores.pacc, "per_class": scores.per_class}
        if held_out:
            block |= class_free_scores(scores.per_class, held_out)
        results[method] = block
        shown = {k: v for k, v in block.items() if k != "per_class"}
        print(method, json.dumps(shown), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    assert all(math.isfinite(v) for m in segmenters for k, v in results[m].items() if k != "per_class")


if __name__ == "__main__":
    main()

"""Class-free segmentation (the paper's Table 3) scored by hand: MaskCLIP, the CLIP-S4 student and the
MaskCLIP+-style baseline label every val pixel among ALL classes; the IoUs of the fold's held-out classes and of the
known ones are averaged apart, and hIoU is their harmonic mean.

Run from a project folder whose models/ hold clips4.pt and maskclip_plus.pt trained with ``fold`` set:

    python benchmarks/class_free.py --params params.yaml --out reports/class_free.json

(The ``evaluate`` stage computes the same keys once a fold is set; this script runs the
same builders and scorer.)
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from clips4.classes import held_out_classes
from clips4.clip.loading import compute_device
from clips4.data.layouts import open_dataset
from clips4.eval.class_free import class_free_scores
from clips4.eval.methods import METHODS, EvalContext
from clips4.eval.scoring import score_segmenter
from clips4.inference.language import language_classes
from clips4.ops.metrics import per_class_iou
from clips4.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--models", default="models", help="folder of clips4.pt and maskclip_plus.pt")
    parser.add_argument("--out", default="reports/class_free.json")
    parser.add_argument("--split", help="split to score (default dataset.val_split; dataset.tune_split to choose by)")
    args = parser.parse_args()
    params = load_params(args.params)
    held_out = held_out_classes(params)
    split = args.split or params.dataset.val_split
    dataset = open_dataset(params.dataset.name, params.dataset.root, split)
    classes = language_classes(params.dataset.name, dataset.class_names)
    context = EvalContext(params, classes, compute_device(), params.clip.dense_mode, Path(args.models))
    segmenters = {name: s for name, build in METHODS.items() if (s := build(context)) is not None}
    results = {"fold": params.fold, "held_out": held_out, "split": split}
    for method, segmenter in segmenters.items():
        scores = score_segmenter(segmenter, dataset, classes, where=args.params, desc=method)
        language = scores.language
        block = {"miou": language.miou, "pacc": language.pacc, "per_class": language.per_class}
        if held_out:
            free = class_free_scores(per_class_iou(scores.confusion), classes.names, held_out)
            block |= {"miou_unknown": free.miou_unknown, "miou_known": free.miou_known, "hiou": free.hiou}
        results[method] = block
        shown = {k: v for k, v in block.items() if k != "per_class"}
        print(method, json.dumps(shown), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, allow_nan=False) + "\n")
    assert all(math.isfinite(v) for m in segmenters for k, v in results[m].items() if k != "per_class")


if __name__ == "__main__":
    main()

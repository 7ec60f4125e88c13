"""MaskCLIP's language-driven mIoU of a CLIP checkpoint on the first N images of a split, by the scorer `evaluate`
uses (no caches needed): the quick check of a tiny-CLIP change (docs/clip.md).

    python benchmarks/maskclip_score.py models/clip.pt --split tune --images 200
"""

from __future__ import annotations

import argparse

from clips4.clip.loading import load_clip
from clips4.data.layouts import open_dataset
from clips4.eval.scoring import score_segmenter
from clips4.inference.language import language_classes
from clips4.inference.reading import ReadSettings
from clips4.inference.segmenter import Segmenter
from clips4.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a CLIP checkpoint (models/clip.pt)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--split", help="default: dataset.tune_split (dataset.val_split without one)")
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    params = load_params(args.params)
    split = args.split or params.dataset.selection_split
    dataset = open_dataset(params.dataset.name, params.dataset.root, split)
    classes = language_classes(params.dataset.name, dataset.class_names)
    segmenter = Segmenter.maskclip(load_clip(params.clip.model, args.checkpoint), ReadSettings.from_params(params))
    scores = score_segmenter(segmenter, dataset, classes, where=split, max_images=args.images, desc="maskclip")
    print(
        f"{args.checkpoint} on {scores.images} {split} images: mIoU {scores.language.miou:.2f}  "
        f"pAcc {scores.language.pacc:.2f}"
    )
    print("  ".join(f"{name} {iou:.0f}" for name, iou in scores.language.per_class.items()))


if __name__ == "__main__":
    main()

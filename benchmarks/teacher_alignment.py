"""Whether CLIP's dense features hold each class, and whether its text finds it there: MaskCLIP's per-class IoU with
the class text as classifier, against the same features classified by each class's ground-truth mean feature.

Both classifiers read the same MaskCLIP features the same way (``text_scores``: cosine on the feature grid, scores
upsampled bilinearly, argmax), scored by ``clips4.ops.metrics`` (mmsegmentation's IoU) on the images after the
first ``--fit-images`` of the split; the class means are fitted on those first images (labels used: an oracle, a
diagnostic only). A class the oracle finds and the text does not is one whose text embedding points away from its
own pixels: CLIP-S4's prototypes (the top-m segments by that text) and L_s then teach the student the wrong pixels.
The last column is the cosine between the class text and its own mean feature, and the rank of that mean among the
14 class means by the text (0: the text's nearest mean is its own class's).

    python benchmarks/teacher_alignment.py [--params params.yaml] [--split tune] [--images 500] [--fit-images 250]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from clips4.clip.dense import dense_clip_features, normalize_images, to_rgb_batch
from clips4.clip.loading import load_project_clip
from clips4.clip.text import text_embeddings
from clips4.data.layouts import open_dataset
from clips4.inference.language import language_classes, segment_with_text
from clips4.ops.metrics import confusion_matrix, mean_iou, per_class_iou
from clips4.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--split", help="default: dataset.tune_split (dataset.val_split without one)")
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--fit-images", type=int, default=250, help="first images of the split the class means use")
    args = parser.parse_args()
    params = load_params(args.params)
    split = args.split or params.dataset.selection_split
    dataset = open_dataset(params.dataset.name, params.dataset.root, split)
    classes = language_classes(params.dataset.name, dataset.class_names)
    clip = load_project_clip(params)
    text = text_embeddings(clip, classes.prompts)
    count = min(args.images, len(dataset))
    if not 0 < args.fit_images < count:
        parser.error(f"--fit-images must be between 1 and --images - 1 ({count - 1}); got {args.fit_images}")
    images = [dataset.read_image(i) for i in range(count)]
    labels = np.stack([dataset.read_label(i) for i in range(count)])  # the synthetic world: one image size
    with torch.no_grad():
        batch = normalize_images(to_rgb_batch(images), clip.mean, clip.std)
        features = dense_clip_features(clip.model, batch, params.clip.dense_mode)  # [N, h, w, D]
    stride = labels.shape[1] // features.shape[1]  # each feature's label: its patch's centre pixel
    grid_labels = torch.from_numpy(labels[:, stride // 2 :: stride, stride // 2 :: stride].astype(np.int64))
    fit = features[: args.fit_images].reshape(-1, features.shape[-1])
    fit_labels = grid_labels[: args.fit_images].reshape(-1)
    ids = torch.tensor(classes.label_ids)
    means = F.normalize(torch.stack([fit[fit_labels == c].mean(0) for c in classes.label_ids]), dim=-1)
    held_out = slice(args.fit_images, count)
    size = labels.shape[1:]
    ious = {}
    for name, classifier in (("text", text), ("class means", means)):
        prediction = ids[segment_with_text(features[held_out], classifier, size)].numpy()
        confusion = confusion_matrix(labels[held_out], prediction, len(dataset.class_names))
        ious[name] = per_class_iou(confusion)
        print(f"{name:12s} mIoU {mean_iou(confusion):5.1f} on {count - args.fit_images} {split} images")
    cosine = (text * means).sum(-1)
    rank = (text @ means.T > cosine[:, None]).sum(-1)
    print(f"{'class':10s} {'text IoU':>8s} {'means IoU':>9s} {'cos(text, own mean)':>20s} {'rank':>4s}")
    for k, name in enumerate(classes.names):
        c = classes.label_ids[k]
        print(f"{name:10s} {ious['text'][c]:8.1f} {ious['class means'][c]:9.1f} {cosine[k]:20.3f} {int(rank[k]):4d}")


if __name__ == "__main__":
    main()

"""How hard does L_s pull a student that already equals CLIP (v_s = i_s) away from CLIP's embedding?

L_e's gradient there is zero; L_s's (hard pseudo-labels) is not. This prints, for CLIP's own train segment
embeddings (segments.zarr) and the prototypes (prototypes.zarr), L_s at v_s = i_s and the mean norm of its
tangential gradient per segment (the part that rotates a unit vector), for a few temperatures, with hard (argmax)
and soft (CLIP's softmax) targets, and the share of segments whose pseudo-label is an unknown prototype.

    python benchmarks/semantic_pull.py --cache-dir /work/main/data/cache
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default="data/cache")
    parser.add_argument("--segments", type=int, default=4000, help="first train segments to use")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.5, 0.1])
    args = parser.parse_args()

    import clips4.cache
    from clips4.train.losses import pseudo_labels, semantic_consistency

    segments = clips4.cache.open(f"{args.cache_dir}/segments.zarr")
    prototypes = clips4.cache.open(f"{args.cache_dir}/prototypes.zarr")
    known = torch.from_numpy(prototypes.known).float()
    every = torch.cat([known, torch.from_numpy(prototypes.unknown).float()])
    clip = F.normalize(torch.from_numpy(np.asarray(segments.embeddings[: args.segments])).float(), dim=1)
    report = {
        "segments": len(clip),
        "unknown_label_share": round(float((pseudo_labels(clip, every) >= len(known)).float().mean()), 4),
        "rows": [],
    }
    for name, protos in (("known+unknown", every), ("known", known)):
        for temperature in args.temperatures:
            for soft in (False, True):
                student = clip.clone().requires_grad_()
                loss = semantic_consistency(student, clip, protos, temperature, soft)
                loss.backward()
                grad = student.grad * len(clip)  # per segment (the loss is a mean)
                tangential = grad - (grad * clip).sum(1, keepdim=True) * clip
                report["rows"].append(
                    {
                        "prototypes": name,
                        "temperature": temperature,
                        "targets": "soft" if soft else "hard",
                        "loss_at_clip": round(loss.item(), 4),
                        "tangential_grad": round(float(tangential.norm(dim=1).mean()), 4),
                    }
                )
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

"""One row of the training study (docs/training.md): params.yaml plus dotted overrides, trained with `clips4 train`
on existing caches, its scores on the selection split (dataset.tune_split: the split defaults are chosen on, never
the reported val split) appended to OUT/results.jsonl.

    python benchmarks/train_study.py le_sp train.iterations=200 train.batch_size=8 train.lr=0.003 \
        train.workers=0 losses.contrastive=false losses.semantic=false losses.segments=superpixels \
        --root /work/main --out /tmp/study
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("overrides", nargs="*", help="dotted key=value (YAML values)")
    parser.add_argument("--root", default=".", help="project whose data/synth, models/clip.pt and data/cache to use")
    parser.add_argument("--out", default="/tmp/study")
    parser.add_argument("--threads", default="1", help="OMP_NUM_THREADS of the run")
    args = parser.parse_args()

    root = Path(args.root).resolve()
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["dataset"]["root"] = str(root / "data" / "synth")
    params["clip"]["pretrained"] = str(root / "models" / "clip.pt")
    for pair in args.overrides:
        key, value = pair.split("=", 1)
        *parents, leaf = key.split(".")
        node = params
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    out = Path(args.out) / args.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": args.threads, "OMP_WAIT_POLICY": "PASSIVE"}
    command = [
        sys.executable,
        "-m",
        "clips4.cli",
        "train",
        "--params",
        str(out / "params.yaml"),
        "--cache-dir",
        str(root / "data" / "cache"),
        "--out",
        str(out / "clips4.pt"),
        "--metrics",
        str(out / "clips4.json"),
        "--live-dir",
        str(out / "live"),
    ]
    with open(out / "log", "w") as log:
        code = subprocess.call(command, cwd=out, env=env, stdout=log, stderr=subprocess.STDOUT)
    if code != 0 or not (out / "clips4.json").is_file():
        sys.exit(f"{args.name}: clips4 train failed (exit {code}); see {out / 'log'}")
    record = json.loads((out / "clips4.json").read_text())
    row = {
        "name": args.name,
        "overrides": args.overrides,
        "split": record["score"]["split"],
        "miou": record["miou"],
        "avgsim": record["avgsim"],
        "iterations": record["iterations"],
        "wall_seconds": record["wall_seconds"],
        "images_per_second": record["images_per_second"],
        "data_wait_fraction": record["data_wait_fraction"],
        "final_losses": {k: round(v, 3) for k, v in record["final_losses"].items()},
    }
    with open(Path(args.out) / "results.jsonl", "a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()

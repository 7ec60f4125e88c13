"""One row of the training study (docs/training.md): a project's params.yaml, optionally a preset, plus dotted
overrides, run once per seed (`clips4 prototypes` into a cache of its own, the other stores linked from the
project, then `clips4 train`), scored by the train stage on the selection split (dataset.tune_split: the split
defaults are chosen on, never the reported val split); each seed's row is appended to OUT/results.jsonl and the
row's mean ± std printed.

    python benchmarks/train_study.py lt_1 losses.contrastive_weight=1 --root /work/fresh --out /tmp/study
    python benchmarks/train_study.py paper_lt_0 losses.contrastive=false --preset paper --root /work/fresh
    python benchmarks/train_study.py --table --out /tmp/study     # the rows so far, as docs/training.md's table

Seeds run side by side, `--jobs` at a time, each at `--threads` threads (on 2 cores: 2 jobs of 1 thread).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clips4.presets import PRESETS_DIR, dotted, load_preset, merge  # noqa: E402

# The caches that stay the project's; prototypes.zarr is each seed's own (it depends on seed and on its keys).
LINKED_STORES = ("contours", "superpixels", "clip_dense", "segments")


def study_params(root: Path, preset: str | None, overrides: list[str], seed: int) -> dict:
    """The project's params with ``preset``'s keys, then ``overrides`` (dotted key=YAML value), then ``seed``, and
    every path made absolute so the run can live in a folder of its own."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    if preset:
        merge(params, dotted(load_preset(preset, REPO / PRESETS_DIR).values), f"preset {preset}")
    for pair in overrides:
        if "=" not in pair:
            sys.exit(f"override {pair!r}: expected dotted.key=value (e.g. losses.contrastive_weight=1)")
        key, value = pair.split("=", 1)
        merge(params, {key: yaml.safe_load(value)}, "the command line")
    params["seed"] = seed
    params["dataset"]["root"] = str(root / "data" / "synth")
    params["video"]["root"] = str(root / "data" / "synth_video")
    params["clip"]["pretrained"] = str(root / "models" / "clip.pt")
    return params


def run_seed(args: argparse.Namespace, root: Path, seed: int) -> dict:
    """Prototypes then train for one seed in OUT/NAME/seed-S; the row appended to results.jsonl."""
    run = Path(args.out) / args.name / f"seed-{seed}"
    shutil.rmtree(run, ignore_errors=True)
    (run / "cache").mkdir(parents=True)
    for store in LINKED_STORES:
        (run / "cache" / f"{store}.zarr").symlink_to(root / "data" / "cache" / f"{store}.zarr")
    params = study_params(root, args.preset, args.overrides, seed)
    (run / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": args.threads, "OMP_WAIT_POLICY": "PASSIVE"}
    common = ["--params", str(run / "params.yaml"), "--cache-dir", str(run / "cache")]
    steps = {
        "prototypes": [*common],
        "train": [
            *common,
            "--out",
            str(run / "clips4.pt"),
            "--metrics",
            str(run / "clips4.json"),
            "--live-dir",
            str(run / "live"),
        ],
    }
    seconds = {}
    for step, options in steps.items():
        start = time.monotonic()
        with open(run / f"{step}.log", "w") as log:
            code = subprocess.call(
                [sys.executable, "-m", "clips4.cli", step, *options],
                cwd=run,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if code != 0:
            raise RuntimeError(f"{args.name} seed {seed}: clips4 {step} failed (exit {code}); see {run / step}.log")
        seconds[step] = round(time.monotonic() - start, 1)
    record = json.loads((run / "clips4.json").read_text())
    row = {
        "name": args.name,
        "preset": args.preset,
        "overrides": args.overrides,
        "seed": seed,
        "split": record["score"]["split"],
        "miou": record["miou"],
        "avgsim": record["avgsim"],
        "iterations": record["iterations"],
        "seconds": seconds,
        "final_losses": {k: round(v, 3) for k, v in record["final_losses"].items()},
    }
    with open(Path(args.out) / "results.jsonl", "a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
    return row


def mean_std(values: list[float], digits: int = 2) -> str:
    if len(values) < 2:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(out: Path) -> str:
    """The rows of OUT/results.jsonl, one line a name (its last run of each seed), in first-run order."""
    rows: dict[str, dict[int, dict]] = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        rows.setdefault(row["name"], {})[row["seed"]] = row
    lines = ["| row | from | changed | tune mIoU per seed | mean ± std | avgsim |", "|---|---|---|---|---|---|"]
    for name, seeds in rows.items():
        runs = [seeds[s] for s in sorted(seeds)]
        mious = [r["miou"] for r in runs]
        changed = ", ".join(f"`{o}`" for o in runs[0]["overrides"]) or "nothing"
        lines.append(
            f"| {name} | {runs[0]['preset'] or 'defaults'} | {changed} | "
            f"{' / '.join(f'{m:.2f}' for m in mious)} | **{mean_std(mious)}** | "
            f"{mean_std([r['avgsim'] for r in runs], 3)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?")
    parser.add_argument("overrides", nargs="*", help="dotted key=value (YAML values)")
    parser.add_argument("--preset", help="a preset of pipeline/presets applied before the overrides")
    parser.add_argument("--root", default=".", help="project with a finished dvc repro (its caches, CLIP, world)")
    parser.add_argument("--out", default="/tmp/study")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="seeds run side by side")
    parser.add_argument("--threads", default="1", help="OMP_NUM_THREADS of each run")
    parser.add_argument("--table", action="store_true", help="print OUT/results.jsonl as a markdown table")
    args = parser.parse_intermixed_args()  # options may come between NAME and the overrides
    if args.table:
        print(table(Path(args.out)))
        return
    if not args.name:
        parser.error("NAME is required (or --table)")
    root = Path(args.root).resolve()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda seed: run_seed(args, root, seed), args.seeds))
    print(f"{args.name}: tune mIoU {mean_std([r['miou'] for r in rows])} over seeds {args.seeds}")


if __name__ == "__main__":
    main()

"""Scale simulation of the cache stages (issue 12): N synthetic 500x375 images through `dvc repro` in a temp repo.

It copies this project's code, dvc.yaml (the stages synth .. segments only) and params.yaml into a temporary
DVC repo, sets a world of N images (``synth.image_width/image_height``), CLIP ``--model`` with random weights
(a checkpoint file written here: no download, no network) and the gradient contour detector, then runs each
stage with ``dvc repro -s STAGE`` and records, as JSON (``--out``):

- per stage: wall seconds, images/s, peak RSS of its largest process (``ru_maxrss`` of the stage's process tree,
  through ``os.wait4``);
- per store: files, bytes on disk (allocated blocks), and the bytes in ``.dvc/cache``;
- the time of a no-change ``dvc status`` and ``dvc repro`` (run twice each: the first may still fill DVC's
  state database; the second is the steady state).

Progress: every stage's own progress bar goes to this process's stderr, and a line per step goes to stdout.

    python benchmarks/bench_scale.py --n 64 --out /tmp/scale64.json                 # ViT-B-16, CPU
    python benchmarks/bench_scale.py --n 256 --model clips4-test-vit --out /tmp/s.json  # local smoke run
    python benchmarks/bench_scale.py --n 4000 --device cuda --out scale4000.json       # GPU machine
    python benchmarks/bench_scale.py --n 1000 --workdir W --resume --out s.json   # go on in W (killed, other --model)

Needs ``dvc`` beside this Python (or on PATH). Writes only under ``--workdir`` (default: a new temp folder).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CACHE_STAGES = ("contours", "ucm", "clip_dense", "segments")
STAGES = ("synth", "dataset_manifest", "clip_pretrain", *CACHE_STAGES)
STORES = {
    "contours": "data/cache/contours.zarr",
    "ucm": "data/cache/superpixels.zarr",
    "clip_dense": "data/cache/clip_dense.zarr",
    "segments": "data/cache/segments.zarr",
}


def say(message: str) -> None:
    print(f"[bench_scale {time.strftime('%H:%M:%S')}] {message}", flush=True)


def dvc_executable() -> str:
    beside = Path(sys.executable).with_name("dvc")
    found = str(beside) if beside.exists() else shutil.which("dvc")
    if not found:
        raise SystemExit("bench_scale: dvc not found beside this Python or on PATH; pip install dvc")
    return found


def make_repo(work: Path, args: argparse.Namespace, resume: bool = False) -> dict[str, str]:
    """The temp repo: code, trimmed dvc.yaml, params for N images, random CLIP weights; returns the env to run in.
    With ``resume`` the repo exists: only params.yaml (and the weights file of a new ``--model``) are rewritten."""
    if not resume:
        shutil.copytree(ROOT / "clips4", work / "clips4", ignore=shutil.ignore_patterns("__pycache__"))
        pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
        pipeline["stages"] = {name: pipeline["stages"][name] for name in STAGES}
        (work / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    val = max(1, round(args.n * args.val_fraction))
    params["synth"].update(
        image_width=args.width,
        image_height=args.height,
        train_images=args.n - val,
        val_images=val,
        video_sequences=1,
        video_frames=2,
    )
    weights = work / "weights" / f"{args.model}-random.pt"
    params["clip"].update(model=args.model, pretrained=str(weights), batch_size=args.batch_size)
    params["contours"]["method"] = "gradient"
    quality = params["ucm"]["quality_images"] if args.quality_images is None else args.quality_images
    params["ucm"]["quality_images"] = min(quality, val)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # A `clips4` command that runs this copy's code with this Python (dvc.yaml's commands call `clips4`).
    bin_dir = work / ".bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "clips4"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "from clips4.cli import main; main()" "$@"\n')
    shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        # The temp repo's code first; an existing PYTHONPATH (packages installed with --target) stays after it.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(work), os.environ.get("PYTHONPATH", "")])),
        "HF_HUB_OFFLINE": "1",
        "DVC_NO_ANALYTICS": "1",
    }
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    # In a child process: a forked child's peak RSS starts at its parent's, so this process never imports torch.
    code = "import sys; from benchmarks.bench_scale import write_random_weights as w; w(sys.argv[1], sys.argv[2])"
    if not weights.exists():
        run(
            [sys.executable, "-c", code, args.model, str(weights)],
            work,
            {**env, "PYTHONPATH": f"{ROOT}{os.pathsep}{env['PYTHONPATH']}"},
        )
    if not resume:
        run([dvc_executable(), "init", "--no-scm", "-q"], work, env)
    return env


def up_to_date(dvc: str, stage: str, work: Path, env: dict[str, str]) -> bool:
    """Whether DVC would skip ``stage`` (nothing of it changed): then its timing is not a measurement."""
    status = subprocess.run([dvc, "status", "--json", stage], cwd=work, env=env, capture_output=True, text=True)
    return status.returncode == 0 and json.loads(status.stdout or "{}") == {}


def write_random_weights(model: str, path: str | Path) -> None:
    """CLIP ``model`` with random weights: an open_clip state dict, or a clips4 checkpoint for a packaged tiny
    config. Nothing is downloaded."""
    import torch

    from clips4.clip.loading import build_model, model_config, save_clip_checkpoint

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if model.startswith("clips4-"):
        config = model_config(model)
        save_clip_checkpoint(path, build_model(config), model, config)
        return
    import open_clip

    torch.save(open_clip.create_model(model, pretrained=None).state_dict(), path)


def run(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Run ``command``; returns (wall seconds, peak RSS in MB of its largest process). Output passes through."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"bench_scale: `{' '.join(command)}` failed with exit code {process.returncode} in {cwd}")
    return wall, usage.ru_maxrss / 1024  # Linux: KB


def tree_size(path: Path) -> dict[str, int]:
    files = bytes_on_disk = 0
    if path.exists():
        for entry in path.rglob("*"):
            if entry.is_file():
                files += 1
                bytes_on_disk += entry.stat().st_blocks * 512
    return {"files": files, "bytes": bytes_on_disk}


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"bench_scale: `{' '.join(command)}` failed: {result.stderr[-2000:]}")
    return round(time.perf_counter() - start, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="images (train + val)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", default="ViT-B-16", help="open_clip name, or clips4-test-vit for smoke runs")
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=32, help="clip.batch_size")
    parser.add_argument(
        "--quality-images",
        type=int,
        default=None,
        help="ucm.quality_images: val images the ucm stage scores for reports/segments.json, a fixed cost of about "
        "1.5 s each at 500x375 (default: params.yaml's, at most the val images)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="the temp repo (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the temp repo")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on in an existing --workdir of an earlier run (killed, or with another --model): its stages that "
        "are up to date are skipped and recorded as such",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON results (also printed)")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix=f"clips4_scale_{args.n}_"))
    if args.resume and not (work / ".dvc").is_dir():
        raise SystemExit(f"bench_scale: --resume: {work} holds no earlier run (no .dvc folder); drop --resume")
    if not args.resume and work.exists() and any(work.iterdir()):
        raise SystemExit(f"bench_scale: {work} is not empty; give a new --workdir, or --resume to go on there")
    work.mkdir(parents=True, exist_ok=True)
    say(f"temp repo {work}: N={args.n} {args.width}x{args.height}, {args.model} random weights, {args.device}")
    env = make_repo(work, args, resume=args.resume)
    dvc = dvc_executable()
    results: dict = {
        "n": args.n,
        "resumed": args.resume,
        "image_size": [args.width, args.height],
        "model": args.model,
        "device": args.device,
        "cpus": len(os.sched_getaffinity(0)),
        "host": platform.node(),
        "python": platform.python_version(),
        "ucm_quality_images": yaml.safe_load((work / "params.yaml").read_text())["ucm"]["quality_images"],
        "stages": {},
        "stores": {},
    }
    probe = (
        "import torch; print(torch.__version__); "
        "print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none')"
    )
    versions = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False)
    results["torch"], results["gpu"] = ([*versions.stdout.split("\n"), "", ""])[:2]
    for stage in STAGES:
        if args.resume and up_to_date(dvc, stage, work, env):
            results["stages"][stage] = {"up_to_date": True}
            say(f"stage {stage}: up to date (an earlier run's), skipped")
            continue
        say(f"stage {stage} ...")
        wall, rss = run([dvc, "repro", "-s", stage], work, env)
        results["stages"][stage] = {
            "seconds": round(wall, 2),
            "images_per_s": round(args.n / wall, 3),
            "peak_rss_mb": round(rss, 1),
            "load_average_after": round(os.getloadavg()[0], 2),  # other jobs on the machine slow every stage
        }
        say(f"stage {stage}: {wall:.1f} s, {args.n / wall:.2f} images/s, peak RSS {rss:.0f} MB")
    for stage, store in STORES.items():
        results["stores"][stage] = tree_size(work / store)
    results["dataset"] = tree_size(work / "data" / "synth")
    results["manifests"] = tree_size(work / "data" / "manifests")
    results["dvc_cache"] = tree_size(work / ".dvc" / "cache")
    stores_bytes = sum(s["bytes"] for s in results["stores"].values())
    results["totals"] = {
        "store_files": sum(s["files"] for s in results["stores"].values()),
        "store_bytes": stores_bytes,
        "images_per_file_max": {k: round(args.n / max(1, s["files"]), 1) for k, s in results["stores"].items()},
        "disk_ratio_stores_plus_dvc_cache": round((stores_bytes + results["dvc_cache"]["bytes"]) / stores_bytes, 3),
    }
    say("no-change dvc status / dvc repro (twice each) ...")
    results["no_change"] = {
        "load_average_before": round(os.getloadavg()[0], 2),
        "dvc_status_s": [timed([dvc, "status"], work, env) for _ in range(2)],
        "dvc_repro_s": [timed([dvc, "repro"], work, env) for _ in range(2)],
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
        say(f"wrote {args.out}")
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

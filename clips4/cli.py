"""The ``clips4`` command line: a thin typer layer over the library, one command per DVC stage.

Every command reads params.yaml (or ``--params FILE``) through :func:`clips4.params.load_params`.
Errors the user can fix (bad params, a broken dataset file, missing weights) print one line naming
the file, the problem and the fix, and exit non-zero (2 for bad params, 1 otherwise).
Heavy imports (torch, zarr, open_clip) happen inside the commands so ``clips4 --help`` stays fast.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from clips4.errors import Clips4Error
from clips4.params import DEFAULT_PARAMS_PATH, Params, ParamsError, load_params

app = typer.Typer(
    name="clips4",
    help="CLIP-S4: language-guided self-supervised semantic segmentation. One command per pipeline stage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Dataset tools.", no_args_is_help=True)
app.add_typer(data_app, name="data")
cache_app = typer.Typer(help="Inspect the Zarr caches under data/cache/.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")

ParamsOption = Annotated[
    Path, typer.Option("--params", help="Params file to read (validated at start).", dir_okay=False)
]
WorkersOption = Annotated[int, typer.Option("--workers", "-j", min=0, help="Worker processes; 0 uses all cores.")]
ShardOption = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="RANK/WORLD: fill only the RANK-th of WORLD contiguous chunk ranges of the store (0-based), so that "
        "several processes or machines (e.g. torchrun ranks: --shard $RANK/$WORLD_SIZE) fill one store at once.",
    ),
]

CacheDirOption = Annotated[
    str,
    typer.Option(
        "--cache-dir",
        help="Folder (or fsspec URL such as s3://bucket/cache) of the stores this command reads and writes; "
        "the DVC pipeline uses the default.",
    ),
]

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print ``message`` to stderr and return the Exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def user_errors(func: F) -> F:
    """Turn the errors a user can fix into a one-line message and an exit code, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ParamsError as err:
            raise fail(str(err), code=2) from None
        except Clips4Error as err:
            raise fail(str(err)) from None
        except KeyboardInterrupt:
            typer.secho("interrupted: completed work is kept; rerun the command to resume.", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def read_params(path: Path) -> Params:
    """Load and validate the params file (errors become exit code 2 through :func:`user_errors`)."""
    return load_params(path)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="clips4")


# Commands, one section per pipeline area.

# --- synth ---


@app.command()
@user_errors
def synth(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    out: Annotated[Path, typer.Option(help="Folder of the image world (Pascal VOC layout).")] = Path("data/synth"),
    video_out: Annotated[Path, typer.Option(help="Folder of the videos (DAVIS 2017 layout).")] = Path(
        "data/synth_video"
    ),
    preview: Annotated[
        int,
        typer.Option(
            min=0,
            help="Instead of generating the world, draw this many images with masks and captions "
            "into reports/figures/synth_preview.png.",
        ),
    ] = 0,
    workers: WorkersOption = 0,
) -> None:
    """Generate the synthetic world: images, masks, captions, class folds, and videos."""
    from clips4.data.synth import generate_image, write_world
    from clips4.data.synth_video import write_videos

    config = read_params(params)
    if preview:
        from clips4.data.preview import write_preview

        samples = [generate_image(config.synth, config.seed, "train", i) for i in range(preview)]
        path = write_preview(
            [s.image for s in samples],
            [s.label for s in samples],
            [s.caption for s in samples],
            Path("reports/figures/synth_preview.png"),
        )
        typer.echo(f"wrote {path}")
        return
    write_world(config.synth, config.seed, out, workers=workers)
    write_videos(config.synth, config.seed, video_out)
    typer.echo(f"wrote {out} and {video_out}")


# --- data ---


@data_app.command("check")
@user_errors
def data_check(
    root: Annotated[Path, typer.Argument(help="Dataset root folder.")],
    format: Annotated[
        str, typer.Option("--format", "-f", help="Layout: voc | context | cocostuff | davis | synth.")
    ] = "synth",
) -> None:
    """Validate a dataset: exit 0 when every file of every split reads cleanly, else list each bad file."""
    from clips4.data.check import check_dataset

    problems, checked = check_dataset(root, format)
    if problems:
        for problem in problems:
            typer.echo(problem.message, err=True)
        raise fail(f"{len(problems)} problem(s) in {root} ({checked} items checked)")
    typer.echo(f"{root}: {checked} items checked, no problems ({format} layout)")


# --- clip ---


@app.command("clip-pretrain")
@user_errors
def clip_pretrain(params: ParamsOption = DEFAULT_PARAMS_PATH) -> None:
    """Train the tiny CLIP on the synthetic world's captions (clip.pretrained: synth), or record real weights."""
    from clips4.clip.pretrain import run_clip_pretrain

    result = run_clip_pretrain(read_params(params))
    typer.echo(
        f"wrote models/clip.pt and models/clip.json: {result.model_name} from {result.source}, "
        f"{result.train_seconds:.0f} s, zero-shot recall@k {result.zero_shot_recall_at_k}"
    )


# --- caches: contours, ucm, clip-dense, segments, prototypes ---


def store_path(cache_dir: str, name: str) -> str:
    """``<cache_dir>/<name>.zarr`` for a folder or an fsspec URL."""
    return f"{cache_dir.rstrip('/')}/{name}.zarr"


def _report_stage(name: str, result: Any) -> None:
    done = "complete" if result.complete else "waiting for the other shards"
    typer.echo(
        f"{name}: {result.path}: {result.rows} rows; computed {result.computed_chunks} of "
        f"{result.total_chunks} chunks now; {done}"
    )


@app.command()
@user_errors
def contours(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    workers: WorkersOption = 0,
    shard: ShardOption = None,
    cache_dir: CacheDirOption = "data/cache",
) -> None:
    """Contour maps of every train and val image (contours.method) into data/cache/contours.zarr; resumable."""
    from clips4.stages.common import parse_shard
    from clips4.stages.contours import run_contours

    result = run_contours(
        read_params(params), store_path(cache_dir, "contours"), workers=workers, shard=parse_shard(shard)
    )
    _report_stage("contours", result)


@app.command()
@user_errors
def ucm(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    workers: WorkersOption = 0,
    shard: ShardOption = None,
    cache_dir: CacheDirOption = "data/cache",
) -> None:
    """OWT-UCM and superpixels (ucm.regions or ucm.threshold) into data/cache/superpixels.zarr, and their quality
    on the val split into reports/segments.json and reports/figures/; resumable."""
    from clips4.stages.common import parse_shard
    from clips4.stages.ucm import run_ucm

    paths = [store_path(cache_dir, name) for name in ("contours", "superpixels")]
    _report_stage("ucm", run_ucm(read_params(params), *paths, workers=workers, shard=parse_shard(shard)))


@app.command("clip-dense")
@user_errors
def clip_dense(
    params: ParamsOption = DEFAULT_PARAMS_PATH, shard: ShardOption = None, cache_dir: CacheDirOption = "data/cache"
) -> None:
    """Dense CLIP embeddings of every train and val image into data/cache/clip_dense.zarr (GPU when present)."""
    from clips4.stages.clip_dense import run_clip_dense
    from clips4.stages.common import parse_shard

    result = run_clip_dense(read_params(params), store_path(cache_dir, "clip_dense"), shard=parse_shard(shard))
    _report_stage("clip_dense", result)


@app.command()
@user_errors
def segments(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    workers: WorkersOption = 0,
    shard: ShardOption = None,
    cache_dir: CacheDirOption = "data/cache",
) -> None:
    """CLIP embedding of every superpixel (mean dense feature) into data/cache/segments.zarr; resumable."""
    from clips4.stages.common import parse_shard
    from clips4.stages.segments import run_segments

    paths = [store_path(cache_dir, name) for name in ("superpixels", "clip_dense", "segments")]
    _report_stage("segments", run_segments(read_params(params), *paths, workers=workers, shard=parse_shard(shard)))


@app.command()
@user_errors
def prototypes(params: ParamsOption = DEFAULT_PARAMS_PATH, cache_dir: CacheDirOption = "data/cache") -> None:
    """Known-class prototypes (top_m segments per class by FAISS search; the fold's classes held out) and
    `unknowns` random ones, into data/cache/prototypes.zarr."""
    # torch and faiss-cpu each bring an OpenMP runtime; on few cores their idle threads spin against each other
    # (5-10x slower) unless idle threads sleep. Must be set before either library loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from clips4.stages.prototypes import run_prototypes

    paths = [store_path(cache_dir, name) for name in ("segments", "prototypes")]
    result = run_prototypes(read_params(params), *paths)
    held = f"; held out: {', '.join(result.held_out_classes)}" if result.held_out_classes else ""
    typer.echo(
        f"prototypes: {result.path}: {len(result.known_classes)} known classes from {result.train_segments} train "
        f"segments, {result.unknowns} unknown{held}"
    )


# --- train ---


@app.command()
@user_errors
def train(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    cache_dir: CacheDirOption = "data/cache",
    out: Annotated[Path, typer.Option(help="Student checkpoint (also the resume point).")] = Path("models/clips4.pt"),
    metrics: Annotated[Path, typer.Option(help="Metrics JSON of the run.")] = Path("models/clips4.json"),
    live_dir: Annotated[Path, typer.Option(help="dvclive folder of the loss curves.")] = Path("reports/train"),
    stop_after: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many iterations (a rerun resumes).", hidden=True)
    ] = None,
) -> None:
    """Train the CLIP-S4 student on the caches (resuming from --out), then score it on val into --metrics.
    Several processes: torchrun --nproc_per_node N $(which clips4) train."""
    # Idle OpenMP threads sleep instead of spinning: on a shared or small machine spinning threads cost a training
    # step up to 3x its CPU time (measured in docs/training.md). Must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from clips4.stages.train import run_train

    paths = {
        name: store_path(cache_dir, store)
        for name, store in (("dense", "clip_dense"), ("superpixels", "superpixels"), ("prototypes", "prototypes"))
    }
    result = run_train(read_params(params), **paths, out=out, metrics=metrics, live_dir=live_dir, stop_after=stop_after)
    if result.metrics:
        typer.echo(
            f"train: {result.checkpoint}: {result.iterations} iterations (from {result.start_iteration}) in "
            f"{result.wall_seconds:.0f} s; val mIoU {result.miou:.2f}, avgsim {result.avgsim:.3f} -> {result.metrics}"
        )
    elif result.iterations and os.environ.get("RANK", "0") == "0":
        typer.echo(f"train: stopped at iteration {result.iterations}; rerun to resume from {result.checkpoint}")


@cache_app.command("info")
@user_errors
def cache_info(path: Annotated[str, typer.Argument(help="A store under data/cache/ (folder or fsspec URL).")]) -> None:
    """Summary of a store: arrays, shapes, chunking, compression ratio, provenance, completeness."""
    from clips4.cache.api import describe

    typer.echo(describe(path))


# --- evaluate ---


@app.command()
@user_errors
def evaluate(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    method: Annotated[str, typer.Option(help="Method to evaluate: maskclip (CLIP's own dense features).")] = "maskclip",
    dense_mode: Annotated[
        str | None, typer.Option(help="Override clip.dense_mode (maskclip | clearclip) for a side-by-side run.")
    ] = None,
    metrics: Annotated[Path, typer.Option(help="Metrics JSON to update.")] = Path("reports/metrics.json"),
) -> None:
    """Language-driven segmentation of the val split; writes mIoU and pixel accuracy (percent)."""
    import json

    from clips4.clip.dense import DENSE_MODES
    from clips4.eval.evaluate import METHODS, evaluate_maskclip, merge_metrics

    if method not in METHODS:
        raise fail(f"--method: must be one of {', '.join(METHODS)}, got {method!r}", code=2)
    if dense_mode is not None and dense_mode not in DENSE_MODES:
        raise fail(f"--dense-mode: must be one of {', '.join(DENSE_MODES)}, got {dense_mode!r}", code=2)
    config = read_params(params)
    result = evaluate_maskclip(config, dense_mode)
    if dense_mode is None or dense_mode == config.clip.dense_mode:
        merge_metrics(metrics, "maskclip", {"miou": result["miou"], "pacc": result["pacc"]})
        per_class = metrics.parent / "maskclip_per_class.json"
        per_class.write_text(
            json.dumps({"dense_mode": result["dense_mode"], "iou": result["per_class"]}, indent=2) + "\n"
        )
    typer.echo(f"maskclip ({result['dense_mode']}): mIoU {result['miou']:.2f}  pAcc {result['pacc']:.2f}")
    for name, iou in result["per_class"].items():
        typer.echo(f"  {name:12s} {'-' if iou is None else f'{iou:.1f}'}")


if __name__ == "__main__":  # pragma: no cover
    main()

"""The ``clips4`` command line: a thin typer layer over the library, one command per DVC stage.

Every command reads params.yaml (or ``--params FILE``) through :func:`clips4.params.load_params`; every default
path (models/, reports/, data/cache) is relative to the params file's folder, so a command run from another folder
with ``--params /abs/project/params.yaml`` reads and writes that project's files. A path given as an option is
relative to the current folder, as usual.
Errors the user can fix (bad params, a broken dataset file, missing weights) print one line naming
the file, the problem and the fix, and exit non-zero (2 for bad params, 1 otherwise).
Heavy imports (torch, zarr, open_clip) happen inside the commands so ``clips4 --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from clips4.data.names import CHECK_FORMATS
from clips4.errors import Clips4Error, Clips4Warning, describe_os_error
from clips4.params import DEFAULT_PARAMS_PATH, Params, ParamsError, load_params
from clips4.paths import (
    DATASET_MANIFEST,
    DEFAULT_CACHE_DIR,
    MODELS_DIR,
    REPORTS_DIR,
    STUDENT_CHECKPOINT,
    SYNTH_ROOT,
    SYNTH_VIDEO_ROOT,
    TRAIN_OUTPUTS,
    VIDEO_MANIFEST,
)


def in_project(path: str) -> str:
    """How help shows a default path of the project: ``[default: <params folder>/models/clips4.pt]``."""
    return f"<params folder>/{path}"


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
experiments_app = typer.Typer(
    help="The paper's tables as DVC experiments (pipeline/experiments.yaml).", no_args_is_help=True
)
app.add_typer(experiments_app, name="experiments")
params_app = typer.Typer(help="Edit the params file (presets: pipeline/presets/).", no_args_is_help=True)
app.add_typer(params_app, name="params")

ParamsOption = Annotated[
    Path,
    typer.Option(
        "--params",
        help="Params file to read (validated at start). Every default path (models/, reports/, data/cache) is "
        "relative to its folder.",
        dir_okay=False,
    ),
]
WorkersOption = Annotated[int, typer.Option("--workers", "-j", min=0, help="Worker processes; 0 uses all cores.")]
ShardOption = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="RANK/WORLD: fill only the RANK-th of WORLD contiguous chunk ranges of the store (0-based), so that "
        "several processes or machines fill one store at once. Default: torchrun's RANK/WORLD_SIZE, or SLURM_PROCID/"
        "SLURM_NTASKS inside an srun step, else 0/1. Only rank 0 creates or rebuilds the store.",
    ),
]
RebuildOption = Annotated[
    bool,
    typer.Option(
        "--rebuild",
        help="Replace the store when it is stale (its params, inputs or code changed) and holds finished work; "
        "without it such a store stops the command and the message says what changed. A store that is up to date "
        "is resumed either way (dvc.yaml passes --rebuild).",
    ),
]

CacheDirOption = Annotated[
    str | None,
    typer.Option(
        "--cache-dir",
        help="Folder (or fsspec URL such as s3://bucket/cache) of the stores this command reads and writes; "
        "the DVC pipeline uses the default.",
        show_default=in_project(DEFAULT_CACHE_DIR),
    ),
]
ReportsDirOption = Annotated[
    Path | None,
    typer.Option(
        "--reports-dir",
        help=f"Folder for the stage's reports. Default: {in_project(REPORTS_DIR)}, or with another local "
        "--cache-dir, a reports folder beside it (required with a URL --cache-dir).",
        file_okay=False,
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
            with warnings.catch_warnings():
                warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
                return func(*args, **kwargs)
        except ParamsError as err:
            raise fail(str(err), code=2) from None
        except Clips4Error as err:
            raise fail(str(err)) from None
        except OSError as err:  # a read-only, full or missing folder: one line naming the file, not a traceback
            message = describe_os_error(err)
            if message is None:
                raise
            raise fail(message) from None
        except KeyboardInterrupt:
            typer.secho("interrupted: completed work is kept; rerun the command to resume.", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def writing(path: Path, option: str) -> Iterator[None]:
    """A file-system error while writing ``path`` (a read-only, full or missing folder) as one line naming ``path``
    and the option that chose it, instead of a temporary file's name or a traceback."""
    try:
        yield
    except OSError as err:
        message = describe_os_error(err, path)
        if message is None:
            raise
        raise fail(f"{option} {message}") from None


def _show_warning(
    shown_before: Callable[..., None], message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any
) -> None:
    """clips4's own warnings as one ``warning: ...`` line on stderr; others as before."""
    if issubclass(category, Clips4Warning):
        typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)
    else:
        shown_before(message, category, *args, **kwargs)


def read_params(path: Path) -> Params:
    """Load and validate the params file (errors become exit code 2 through :func:`user_errors`)."""
    return load_params(path)


def project_path(given: Path | None, config: Params, default: str) -> Path:
    """An option's path: as given (relative to the current folder), else the project's ``default`` (relative to the
    params file's folder)."""
    return given if given is not None else config.project_path(default)


def cache_dir_of(config: Params, cache_dir: str | None) -> str:
    """``--cache-dir`` as given (a folder or a URL), else the project's data/cache."""
    return cache_dir if cache_dir is not None else str(config.project_path(DEFAULT_CACHE_DIR))


def main() -> None:
    """Console-script entry point."""
    app(prog_name="clips4")


@app.callback()
def logging_options(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also show debugging messages.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Show only warnings and errors, and results.")] = False,
) -> None:
    # The library logs to the "clips4" loggers (clips4/logs.py); configured once here, for every command.
    import logging

    from clips4.logs import configure

    if verbose and quiet:
        raise fail("give at most one of -v/--verbose and -q/--quiet", code=2)
    configure(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


# Commands, one section per pipeline area.

# --- synth ---

#: Where ``clips4 synth --preview`` draws, relative to the project folder.
SYNTH_PREVIEW = f"{REPORTS_DIR}/figures/synth_preview.png"


@app.command()
@user_errors
def synth(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder of the image world (Pascal VOC layout).", show_default=in_project(SYNTH_ROOT)),
    ] = None,
    video_out: Annotated[
        Path | None,
        typer.Option(help="Folder of the videos (DAVIS 2017 layout).", show_default=in_project(SYNTH_VIDEO_ROOT)),
    ] = None,
    preview: Annotated[
        int,
        typer.Option(
            min=0,
            help="Instead of generating the world, draw this many images with masks and captions "
            f"(unnamed concepts hatched) into {SYNTH_PREVIEW}.",
        ),
    ] = 0,
    workers: WorkersOption = 0,
) -> None:
    """Generate the synthetic world: images, masks, captions, class folds, and videos."""
    from clips4.data.synth import STATS_FILE
    from clips4.data.world_stats import format_stats
    from clips4.stages.synth import run_synth, run_synth_preview

    config = read_params(params)
    if preview:
        typer.echo(f"wrote {run_synth_preview(config, preview, config.project_path(SYNTH_PREVIEW))}")
        return
    out, video_out = project_path(out, config, SYNTH_ROOT), project_path(video_out, config, SYNTH_VIDEO_ROOT)
    result = run_synth(config, out, video_out, workers=workers)
    typer.echo(
        f"wrote {result.image_root} ({result.train_images} train, {result.tune_images} tune, {result.val_images} val "
        f"images) and {result.video_root} ({result.video_sequences} videos)"
    )
    typer.echo(format_stats(result.stats) + f"\n(all of it in {result.image_root / STATS_FILE})")


# --- data ---


@data_app.command("check")
@user_errors
def data_check(
    root: Annotated[Path, typer.Argument(help="Dataset root folder.")],
    format: Annotated[str, typer.Option("--format", "-f", help=f"Layout: {' | '.join(CHECK_FORMATS)}.")] = "synth",
) -> None:
    """Validate a dataset: exit 0 when every file of every split reads cleanly, else list each bad file."""
    from clips4.data.check import check_dataset

    problems, checked = check_dataset(root, format)
    if problems:
        for problem in problems:
            typer.echo(problem.message, err=True)
        raise fail(f"{len(problems)} problem(s) in {root} ({checked} items checked)")
    typer.echo(f"{root}: {checked} items checked, no problems ({format} layout)")


@data_app.command("manifest")
@user_errors
def data_manifest(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    dataset_out: Annotated[
        Path | None,
        typer.Option(help="Manifest of dataset.root.", dir_okay=False, show_default=in_project(DATASET_MANIFEST)),
    ] = None,
    video_out: Annotated[
        Path | None,
        typer.Option(help="Manifest of video.root.", dir_okay=False, show_default=in_project(VIDEO_MANIFEST)),
    ] = None,
) -> None:
    """Write the md5 of every file of dataset.root and video.root (md5sum format): the stages depend on these."""
    from clips4.stages.dataset_manifest import run_dataset_manifest

    config = read_params(params)
    dataset_out = project_path(dataset_out, config, DATASET_MANIFEST)
    result = run_dataset_manifest(config, dataset_out, project_path(video_out, config, VIDEO_MANIFEST))
    typer.echo(
        f"wrote {result.dataset_manifest} ({result.dataset_files} files) and "
        f"{result.video_manifest} ({result.video_files} files)"
    )


# --- clip ---


@app.command("clip-pretrain")
@user_errors
def clip_pretrain(params: ParamsOption = DEFAULT_PARAMS_PATH) -> None:
    """Train the tiny CLIP on the synthetic world's captions (clip.pretrained: synth), or record real weights."""
    from clips4.stages.clip_pretrain import clip_outputs, run_clip_pretrain

    config = read_params(params)
    checkpoint, record = clip_outputs(config)
    result = run_clip_pretrain(config, checkpoint, record)
    activation = "QuickGELU" if result.quick_gelu else "GELU"
    typer.echo(
        f"wrote {checkpoint} and {record}: {result.model_name} ({activation}) from {result.source}, "
        f"{result.train_seconds:.0f} s, zero-shot recall@k {result.zero_shot_recall_at_k}"
    )


# --- caches: contours, ucm, clip-dense, segments, prototypes ---


def store_path(cache_dir: str, name: str) -> str:
    """``<cache_dir>/<name>.zarr`` for a folder or an fsspec URL."""
    return f"{cache_dir.rstrip('/')}/{name}.zarr"


def reports_dir_for(config: Params, cache_dir: str | None, reports_dir: Path | None) -> Path:
    """Where the ucm and prototypes stages write their reports: ``--reports-dir``, else the project's reports/, but
    never into the project when the caches live elsewhere (:func:`clips4.stages.common.reports_dir_for_cache`)."""
    from clips4.stages.common import reports_dir_for_cache

    if reports_dir is not None:
        return reports_dir
    try:
        return reports_dir_for_cache(config, cache_dir)
    except Clips4Error as err:  # a URL --cache-dir: a usage error
        raise fail(str(err), code=2) from None


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
    cache_dir: CacheDirOption = None,
    rebuild: RebuildOption = False,
) -> None:
    """Contour maps of every train and val image (contours.method) into data/cache/contours.zarr; resumable."""
    from clips4.stages.common import parse_shard
    from clips4.stages.contours import run_contours

    config, where = read_params(params), parse_shard(shard)
    out = store_path(cache_dir_of(config, cache_dir), "contours")
    result = run_contours(config, out, workers=workers, shard=where, rebuild=rebuild)
    _report_stage("contours", result)


@app.command()
@user_errors
def ucm(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    workers: WorkersOption = 0,
    shard: ShardOption = None,
    cache_dir: CacheDirOption = None,
    rebuild: RebuildOption = False,
    reports_dir: ReportsDirOption = None,
) -> None:
    """OWT-UCM and superpixels (ucm.regions or ucm.threshold) into data/cache/superpixels.zarr, and their quality
    on the val split into reports/segments.json and reports/figures/; resumable."""
    from clips4.stages.common import parse_shard
    from clips4.stages.ucm import run_ucm

    config, where = read_params(params), parse_shard(shard)
    paths = [store_path(cache_dir_of(config, cache_dir), name) for name in ("contours", "superpixels")]
    reports = reports_dir_for(config, cache_dir, reports_dir)
    _report_stage("ucm", run_ucm(config, *paths, workers=workers, shard=where, rebuild=rebuild, reports_dir=reports))


@app.command("clip-dense")
@user_errors
def clip_dense(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    shard: ShardOption = None,
    cache_dir: CacheDirOption = None,
    rebuild: RebuildOption = False,
) -> None:
    """Dense CLIP embeddings of every train and val image into data/cache/clip_dense.zarr (GPU when present)."""
    from clips4.stages.clip_dense import run_clip_dense
    from clips4.stages.common import parse_shard

    config, where = read_params(params), parse_shard(shard)
    out = store_path(cache_dir_of(config, cache_dir), "clip_dense")
    result = run_clip_dense(config, out, shard=where, rebuild=rebuild)
    _report_stage("clip_dense", result)


@app.command()
@user_errors
def segments(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    workers: WorkersOption = 0,
    shard: ShardOption = None,
    cache_dir: CacheDirOption = None,
    rebuild: RebuildOption = False,
) -> None:
    """CLIP embedding of every superpixel (mean dense feature) into data/cache/segments.zarr; resumable."""
    from clips4.stages.common import parse_shard
    from clips4.stages.segments import run_segments

    config, where = read_params(params), parse_shard(shard)
    paths = [store_path(cache_dir_of(config, cache_dir), name) for name in ("superpixels", "clip_dense", "segments")]
    _report_stage("segments", run_segments(config, *paths, workers=workers, shard=where, rebuild=rebuild))


@app.command()
@user_errors
def prototypes(
    params: ParamsOption = DEFAULT_PARAMS_PATH, cache_dir: CacheDirOption = None, reports_dir: ReportsDirOption = None
) -> None:
    """Known-class prototypes (top_m segments per class by FAISS search; the fold's classes held out) and
    `unknowns` random ones, into data/cache/prototypes.zarr; each prototype's cosine to its m = 32 one into
    reports/prototypes.json (Table 8)."""
    # torch and faiss-cpu each bring an OpenMP runtime; on few cores their idle threads spin against each other
    # (5-10x slower) unless idle threads sleep. Must be set before either library loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from clips4.stages.prototypes import run_prototypes

    config = read_params(params)
    paths = [store_path(cache_dir_of(config, cache_dir), name) for name in ("segments", "prototypes", "clip_dense")]
    result = run_prototypes(config, *paths, reports_dir=reports_dir_for(config, cache_dir, reports_dir))
    held = f"; held out: {', '.join(result.held_out_classes)}" if result.held_out_classes else ""
    typer.echo(
        f"prototypes: {result.path}: {len(result.known_classes)} known classes from {result.train_segments} train "
        f"segments, {result.unknowns} unknown{held}; {result.search}; cosine to the m = 32 prototypes "
        f"{result.cosine_to_m32:.4f} ({result.report})"
    )


# --- train ---


@app.command()
@user_errors
def train(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    cache_dir: CacheDirOption = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Student checkpoint (also the resume point).", show_default=in_project(TRAIN_OUTPUTS[0])),
    ] = None,
    metrics: Annotated[
        Path | None, typer.Option(help="Metrics JSON of the run.", show_default=in_project(TRAIN_OUTPUTS[1]))
    ] = None,
    live_dir: Annotated[
        Path | None, typer.Option(help="dvclive folder of the loss curves.", show_default=in_project(TRAIN_OUTPUTS[2]))
    ] = None,
    stop_after: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many iterations (a rerun resumes).", hidden=True)
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            help="Train a baseline instead: maskclip-plus (per-pixel MaskCLIP pseudo-labels over the named classes; "
            "default outputs models/maskclip_plus.{pt,json}, reports/train_maskclip_plus)."
        ),
    ] = None,
) -> None:
    """Train the CLIP-S4 student on the caches (resuming from --out), then score it on val into --metrics.
    Several processes: torchrun --nproc_per_node N $(which clips4) train."""
    # Idle OpenMP threads sleep instead of spinning: on a shared or small machine spinning threads cost a training
    # step up to 3x its CPU time (measured in docs/training.md). Must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from clips4.stages.train import BASELINES, run_train

    if baseline is not None and baseline not in BASELINES:
        raise fail(f"--baseline: unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}", code=2)
    config = read_params(params)
    paths = {
        name: store_path(cache_dir_of(config, cache_dir), store)
        for name, store in (("dense", "clip_dense"), ("superpixels", "superpixels"), ("prototypes", "prototypes"))
    }
    result = run_train(  # outputs not given: the project's (beside the params file)
        config,
        **paths,
        out=out,
        metrics=metrics,
        live_dir=live_dir,
        stop_after=stop_after,
        baseline=baseline,
    )
    if result.metrics:
        typer.echo(
            f"train: {result.checkpoint}: {result.iterations} iterations (from {result.start_iteration}) in "
            f"{result.wall_seconds:.0f} s; {result.score_split} mIoU {result.miou:.2f}, avgsim {result.avgsim:.3f} -> "
            f"{result.metrics}"
        )
    elif result.iterations and os.environ.get("RANK", "0") == "0":
        typer.echo(f"train: stopped at iteration {result.iterations}; rerun to resume from {result.checkpoint}")


@cache_app.command("info")
@user_errors
def cache_info(path: Annotated[str, typer.Argument(help="A store under data/cache/ (folder or fsspec URL).")]) -> None:
    """Summary of a store: arrays, shapes, chunking, compression ratio, provenance, completeness."""
    from clips4.cache.api import describe

    typer.echo(describe(path))


@cache_app.command("verify")
@user_errors
def cache_verify(
    path: Annotated[str, typer.Argument(help="A store under data/cache/ (folder or fsspec URL).")],
    repair: Annotated[
        bool, typer.Option("--repair", help="Mark the bad chunks not done, so that rerunning the stage redoes them.")
    ] = False,
) -> None:
    """Decode every chunk marked done; name each bad one (missing, undecodable, NaN) with its images; exit 1 if any."""
    from clips4.cache.api import open as open_store
    from clips4.cache.api import verify_store

    bad = verify_store(path, repair=repair)
    for chunk in bad:
        typer.echo(f"{path}: {chunk}", err=True)
    if bad:
        stage = open_store(path).stage
        again = f"`dvc repro` (or `clips4 {stage}`)"
        then = f"marked not done; run {again}" if repair else f"run `clips4 cache verify --repair {path}`, then {again}"
        raise fail(f"{path}: {len(bad)} bad chunk(s); {then}")
    typer.echo(f"{path}: every chunk marked done decodes; no problems")


# --- evaluate ---


@app.command()
@user_errors
def evaluate(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    dense_mode: Annotated[
        str | None, typer.Option(help="Override clip.dense_mode (maskclip | clearclip) for a side-by-side run.")
    ] = None,
    reports_dir: Annotated[
        Path | None,
        typer.Option(
            "--reports-dir",
            help=f"Folder of metrics.json and per_class_iou.json. Default: {in_project(REPORTS_DIR)}; but with a "
            "--dense-mode that differs from clip.dense_mode, nothing is written unless this is given.",
            file_okay=False,
        ),
    ] = None,
    cache_dir: CacheDirOption = None,
    models_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder of the checkpoints (clip.pt, clips4.pt, maskclip_plus.pt).",
            file_okay=False,
            show_default=in_project(MODELS_DIR),
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            help="Score this split instead of dataset.val_split: dataset.tune_split to choose by. A split other than "
            "dataset.val_split writes nothing unless --reports-dir is given (reports/ holds val's scores)."
        ),
    ] = None,
) -> None:
    """Every metric of the paper for every available method on the val split (GPU when present): language-driven
    mIoU and pixel accuracy, class-free mIoU (with fold), kNN and linear probes, DAVIS J/F of the propagated video
    masks (written to reports/davis/), avgsim for students; into metrics.json and per_class_iou.json."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as for train: spinning idle threads cost a shared machine
    from clips4.clip.dense import DENSE_MODES
    from clips4.stages.evaluate import run_evaluate

    if dense_mode is not None and dense_mode not in DENSE_MODES:
        raise fail(f"--dense-mode: must be one of {', '.join(DENSE_MODES)}, got {dense_mode!r}", code=2)
    config = read_params(params)
    side_by_side = dense_mode is not None and dense_mode != config.clip.dense_mode
    other_split = split is not None and split != config.dataset.val_split
    if reports_dir is None and not side_by_side and not other_split:
        reports_dir = config.project_path(REPORTS_DIR)
    cache = cache_dir_of(config, cache_dir)
    result = run_evaluate(config, reports_dir, dense_mode, cache_dir=Path(cache), models_dir=models_dir, split=split)
    for method, scored in result.methods.items():
        scores = scored.scores
        # The dense mode is how CLIP's own features are read: it says nothing about the student.
        read = f"{result.dense_mode}, " if method == "maskclip" else ""
        typer.echo(
            f"{method} ({read}{result.protocol}, {result.device}, {scores.images} images): "
            f"mIoU {scores.miou:.2f}  pAcc {scores.pacc:.2f}"
        )
        typer.echo("  " + "  ".join(f"{key} {value:g}" for key, value in scored.block.items()))
        typer.echo("  seconds: " + "  ".join(f"{part} {seconds:.1f}" for part, seconds in scored.seconds.items()))
        for name, iou in scores.per_class.items():
            typer.echo(f"  {name:16s} {'-' if iou is None else f'{iou:.1f}'}")
    if result.metrics_path is None:
        typer.echo("side-by-side run: nothing written (pass --reports-dir to keep it)")
    else:
        davis = f" and the video masks under {result.davis_dir}" if result.davis_dir else ""
        typer.echo(f"wrote {result.metrics_path} and {result.per_class_path}{davis}")


# --- inference: segment, serve ---

CheckpointOption = Annotated[
    Path,
    typer.Option(
        "--checkpoint",
        # No params file is read (the checkpoint records its params), so the default is the current folder's.
        help="Student checkpoint written by `clips4 train` (the default is relative to the current folder).",
        dir_okay=False,
    ),
]
ClipOption = Annotated[
    str | None,
    typer.Option(
        "--clip",
        help="Where to read the checkpoint's CLIP from (a weights file or open_clip tag). Default: the reference "
        "recorded in the checkpoint (checked by sha256).",
    ),
]


@app.command()
@user_errors
def segment(
    images: Annotated[list[Path], typer.Argument(help="Image files and folders (searched recursively).")],
    classes: Annotated[str | None, typer.Option(help='Class names, comma-separated: "cat,dog,sky".')] = None,
    classes_file: Annotated[
        Path | None, typer.Option(help="Class names, one per line (instead of --classes).", dir_okay=False)
    ] = None,
    checkpoint: CheckpointOption = Path(STUDENT_CHECKPOINT),
    out: Annotated[Path, typer.Option(help="Folder of the outputs.", file_okay=False)] = Path("segmentation"),
    threshold: Annotated[
        float | None,
        typer.Option(help="Leave pixels whose best cosine similarity is below this unlabelled (255, grey)."),
    ] = None,
    save_scores: Annotated[
        bool, typer.Option("--save-scores", help="Also write <name>.scores.npz: [C, H, W] cosines.")
    ] = False,
    teacher: Annotated[
        bool, typer.Option("--teacher", help="Run the MaskCLIP baseline of the checkpoint's CLIP instead.")
    ] = False,
    clip: ClipOption = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Images of one size per forward pass. Default: 8 on a GPU, 1 on CPU.")
    ] = None,
    text_cache: Annotated[
        Path | None,
        typer.Option(
            help="Keep the class text embeddings in this folder for later runs (minutes each on a CPU).",
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Segment images with any class names: per image a label PNG, an overlay with a legend, and the scores."""
    from clips4.inference.files import run_segment
    from clips4.inference.segmenter import Segmenter, parse_classes

    if (classes is None) == (classes_file is None):
        raise fail("give the class names with exactly one of --classes or --classes-file", code=2)
    if threshold is not None and not -1.0 <= threshold <= 1.0:  # NaN fails the comparison too
        raise fail(f"--threshold: {threshold} is outside [-1, 1], the range of a cosine similarity", code=2)
    if classes_file is not None:
        if not classes_file.is_file():
            raise fail(f"{classes_file}: classes file not found", code=2)
        lines = [line.split("#")[0] for line in classes_file.read_text(encoding="utf-8").splitlines()]
        names = parse_classes(lines, where=str(classes_file))
    else:
        names = parse_classes(classes or "")
    segmenter = Segmenter.from_checkpoint(checkpoint, teacher=teacher, clip=clip, text_cache=text_cache)
    typer.echo(segmenter.describe(), err=True)
    size = batch_size or (8 if segmenter.device.type == "cuda" else 1)
    with writing(out, "--out"):
        run = run_segment(segmenter, images, names, out, threshold=threshold, save_scores=save_scores, batch_size=size)
    for problem in run.failed:
        typer.secho(f"skipped: {problem}", fg=typer.colors.YELLOW, err=True)
    images_done = sum(path.name.endswith(".labels.png") for path in run.written)
    typer.echo(f"segment: {images_done} images into {out} ({len(names)} classes)")
    if run.failed:
        raise fail(f"{len(run.failed)} input(s) skipped (listed above); the other images were written")


@app.command()
@user_errors
def serve(
    checkpoint: CheckpointOption = Path(STUDENT_CHECKPOINT),
    port: Annotated[int, typer.Option(min=1, max=65535)] = 7860,
    host: Annotated[str, typer.Option(help="Interface to listen on; 0.0.0.0 exposes it to the network.")] = "127.0.0.1",
    clip: ClipOption = None,
    max_upload_mb: Annotated[float, typer.Option(min=0.01, help="Largest upload accepted.")] = 20.0,
    max_side: Annotated[
        int,
        typer.Option(
            min=16,
            help="Scale uploads whose longer side is over this many pixels down to it before segmenting (the memory "
            "and time of a request follow the pixels segmented); the page says when it did.",
        ),
    ] = 1024,
) -> None:
    """A local web page: upload an image, type class names, see CLIP-S4 and MaskCLIP side by side."""
    from clips4.serve.app import serve_forever

    upload_bytes = int(max_upload_mb * 2**20)
    serve_forever(checkpoint, host=host, port=port, clip=clip, max_upload_bytes=upload_bytes, max_side=max_side)


# --- report ---


@app.command()
@user_errors
def report(
    params: ParamsOption = DEFAULT_PARAMS_PATH,
    cache_dir: CacheDirOption = None,
    reports_dir: Annotated[
        Path | None,
        typer.Option(
            "--reports-dir",
            help="Folder holding metrics.json, per_class_iou.json and davis/ (from evaluate); report.md and "
            "figures/report/ are written there.",
            file_okay=False,
            show_default=in_project(REPORTS_DIR),
        ),
    ] = None,
) -> None:
    """Write reports/report.md: every method side by side on every metric, per-class IoU, and the paper's figures
    (PCA-RGB pixel embeddings, segment map, retrieval, masks, propagated video masks) in reports/figures/report/."""
    # Idle OpenMP threads sleep instead of spinning between the small forward passes (as for train); before torch.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from clips4.stages.report import run_report

    result = run_report(read_params(params), reports_dir=reports_dir, cache_dir=cache_dir)  # None: the project's
    skipped = f"; not drawn: {', '.join(result.not_drawn)}" if result.not_drawn else ""
    typer.echo(
        f"wrote {result.report} with {len(result.figures)} figures (methods: {', '.join(result.methods)}){skipped}"
    )


# --- params presets (pipeline/presets/) ---


@params_app.command("preset")
@user_errors
def params_preset(
    name: Annotated[str | None, typer.Argument(help="The preset: a file of --presets-dir, without .yaml.")] = None,
    params: Annotated[
        Path,
        typer.Option(
            "--params",
            help="Params file to merge the preset into (it must exist; comments and key order are kept).",
            dir_okay=False,
        ),
    ] = DEFAULT_PARAMS_PATH,
    presets_dir: Annotated[
        Path | None,
        typer.Option(
            "--presets-dir",
            help="Folder of the presets (relative to the current folder, as experiments' --file).",
            file_okay=False,
            show_default="pipeline/presets",
        ),
    ] = None,
    list_presets: Annotated[bool, typer.Option("--list", help="List the presets and what each sets.")] = False,
) -> None:
    """Merge a preset's params into the params file (validated first; nothing is written if the result is invalid),
    so that `dvc repro` reruns the stages that read them. Presets stack: a dataset's, then paper, then davis."""
    import json

    from clips4 import presets

    folder = presets_dir or presets.PRESETS_DIR
    if list_presets and name is None:
        for preset in presets.list_presets(folder):
            typer.echo(f"{preset.name:14s} {preset.description}")
        return
    if name is None or list_presets:
        raise fail("give a preset NAME, or --list alone to see them", code=2)
    preset = presets.load_preset(name, folder)
    with writing(params, "--params"):
        changed = presets.apply_preset(preset, params)
    for key, (old, new) in changed.items():  # JSON spells values as YAML does: true, null, 0.001
        typer.echo(f"  {key}: {json.dumps(old)} -> {json.dumps(new)}")
    unchanged = len(preset.values) - len(changed)
    typer.echo(f"{params}: preset {preset.name}: {len(changed)} values changed, {unchanged} already set")


# --- experiments (pipeline/experiments.yaml) ---

ExperimentsFile = Annotated[Path, typer.Option("--file", help="The tables' definitions.", dir_okay=False)]


@experiments_app.command("queue")
@user_errors
def experiments_queue(
    table: Annotated[str, typer.Argument(help="A table of the file (table3, table6, ...).")],
    file: ExperimentsFile = Path("pipeline/experiments.yaml"),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print every run's dvc command; queue nothing, ask DVC nothing.")
    ] = False,
) -> None:
    """Queue one `dvc exp run --queue -S ... -C data/cache -n NAME` per run of TABLE that `dvc exp show` does not
    list yet (so a second call adds only what is missing); then `dvc queue start`."""
    import shlex

    from clips4.experiments import exp_show, experiment_names, load_tables, queue_table

    tables = load_tables(file)
    if table not in tables:
        raise fail(f"{file}: no table {table!r}; tables: {', '.join(tables)}", code=2)
    chosen = tables[table]
    existing = set() if dry_run else experiment_names(exp_show()) & {run.name for run in chosen.runs}
    commands = queue_table(chosen, existing=existing, dry_run=dry_run)
    for argv in commands:
        typer.echo(shlex.join(argv))
    for path in sorted(set(chosen.copy_paths) - set(chosen.present_copy_paths())):
        typer.echo(f"note: {path} does not exist here, so every run rebuilds it (run `dvc repro` first)", err=True)
    known = f", {len(existing)} already in `dvc exp show`" if existing else ""
    typer.echo(
        f"{'would queue' if dry_run else 'queued'} {len(commands)} runs of {table}{known}; run them: dvc queue start"
    )


@experiments_app.command("collect")
@user_errors
def experiments_collect(
    tables: Annotated[list[str] | None, typer.Argument(help="Tables to write (default: all).")] = None,
    file: ExperimentsFile = Path("pipeline/experiments.yaml"),
    show_json: Annotated[
        Path | None, typer.Option("--show-json", help="Read this saved `dvc exp show --json` output instead of DVC.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Markdown file to write (default: print).")] = None,
    rev: Annotated[
        str | None, typer.Option(help="The commit the runs were queued from (default: HEAD), as `dvc exp show --rev`.")
    ] = None,
    ledger: Annotated[
        Path | None,
        typer.Option(
            help="Runs ledger (JSON, commit it): its runs are merged with `dvc exp show`'s, and every finished run "
            "of the file's tables is written back, so tables fill up across clones and machines.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """One Markdown table per paper table from the experiments' metrics files, mean ± std over seeds."""
    from clips4.experiments import (
        collect_markdown,
        exp_show,
        experiment_results,
        ledger_payload,
        load_tables,
        merge_results,
        read_exp_show,
        read_ledger,
    )
    from clips4.io import atomic_write, atomic_write_json

    defined = load_tables(file)
    missing = [name for name in tables or [] if name not in defined]
    if missing:
        raise fail(f"{file}: no table {', '.join(missing)}; tables: {', '.join(defined)}", code=2)
    kept = read_ledger(ledger) if ledger else {}
    found = experiment_results(read_exp_show(show_json) if show_json else exp_show(rev))
    results = merge_results(kept, found)
    text = collect_markdown([defined[name] for name in tables or defined], results)
    if ledger is not None:
        with writing(ledger, "--ledger"):
            atomic_write_json(ledger, ledger_payload(results, defined.values()), durable=True)
        added = sum(1 for name, result in found.items() if not result.error and name not in kept)
        typer.echo(f"{ledger}: {added} new runs, {len(kept)} kept", err=True)
    if out is None:
        typer.echo(text)
        return
    with writing(out, "--out"):
        atomic_write(out, text)
    typer.echo(f"wrote {out}")


# Last: `python -m clips4.cli` must see every command above registered.
if __name__ == "__main__":  # pragma: no cover
    main()

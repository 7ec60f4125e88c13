"""The ``dataset_manifest`` stage: the manifests of ``dataset.root`` and ``video.root`` (clips4/data/manifest.py)
in data/manifests/, which the stages that read those folders depend on in dvc.yaml instead of the folders, so a
no-change ``dvc status`` walks each folder once rather than once per stage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clips4.data.manifest import write_manifest
from clips4.params import Params
from clips4.paths import DATASET_MANIFEST, VIDEO_MANIFEST


@dataclass(frozen=True, kw_only=True)
class ManifestResult:
    dataset_manifest: Path
    dataset_files: int
    video_manifest: Path
    video_files: int


def run_dataset_manifest(
    params: Params, dataset_out: Path | None = None, video_out: Path | None = None
) -> ManifestResult:
    """The manifests into ``dataset_out`` and ``video_out`` (defaults: the project's data/manifests/, beside the
    params file)."""
    dataset_out = params.project_path(DATASET_MANIFEST) if dataset_out is None else dataset_out
    video_out = params.project_path(VIDEO_MANIFEST) if video_out is None else video_out
    dataset_files = write_manifest(Path(params.dataset.root), dataset_out, desc="dataset manifest")
    video_files = write_manifest(Path(params.video.root), video_out, desc="video manifest")
    return ManifestResult(
        dataset_manifest=dataset_out, dataset_files=dataset_files, video_manifest=video_out, video_files=video_files
    )

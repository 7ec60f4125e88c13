"""The project's default locations that are not params: relative to the project folder (where dvc.yaml and
params.yaml are). Stages resolve them against the params file's folder (:meth:`clips4.params.Params.project_path`),
so a run from another folder with ``--params /abs/project/params.yaml`` reads and writes the project's files.

No imports: the CLI reads these before any command runs.
"""

#: The folder of the Zarr caches (``--cache-dir``; a string, since it may also be an fsspec URL). dvc.yaml's
#: outputs name the same folder.
DEFAULT_CACHE_DIR = "data/cache"
#: The checkpoints: clip.pt (clip_pretrain), clips4.pt and maskclip_plus.pt (train).
MODELS_DIR = "models"
#: The reports: metrics.json, per_class_iou.json, davis/ (evaluate), segments.json, figures/ (ucm), report.md.
REPORTS_DIR = "reports"
#: The prototypes stage's small metrics file: each known prototype's cosine to its m = 32 one (Table 8).
PROTOTYPES_REPORT = "reports/prototypes.json"
#: The student checkpoint that ``clips4 train`` writes and ``evaluate``, ``segment`` and ``serve`` read.
STUDENT_CHECKPOINT = "models/clips4.pt"
#: What ``clips4 train`` writes: the checkpoint, its metrics and the dvclive folder of its loss curves.
TRAIN_OUTPUTS = (STUDENT_CHECKPOINT, "models/clips4.json", "reports/train")
#: The image world and the videos that ``clips4 synth`` writes (params.yaml's default dataset.root, video.root).
SYNTH_ROOT = "data/synth"
SYNTH_VIDEO_ROOT = "data/synth_video"
#: The md5 manifests of dataset.root and video.root (``clips4 data manifest``).
DATASET_MANIFEST = "data/manifests/dataset.md5"
VIDEO_MANIFEST = "data/manifests/video.md5"
#: Suffixes that make ``clip.pretrained`` a weights file rather than an open_clip tag (``clips4.clip.load_clip``).
WEIGHTS_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")

"""The one registry of dataset names: ``dataset.name`` in params.yaml (clips4/params.py), the readers of
clips4/data/layouts.py and ``clips4 data check --format`` (clips4/data/check.py) all read it from here.

No imports: params.py (read by the CLI before any command) stays light.
"""

#: Image segmentation datasets, each read by the layout function of the same name in clips4/data/layouts.py;
#: the first is params.yaml's default.
DATASET_NAMES = ("synth", "voc", "context", "cocostuff")

#: Video datasets that ``clips4 data check`` validates too (clips4/data/davis.py reads them).
VIDEO_LAYOUTS = ("davis",)

#: Every layout ``clips4 data check --format`` accepts.
CHECK_FORMATS = (*DATASET_NAMES, *VIDEO_LAYOUTS)

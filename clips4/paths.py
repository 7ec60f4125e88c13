"""The project's default locations that are not params: relative to the project folder (where dvc.yaml is).

No imports: the CLI reads these before any command runs.
"""

#: The folder of the Zarr caches (``--cache-dir``; a string, since it may also be an fsspec URL). dvc.yaml's
#: outputs name the same folder.
DEFAULT_CACHE_DIR = "data/cache"

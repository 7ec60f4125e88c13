"""clips4: CLIP-S4 language-guided self-supervised semantic segmentation, as reproducible software."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("clips4")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

"""Which FAISS build is installed, and whether it sees GPUs (the prototypes stage logs it).

faiss-cpu and faiss-gpu both install the same ``faiss`` module. With both installed, the one unpacked last
overwrote the other's files, and uninstalling either breaks the module, so that case is reported as a problem with
its fix (docs/caches.md, "FAISS on the GPU").
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

#: The fix printed when more than one FAISS distribution is installed.
GPU_INSTALL = 'pip uninstall -y faiss-cpu faiss-gpu && pip install "faiss-gpu>=1.14.3"'


@dataclass(frozen=True)
class FaissBuild:
    """The installed FAISS: module version, the distributions that provide it, GPUs it sees, and any problem."""

    version: str | None
    distributions: tuple[str, ...]
    gpus: int
    problem: str | None = None

    @property
    def device(self) -> str:
        return f"{self.gpus} GPU(s)" if self.gpus else "CPU"

    def describe(self) -> str:
        """One line for the logs, e.g. ``faiss 1.15.1 (faiss-cpu), searching on CPU``."""
        origin = ", ".join(self.distributions) or "unknown distribution"
        line = f"faiss {self.version} ({origin}), searching on {self.device}"
        return f"{line}; WARNING: {self.problem}" if self.problem else line


def faiss_distributions() -> tuple[str, ...]:
    """Installed distributions that ship the top-level ``faiss`` module (normally exactly one)."""
    return tuple(sorted(set(metadata.packages_distributions().get("faiss", []))))


def faiss_build_info() -> FaissBuild:
    """The FAISS build in use: version, distributions providing ``faiss``, GPU count (0 for a CPU build)."""
    distributions = faiss_distributions()
    try:
        import faiss
    except ImportError as err:
        return FaissBuild(None, distributions, 0, f"faiss cannot be imported ({err}); pip install faiss-cpu")
    gpus = int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    problem = None
    if len(distributions) > 1:
        problem = (
            f"{' and '.join(distributions)} are all installed and share the `faiss` module (the last one installed "
            f"wins, and removing either breaks it); keep one: {GPU_INSTALL} (or pip install faiss-cpu for CPU only)"
        )
    elif any("gpu" in name for name in distributions) and not gpus:
        problem = "a GPU build of FAISS, but it sees no GPU (check the CUDA driver and CUDA_VISIBLE_DEVICES)"
    return FaissBuild(getattr(faiss, "__version__", None), distributions, gpus, problem)

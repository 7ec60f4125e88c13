"""faiss_build_info: which FAISS build the prototypes stage uses, and the faiss-cpu + faiss-gpu clash (item 11)."""

from __future__ import annotations

from importlib import metadata

import faiss

import clips4.faiss_utils as faiss_utils


def test_reports_the_installed_cpu_build():
    build = faiss_utils.faiss_build_info()
    assert build.version == faiss.__version__ and "faiss-cpu" in build.distributions
    assert build.gpus == getattr(faiss, "get_num_gpus", lambda: 0)()
    assert build.describe().startswith(f"faiss {faiss.__version__} (faiss-cpu), searching on")


def test_both_cpu_and_gpu_distributions_installed_is_a_problem_with_its_fix(monkeypatch):
    real = metadata.packages_distributions()
    monkeypatch.setattr(metadata, "packages_distributions", lambda: {**real, "faiss": ["faiss-cpu", "faiss-gpu"]})
    build = faiss_utils.faiss_build_info()
    assert build.distributions == ("faiss-cpu", "faiss-gpu")
    assert "share the `faiss` module" in build.problem and "pip uninstall -y faiss-cpu faiss-gpu" in build.problem
    assert "WARNING" in build.describe()


def test_a_gpu_build_that_sees_no_gpu_is_reported(monkeypatch):
    monkeypatch.setattr(faiss_utils, "faiss_distributions", lambda: ("faiss-gpu",))
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0, raising=False)
    assert "sees no GPU" in faiss_utils.faiss_build_info().problem

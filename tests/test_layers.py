"""The layering contract (pyproject.toml's [tool.importlinter], run by `lint-imports` in .ci/run) holds on the
package, and breaks when a forbidden import is added: a copy of the package where the scorer imports a stage
runner, and one where training imports evaluation, are both refused, naming the contract and the import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _lint(root: Path) -> subprocess.CompletedProcess:
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    lint = Path(sys.executable).parent / "lint-imports"
    return subprocess.run(
        [str(lint), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_library_module_is_under_the_first_contract() -> None:
    """A new top-level module or package must be named in the contract, or it could import a runner unchecked."""
    import tomllib

    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    named = set(contracts[0]["source_modules"])
    top = {
        f"clips4.{p.stem}" for p in (REPO / "clips4").iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()
    }
    assert top - {"clips4.__init__", "clips4.cli", "clips4.stages"} == named


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "clips4", tmp_path / "clips4", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_package_keeps_every_contract(package_copy: Path) -> None:
    result = _lint(package_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("eval/scoring.py", "import clips4.stages.train", "The library never imports a stage runner or the CLI"),
        ("train/loop.py", "import clips4.eval.scoring", "Evaluation and training never import each other"),
        ("data/images.py", "import torch", "Dataset readers know no model"),
        ("stages/evaluate.py", "import clips4.stages.train", "No stage runner imports another runner"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(package_copy: Path, module: str, line: str, contract: str) -> None:
    path = package_copy / "clips4" / module
    path.write_text(path.read_text() + f"\n{line}  # added by the test\n")
    result = _lint(package_copy)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken and module.replace("/", ".").removesuffix(".py") in broken

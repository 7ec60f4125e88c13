"""The hermetic guard itself (tests/hermetic.py): each test runs in an empty folder of its own, and opening one of
the repository's outputs is seen (and would fail the test)."""

from __future__ import annotations

from pathlib import Path

from tests.hermetic import REPO, guarded_opens


def test_each_test_starts_in_an_empty_folder_outside_the_repository() -> None:
    here = Path.cwd().resolve()
    assert not here.is_relative_to(REPO) and list(here.iterdir()) == []
    assert not Path("models/clips4.pt").exists() and not Path("params.yaml").exists()


def test_opening_a_repository_output_is_caught() -> None:
    tracked = REPO / "models" / "README.md"  # in git, so present in every clone
    tracked.read_text()
    assert guarded_opens() == [str(tracked)]  # emptied: this test itself passes
    (REPO / "pyproject.toml").read_text()  # not guarded
    assert guarded_opens() == []

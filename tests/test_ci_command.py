"""`.ci/run` runs exactly the README's second set-up command (the test command), so CI tests what users run."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Set-up: two commands", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2 and ci[-1] == commands[1]
    assert "apt-get install -y chromium" in commands[1] and "pip install -e '.[dev]'" in commands[1]

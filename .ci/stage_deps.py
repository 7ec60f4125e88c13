"""Add to dvc.yaml's stages the clips4 modules in the static import closure of each stage's runner, and drop the
declared modules that no longer exist.

    python .ci/stage_deps.py          # rewrite dvc.yaml in place
    python .ci/stage_deps.py --check  # exit 1 if a stage misses a module of its closure

The closure (grimp, import-linter's graph, function-level imports included) is a superset of what a run loads, which
tests/test_stage_deps.py checks from the other side: every module a stage's command loads is declared.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
#: cmd's second word -> runner module.
RUNNERS = {
    "synth": "synth",
    "data": "dataset_manifest",
    "clip-pretrain": "clip_pretrain",
    "contours": "contours",
    "ucm": "ucm",
    "clip-dense": "clip_dense",
    "segments": "segments",
    "prototypes": "prototypes",
    "train": "train",
    "evaluate": "evaluate",
    "report": "report",
}
#: The CLI and the package root are loaded by every command; a change there reruns nothing by design.
#: params.py and errors.py too (as tests/test_stage_deps.py): params are tracked by their values (``params:``).
EXEMPT = {"clips4", "clips4.cli", "clips4.stages", "clips4.params", "clips4.errors"}


def closure(graph: grimp.ImportGraph, runner: str) -> list[str]:
    modules = {runner} | graph.find_upstream_modules(runner)
    files = []
    for module in sorted(modules):
        if not module.startswith("clips4") or module in EXEMPT:
            continue
        path = REPO / Path(*module.split("."))
        file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if file.is_file() and not (file.name == "__init__.py" and file.stat().st_size == 0):
            files.append(str(file.relative_to(REPO)))
    return files


def main() -> int:
    graph = grimp.build_graph("clips4", cache_dir=None)
    text = (REPO / "dvc.yaml").read_text()
    out, changed, stage_cmd = [], [], None
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        match = re.match(r"\s+cmd: clips4 (\S+)", line)
        if match:
            stage_cmd = RUNNERS[match.group(1)]
        if line.strip() == "deps:" and stage_cmd is not None:
            indent = line[: len(line) - len(line.lstrip())] + "  "
            out.append(line)
            i += 1
            kept, declared = [], []
            while i < len(lines) and lines[i].startswith(indent + "- "):
                dep = lines[i].strip()[2:]
                is_code = dep.startswith("clips4/") and dep.endswith(".py")
                (declared if is_code else kept).append(dep)
                i += 1
            folders = [d for d in kept if d.startswith("clips4/")]
            found = [
                f
                for f in closure(graph, f"clips4.stages.{stage_cmd}")
                if not any(f.startswith(folder.rstrip("/") + "/") for folder in folders)
            ]
            # Declared files that still exist stay: a module loaded through importlib is not in the static graph.
            wanted = sorted(set(found) | {d for d in declared if (REPO / d).is_file()})
            if not set(found) <= set(declared) or len(wanted) != len(declared):
                changed.append(stage_cmd)
            out.extend(f"{indent}- {dep}\n" for dep in kept + wanted)
            stage_cmd = None
            continue
        out.append(line)
        i += 1
    if "--check" in sys.argv:
        if changed:
            print("dvc.yaml: code deps differ from the import closure for: " + ", ".join(changed))
            return 1
        return 0
    (REPO / "dvc.yaml").write_text("".join(out))
    print("rewritten:", ", ".join(changed) or "nothing")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The layering is a checked contract: `lint-imports` (run by `make test`) passes on the tree and fails on a
copy of it with a planted violation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("asset3d", "flows", "tasks", "training", "migrations", "meshing", "intake", "storage", "triposr")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300)


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    for name in PACKAGES:
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors", "*.pt"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_tree_keeps_every_contract() -> None:
    proc = _lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_a_planted_violation_fails_the_check(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    assert _lint_imports(root).returncode == 0  # the copy itself is clean
    (root / "triposr" / "planted.py").write_text("import meshing.review  # the model library importing the application\n")
    (root / "storage" / "planted.py").write_text("import prefect  # Prefect outside tasks/ and flows/\n")
    (root / "asset3d" / "pipeline" / "planted.py").write_text("import asset3d.cli  # the core importing the command line\n")
    proc = _lint_imports(root)
    assert proc.returncode != 0
    out = proc.stdout
    assert "triposr.planted -> meshing.review" in out
    assert "storage.planted -> prefect" in out
    assert "asset3d.pipeline.planted -> asset3d.cli" in out

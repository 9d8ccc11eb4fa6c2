"""Fixtures of the intake tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from intake_helpers import IOU_TABLE


@pytest.fixture(scope="session")
def photos(shared: Path) -> Path:
    """The shared photos folder (``../shared/photos``)."""
    path = shared / "photos"
    if not path.is_dir():
        pytest.fail(f"shared photos folder missing: {path}")
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the ground-truth IoU table after the run (it goes into the issue note)."""
    if not IOU_TABLE:
        return
    objects = sorted({k[0] for k in IOU_TABLE})
    columns = sorted({(k[1], k[2]) for k in IOU_TABLE})
    tr = terminalreporter
    tr.section("plain-backdrop mask IoU against the cut-out alpha")
    tr.write_line("| object | " + " | ".join(f"{b} {e}" for b, e in columns) + " |")
    tr.write_line("|---" * (len(columns) + 1) + "|")
    for obj in objects:
        cells = [f"{IOU_TABLE[(obj, b, e)]:.4f}" if (obj, b, e) in IOU_TABLE else "-" for b, e in columns]
        tr.write_line(f"| {obj} | " + " | ".join(cells) + " |")
    tr.write_line(f"minimum {min(IOU_TABLE.values()):.4f} over {len(IOU_TABLE)} photos")

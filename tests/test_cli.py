"""The command line lists its subcommands and each one explains itself."""

from __future__ import annotations

import subprocess
import sys

import pytest

from asset3d.cli import COMMAND_MODULES, build_parser, main


def _subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    names = _subcommands()
    assert len(names) == len(COMMAND_MODULES)  # one module registers one subcommand
    for name in names:
        assert name in out


@pytest.mark.parametrize("name", _subcommands())
def test_each_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert "usage: asset3d " + name in capsys.readouterr().out


def test_console_script_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "asset3d", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "commands" in proc.stdout


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: asset3d" in capsys.readouterr().out

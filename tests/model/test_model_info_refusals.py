"""`asset3d model info` on model files it must refuse: one line naming the file and the cause, exit 2, no
traceback (``--debug`` shows it), and nothing the file asks for is ever run."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from asset3d.cli import main


class _RunsCode:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch PWNED",))


def _pickle_that_runs_code(folder: Path) -> None:
    torch.save({"w": _RunsCode()}, folder / "model.ckpt")


def _text(folder: Path) -> None:
    (folder / "model.ckpt").write_text("not a checkpoint\n")


def _empty(folder: Path) -> None:
    (folder / "model.ckpt").write_bytes(b"")


def _truncated(folder: Path, state: dict[str, torch.Tensor]) -> None:
    torch.save(state, folder / "model.ckpt")
    data = (folder / "model.ckpt").read_bytes()
    (folder / "model.ckpt").write_bytes(data[: len(data) // 2])


def _not_tensors(folder: Path) -> None:
    torch.save({"a": 1, "b": "two"}, folder / "model.ckpt")


def _other_model(folder: Path) -> None:
    torch.save({"foo": torch.zeros(2)}, folder / "model.ckpt")


def _bad_safetensors(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(b"\xff" * 64)


def _bad_config(folder: Path) -> None:
    (folder / "config.yaml").write_text("backbone_cls: [unclosed\n")


CASES: dict[str, tuple[Callable[..., None], str]] = {
    "unsafe-pickle": (_pickle_that_runs_code, "model.ckpt: refused: loading it would run code (posix.system)"),
    "text-file": (_text, "model.ckpt: not a PyTorch checkpoint"),
    "empty": (_empty, "model.ckpt: empty file, not a checkpoint"),
    "truncated": (_truncated, "model.ckpt: a damaged checkpoint"),
    "not-tensors": (_not_tensors, "model.ckpt: refused: it holds other objects than a state dict of tensors"),
    "other-model": (_other_model, "model.ckpt: the weights do not fit config.yaml"),
    "bad-safetensors": (_bad_safetensors, "model.safetensors: not a valid safetensors file"),
    "bad-config": (_bad_config, "config.yaml: not a usable model config"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_model_info_refuses_in_one_line(
    case: str, tmp_path: Path, tiny_fixture: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where the unsafe pickle would leave its mark
    monkeypatch.delenv("ASSET3D_DEBUG", raising=False)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(tiny_fixture["config"]))
    make, expected = CASES[case]
    if case == "truncated":
        make(folder, tiny_fixture["state_dict"])
    else:
        if case == "bad-config":
            torch.save(tiny_fixture["state_dict"], folder / "model.ckpt")
        make(folder)
    argv = ["model", "info", str(folder), "--device", "cpu"]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert err.startswith(f"asset3d model info: {folder}/") and expected in err, err
    assert "Traceback" not in err and not (tmp_path / "PWNED").exists()
    if case == "unsafe-pickle":  # --debug: the traceback too, the same line and exit code
        assert main(["--debug", *argv]) == 2
        debug = capsys.readouterr().err
        assert "Traceback" in debug and debug.rstrip().endswith(err.rstrip())
        assert not (tmp_path / "PWNED").exists()

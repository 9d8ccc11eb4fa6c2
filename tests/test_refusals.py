"""Mistakes are refused before work starts: exit 1, one line naming the item and the cause, no traceback,
and no Prefect server (Prefect is not even imported) or model started. ``--debug`` shows the traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from loopback import unused_port

#: Runs the CLI in a fresh interpreter and reports whether Prefect or torch got imported.
_PROBE = (
    "import json, sys\n"
    "from asset3d.cli import main\n"
    "rc = main(sys.argv[1:])\n"
    "print(json.dumps({'rc': rc, 'prefect': 'prefect' in sys.modules, 'torch': 'torch' in sys.modules}))\n"
)


def _asset3d(args: list[str], env: Mapping[str, str], cwd: Path) -> tuple[dict[str, object], str, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - t0
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr, elapsed


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str]:
    """No Prefect server configured, no AWS credentials anywhere, no instance metadata to ask."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PREFECT_", "ASSET3D_"))}
    (tmp_path / "home").mkdir()
    env.update(
        HOME=str(tmp_path / "home"), PREFECT_HOME=str(tmp_path / "prefect-home"), AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true",
    )  # fmt: skip
    return env


def _refused(args: list[str], env: Mapping[str, str], cwd: Path, *expect: str) -> float:
    out, err, elapsed = _asset3d(args, env, cwd)
    lines = [line for line in err.splitlines() if line.strip()]
    assert out["rc"] == 1, err
    assert len(lines) == 1, err  # one line
    assert "Traceback" not in err and "temporary server" not in err.lower()
    assert out["prefect"] is False and out["torch"] is False  # no Prefect server, no model: nothing started
    for text in expect:
        assert text in lines[0], lines[0]
    return elapsed


def test_malformed_store_uris_and_local_sources(bare_env: dict[str, str], tmp_path: Path) -> None:
    a_file = tmp_path / "photo.png"
    a_file.write_bytes(b"x")
    _refused(["run-batch", "s3://"], bare_env, tmp_path, "s3://", "no bucket name")
    _refused(["run-batch", "s3://Bad_Bucket/x"], bare_env, tmp_path, "not a valid S3 bucket name")
    _refused(["run-batch", "ftp://host/photos"], bare_env, tmp_path, "unsupported scheme 'ftp'")
    _refused(["run-batch", str(tmp_path / "no-such-folder")], bare_env, tmp_path, "no-such-folder", "no such folder")
    _refused(["run-batch", str(a_file)], bare_env, tmp_path, "photo.png", "not a folder")
    _refused(["nightly", "--source", str(tmp_path / "typo")], bare_env, tmp_path, "typo", "no such folder")
    _refused(["run-batch", str(tmp_path), "--batch-size", "0"], bare_env, tmp_path, "batch_size")
    _refused(["convert", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")], bare_env, tmp_path, "missing.png: no such file")


def test_s3_without_credentials_or_endpoint_or_bucket(bare_env: dict[str, str], tmp_path: Path, s3_endpoint: str) -> None:
    _refused(["run-batch", "s3://shop-photos/incoming"], bare_env, tmp_path, "s3://shop-photos/incoming", "no AWS credentials")
    fake = {**bare_env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    dead = {**fake, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{unused_port()}"}
    _refused(["run-batch", "s3://shop-photos/incoming"], dead, tmp_path, "endpoint unreachable")
    moto = {**fake, "AWS_ENDPOINT_URL": s3_endpoint}
    _refused(["run-batch", "s3://no-such-bucket-here/incoming"], moto, tmp_path, "no-such-bucket-here", "does not exist")


@pytest.mark.parametrize(
    "args",
    [
        ["deploy"], ["emit-batch", "s3://shop-photos/incoming/batch-1/"], ["watch", "s3://shop-photos/incoming", "--once"],
        ["listen", "--queue", "https://sqs.eu-west-1.amazonaws.com/123456789012/photos", "--once"], ["runs", "reconcile"],
    ],  # fmt: skip
)
def test_server_commands_need_a_prefect_server(bare_env: dict[str, str], tmp_path: Path, args: list[str]) -> None:
    _refused(args, bare_env, tmp_path, "PREFECT_API_URL")


def test_debug_shows_the_traceback(bare_env: dict[str, str], tmp_path: Path) -> None:
    out, err, _ = _asset3d(["--debug", "run-batch", "s3://"], bare_env, tmp_path)
    assert out["rc"] == 1 and "Traceback" in err and "no bucket name" in err.splitlines()[-1]
    out, err, _ = _asset3d(["run-batch", "s3://"], {**bare_env, "ASSET3D_DEBUG": "1"}, tmp_path)
    assert out["rc"] == 1 and "Traceback" in err

"""Fault suite: the run is killed with SIGKILL, then `asset3d gc` and a re-run.

* SIGKILL at four points of a photo's way, chosen by the S3 request the loopback proxy sees from
  ``asset3d run-batch`` (S3 source and destination behind `S3FaultProxy`, a PostgreSQL catalogue with a
  password, a shared Prefect server): after reconstruct (the first PUT of a ``model.glb``, before it is
  forwarded: nothing written), mid-publish (the third PUT into the destination: some files, no manifest),
  after publish before record (once the PUT of ``metrics.json``, the last staged file, reached S3: every
  file, no catalogue row), after record (the PUT of ``manifest.json``, before it is forwarded: the row, no
  manifest). At the kill nothing is half-visible; gc closes the dead run and removes the staged files no
  row names; the re-run publishes every photo exactly once; a second gc finds nothing to do.
* The leaked-server check: ``asset3d run-batch`` without ``PREFECT_API_URL`` killed mid-flow takes its
  temporary Prefect server with it (port closed, process gone within seconds); gc closes its run row and
  removes the server's folder; the re-run completes.
* Two runs starting together, each with its temporary server: both complete; a batch's reconcile closes a
  row its server does not know only when that row's process is gone (it may be another command's live run).

Every test asserts the suite's invariants (`reliability_helpers`): nothing lost, nothing half-visible,
counts add up, no secret (the catalogue password, the AWS secret key) in anything captured.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pipeline_helpers import KillProcess, S3FaultProxy, upload_photos
from reliability_helpers import assert_consistent, assert_counts, assert_no_secret, assert_published_once
from sqlalchemy.engine import make_url

from storage import open_store
from storage.catalogue import Catalogue, RunStatus

pytestmark = pytest.mark.reliability

PG_SECRET = "kill-test-Pa55word"
AWS_SECRET = "kill-test-aws-secret-key-0123456789"
PHOTOS = ("chair.png", "robot.png")
SERVER_LINE = re.compile(r"temporary Prefect server (http://127\.0\.0\.1:(\d+)/api) \(pid (\d+);")


def _with_password(url: str) -> str:
    return make_url(url).set(password=PG_SECRET).render_as_string(hide_password=False)  # trust auth ignores it


def _asset3d(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "asset3d", *args], env=env, capture_output=True, text=True, timeout=timeout)


def _gc(dest: str, env: dict[str, str]) -> tuple[dict[str, Any], str]:
    done = _asset3d(["gc", "--grace-hours", "0", "--dest", dest, "--json"], env, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stdout + done.stderr


def _rerun(argv: list[str], env: dict[str, str], photos: int) -> tuple[dict[str, Any], str]:
    done = _asset3d(argv, env)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert_counts(report, photos=photos)
    assert {r["status"] for r in report["photos"]} <= {"published", "skipped"}, report["photos"]
    return report, done.stdout + done.stderr


def _wait_for(what: str, probe: Callable[[], Any], timeout: float, every: float = 0.05) -> float:
    """Seconds until ``probe()`` was true."""
    t0 = time.monotonic()
    while not probe():
        assert time.monotonic() - t0 < timeout, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(every)
    return time.monotonic() - t0


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")  # a zombie has released everything; its reaper is not this test


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


# -- SIGKILL at four points, then gc and a re-run ------------------------------------------------------------


def _kill_rule(point: str, bucket: str, kill: KillProcess) -> Callable[[str, str, int], Any]:
    into_dest = f"/{bucket}/assets/"
    puts = 0

    def rule(method: str, path: str, nth: int) -> Any:
        nonlocal puts
        if kill.fired:
            return kill  # the process is dead: nothing more reaches S3
        if method != "PUT" or not path.startswith(into_dest):
            return None
        puts += 1
        if point == "after-reconstruct" and path.endswith("/model.glb"):
            return kill
        if point == "mid-publish" and puts == 3:
            return kill
        if point == "after-publish-before-record" and path.endswith("/metrics.json"):
            return kill
        if point == "after-record" and path.endswith("/manifest.json"):
            return kill
        return None

    return rule


def _killed_folder(kill: KillProcess, bucket: str) -> str:
    assert kill.at is not None
    key = kill.at[1].removeprefix(f"/{bucket}/assets/")
    return "/".join(key.split("/")[:2])  # SKU/conversion_key


@pytest.mark.slow
@pytest.mark.parametrize("point", ["after-reconstruct", "mid-publish", "after-publish-before-record", "after-record"])
def test_sigkill_then_gc_then_rerun(
    point: str, s3_endpoint: str, s3: Any, bucket: str, photo_bytes: dict[str, bytes], config_file: Path,
    postgres_url: str, prefect_server: dict[str, Any],
) -> None:  # fmt: skip
    upload_photos(s3, bucket, {n: photo_bytes[n] for n in PHOTOS})
    uris = [f"s3://{bucket}/incoming/SKU-{n.split('.')[0]}/{n}" for n in PHOTOS]
    source, dest, url = f"s3://{bucket}/incoming", f"s3://{bucket}/assets", _with_password(postgres_url)
    kill = KillProcess(before=point != "after-publish-before-record")
    proxy = S3FaultProxy(s3_endpoint, _kill_rule(point, bucket, kill)).start()
    env = {
        **os.environ, "ASSET3D_CATALOGUE_URL": url, "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_ENDPOINT_URL": proxy.url, "PREFECT_API_URL": prefect_server["url"],
    }  # fmt: skip
    argv = ["run-batch", source, "--dest", dest, "--config", str(config_file), "--json"]
    try:
        proc = subprocess.Popen([sys.executable, "-m", "asset3d", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        kill.pid = proc.pid
        out, err = proc.communicate(timeout=600)
    finally:
        proxy.stop()
    assert kill.fired and proc.returncode == -signal.SIGKILL, (proc.returncode, err[-3000:])
    texts = [out, err]

    # at the kill: nothing half-visible, and the photo the kill hit is where the point says
    assert_consistent(dest, url)
    store = open_store(dest)
    folder = _killed_folder(kill, bucket)
    keys = {i.key.removeprefix(folder + "/") for i in store.list(folder + "/")}
    cat = Catalogue(url)
    try:
        recorded = cat.known_conversion_keys([folder.split("/")[1]])
        assert [r.status for r in cat.runs_in_progress()] == [RunStatus.running]  # the killed run's row
    finally:
        cat.close()
    assert "manifest.json" not in keys
    if point == "after-reconstruct":
        assert not list(store.list("")) and not recorded  # nothing written anywhere
    elif point == "mid-publish":
        assert 1 <= len(keys) and "metrics.json" not in keys and not recorded
    elif point == "after-publish-before-record":
        assert {"model.glb", "metrics.json"} <= keys and not recorded
    else:
        assert {"model.glb", "metrics.json"} <= keys and recorded

    # gc: the dead run closed, the staged files no row names removed (with the grace period at 0)
    direct = {**env, "AWS_ENDPOINT_URL": s3_endpoint}
    swept, text = _gc(dest, direct)
    texts.append(text)
    assert len(swept["runs_closed"]) == 1
    removed = {f["uri"].removeprefix(f"{dest}/") for f in swept["folders_removed"]}
    assert (folder in removed) == (point in ("mid-publish", "after-publish-before-record")), swept
    assert_consistent(dest, url)

    # the re-run: every photo published exactly once, with its row
    report, text = _rerun(argv, direct, photos=len(PHOTOS))
    texts.append(text)
    assert_published_once(dest, url, uris)
    again, text = _gc(dest, direct)  # nothing left to clean
    texts.append(text)
    assert not again["runs_closed"] and not again["folders_removed"], again
    print(
        f"\n{point}: killed at {kill.at[0]} {kill.at[1].rsplit('/', 1)[-1]} with {len(keys)} files staged; gc closed "
        f"{len(swept['runs_closed'])} run, removed {swept['objects_removed']} objects; re-run: {report['counts']}"
    )
    assert_no_secret([PG_SECRET, AWS_SECRET], texts=texts, catalogue_url=postgres_url, dest=dest)


# -- temporary Prefect servers ---------------------------------------------------------------------------------


def _photo_tree(root: Path, photo_bytes: dict[str, bytes], names: tuple[str, ...]) -> list[str]:
    uris = []
    for name in names:
        folder = root / f"SKU-{name.split('.')[0]}"
        folder.mkdir(parents=True)
        (folder / name).write_bytes(photo_bytes[name])
        uris.append((folder / name).as_uri())
    return uris


def _local_env(tmp_path: Path, url: str) -> dict[str, str]:
    """A command line as a user runs it: no Prefect server configured, a home and a temporary folder of its own."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {
        **os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "TMPDIR": str(tmp_path / "tmp"),
        "ASSET3D_CATALOGUE_URL": url, "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "PREFECT_LOGGING_LEVEL": "INFO",
    }  # fmt: skip
    env.pop("PREFECT_API_URL", None)
    return env


@pytest.mark.slow
def test_killed_run_takes_its_temporary_server_with_it(
    tmp_path: Path, photo_bytes: dict[str, bytes], config_file: Path, postgres_url: str
) -> None:
    uris = _photo_tree(tmp_path / "photos", photo_bytes, PHOTOS)
    dest, url = str(tmp_path / "assets"), _with_password(postgres_url)
    env = _local_env(tmp_path, url)
    argv = ["run-batch", str(tmp_path / "photos"), "--dest", dest, "--config", str(config_file), "--json"]
    log = tmp_path / "killed.err"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "asset3d", *argv], env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        # mid-flow: the run row is open and the photos are planned
        _wait_for("the batch to start converting", lambda: " to convert, " in log.read_text() or proc.poll() is not None, 300)
        found = SERVER_LINE.search(log.read_text())
        assert found and proc.poll() is None, log.read_text()[-3000:]
        port, server = int(found.group(2)), int(found.group(3))
        assert _ppid(server) == proc.pid and not _port_closed(port)  # the command's own child, listening
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        closed_s = _wait_for(f"port {port} to close", lambda: _port_closed(port), timeout=5)
        gone_s = _wait_for(f"server process {server} to go", lambda: _process_gone(server), timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
    print(f"\nSIGKILL of the command: server port {port} closed after {closed_s:.2f} s, process {server} gone after {gone_s:.2f} s")
    homes = list((tmp_path / "tmp").glob("asset3d-tempserver-*"))
    assert len(homes) == 1  # the killed command could not remove its server's folder
    database = (homes[0] / "prefect.db").read_bytes()
    assert PG_SECRET.encode() not in database and AWS_SECRET.encode() not in database  # flow-run parameters included
    assert_consistent(dest, url)

    swept, text = _gc(dest, env)
    assert len(swept["runs_closed"]) == 1 and swept["server_folders_removed"] == [str(homes[0])]
    assert not homes[0].exists()
    report, rerun_text = _rerun(argv, env, photos=len(PHOTOS))
    assert_published_once(dest, url, uris)
    assert not list((tmp_path / "tmp").glob("asset3d-tempserver-*"))  # the re-run's server stopped and went
    assert_no_secret([PG_SECRET, AWS_SECRET], texts=[log.read_text(), text, rerun_text], catalogue_url=postgres_url, dest=dest)


@pytest.mark.slow
def test_two_runs_starting_together_both_complete(
    tmp_path: Path, photo_bytes: dict[str, bytes], config_file: Path, postgres_url: str
) -> None:
    """Two commands started at the same moment, same user, same PREFECT_HOME and catalogue: each starts its
    own server (its own port and database), neither waits on the other's start-up, both complete."""
    url = _with_password(postgres_url)
    env = _local_env(tmp_path, url)
    dest = str(tmp_path / "assets")
    uris, procs = [], []
    for name in PHOTOS:
        root = tmp_path / f"batch-{name.split('.')[0]}"
        uris += _photo_tree(root, photo_bytes, (name,))
        argv = [sys.executable, "-m", "asset3d", "run-batch", str(root), "--dest", dest, "--config", str(config_file), "--json"]
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    servers = []
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert_counts(json.loads(out), photos=1)
        assert json.loads(out)["counts"]["published"] == 1
        found = SERVER_LINE.search(err)
        assert found, err[-2000:]
        servers.append((int(found.group(2)), int(found.group(3))))
    assert servers[0][0] != servers[1][0]  # two servers, two ports
    for port, pid in servers:  # both stopped with their command
        assert _port_closed(port) and _process_gone(pid)
    assert_published_once(dest, url, uris)
    cat = Catalogue(url)
    try:
        runs = cat.recent_runs()
        assert len(runs) == 2 and {r.status for r in runs} == {RunStatus.completed}
    finally:
        cat.close()
    assert not list((tmp_path / "tmp").glob("asset3d-tempserver-*"))
    assert_no_secret([PG_SECRET, AWS_SECRET], texts=[o + e for o, e in outs], catalogue_url=postgres_url, dest=dest)


def test_reconcile_closes_unknown_rows_only_when_their_process_is_gone(api: str, catalogue_url: str) -> None:
    """Rows whose flow run this server never saw: a live process here (another command's temporary server),
    another host (another server), and a dead process here (a killed command): only the last is closed."""
    import uuid

    from flows.runs import reconcile

    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    cat = Catalogue(catalogue_url)
    try:
        args = {"model_id": "m", "weights_sha256": "0" * 64, "pipeline_version": "x"}
        live = cat.start_run(**args, flow_run_id=str(uuid.uuid4()))  # this process: alive
        elsewhere = cat.start_run(**args, flow_run_id=str(uuid.uuid4()), host="another-host", pid=dead_pid.pid)
        killed = cat.start_run(**args, flow_run_id=str(uuid.uuid4()), pid=dead_pid.pid)
        closed = reconcile(cat)
        assert [c.run_id for c in closed] == [killed.id] and "is gone" in closed[0].because
        assert {r.id for r in cat.runs_in_progress()} == {live.id, elsewhere.id}
        assert cat.get_run(killed.id).status is RunStatus.failed
    finally:
        cat.close()
    assert_no_secret([PG_SECRET], texts=[c.because for c in closed], catalogue_url=catalogue_url)

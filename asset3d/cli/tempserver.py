"""A temporary Prefect server that this command owns: it dies with the command, SIGKILL included.

``run-batch``, ``nightly`` and ``demo`` run their flow in this process; without a configured server
(``PREFECT_API_URL``, or the active profile's) Prefect would start its own "ephemeral" server, a uvicorn
subprocess that outlives a killed command (re-parented to PID 1, still listening, 200+ MB) and that shares
``PREFECT_HOME``'s database with every other command starting at the same moment. Instead,
`ensure_prefect_server` starts::

    prefect server start --host 127.0.0.1 --port FREE --no-ui

* in a session of its own (a Ctrl-C at the terminal reaches this command, which stops the server in order),
  with the parent-death signal set to SIGKILL in the child (Linux ``prctl(PR_SET_PDEATHSIG)``): when this
  process dies, however it dies, the kernel kills the server;
* with a home and a SQLite database of its own in a new temporary folder, so two commands starting together
  never share or race a server; the server's environment carries no ``ASSET3D_*`` or ``AWS_*`` variable;
* awaited on ``/api/health`` (generous timeout: 180 s), with a check that the answer comes from this server's
  own listening socket (two commands picking the same free port);
* pointed at through ``PREFECT_API_URL`` in this process's environment, set before Prefect is imported (it
  reads its settings once, on import); the flow's result cache stays in the command's own ``PREFECT_HOME``;
* stopped when the command exits (SIGTERM to its session, SIGKILL after 10 s) and its folder removed.

Nothing here imports Prefect: the server is a subprocess.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

#: Seconds to wait for ``/api/health`` (a cold start on a loaded 2-core machine takes 15-30 s).
STARTUP_TIMEOUT_S = 180.0
#: Seconds between SIGTERM and SIGKILL when the server is stopped.
STOP_GRACE_S = 10.0
#: The temporary folders' prefix (``asset3d gc`` removes those whose owner process is gone).
HOME_PREFIX = "asset3d-tempserver-"
#: The file in a server's folder that names the command that owns it (``pid host``).
OWNER_FILE = "owner"

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
#: Environment variables the server does not get (the command's settings and credentials, another server).
_NOT_FOR_THE_SERVER = ("ASSET3D_", "AWS_", "PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE")


class ServerNotStarted(RuntimeError):
    """The temporary server did not answer in time, or exited (one line, with the tail of its log)."""

    reason = "prefect_server_not_started"
    transient = False


@dataclass
class TemporaryServer:
    """A running temporary server: its process, API URL and folder."""

    process: subprocess.Popen[bytes]
    port: int
    home: Path

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM to the server's session, SIGKILL after ``grace_s``; then its folder goes."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.home, ignore_errors=True)


def configured_api_url() -> str | None:
    """The Prefect server this process is configured for: ``PREFECT_API_URL``, else the active profile's
    (read without importing Prefect); None when there is none and Prefect would start an ephemeral one."""
    from asset3d.cli.preflight import Refused, prefect_api_url

    try:
        return prefect_api_url()
    except Refused:
        return None


def needs_temporary_server() -> bool:
    """True when a flow run here would have no server: none configured, and Prefect not loaded yet.

    Once Prefect is imported its settings are fixed for the process (a test harness, or a program that
    embeds the command, already chose a server): then nothing is started.
    """
    return configured_api_url() is None and "prefect" not in sys.modules


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: SIGKILL when the parent dies (Linux); exit at once if it already has."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died between fork and prctl
        os._exit(1)


def _server_environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_FOR_THE_SERVER)}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_LOGGING_LEVEL="WARNING",
        PREFECT_UI_ENABLED="false",
    )
    return env


def _prefect_executable() -> list[str]:
    """The ``prefect`` command of this interpreter's environment."""
    beside = Path(sys.executable).parent / "prefect"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("prefect")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from prefect.cli import app; sys.exit(app())"]


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on 127.0.0.1:``port`` (Linux ``/proc/net/tcp``)."""
    out = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                out.add(inode)
    return out


def _owns_port(pid: int, port: int) -> bool:
    """True when process ``pid`` holds the socket listening on ``port`` (always True where /proc is missing)."""
    if not Path("/proc/net/tcp").exists():
        return True
    try:
        listening = _listening_inodes(port)
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:[") and target[8:-1] in listening:
                return True
    return False


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _log_tail(home: Path, lines: int = 5) -> str:
    try:
        text = (home / "server.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def start_server(*, timeout_s: float = STARTUP_TIMEOUT_S, attempts: int = 3) -> TemporaryServer:
    """Start a temporary server and wait until it answers; the caller stops it (`TemporaryServer.stop`).

    Raises
    ------
    ServerNotStarted
        No answer within ``timeout_s``, or the server exited (``attempts`` free ports tried).
    """
    deadline = time.monotonic() + timeout_s
    last = "no attempt"
    die_with_us = functools.partial(_die_with_parent, os.getpid())
    for _ in range(attempts):
        home = Path(tempfile.mkdtemp(prefix=HOME_PREFIX))
        (home / OWNER_FILE).write_text(f"{os.getpid()} {socket.gethostname()}\n")
        port = _free_port()
        with (home / "server.log").open("wb") as log:
            proc = subprocess.Popen(
                [*_prefect_executable(), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
                env=_server_environment(home), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_us,
            )  # fmt: skip
        server = TemporaryServer(proc, port, home)
        try:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    last = f"exited with code {proc.returncode}: {_log_tail(home)}"
                    break
                if _healthy(server.api_url) and _owns_port(proc.pid, port):
                    return server
                time.sleep(0.25)
            else:
                last = f"no answer on {server.api_url}/health within {timeout_s:.0f} s: {_log_tail(home)}"
        except BaseException:
            server.stop(grace_s=2.0)
            raise
        server.stop(grace_s=2.0)
        if time.monotonic() >= deadline:
            break
    raise ServerNotStarted(f"the temporary Prefect server did not start: {last}")


def ensure_prefect_server(command: str = "asset3d") -> str | None:
    """Give the flows that run in this process a Prefect server: the configured one, else a temporary one
    that this process owns until it exits. Call it before the flows are imported.

    Returns the temporary server's API URL, or None when none was started (a server is configured, or
    Prefect is already loaded). One line on stderr names the server. The server is stopped at interpreter
    exit (`atexit`): Prefect's log and event workers drain before that (threading's exit hooks) and need it.

    Raises
    ------
    ServerNotStarted
        The temporary server did not answer in time.
    """
    if not needs_temporary_server():
        return None
    server = start_server()
    atexit.register(server.stop)
    os.environ["PREFECT_API_URL"] = server.api_url
    print(f"{command}: temporary Prefect server {server.api_url} (pid {server.pid}; it stops with this command)", file=sys.stderr)
    return server.api_url


def orphaned_homes(root: Path | None = None) -> list[Path]:
    """Folders of temporary servers whose command is gone (killed before it could remove them), on this host."""
    from asset3d.pipeline.gc import process_gone

    out = []
    base = root or Path(tempfile.gettempdir())
    for home in sorted(base.glob(f"{HOME_PREFIX}*")):
        try:
            pid_text, host = (home / OWNER_FILE).read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if process_gone(host, pid):
            out.append(home)
    return out

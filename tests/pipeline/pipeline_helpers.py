"""Helpers of the pipeline suite: photos into a bucket, and a fault-injecting S3 proxy.

`S3FaultProxy` is a loopback HTTP proxy in front of the moto S3 server that answers chosen requests
with S3 errors. The pipeline's stores reach S3 through it (``AWS_ENDPOINT_URL`` pointing at the proxy); everything else
is forwarded unchanged. A rule sees ``(method, path, nth)`` -- ``nth`` counts earlier requests with the
same method and path -- and returns ``None`` to forward, or ``(status, code)`` to answer with that S3
error instead (``(503, "ServiceUnavailable")``, ``(403, "AccessDenied")``).

A rule may also return a `KillProcess`: the proxy SIGKILLs that process at this request, before forwarding
it (the request never reaches S3) or after S3 answered (the write happened; the client never hears back).

Or a broken connection: `Reset` (a TCP reset instead of an answer; S3 never sees the request), `Truncate`
(S3 answers, the client gets the headers and part of the body, then the connection closes) or `Stall` (no
byte of answer for ``seconds``, then the connection closes; S3 never sees the request). ``injected`` names
these by their ``label`` where an S3 error has its status.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import struct
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlsplit

from loopback import POSTGRES_URL  # noqa: F401  (re-exported for the server fixtures)


@dataclass
class KillProcess:
    """A rule's answer: SIGKILL process ``pid`` at this request, ``before`` forwarding it or after S3 answered.

    The test sets ``pid`` once it started the process; ``fired`` says the kill happened (and at which
    request: ``at``). Once it fired, requests the rule answers with it again are dropped unanswered."""

    before: bool = True
    pid: int | None = None
    fired: bool = False
    at: tuple[str, str] | None = None

    def fire(self, method: str, path: str) -> None:
        assert self.pid is not None, "KillProcess.pid not set"
        if not self.fired:
            self.fired, self.at = True, (method, path)
            os.kill(self.pid, signal.SIGKILL)


@dataclass(frozen=True)
class Reset:
    """A rule's answer: the connection is reset (TCP RST) once the request is read; S3 never sees it."""

    label: ClassVar[str] = "reset"


@dataclass(frozen=True)
class Truncate:
    """A rule's answer: forward the request, then send S3's headers and only ``keep`` of its body (at least
    one byte short of the ``Content-Length`` they announce) and close the connection."""

    keep: float = 0.5
    label: ClassVar[str] = "truncate"


@dataclass(frozen=True)
class Stall:
    """A rule's answer: not a byte of answer for ``seconds`` (or until the proxy stops), then close the
    connection; S3 never sees the request."""

    seconds: float = 60.0
    label: ClassVar[str] = "stall"


Rule = Callable[[str, str, int], "tuple[int, str] | KillProcess | Reset | Truncate | Stall | None"]
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


class _QuietServer(ThreadingHTTPServer):
    """A client killed mid-request resets its connections: not an error of the proxy."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class S3FaultProxy:
    """Start with `start`, point clients at `url`, read `seen` and `injected`, `stop` at the end."""

    def __init__(self, upstream: str, rule: Rule) -> None:
        up = urlsplit(upstream)
        self.upstream = (up.hostname or "127.0.0.1", up.port or 80)
        self.rule = rule
        self.seen: Counter[tuple[str, str]] = Counter()
        self.injected: list[tuple[str, str, int | str]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                with proxy._lock:
                    nth = proxy.seen[(self.command, path)]
                    proxy.seen[(self.command, path)] += 1
                    fault = proxy.rule(self.command, path, nth)
                    kill = fault if isinstance(fault, KillProcess) else None
                    drop = kill is not None and (kill.before or kill.fired)  # once fired, nothing more is forwarded
                    if kill is not None:
                        fault = None
                        if drop:
                            kill.fire(self.command, path)
                    elif fault is not None:
                        proxy.injected.append((self.command, path, fault[0] if isinstance(fault, tuple) else fault.label))
                if drop:  # the client is dead: no answer
                    self.close_connection = True
                    return
                if isinstance(fault, Reset | Stall):
                    return self._cut(fault)
                if isinstance(fault, tuple):
                    status, code = fault
                    payload = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>".encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP and k.lower() != "expect"}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if kill is not None:  # after: S3 has the request, the client dies before the answer
                    kill.fire(self.command, path)
                if isinstance(fault, Truncate):
                    conn.close()
                    return self._truncated(resp, data, fault)
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data) if self.command != "HEAD" else resp.getheader("Content-Length") or 0))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            def _cut(self, fault: Reset | Stall) -> None:
                """No answer: a reset now, or silence until the stall ends, then the connection closes."""
                if isinstance(fault, Stall):
                    proxy._stopping.wait(fault.seconds)
                else:  # linger 0: close() sends RST, not FIN
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.rfile.close()
                self.connection.close()

            def _truncated(self, resp: http.client.HTTPResponse, data: bytes, fault: Truncate) -> None:
                """S3's answer, its body cut short of the length the headers announce."""
                sent = data[: int(len(data) * fault.keep)]
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(max(len(data), len(sent) + 1)))
                self.end_headers()
                self.wfile.write(sent)
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> S3FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # stalled answers end now
        self._server.shutdown()
        self._server.server_close()


def upload_photos(s3: Any, bucket: str, photos: dict[str, bytes], prefix: str = "incoming") -> dict[str, str]:
    """Put each photo at ``prefix/SKU-<stem>/<name>``; returns name -> key."""
    keys = {}
    for name, data in photos.items():
        key = f"{prefix}/SKU-{name.rsplit('.', 1)[0]}/{name}"
        s3.put_object(Bucket=bucket, Key=key, Body=data)
        keys[name] = key
    return keys

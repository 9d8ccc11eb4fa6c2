"""A stand-in for the Hugging Face hub on 127.0.0.1: the file-resolve endpoint `hf_hub_download` talks to.

`hub_stand_in({"stabilityai/TripoSR": folder})` serves each folder's files the way huggingface.co does, so
the real huggingface_hub client (pointed at it with ``HF_ENDPOINT``) runs its real download path:

* ``HEAD`` / ``GET /{repo_id}/resolve/{revision}/{filename}``, any revision, one fixed commit
  (``X-Repo-Commit``);
* a git file (``config.yaml``): ``200``, ``ETag`` the git blob id, ``Content-Length``;
* an LFS file (``*.ckpt``, ``*.safetensors``): ``302`` to a second server standing in for the CDN (another
  origin, so the client does not follow it on ``HEAD`` and takes ``X-Linked-Etag`` = the file's sha256 and
  ``X-Linked-Size`` from the redirect, then ``GET``\\s the CDN URL);
* a missing file: ``404`` with ``X-Error-Code: EntryNotFound``; an unknown repo: ``401`` with
  ``X-Error-Code: RepoNotFound``.

Every request either server receives is appended to ``StandIn.requests`` as ``(method, path)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

COMMIT = "5a1c0de5" * 5  # the one commit every revision resolves to
LFS_SUFFIXES = (".ckpt", ".safetensors", ".bin")


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob: what the hub sends as the ETag of a file stored in git."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class StandIn:
    """The running stand-in: its endpoint (for ``HF_ENDPOINT``) and every request seen, in order."""

    endpoint: str
    repos: dict[str, Path]
    requests: list[tuple[str, str]] = field(default_factory=list)


def _handler(state: StandIn, cdn: list[str]) -> type[BaseHTTPRequestHandler]:
    blobs: dict[str, Path] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _send(self, status: int, headers: dict[str, str], data: bytes = b"", body: bool = False) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if body and data:
                self.wfile.write(data)

        def _answer(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            state.requests.append((self.command, path))
            if path.startswith("/cdn/") and path[5:] in blobs:  # the CDN: plain bytes
                data = blobs[path[5:]].read_bytes()
                self._send(200, {"Content-Length": str(len(data)), "ETag": f'"{path[5:]}"'}, data, body)
                return
            parts = path.strip("/").split("/")
            if len(parts) < 5 or parts[2] != "resolve":
                self._send(404, {"Content-Length": "0"})
                return
            repo_id, filename = "/".join(parts[:2]), "/".join(parts[4:])
            folder = state.repos.get(repo_id)
            if folder is None:
                message = "Repository not found"
                self._send(401, {"X-Error-Code": "RepoNotFound", "X-Error-Message": message, "Content-Length": "0"})
                return
            file = folder / filename
            commit = {"X-Repo-Commit": COMMIT}
            if not file.is_file():
                message = "Entry not found"
                self._send(404, {**commit, "X-Error-Code": "EntryNotFound", "X-Error-Message": message, "Content-Length": "0"})
                return
            data = file.read_bytes()
            if file.suffix in LFS_SUFFIXES:
                sha256 = hashlib.sha256(data).hexdigest()
                blobs[sha256] = file
                location = f"{cdn[0]}/cdn/{sha256}"
                headers = {**commit, "Location": location, "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data))}
                self._send(302, {**headers, "Content-Length": "0"})
                return
            headers = {**commit, "ETag": f'"{git_blob_id(data)}"', "Content-Length": str(len(data))}
            self._send(200, headers, data, body)

    return Handler


@contextlib.contextmanager
def hub_stand_in(repos: dict[str, Path]) -> Iterator[StandIn]:
    """The hub and its CDN on two loopback ports, serving ``{repo_id: folder}`` until the block ends."""
    cdn_url: list[str] = []
    state = StandIn("", repos)
    handler = _handler(state, cdn_url)
    hub, cdn = ThreadingHTTPServer(("127.0.0.1", 0), handler), ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.endpoint = f"http://127.0.0.1:{hub.server_address[1]}"
    cdn_url.append(f"http://127.0.0.1:{cdn.server_address[1]}")
    threads = [threading.Thread(target=s.serve_forever, args=(0.05,), daemon=True) for s in (hub, cdn)]
    for t in threads:
        t.start()
    try:
        yield state
    finally:
        for s in (hub, cdn):
            s.shutdown()
            s.server_close()

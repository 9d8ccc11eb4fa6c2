"""glTF validation with the Khronos glTF-Validator (npm `gltf-validator`), run offline by Node.

The package is pinned in the repository's package.json / package-lock.json and installed by
`make install` (`npm ci`) into `node_modules/` at the repository root. `ASSET3D_NODE_MODULES`
may point to another `node_modules` folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshing.errors import MeshingError

_REPO = Path(__file__).resolve().parents[1]

# reads the GLB paths given as arguments, prints one JSON array of reports
_SCRIPT = r"""
const fs = require('fs');
const path = require('path');
const validator = require(path.join(process.env.ASSET3D_NODE_MODULES, 'gltf-validator'));
(async () => {
  const out = [];
  for (const file of process.argv.slice(1)) {
    const data = new Uint8Array(fs.readFileSync(file));
    const dir = path.dirname(file);
    const report = await validator.validateBytes(data, {
      uri: path.basename(file),
      maxIssues: 0,
      writeTimestamp: false,
      externalResourceFunction: (uri) => new Promise((resolve, reject) => {
        const target = path.resolve(dir, decodeURIComponent(uri));
        if (!target.startsWith(path.resolve(dir) + path.sep)) { reject(new Error('outside: ' + uri)); return; }
        fs.readFile(target, (err, buf) => err ? reject(err) : resolve(new Uint8Array(buf)));
      }),
    });
    out.push(report);
  }
  process.stdout.write(JSON.stringify({version: validator.version(), reports: out}));
})().catch((e) => { process.stderr.write(String(e && e.stack || e)); process.exit(3); });
"""


@dataclass(frozen=True)
class ValidationReport:
    """The validator's verdict on one file.

    Attributes
    ----------
    path
        The file validated.
    errors, warnings, infos, hints
        Issue counts by severity.
    messages
        Every issue as the validator reports it (`code`, `message`, `severity`, `pointer`).
    validator_version
        Version of gltf-validator that ran.
    """

    path: str
    errors: int
    warnings: int
    infos: int
    hints: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    validator_version: str = ""

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "errors": self.errors,
            "warnings": self.warnings,
            "infos": self.infos,
            "hints": self.hints,
            "messages": self.messages,
            "validator_version": self.validator_version,
        }


def node_modules_dir() -> Path:
    """The `node_modules` folder holding gltf-validator (env `ASSET3D_NODE_MODULES` first)."""
    env = os.environ.get("ASSET3D_NODE_MODULES")
    return Path(env) if env else _REPO / "node_modules"


def validate_files(
    paths: Sequence[str | Path], *, node: str = "node", timeout_s: float = 120.0
) -> list[ValidationReport]:
    """Validate several glTF/GLB files with one Node process.

    Raises
    ------
    MeshingError
        reason `validator_unavailable` when Node or the package is missing or the run fails;
        `bad_input` for a path that is not a file.
    """
    files = [Path(p).resolve() for p in paths]
    for f in files:
        if not f.is_file():
            raise MeshingError("bad_input", f"{f}: no such file to validate")
    if not files:
        return []
    node_bin = shutil.which(node)
    if node_bin is None:
        raise MeshingError("validator_unavailable", f"{node!r} not found on PATH: install Node.js (>= 18)")
    modules = node_modules_dir()
    if not (modules / "gltf-validator" / "package.json").is_file():
        raise MeshingError(
            "validator_unavailable",
            f"gltf-validator is not installed in {modules}: run `npm ci` in the repository root (or `make install`)",
        )
    env = dict(os.environ, ASSET3D_NODE_MODULES=str(modules))
    try:
        proc = subprocess.run(
            [node_bin, "-e", _SCRIPT, *map(str, files)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise MeshingError(
            "validator_unavailable", f"gltf-validator did not finish within {timeout_s} s"
        ) from None
    if proc.returncode != 0:
        raise MeshingError(
            "validator_unavailable",
            f"gltf-validator failed (exit {proc.returncode}): {proc.stderr.strip()[:2000]}",
        )
    payload = json.loads(proc.stdout)
    out = []
    for f, rep in zip(files, payload["reports"], strict=True):
        issues = rep.get("issues", {})
        out.append(
            ValidationReport(
                path=str(f),
                errors=int(issues.get("numErrors", 0)),
                warnings=int(issues.get("numWarnings", 0)),
                infos=int(issues.get("numInfos", 0)),
                hints=int(issues.get("numHints", 0)),
                messages=list(issues.get("messages", [])),
                validator_version=str(payload.get("version", "")),
            )
        )
    return out


def validate_glb(path: str | Path, *, node: str = "node", timeout_s: float = 120.0) -> ValidationReport:
    """Validate one glTF/GLB file; see `validate_files`."""
    return validate_files([path], node=node, timeout_s=timeout_s)[0]

"""The review app's settings: environment ``ASSET3D_SERVE_*``, overridden by ``asset3d serve`` flags.

::

    ASSET3D_SERVE_HOST=127.0.0.1              # bind address (loopback by default)
    ASSET3D_SERVE_PORT=8000
    ASSET3D_SERVE_CATALOGUE_URL=...           # default: $ASSET3D_CATALOGUE_URL, else sqlite:///.asset3d/catalogue.db
    ASSET3D_SERVE_BUCKETS=s3://shop-assets,s3://shop-photos/incoming   # the only places files are served from
    ASSET3D_SERVE_REVIEWERS_FILE=.asset3d/reviewers.json                # reviewer token hashes
    ASSET3D_SERVE_ANONYMOUS_READ=false        # true: pages, API reads and files without signing in
    ASSET3D_SERVE_SECRET_KEY=...              # signs session and CSRF cookies (default: random per process)
    ASSET3D_SERVE_COOKIE_SECURE=false         # true behind HTTPS: cookies only over HTTPS
    ASSET3D_SERVE_SESSION_HOURS=12
    ASSET3D_SERVE_PAGE_SIZE=25
    ASSET3D_SERVE_NODE_MODULES=...            # where `npm ci` put @google/model-viewer and three (default: beside the code)

Without ``BUCKETS`` the app serves from the pipeline's ``source`` and ``dest`` settings (``ASSET3D_SOURCE``,
``ASSET3D_DEST``, or the config file ``ASSET3D_CONFIG``).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "ASSET3D_SERVE_"
#: The repository root when installed from a checkout (`pip install -e .`): where `npm ci` runs.
REPO_ROOT = Path(__file__).resolve().parents[2]


class ServeSettingsError(ValueError):
    """A review-app setting with a bad value; the message names the setting."""

    reason = "bad_setting"
    transient = False


class ServeSettings(BaseSettings):
    """Every knob of ``asset3d serve``; env names add ``ASSET3D_SERVE_``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="bind address; loopback unless you mean to expose the app")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port)")
    catalogue_url: str | None = Field(None, description="catalogue URL (default $ASSET3D_CATALOGUE_URL, else SQLite)")
    buckets: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="bucket roots files may be served from, comma-separated (default: the pipeline's source and dest)"
    )
    reviewers_file: Path = Field(Path(".asset3d/reviewers.json"), description="reviewer names and token hashes")
    anonymous_read: bool = Field(False, description="allow reading pages, the API and files without signing in")
    secret_key: SecretStr | None = Field(None, description="signs session and CSRF cookies (default: random per process)")
    cookie_secure: bool = Field(False, description="mark cookies Secure (serve over HTTPS)")
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="how long a sign-in lasts")
    page_size: int = Field(25, ge=1, le=500, description="assets per queue page")
    node_modules: Path | None = Field(None, description="the npm packages folder (default: node_modules beside the code)")

    @field_validator("buckets", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def signing_key(self) -> bytes:
        """The cookie-signing key: the setting, else a random key made once per process."""
        if self.secret_key is not None and self.secret_key.get_secret_value():
            return self.secret_key.get_secret_value().encode()
        return _PROCESS_KEY

    @property
    def npm_folder(self) -> Path:
        return (self.node_modules or REPO_ROOT / "node_modules").resolve()


_PROCESS_KEY = secrets.token_bytes(32)


def load_serve_settings(**overrides: Any) -> ServeSettings:
    """Settings from ``overrides`` (``None`` values skipped), then ``ASSET3D_SERVE_*``, then the defaults.

    Raises
    ------
    ServeSettingsError
        A value out of range or of the wrong type, naming the setting.
    """
    try:
        return ServeSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as err:
        lines = [f"{ENV_PREFIX}{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in err.errors()]
        raise ServeSettingsError("bad review-app settings: " + "; ".join(lines)) from None


def bucket_roots(settings: ServeSettings) -> tuple[str, ...]:
    """The bucket roots files may be served from: the setting, else the pipeline's source and dest."""
    if settings.buckets:
        return settings.buckets
    from asset3d.pipeline.settings import load_settings

    pipeline = load_settings()
    return (pipeline.source, pipeline.dest)


def missing_sqlite_file(url: str) -> Path | None:
    """The database file a SQLite URL names when it does not exist (None: it exists, or not SQLite).

    Opening such a URL would create an empty database; read-only commands and the review app refuse it.
    """
    from storage.catalogue.settings import parse_url

    parsed = parse_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).expanduser()
    return None if path.is_file() else path

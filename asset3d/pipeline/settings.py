"""The pipeline's settings, in one place: environment ``ASSET3D_*``, an optional config file, defaults.

::

    from asset3d.pipeline.settings import load_settings

    s = load_settings()                                   # env + $ASSET3D_CONFIG file + defaults
    s = load_settings(preset="shopify", batch_size=8)     # explicit values win over everything
    s.catalogue_url                                       # resolved: explicit, env, else the SQLite default

Precedence, highest first: explicit keyword arguments (command-line flags, flow parameters), environment
variables (``ASSET3D_BATCH_SIZE=8``; mappings as JSON, ``ASSET3D_REVIEW='{"approve_min_silhouette_iou": 0.8}'``),
the config file (YAML or TOML, named by ``config_file=`` or ``ASSET3D_CONFIG``; unknown keys are refused),
then the defaults below. Every field is documented in docs/pipeline.md.

Nothing here imports Prefect, torch or SQLAlchemy.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from intake.types import IntakeMethod

if TYPE_CHECKING:
    from asset3d.pipeline.options import StageOptions

ENV_PREFIX = "ASSET3D_"
ENV_CONFIG = "ASSET3D_CONFIG"

#: What a server fixes for every run (a Prefect Variable, `Settings.with_conversion`): the parameters that
#: decide an asset's bytes, the review thresholds, and the weights (hub id and sha256).
CONVERSION_KEYS = frozenset(
    {
        "preset", "faces", "texture_size", "mc_resolution", "mc_threshold", "intake_method", "foreground_ratio",
        "preview_views", "preview_size", "review", "review_policy", "model", "weights_sha256",
    }
)  # fmt: skip


class SettingsError(ValueError):
    """A setting with a bad value or an unreadable config file; the message names the setting."""

    reason = "bad_setting"
    transient = False


class Settings(BaseSettings):
    """Every knob of the pipeline. Field names are the config-file keys; env names add ``ASSET3D_``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    # where
    source: str = Field("buckets/photos", description="photos: s3://bucket/prefix, file:///abs or a folder")
    dest: str = Field("buckets/assets", description="published assets: s3://bucket/prefix or a folder")
    catalogue_url: str | None = Field(None, description="SQLAlchemy URL; default the SQLite file .asset3d/catalogue.db")
    catalogue_secret: str | None = Field(
        None, description="name of a Prefect Secret block holding the catalogue URL (flows read it on the worker)"
    )
    auto_migrate: bool = Field(True, description="create/upgrade a SQLite catalogue on first use (never PostgreSQL)")
    # model
    model: str = Field("auto", description="model folder, hub id, 'demo', or 'auto' (official, demo, untrained)")
    weights_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="the weights the run must use: a worker with others refuses to start"
    )
    device: str = Field("auto", description="cuda, cuda:1, cpu, mps or auto")
    dtype: str = Field("auto", description="fp32, bf16, fp16 or auto")
    batch_size: int = Field(4, ge=1, le=256, description="photos per reconstruction micro-batch")
    batch_wait_s: float = Field(
        10.0, ge=0, description="how long photos ready for reconstruction wait for the rest of their micro-batch"
    )
    mc_resolution: int = Field(256, ge=16, le=1024, description="marching-cubes grid resolution")
    mc_threshold: float = Field(25.0, gt=0, description="density level of the surface")
    # intake
    intake_method: IntakeMethod = Field(IntakeMethod.auto, description="auto, alpha, rembg or plain-backdrop")
    foreground_ratio: float = Field(0.85, gt=0, le=1)
    max_photo_bytes: int = Field(50 * 1024 * 1024, ge=1, description="larger photos are refused before download")
    # assets
    preset: str = Field("web", description="web, shopify, amazon, google or apple; several channels: 'shopify,apple'")
    faces: int | None = Field(None, ge=100, description="face budget (default: the preset's)")
    texture_size: int | None = Field(None, ge=64, description="texture side (textured presets)")
    width_m: float | None = Field(None, gt=0, description="the product's width in metres, for every photo of the run")
    height_m: float | None = Field(None, gt=0, description="the product's height in metres, for every photo of the run")
    depth_m: float | None = Field(None, gt=0, description="the product's depth in metres, for every photo of the run")
    preview_views: int = Field(8, ge=1, le=64)
    preview_size: int = Field(512, ge=64, le=4096)
    # review thresholds: a YAML file like meshing/review_policy.yaml, then single overrides
    review_policy: Path | None = Field(None, description="YAML file of review thresholds")
    review: dict[str, Any] = Field(default_factory=dict, description="review threshold overrides")
    # SKUs
    sku_pattern: str | None = Field(None, description="regex with a group 'sku', searched in the photo URI")
    sidecar: str | None = Field(None, description="CSV (key,sku) or JSON {key: sku} beside the photos, or a URI")
    # orchestration
    retries: int = Field(3, ge=0, le=20, description="retries of a transient error (S3 5xx, resets, DB loss)")
    retry_delay_s: float = Field(2.0, ge=0, description="first retry delay; doubles each time, with jitter")
    retry_jitter: float = Field(0.5, ge=0, le=2)
    cache_days: float = Field(7.0, gt=0, description="how long task results stay reusable")
    max_in_flight: int = Field(0, ge=0, description="photos between download and build at once (0: from the worker's memory)")
    # time and memory bounds (docs/reliability.md): a stage's deadline counts from its first attempt, retries
    # included; once it has passed (or the next attempt would not fit before it) the photo fails there
    deadline_fetch_s: float = Field(120.0, gt=0, description="one photo's download, retries included")
    deadline_intake_s: float = Field(300.0, gt=0, description="one photo's intake, retries included")
    deadline_reconstruct_s: float = Field(900.0, gt=0, description="one reconstruction micro-batch, retries included")
    deadline_build_s: float = Field(600.0, gt=0, description="one asset's build, retries included")
    deadline_publish_s: float = Field(300.0, gt=0, description="one asset's files, or its manifest, retries included")
    max_photo_pixels: int = Field(50_000_000, ge=1, description="larger photos (width x height) are refused before decoding")
    pixel_budget: int = Field(0, ge=0, description="decoded pixels of all photos of a worker process at once (0: from its memory)")
    lease_s: float = Field(3600.0, gt=0, description="how long a run's claim on a photo's conversion lasts (overlapping runs)")
    catalogue_patience_s: float = Field(
        60.0, ge=0, description="how long the end of a batch waits for a catalogue that stopped answering (run row, failure rows)"
    )
    fan_out: int = Field(0, ge=0, description="photos per sub-batch run via run_deployment (0: convert here)")
    deployment: str = Field("convert-batch/convert-batch", description="deployment the sub-batches run on")
    # triggers and shared results (read from the worker's own environment / config file, never from a run's
    # parameters: see asset3d.pipeline.sources)
    allowed_sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="bucket/prefix URIs or folders a batch may come from (comma-separated or a JSON list); empty: `source`",
    )
    result_storage_block: str | None = Field(
        None, description="name of a prefect-aws S3Bucket block for the shared task results (fetch, intake, reconstruct)"
    )
    conversion_variable: str = Field(
        "asset3d-conversion",
        description="Prefect Variable holding the conversion parameters every run of a server uses (JSON mapping)",
    )

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        from meshing.presets import PRESETS

        names = [part.strip() for part in value.split(",")]
        unknown = [n for n in names if n not in PRESETS]
        if unknown or len(set(names)) != len(names):
            raise ValueError(f"preset {value!r}: one or more of {', '.join(sorted(PRESETS))}, comma-separated, each once")
        return ",".join(names)

    @field_validator("allowed_sources", mode="before")
    @classmethod
    def _source_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("allowed_sources")
    @classmethod
    def _valid_sources(cls, value: list[str]) -> list[str]:
        from asset3d.pipeline.sources import SourceRefused, locate

        for uri in value:
            try:
                locate(uri)
            except SourceRefused as err:
                raise ValueError(str(err)) from None
        return value

    @field_validator("sku_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        import re

        if value is None:
            return None
        try:
            compiled = re.compile(value)
        except re.error as err:
            raise ValueError(f"sku_pattern {value!r} is not a regular expression: {err}") from None
        if "sku" not in compiled.groupindex and compiled.groups < 1:
            raise ValueError(f"sku_pattern {value!r} needs a group (?P<sku>...) or one capturing group")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_path.get()
        if path is not None:
            if path.suffix.lower() == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            else:
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        return tuple(sources)

    # -- derived values ------------------------------------------------------------------------------------

    def resolved_catalogue_url(self) -> str:
        """The catalogue URL: this setting, else ``ASSET3D_CATALOGUE_URL`` / its alias, else the SQLite file."""
        from storage.catalogue.settings import catalogue_url

        return catalogue_url(self.catalogue_url)

    def stage_options(self) -> StageOptions:
        """Each stage's options (`asset3d.pipeline.options`), derived from these settings."""
        from asset3d.pipeline.options import StageOptions

        return StageOptions.from_settings(self)

    def conversion_params(self) -> dict[str, Any]:
        """The parameters that decide an asset's bytes (hashed into the catalogue's ``params_hash``)."""
        return self.stage_options().conversion_params()

    def review_thresholds(self) -> dict[str, Any]:
        """The review policy as a mapping: the packaged defaults, the ``review_policy`` file, then ``review``."""
        merged = dict(_policy_file(None))
        if self.review_policy is not None:
            merged.update(_policy_file(self.review_policy))
        merged.update(self.review)
        return merged

    def with_conversion(self, conversion: Mapping[str, Any]) -> Settings:
        """A copy where ``conversion`` (the server's conversion parameters: `CONVERSION_KEYS`) wins over
        every other source, so every run of a deployment, whoever starts it, makes the same asset version.

        Raises
        ------
        SettingsError
            A key that is not a conversion parameter (machine settings and secrets never travel this way).
        """
        unknown = sorted(set(conversion) - set(CONVERSION_KEYS))
        if unknown:
            raise SettingsError(f"conversion parameters: {unknown} are not conversion parameters (known: {sorted(CONVERSION_KEYS)})")
        return self.overlay(**dict(conversion))

    def as_environment(self) -> dict[str, str]:
        """These settings as ``ASSET3D_*`` variables (what a worker's environment would hold); None is left out."""
        import json

        out: dict[str, str] = {}
        for name, value in self.model_dump(mode="json").items():
            if value is None:
                continue
            text = json.dumps(value) if isinstance(value, dict | list | bool) else str(value)
            out[f"{ENV_PREFIX}{name.upper()}"] = text
        return out

    def overlay(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (``None`` values ignored), validated like the original."""
        data = self.model_dump()
        data.update({k: v for k, v in changes.items() if v is not None})
        return _build(data, None)


@functools.lru_cache(maxsize=16)
def _policy_file(path: Path | None) -> dict[str, Any]:
    """The thresholds of a review policy file (None: the packaged one), read once per process."""
    import yaml

    from meshing.review import DEFAULT_POLICY_PATH

    target = DEFAULT_POLICY_PATH if path is None else path
    if not target.is_file():
        raise SettingsError(f"review_policy {target}: no such file")
    data = yaml.safe_load(target.read_text()) or {}
    if not isinstance(data, dict):
        raise SettingsError(f"review_policy {target}: expected a mapping of thresholds")
    return data


#: The config file the `Settings()` being built reads (pydantic-settings asks the class for its sources).
_config_path: ContextVar[Path | None] = ContextVar("asset3d_config_path", default=None)


def _build(overrides: dict[str, Any], config_file: str | Path | None) -> Settings:
    chosen = config_file if config_file is not None else os.environ.get(ENV_CONFIG) or None
    path = Path(chosen).expanduser() if chosen else None
    if path is not None and not path.is_file():
        raise SettingsError(f"config file {path}: no such file (from {'argument' if config_file else ENV_CONFIG})")
    token = _config_path.set(path)
    try:
        return Settings(**overrides)
    except ValidationError as err:
        where = f" (config file {path})" if path else ""
        lines = [f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in err.errors()]
        raise SettingsError("bad settings" + where + ": " + "; ".join(lines)) from None
    finally:
        _config_path.reset(token)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``overrides`` (``None`` values skipped), the environment, the config file and defaults.

    Parameters
    ----------
    config_file
        YAML (``.yaml``/``.yml``) or TOML (``.toml``) file; default ``$ASSET3D_CONFIG``, else none.
    overrides
        Field values that win over every other source.

    Raises
    ------
    SettingsError
        A missing config file, an unknown key, or a value out of range, naming the field.
    """
    return _build({k: v for k, v in overrides.items() if v is not None}, config_file)

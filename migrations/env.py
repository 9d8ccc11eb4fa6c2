"""Alembic environment: the catalogue's metadata, and the URL the application uses.

The URL comes from ``config.attributes["url"]`` (set by `migrations.alembic_config`), else the ini
option ``sqlalchemy.url`` when non-empty, else `storage.catalogue.settings.catalogue_url` (which reads
``ASSET3D_CATALOGUE_URL``). SQLite gets batch mode so that later ALTERs work there too.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from storage.catalogue.models import Base, UTCDateTime
from storage.catalogue.settings import catalogue_url, make_engine

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = config.attributes.get("target_metadata", Base.metadata)


def _url() -> str:
    return str(config.attributes.get("url") or config.get_main_option("sqlalchemy.url") or catalogue_url())


def _render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    """Write the models' `UTCDateTime` as a plain ``sa.DateTime(timezone=True)`` in new revisions."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata, compare_type=True, render_item=_render_item, **kwargs  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade --sql``)."""
    url = _url()
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

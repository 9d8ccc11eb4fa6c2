"""Alembic migrations on both engines: upgrade, check, downgrade, upgrade again; drift is caught."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, inspect

import migrations
from storage.catalogue import Base, Catalogue, make_engine

TABLES = {"products", "photos", "runs", "assets", "metrics", "review_events", "failures", "leases"}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_check_downgrade_upgrade(catalogue_url: str) -> None:
    assert _tables(catalogue_url) == set()
    assert migrations.current(catalogue_url) == []
    with pytest.raises(migrations.MigrationsOutOfDate) as exc:
        migrations.check(catalogue_url)
    assert exc.value.reason == "not_at_head"

    migrations.upgrade(catalogue_url, "head")
    assert _tables(catalogue_url) == TABLES
    assert migrations.current(catalogue_url) == migrations.heads() == ["0003"]
    migrations.check(catalogue_url)  # models and migrations agree

    migrations.downgrade(catalogue_url, "base")
    assert _tables(catalogue_url) == set()
    assert migrations.current(catalogue_url) == []

    migrations.upgrade(catalogue_url)
    migrations.check(catalogue_url)
    cat = Catalogue(catalogue_url)
    assert sum(cat.counts_by_status().values()) == 0  # the service works on the re-created schema
    cat.close()


def test_check_catches_models_that_drifted_from_the_migrations(migrated_url: str) -> None:
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    Table("asset_tags", drifted, Column("id", Integer, primary_key=True), Column("tag", String(32)))
    drifted.tables["assets"].append_column(Column("colour", String(16), nullable=True))
    with pytest.raises(migrations.MigrationsOutOfDate) as exc:
        migrations.check(migrated_url, target_metadata=drifted)
    assert exc.value.reason == "models_differ"
    assert "asset_tags" in str(exc.value) and "colour" in str(exc.value)


def test_naming_convention_gives_stable_constraint_names(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    insp = inspect(engine)
    assert {u["name"] for u in insp.get_unique_constraints("assets")} == {
        "uq_assets_photo_id_conversion_key", "uq_assets_photo_id_version",
    }  # fmt: skip
    assert {fk["name"] for fk in insp.get_foreign_keys("assets")} == {
        "fk_assets_photo_id_photos", "fk_assets_run_id_runs", "fk_assets_superseded_by_id_assets",
    }  # fmt: skip
    assert "ck_assets_asset_status" in {c["name"] for c in insp.get_check_constraints("assets")}
    engine.dispose()

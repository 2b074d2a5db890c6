"""The server on PostgreSQL (a region's database): migrations, the append-only audit log, /healthz.

Each test gets a fresh database in one throwaway cluster (see tests/postgres.py). Without
PostgreSQL's server binaries these tests fail, telling you to run scripts/bootstrap as root.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import DBAPIError

from session_server.audit import AuditEvent, record
from session_server.db.engine import MIGRATIONS, create_engine, migrate, session_factory
from session_server.db.models import Base
from session_server.settings import ServerSettings
from tests.conftest import RunningServer
from tests.postgres import PostgresCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    with PostgresCluster.start() as running:
        yield running


@pytest.fixture
def database_url(cluster: PostgresCluster) -> str:
    return cluster.create_database(f"twm_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def server_settings(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> ServerSettings:
    """The conftest ``server`` fixture, pointed at PostgreSQL the way an operator does it."""
    monkeypatch.setenv("TWM_SERVER_DATABASE_URL", database_url)
    return ServerSettings(data_dir=tmp_path / "server")


def head_revision() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()


def columns_by_table(connection: Connection) -> dict[str, set[str]]:
    inspector = inspect(connection)
    return {
        table: {column["name"] for column in inspector.get_columns(table)}
        for table in inspector.get_table_names()
    }


async def applied_revision(url: str) -> tuple[dict[str, set[str]], str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            columns = await connection.run_sync(columns_by_table)
            version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        await engine.dispose()
    return columns, str(version)


async def test_migrate_builds_the_models_schema_on_postgresql(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        await migrate(engine)  # the server migrates on every start: a second run must be a no-op
    finally:
        await engine.dispose()

    columns, version = await applied_revision(database_url)

    assert version == head_revision()
    for table in Base.metadata.sorted_tables:
        assert table.name in columns, f"migrations did not create {table.name}"
        assert columns[table.name] == {column.name for column in table.columns}, table.name


async def test_audit_log_refuses_update_and_delete_on_postgresql(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate(engine)
        async with session_factory(engine)() as db:
            await record(db, AuditEvent.SIGN_IN, actor="school:1", remote="127.0.0.1")

        for statement in (
            "UPDATE audit_log SET actor = 'someone else'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(DBAPIError, match="append-only"):
                async with engine.begin() as connection:
                    await connection.execute(text(statement))

        async with engine.connect() as connection:
            rows = (await connection.execute(text("SELECT event, actor FROM audit_log"))).all()
    finally:
        await engine.dispose()

    assert [tuple(row) for row in rows] == [("sign_in", "school:1")]


async def test_healthz_answers_with_the_database_url_pointing_at_postgresql(
    server: RunningServer, server_settings: ServerSettings, database_url: str
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.get("/healthz")

    assert response.status_code == 200, response.text
    assert response.json()["database"] == "ok"
    # The server really used PostgreSQL: it migrated it on start and made no SQLite file.
    _, version = await applied_revision(database_url)
    assert version == head_revision()
    assert not (server_settings.data_dir / "twm.sqlite3").exists()

"""The one road to a connection (pgmonkey/_connect.py): every feature gets the same session.

A config whose ``sync_settings``/``async_settings`` put ``search_path`` on a schema of its own:
whatever path a feature takes (config path, config dict, manager object, psycopg connection or
pool), tables are created and found where that session's search_path puts them.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
import yaml
from psycopg_pool import ConnectionPool

import pgmonkey
import pgmonkey.frames
from pgmonkey import _connect, serveradvice
from pgmonkey.config import connect_params, load_config
from pgmonkey.transfer import export_csv, import_csv
from tests._conn_support import derive_config
from tests.test_config_hostile import everything


@pytest.fixture
def schema(db_conn: psycopg.Connection[Any]) -> Iterator[str]:
    name = f"road_{uuid.uuid4().hex[:8]}"
    db_conn.execute(f'CREATE SCHEMA "{name}"')
    db_conn.execute(f'GRANT ALL ON SCHEMA "{name}" TO PUBLIC')
    db_conn.commit()
    yield name
    db_conn.execute(f'DROP SCHEMA "{name}" CASCADE')
    db_conn.commit()


@pytest.fixture
def config(password_config: Path, tmp_path: Path, schema: str) -> Path:
    settings = {"search_path": schema}
    return derive_config(password_config, tmp_path, sync_settings=settings, async_settings=settings)


def _where(db_conn: psycopg.Connection[Any], table: str) -> list[str]:
    rows = db_conn.execute(
        "SELECT table_schema FROM information_schema.tables WHERE table_name = %s", (table,)
    ).fetchall()
    return sorted(str(r[0]) for r in rows)


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "people.csv"
    path.write_text("id,name\n1,ann\n2,bob\n")
    return path


@pytest.mark.parametrize("kind", ["path", "dict", "manager"])
def test_csv_import_and_export_honour_session_settings(
    config: Path, schema: str, tmp_path: Path, db_conn: psycopg.Connection[Any], kind: str
) -> None:
    con: Any = {
        "path": config,
        "dict": yaml.safe_load(config.read_text()),
        "manager": pgmonkey.PGConnectionManager().get_database_connection(config, "normal"),
    }[kind]
    table = f"t_{kind}"
    csv = _csv(tmp_path)
    import_csv(csv, table, con)  # the first run writes the review file, imports nothing
    result = import_csv(csv, table, con)
    assert result.rows == 2
    assert _where(db_conn, table) == [schema]
    out = tmp_path / "out.csv"
    export_csv(con, out, table=table)
    assert out.read_text().splitlines() == ["id,name", "1,ann", "2,bob"]


def test_cli_import_and_export_honour_session_settings(
    config: Path, schema: str, tmp_path: Path, db_conn: psycopg.Connection[Any]
) -> None:
    csv = _csv(tmp_path)
    for _ in range(2):  # review, then import
        cmd = [sys.executable, "-m", "pgmonkey", "pgimport", "--table", "t_cli"]
        cmd += ["--connconfig", str(config), "--import_file", str(csv)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert _where(db_conn, "t_cli") == [schema]
    out = tmp_path / "cli.csv"
    cmd = [sys.executable, "-m", "pgmonkey", "pgexport", "--table", "t_cli"]
    cmd += ["--connconfig", str(config), "--export_file", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.read_text().splitlines() == ["id,name", "1,ann", "2,bob"]


def test_frames_honour_session_settings(
    config: Path, schema: str, db_conn: psycopg.Connection[Any]
) -> None:
    assert pgmonkey.read_sql("SELECT current_schema() AS s", config)["s"].tolist() == [schema]
    pgmonkey.to_sql(pd.DataFrame({"a": [1, 2]}), "t_frame", config)
    assert _where(db_conn, "t_frame") == [schema]


async def test_async_frames_honour_async_settings(config: Path, schema: str) -> None:
    df = await pgmonkey.frames.read_sql_async("SELECT current_schema() AS s", config)
    assert df["s"].tolist() == [schema]


def test_audit_connects_through_the_road(config: Path) -> None:
    report = serveradvice.audit(load_config(config))
    assert report.rows  # it connected and compared settings


def test_a_pool_lends_a_connection(superuser_dsn: str) -> None:
    with ConnectionPool(superuser_dsn, min_size=1, max_size=1, open=True) as pool:
        with _connect.connection(pool) as conn:
            assert conn.execute("SELECT 7").fetchone() == (7,)
        assert pool.get_stats()["pool_available"] == 1  # given back


def test_a_rejected_setting_fails_the_connect_naming_it(
    password_config: Path, tmp_path: Path
) -> None:
    bad = derive_config(password_config, tmp_path, sync_settings={"statement_timeout": "soon"})
    with pytest.raises(pgmonkey.ConfigError, match="'statement_timeout'"):
        pgmonkey.read_sql("SELECT 1", bad)


def _open_and_close(path: Path, ctype: str) -> None:
    """Open a connection object of ``ctype`` from ``path``, borrow once, close it."""
    import asyncio

    manager = pgmonkey.PGConnectionManager()

    async def use() -> None:
        try:
            async with await manager.get_database_connection(path, ctype):
                pass
        finally:
            await manager.clear_cache_async()

    if ctype.startswith("async"):
        asyncio.run(use())
        return
    try:
        with manager.get_database_connection(path, ctype):
            pass
    finally:
        manager.clear_cache()


@pytest.mark.parametrize("ctype", ["normal", "pool", "async", "async_pool"])
def test_a_rejected_secret_setting_is_not_shown(
    password_config: Path, tmp_path: Path, ctype: str
) -> None:
    # The server's message quotes the value: a credential in it, or a setting whose name
    # says secret, used to be shown there and in the chained server error.
    key = "async_settings" if ctype.startswith("async") else "sync_settings"
    for settings in (
        {"statement_timeout": "postgresql://app:hunter2@db/x"},
        {"password_encryption": "hunter2"},  # secret by its name
        # The server folds and re-quotes names: "password=hunter2", one list item at a time.
        {"temp_tablespaces": "password=Hunter2"},
        {"temp_tablespaces": "pg_default, password=HUNTER2"},
        # Folded and cut to 63 bytes, past the '@' that marks the URL's password.
        {"default_text_search_config": f"postgresql://app:Hunter2{'x9' * 30}@db.example.com/x"},
    ):
        bad = derive_config(password_config, tmp_path, **{key: settings})
        with pytest.raises(pgmonkey.ConfigError, match="rejected by the server") as info:
            _open_and_close(bad, ctype)
        shown = everything(info.value).lower()
        assert "hunter2" not in shown and "x9x9x9" not in shown, shown
        assert "temp_tablespaces" not in settings or "does not exist" in str(info.value)


def test_wrong_kinds_are_named(password_config: Path) -> None:
    with pytest.raises(TypeError, match="con must be"):
        with _connect.connection(42):
            pass
    params = connect_params(load_config(password_config))
    with psycopg.connect(**params.connect_kwargs()) as sync_conn:
        with pytest.raises(TypeError, match="is synchronous"):
            import asyncio

            async def use() -> None:
                async with _connect.async_connection(sync_conn):
                    pass

            asyncio.run(use())

"""A ``with`` nested in another on the same normal/async object is a savepoint, never a commit.

A helper that opens its own ``with conn:`` inside a caller's block used to commit the
caller's earlier writes when it left; the caller then failed and its "rolled back" rows
stayed. Now the nested block is a savepoint of the outer transaction (psycopg's
``transaction()`` semantics): the outer block decides.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgmonkey import PGConnectionManager
from tests._conn_support import derive_config


class Boom(Exception):
    pass


@pytest.fixture
def table(db_conn: psycopg.Connection[Any]) -> Iterator[str]:
    name = f"nested_{uuid.uuid4().hex[:8]}"
    db_conn.execute(f"CREATE TABLE {name} (v text)")
    db_conn.execute(f"GRANT ALL ON {name} TO PUBLIC")
    db_conn.commit()
    yield name
    db_conn.execute(f"DROP TABLE {name}")
    db_conn.commit()


def _stored(db_conn: psycopg.Connection[Any], table: str) -> list[str]:
    db_conn.rollback()
    return sorted(r[0] for r in db_conn.execute(f"SELECT v FROM {table}").fetchall())


def test_normal_inner_block_does_not_commit_the_outer_work(
    password_config: Path, db_conn: psycopg.Connection[Any], table: str
) -> None:
    obj = PGConnectionManager().get_database_connection(password_config, "normal")

    def helper() -> None:
        with obj as conn:
            conn.execute(f"INSERT INTO {table} VALUES ('inner')")

    with pytest.raises(Boom):
        with obj as conn:
            conn.execute(f"INSERT INTO {table} VALUES ('outer')")
            helper()
            raise Boom
    assert _stored(db_conn, table) == []
    # The object is usable afterwards, and an outer block that succeeds keeps both.
    with obj as conn:
        conn.execute(f"INSERT INTO {table} VALUES ('outer')")
        helper()
    assert _stored(db_conn, table) == ["inner", "outer"]
    obj.disconnect()


def test_normal_failed_inner_block_rolls_back_to_its_savepoint(
    password_config: Path, db_conn: psycopg.Connection[Any], table: str
) -> None:
    obj = PGConnectionManager().get_database_connection(password_config, "normal")
    with obj as conn:
        conn.execute(f"INSERT INTO {table} VALUES ('outer')")
        with pytest.raises(psycopg.errors.DivisionByZero):
            with obj as inner:
                inner.execute(f"INSERT INTO {table} VALUES ('inner')")
                inner.execute("SELECT 1/0")
        conn.execute(f"INSERT INTO {table} VALUES ('after')")  # the outer transaction lives
    assert _stored(db_conn, table) == ["after", "outer"]
    obj.disconnect()


def test_normal_inner_block_before_any_outer_work_belongs_to_the_outer(
    password_config: Path, db_conn: psycopg.Connection[Any], table: str
) -> None:
    obj = PGConnectionManager().get_database_connection(password_config, "normal")
    with pytest.raises(Boom):
        with obj:
            with obj as inner:
                inner.execute(f"INSERT INTO {table} VALUES ('inner')")
            raise Boom
    assert _stored(db_conn, table) == []
    obj.disconnect()


def test_commit_inside_a_nested_block_is_refused(
    password_config: Path, db_conn: psycopg.Connection[Any], table: str
) -> None:
    obj = PGConnectionManager().get_database_connection(password_config, "normal")
    with pytest.raises(psycopg.ProgrammingError, match="commit"):
        with obj:
            with obj as inner:
                inner.execute(f"INSERT INTO {table} VALUES ('inner')")
                inner.commit()
    assert _stored(db_conn, table) == []
    obj.disconnect()


def test_autocommit_nested_blocks_stay_autocommit(
    password_config: Path, tmp_path: Path, db_conn: psycopg.Connection[Any], table: str
) -> None:
    config = derive_config(password_config, tmp_path, connection_settings={"autocommit": True})
    obj = PGConnectionManager().get_database_connection(config, "normal")
    with pytest.raises(Boom):
        with obj:
            with obj as inner:
                inner.execute(f"INSERT INTO {table} VALUES ('inner')")
            raise Boom
    # Autocommit: every statement commits on its own, nested or not (as the outer block).
    assert _stored(db_conn, table) == ["inner"]
    obj.disconnect()


async def test_async_inner_block_does_not_commit_the_outer_work(
    password_config: Path, db_conn: psycopg.Connection[Any], table: str
) -> None:
    manager = PGConnectionManager()
    obj = await manager.get_database_connection(password_config, "async")

    async def helper(fail: bool = False) -> None:
        async with obj as conn:
            await conn.execute(f"INSERT INTO {table} VALUES ('inner')")
            if fail:
                await conn.execute("SELECT 1/0")

    with pytest.raises(Boom):
        async with obj as conn:
            await conn.execute(f"INSERT INTO {table} VALUES ('outer')")
            await helper()
            raise Boom
    assert _stored(db_conn, table) == []
    async with obj as conn:
        await conn.execute(f"INSERT INTO {table} VALUES ('outer')")
        with pytest.raises(psycopg.errors.DivisionByZero):
            await helper(fail=True)
        await conn.execute(f"INSERT INTO {table} VALUES ('after')")
    assert _stored(db_conn, table) == ["after", "outer"]
    await manager.clear_cache_async()

"""The four connection objects against the sandbox: semantics, helpers, faults, concurrency."""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from pgmonkey import (
    ConnectionStateError,
    PGAsyncConnection,
    PGAsyncPoolConnection,
    PGConnectionManager,
    PGNormalConnection,
    PGPoolConnection,
    load_config,
)
from pgmonkey import sandbox as sb
from pgmonkey.config import connect_params
from tests._conn_support import (
    app_name,
    close_leftovers,  # noqa: F401 (autouse fixture)
    derive_config,
    server_connections,
    terminate,
)


@pytest.fixture
def table(db_conn: psycopg.Connection[Any]) -> Iterator[str]:
    """A scratch table any sandbox role may write to."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    db_conn.execute(f"CREATE TABLE {name} (v int)")
    db_conn.execute(f"GRANT ALL ON {name} TO PUBLIC")
    yield name
    db_conn.execute(f"DROP TABLE {name}")


def _count(db_conn: psycopg.Connection[Any], table: str) -> int:
    row = db_conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def _wait_until(predicate: Any, timeout: float = 30.0) -> bool:
    # Generous: on a loaded machine the server can take seconds to see a socket close.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


# --- the block yields a real psycopg connection: commit / rollback ------------------------


@pytest.mark.parametrize("ctype", ["normal", "pool"])
def test_with_yields_real_connection_commit_and_rollback(
    auth_config: Path, db_conn: psycopg.Connection[Any], table: str, ctype: str
) -> None:
    manager = PGConnectionManager()
    obj = manager.get_database_connection(auth_config, ctype)
    with obj as conn:
        assert type(conn) is psycopg.Connection
        with conn.pipeline():
            conn.execute(f"INSERT INTO {table} VALUES (1)")
            conn.execute(f"INSERT INTO {table} VALUES (2)")
        with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
            copy.write_row((3,))
    assert _count(db_conn, table) == 3  # committed on success
    with pytest.raises(ZeroDivisionError), obj as conn:
        conn.execute(f"INSERT INTO {table} VALUES (4)")
        1 / 0  # noqa: B018
    assert _count(db_conn, table) == 3  # rolled back on the exception
    with obj as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (3,)
    manager.clear_cache()


@pytest.mark.parametrize("ctype", ["async", "async_pool"])
async def test_async_with_yields_real_connection_commit_and_rollback(
    auth_config: Path, db_conn: psycopg.Connection[Any], table: str, ctype: str
) -> None:
    manager = PGConnectionManager()
    obj = await manager.get_database_connection(auth_config, ctype)
    async with obj as conn:
        assert type(conn) is psycopg.AsyncConnection
        async with conn.pipeline():
            await conn.execute(f"INSERT INTO {table} VALUES (1)")
            await conn.execute(f"INSERT INTO {table} VALUES (2)")
    assert _count(db_conn, table) == 2
    with pytest.raises(ZeroDivisionError):
        async with obj as conn:
            await conn.execute(f"INSERT INTO {table} VALUES (4)")
            1 / 0  # noqa: B018
    assert _count(db_conn, table) == 2
    await manager.clear_cache_async()


# --- helpers, direct construction, repr ---------------------------------------------------


def _kwargs(config: Path) -> dict[str, Any]:
    """The 4.0 constructors' ``config``: a dict of psycopg connect keyword arguments."""
    settings: dict[str, Any] = load_config(config)["connection_settings"]
    return {k: v for k, v in settings.items() if v not in (None, "")}


def test_never_connected_objects_raise_clear_errors(password_config: Path) -> None:
    kwargs = _kwargs(password_config)
    for obj in (
        PGNormalConnection(kwargs),
        PGPoolConnection(kwargs),
        PGAsyncConnection(kwargs),
    ):
        with pytest.raises(ConnectionStateError, match="not connected: call connect"):
            obj.cursor()


async def test_never_connected_async_pool_cursor_raises(password_config: Path) -> None:
    obj = PGAsyncPoolConnection(_kwargs(password_config))
    with pytest.raises(ConnectionStateError, match="not connected"):
        async with obj.cursor():
            pass


def test_sync_objects_built_directly_with_40_arguments(password_config: Path) -> None:
    kwargs = _kwargs(password_config)
    normal = PGNormalConnection(kwargs, {"statement_timeout": "1234"})
    normal.connect()
    with normal.cursor() as cur:
        cur.execute("SHOW statement_timeout")
        assert cur.fetchone() == ("1234ms",)
    with normal.transaction() as conn:
        conn.execute("SELECT 1")
    normal.commit()
    normal.rollback()
    normal.disconnect()
    normal.disconnect()  # idempotent
    assert normal.connection is None

    pool = PGPoolConnection(kwargs, {"min_size": 1, "max_size": 2}, {"work_mem": "8MB"})
    with pool as conn:  # a with block connects it
        assert pool.cursor().execute("SHOW work_mem").fetchone() == ("8MB",)
        pool.commit()
    with pytest.raises(ConnectionStateError, match="outside a with block"):
        pool.cursor()
    with pool.connection() as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)
    with pool.transaction() as conn:
        conn.execute("SELECT 3")
    pool.disconnect()
    pool.disconnect()
    assert pool.pool is None


async def test_async_objects_built_directly(password_config: Path) -> None:
    params = connect_params(load_config(password_config))  # a ConnectParams works too
    conn_obj = PGAsyncConnection(params, {"lock_timeout": "777"})
    await conn_obj.connect()
    async with conn_obj.cursor() as cur:
        await cur.execute("SHOW lock_timeout")
        assert await cur.fetchone() == ("777ms",)
    async with conn_obj.transaction() as conn:
        await conn.execute("SELECT 1")
    await conn_obj.commit()
    await conn_obj.rollback()
    await conn_obj.disconnect()
    await conn_obj.disconnect()

    pool = PGAsyncPoolConnection(params, {"min_size": 1, "max_size": 2})
    await pool.connect()
    async with pool.cursor() as cur:  # borrows for the cursor (as 4.0 did)
        await cur.execute("SELECT 5")
        assert await cur.fetchone() == (5,)
    async with pool as conn:
        async with pool.cursor() as cur:
            assert cur.connection is conn
        await pool.commit()
    async with pool.transaction() as conn:
        await conn.execute("SELECT 1")
    async with pool.connection() as conn:
        await conn.execute("SELECT 1")
    await pool.disconnect()
    await pool.disconnect()
    assert pool.pool is None


async def test_repr_never_shows_the_password(password_config: Path) -> None:
    cfg = load_config(password_config)
    password = cfg["connection_settings"]["password"]
    manager = PGConnectionManager()
    objs: list[Any] = [
        manager.get_database_connection(password_config, "normal"),
        manager.get_database_connection(password_config, "pool"),
        await manager.get_database_connection(password_config, "async"),
        await manager.get_database_connection(password_config, "async_pool"),
    ]
    for obj in objs:
        text = repr(obj)
        assert password not in text
        for part in (obj.connection_type, "host=127.0.0.1", "dbname=pgmonkey", "user=pgmonkey"):
            assert part in text
        assert "port=" in text
    assert password not in repr(manager) + repr(manager.cache_info)
    await manager.clear_cache_async()
    assert "(closed)" in repr(objs[0])


# --- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", ["normal", "async"])
async def test_killed_backend_is_replaced_at_next_block(
    password_config: Path, tmp_path: Path, db_conn: psycopg.Connection[Any], ctype: str
) -> None:
    config = derive_config(password_config, tmp_path)
    manager = PGConnectionManager()
    if ctype == "normal":
        obj = manager.get_database_connection(config, ctype)
        with obj as conn:
            pid = conn.info.backend_pid
        assert terminate(db_conn, app_name(config)) == 1
        assert _wait_until(lambda: server_connections(db_conn, app_name(config)) == 0)
        # The server's goodbye reaches the client socket a moment after the backend is gone.
        assert _wait_until(lambda: _readable(conn.pgconn.socket))
        with obj as conn:  # no error: replaced transparently
            assert conn.execute("SELECT 1").fetchone() == (1,)
            assert conn.info.backend_pid != pid
    else:
        obj = await manager.get_database_connection(config, ctype)
        async with obj as conn:
            pid = conn.info.backend_pid
        assert terminate(db_conn, app_name(config)) == 1
        assert _wait_until(lambda: server_connections(db_conn, app_name(config)) == 0)
        assert _wait_until(lambda: _readable(conn.pgconn.socket))
        async with obj as conn:
            await conn.execute("SELECT 1")
            assert conn.info.backend_pid != pid
    assert server_connections(db_conn, app_name(config)) == 1
    manager.clear_cache()


def _readable(sock: int) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


POOL = {"min_size": 3, "max_size": 5, "timeout": 5, "check_on_checkout": True}


def test_killed_pool_backends_next_borrow_works_no_leak(
    password_config: Path, tmp_path: Path, db_conn: psycopg.Connection[Any]
) -> None:
    config = derive_config(password_config, tmp_path, pool_settings=POOL)
    manager = PGConnectionManager()
    pool = manager.get_database_connection(config, "pool")
    name = app_name(config)
    assert server_connections(db_conn, name) == 3
    assert terminate(db_conn, name) == 3
    assert _wait_until(lambda: server_connections(db_conn, name) == 0)
    for _ in range(5):
        with pool as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    stats = pool.pool.get_stats()
    assert stats.get("connections_lost", 0) >= 1

    def settled() -> bool:  # background refills done: every connection idle, none leaked
        st = pool.pool.get_stats()
        return bool(server_connections(db_conn, name) == st["pool_size"] == st["pool_available"])

    assert _wait_until(settled)
    assert pool.pool.get_stats()["pool_size"] <= 5
    manager.clear_cache()
    assert _wait_until(lambda: server_connections(db_conn, name) == 0)


async def test_killed_async_pool_backends_next_borrow_works_no_leak(
    password_config: Path, tmp_path: Path, db_conn: psycopg.Connection[Any]
) -> None:
    config = derive_config(password_config, tmp_path, async_pool_settings=POOL)
    manager = PGConnectionManager()
    pool = await manager.get_database_connection(config, "async_pool")
    name = app_name(config)
    assert terminate(db_conn, name) == 3
    assert _wait_until(lambda: server_connections(db_conn, name) == 0)
    for _ in range(5):
        async with pool as conn:
            await conn.execute("SELECT 1")
    # Background refills settle: every connection idle and none leaked (as the sync twin).
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        st = pool.pool.get_stats()
        if server_connections(db_conn, name) == st["pool_size"] == st["pool_available"]:
            break
        await asyncio.sleep(0.05)
    stats = pool.pool.get_stats()
    assert server_connections(db_conn, name) == stats["pool_size"] <= 5
    assert stats["pool_available"] == stats["pool_size"]
    await manager.clear_cache_async()


def _pg_ctl_restart(sandbox: sb.Sandbox) -> None:
    data = sandbox.server_dir / "data"
    cmd = [
        str(sb.find_bindir() / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(sandbox.server_dir / "server.log"),
        "-w",
        "-t",
        "30",
        "-m",
        "fast",
        "-s",
        "restart",
    ]
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        assert runuser is not None
        cmd = [runuser, "-u", "postgres", "--", *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    subprocess.run(
        cmd, check=True, env=env, timeout=60, capture_output=True, cwd=sandbox.server_dir
    )


@pytest.mark.slow
def test_server_restart_pools_recover_without_leak(tmp_path: Path) -> None:
    # A private sandbox: restarting the session's would disturb every other test.
    own = sb.start(tmp_path / "sb")
    try:
        config = derive_config(own.configs["password"], tmp_path, pool_settings=POOL)
        manager = PGConnectionManager()
        pool = manager.get_database_connection(config, "pool")
        normal = manager.get_database_connection(config, "normal")
        with pool as conn:
            conn.execute("SELECT 1")
        with normal as conn:
            conn.execute("SELECT 1")
        _pg_ctl_restart(own)
        with pool as conn:  # check_on_checkout discards the dead ones
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with normal as conn:  # replaced transparently
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with psycopg.connect(own.superuser_conninfo, autocommit=True) as admin:
            name = app_name(config)
            assert _wait_until(
                lambda: server_connections(admin, name) == pool.pool.get_stats()["pool_size"] + 1
            )
            assert pool.pool.get_stats()["pool_size"] <= 5
            manager.clear_cache()
            assert _wait_until(lambda: server_connections(admin, name) == 0)
    finally:
        sb.stop(tmp_path / "sb")


# --- concurrency and exhaustion -----------------------------------------------------------


async def test_500_tasks_through_async_pool_of_10(
    password_config: Path, tmp_path: Path, db_conn: psycopg.Connection[Any]
) -> None:
    config = derive_config(
        password_config,
        tmp_path,
        async_pool_settings={"min_size": 2, "max_size": 10, "timeout": 20},
    )
    manager = PGConnectionManager()
    name = app_name(config)
    peak = 0

    async def work(i: int) -> int:
        nonlocal peak
        pool = await manager.get_database_connection(config, "async_pool")
        async with pool as conn:
            cur = await conn.execute("SELECT %s::int, pg_sleep(0.001)", (i,))
            row = await cur.fetchone()
            assert row is not None
            peak = max(peak, pool.pool.get_stats()["pool_size"])
            return int(row[0])

    results = await asyncio.gather(*(work(i) for i in range(500)))
    assert results == list(range(500))
    assert peak <= 10
    assert server_connections(db_conn, name) <= 10
    assert manager.cache_info["size"] == 1
    await manager.clear_cache_async()


def test_pool_exhaustion_raises_a_clear_timeout(password_config: Path, tmp_path: Path) -> None:
    config = derive_config(
        password_config, tmp_path, pool_settings={"min_size": 1, "max_size": 2, "timeout": 0.5}
    )
    pool = PGConnectionManager().get_database_connection(config, "pool")
    with pool, pool:
        started = time.monotonic()
        with pytest.raises(PoolTimeout, match=r"couldn.t get a connection after 0\.50 sec"):
            with pool:
                pass
        assert time.monotonic() - started < 3
    assert isinstance(PoolTimeout("x"), psycopg.OperationalError)
    stats = pool.pool.get_stats()
    assert stats["pool_available"] == stats["pool_size"] == 2
    pool.disconnect()


async def test_async_pool_exhaustion_raises_a_clear_timeout(
    password_config: Path, tmp_path: Path
) -> None:
    config = derive_config(
        password_config,
        tmp_path,
        async_pool_settings={"min_size": 1, "max_size": 1, "timeout": 0.5},
    )
    pool = await PGConnectionManager().get_database_connection(config, "async_pool")
    async with pool:
        with pytest.raises(PoolTimeout):
            async with pool:
                pass
    await pool.disconnect()


def test_asyncio_run_twice_with_one_manager(password_config: Path) -> None:
    manager = PGConnectionManager()
    seen: list[Any] = []

    async def use() -> None:
        for ctype in ("async", "async_pool"):
            obj = await manager.get_database_connection(password_config, ctype)
            async with obj as conn:
                cur = await conn.execute("SELECT 1")
                assert await cur.fetchone() == (1,)
            seen.append(obj)
        info = manager.cache_info  # the objects of a closed loop are not counted
        assert info["size"] == 2
        assert sorted(info["connection_types"].values()) == ["async", "async_pool"]

    asyncio.run(use())
    asyncio.run(use())  # the first loop is closed: its objects are never handed out
    assert seen[0] is not seen[2] and seen[1] is not seen[3]
    assert manager.cache_info["size"] == 0  # both loops are closed now
    manager.clear_cache()
    assert manager.cache_info["size"] == 0


def test_direct_async_pool_survives_a_second_asyncio_run(password_config: Path) -> None:
    pool = PGAsyncPoolConnection(_kwargs(password_config), {"min_size": 1, "max_size": 2})

    async def use() -> int:
        async with pool as conn:
            cur = await conn.execute("SELECT 7")
            row = await cur.fetchone()
            assert row is not None
            return int(row[0])

    assert asyncio.run(use()) == 7
    assert asyncio.run(use()) == 7
    pool.close_now(1.0)

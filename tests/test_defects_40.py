"""The known defects of the 4.0.0 release, each reproduced as a test that 4.0 fails.

- the ``async_pool`` example hangs at interpreter exit;
- a bad session setting leaves the connection in an aborted transaction;
- pools ignore ``autocommit``;
- a cached ``normal`` connection is closed when its first ``with`` block ends, yet stays
  cached, so ``cursor()`` on it then fails;
- nested ``with pool`` blocks in one thread lose a connection;
- ``clear_cache_async`` can deadlock the event loop;
- a pool with a wrong password waits the full pool timeout, then reports a generic timeout.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq
from psycopg_pool import PoolTimeout

from pgmonkey import ConfigError, PGConnectionManager
from tests._conn_support import (
    app_name,
    close_leftovers,  # noqa: F401 (autouse fixture)
    connections_after_close,
    derive_config,
)

ROOT = Path(__file__).resolve().parent.parent

# --- exit ---------------------------------------------------------------------------------

ASYNC_POOL_EXAMPLE = """
import asyncio
from pgmonkey import PGConnectionManager

async def main():
    manager = PGConnectionManager()
    pool_connection = await manager.get_database_connection(CONFIG, 'async_pool')
    # Each 'async with' cursor block acquires and releases a connection from the pool
    async with pool_connection as conn:
        async with conn.cursor() as cur:
            await cur.execute('SELECT version();')
            print(await cur.fetchone())

if __name__ == "__main__":
    asyncio.run(main())
"""

# Everything cached in a module-level manager and left open: atexit must close it all.
EVERYTHING_LEFT_OPEN = """
import asyncio
from pgmonkey import PGConnectionManager

manager = PGConnectionManager()

async def main():
    for ctype in ('async_pool', 'async'):
        obj = await manager.get_database_connection(CONFIG, ctype)
        async with obj as conn:
            await conn.execute('SELECT 1')
    print('async done')

with manager.get_database_connection(CONFIG, 'pool') as conn:
    conn.execute('SELECT 1')
with manager.get_database_connection(CONFIG, 'normal') as conn:
    conn.execute('SELECT 1')
asyncio.run(main())
asyncio.run(main())
# a loop left open (not closed) with a pool on it
loop = asyncio.new_event_loop()
loop.run_until_complete(main())
print(manager.cache_info['size'])
"""


def _run_script(body: str, config: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(f"CONFIG = {str(config)!r}\n" + textwrap.dedent(body))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONWARNINGS"] = "error::ResourceWarning"
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=5,
            env=env,
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the script did not exit within 5 seconds")
    assert time.monotonic() - started < 5
    assert proc.returncode == 0, proc.stderr
    return proc


def test_async_pool_example_exits_promptly(
    password_config: Path, tmp_path: Path, db_conn: psycopg.Connection[Any]
) -> None:
    config = derive_config(password_config, tmp_path)
    proc = _run_script(ASYNC_POOL_EXAMPLE, config, tmp_path)
    assert "PostgreSQL" in proc.stdout
    assert "Traceback" not in proc.stderr
    # The server saw every connection go away.
    assert connections_after_close(db_conn, app_name(config)) == 0


def test_everything_left_open_is_closed_at_exit(
    password_config: Path, tmp_path: Path, db_conn: psycopg.Connection[Any]
) -> None:
    config = derive_config(password_config, tmp_path)
    proc = _run_script(EVERYTHING_LEFT_OPEN, config, tmp_path)
    assert proc.stdout.count("async done") == 3
    # (The script's own unclosed event loop may be reported; nothing of ours may be.)
    for word in ("psycopg", "pgmonkey", "Task was destroyed", "deleted while still open"):
        assert word not in proc.stderr, proc.stderr
    assert connections_after_close(db_conn, app_name(config)) == 0


# --- session settings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ctype", "section"),
    [
        ("normal", "sync_settings"),
        ("pool", "sync_settings"),
        ("async", "async_settings"),
        ("async_pool", "async_settings"),
    ],
)
@pytest.mark.parametrize(
    ("name", "value"), [("statement_timeout", "not-a-duration"), ("no_such_setting", "1")]
)
async def test_bad_session_setting_fails_the_connect_naming_it(
    password_config: Path,
    tmp_path: Path,
    db_conn: psycopg.Connection[Any],
    ctype: str,
    section: str,
    name: str,
    value: str,
) -> None:
    config = derive_config(password_config, tmp_path, **{section: {name: value}})
    manager = PGConnectionManager()
    with pytest.raises(ConfigError) as info:
        result = manager.get_database_connection(config, ctype)
        if ctype.startswith("async"):
            await result
    message = str(info.value)
    assert repr(name) in message and section in message
    assert isinstance(info.value.__cause__, psycopg.Error)
    assert manager.cache_info["size"] == 0
    assert connections_after_close(db_conn, app_name(config)) == 0


@pytest.mark.parametrize("ctype", ["normal", "pool", "async", "async_pool"])
async def test_good_settings_applied_and_committed(
    password_config: Path, tmp_path: Path, ctype: str
) -> None:
    settings = {"statement_timeout": "4321", "search_path": "public, pg_catalog"}
    config = derive_config(
        password_config, tmp_path, sync_settings=settings, async_settings=settings
    )
    manager = PGConnectionManager()
    obj = manager.get_database_connection(config, ctype)
    if ctype.startswith("async"):
        obj = await obj
        async with obj as conn:
            # The settings were committed: no transaction is left open by the connect.
            assert conn.info.transaction_status == pq.TransactionStatus.IDLE
            cur = await conn.execute("SHOW statement_timeout")
            assert await cur.fetchone() == ("4321ms",)
            cur = await conn.execute("SHOW search_path")
            assert await cur.fetchone() == ("public, pg_catalog",)
        await manager.clear_cache_async()
    else:
        with obj as conn:
            assert conn.info.transaction_status == pq.TransactionStatus.IDLE
            assert conn.execute("SHOW statement_timeout").fetchone() == ("4321ms",)
            assert conn.execute("SHOW search_path").fetchone() == ("public, pg_catalog",)
        manager.clear_cache()


# --- autocommit ---------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", ["normal", "pool", "async", "async_pool"])
async def test_autocommit_is_honoured_by_every_type(
    password_config: Path, tmp_path: Path, ctype: str
) -> None:
    config = derive_config(
        password_config,
        tmp_path,
        connection_settings={"autocommit": True},
        sync_settings={"lock_timeout": "1000"},
        async_settings={"lock_timeout": "1000"},
    )
    manager = PGConnectionManager()
    obj = manager.get_database_connection(config, ctype)
    if ctype.startswith("async"):
        obj = await obj
        async with obj as conn:
            assert conn.autocommit is True
            await conn.execute("SELECT 1")
            # No implicit transaction was opened by the statement.
            assert conn.info.transaction_status == pq.TransactionStatus.IDLE
        await manager.clear_cache_async()
    else:
        with obj as conn:
            assert conn.autocommit is True
            conn.execute("SELECT 1")
            assert conn.info.transaction_status == pq.TransactionStatus.IDLE
        manager.clear_cache()


# --- the cached normal connection ---------------------------------------------------------


def test_cached_normal_connection_survives_its_with_block(auth_config: Path) -> None:
    manager = PGConnectionManager()
    connection = manager.get_database_connection(auth_config, "normal")
    with connection as conn:
        pid = conn.info.backend_pid
    # 4.0 closed it here, kept it cached, and cursor() then failed.
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        assert cur.fetchone() == (pid,)
    again = manager.get_database_connection(auth_config, "normal")
    assert again is connection
    with again as conn:
        assert conn.info.backend_pid == pid
    manager.clear_cache()


async def test_cached_async_connection_survives_its_with_block(auth_config: Path) -> None:
    manager = PGConnectionManager()
    connection = await manager.get_database_connection(auth_config, "async")
    async with connection as conn:
        pid = conn.info.backend_pid
    async with connection.cursor() as cur:
        await cur.execute("SELECT pg_backend_pid()")
        assert await cur.fetchone() == (pid,)
    await manager.clear_cache_async()


# --- nested pool blocks -------------------------------------------------------------------


def test_nested_pool_blocks_each_borrow_and_return(password_config: Path, tmp_path: Path) -> None:
    config = derive_config(
        password_config, tmp_path, pool_settings={"min_size": 2, "max_size": 4, "timeout": 5}
    )
    manager = PGConnectionManager()
    pool = manager.get_database_connection(config, "pool")
    with pool as outer:
        with pool as inner:
            assert inner is not outer
            assert inner.info.backend_pid != outer.info.backend_pid
            assert pool.cursor().connection is inner
        # the outer block still has its own connection
        assert pool.cursor().connection is outer
        assert outer.execute("SELECT 1").fetchone() == (1,)
    stats = pool.pool.get_stats()
    assert stats["pool_available"] == stats["pool_size"] >= 2
    manager.clear_cache()


async def test_nested_async_pool_blocks_each_borrow_and_return(
    password_config: Path, tmp_path: Path
) -> None:
    config = derive_config(
        password_config,
        tmp_path,
        async_pool_settings={"min_size": 2, "max_size": 4, "timeout": 5},
    )
    manager = PGConnectionManager()
    pool = await manager.get_database_connection(config, "async_pool")
    async with pool as outer:
        async with pool as inner:
            assert inner is not outer
            assert inner.info.backend_pid != outer.info.backend_pid
        await outer.execute("SELECT 1")
    stats = pool.pool.get_stats()
    assert stats["pool_available"] == stats["pool_size"] >= 2
    await manager.clear_cache_async()


# --- clear_cache_async --------------------------------------------------------------------


def test_clear_cache_async_does_not_deadlock(password_config: Path) -> None:
    errors: list[BaseException] = []

    async def scenario() -> None:
        manager = PGConnectionManager()
        await manager.get_database_connection(password_config, "async_pool")
        manager.get_database_connection(password_config, "pool")

        async def other_task() -> None:
            # 4.0 held its threading lock across the awaits of clear_cache_async: this
            # synchronous lock acquisition then blocked the event loop for ever.
            for _ in range(10):
                await manager.get_database_connection(password_config, "async")
                await asyncio.sleep(0)

        await asyncio.gather(manager.clear_cache_async(), other_task())
        await manager.clear_cache_async()
        assert manager.cache_info["size"] == 0

    def run() -> None:
        try:
            asyncio.run(scenario())
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "clear_cache_async deadlocked"
    assert not errors, errors


# --- failing pools fail fast with the server's message ------------------------------------


@pytest.mark.parametrize("ctype", ["pool", "async_pool"])
async def test_wrong_password_fails_at_creation_with_server_message(
    password_config: Path, tmp_path: Path, ctype: str
) -> None:
    pool = {"min_size": 2, "max_size": 4, "timeout": 30}
    config = derive_config(
        password_config,
        tmp_path,
        connection_settings={"password": "definitely-wrong"},
        pool_settings=pool,
        async_pool_settings=pool,
    )
    manager = PGConnectionManager()
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as info:
        result = manager.get_database_connection(config, ctype)
        if ctype == "async_pool":
            await result
    assert time.monotonic() - started < 5
    assert not isinstance(info.value, PoolTimeout)
    assert "password authentication failed" in str(info.value)
    assert "definitely-wrong" not in str(info.value)
    assert manager.cache_info["size"] == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("ctype", ["pool", "async_pool"])
async def test_unreachable_server_fails_at_creation(
    password_config: Path, tmp_path: Path, ctype: str
) -> None:
    pool = {"min_size": 1, "max_size": 2, "timeout": 30}
    config = derive_config(
        password_config,
        tmp_path,
        connection_settings={"port": str(_closed_port()), "connect_timeout": "2"},
        pool_settings=pool,
        async_pool_settings=pool,
    )
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as info:
        result = PGConnectionManager().get_database_connection(config, ctype)
        if ctype == "async_pool":
            await result
    assert time.monotonic() - started < 4
    assert not isinstance(info.value, PoolTimeout)
    assert "refused" in str(info.value).lower() or "connect" in str(info.value).lower()

"""Network faults through a TCP proxy: stalls and cuts give clear errors, never a hang.

Every connection type is driven through :class:`tests.tcp_proxy.TcpProxy` in front of the
session sandbox. Each fault is bounded by a timeout in the test itself, so a hang fails the
test instead of blocking the suite.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from pgmonkey import PGConnectionManager
from pgmonkey import sandbox as sb
from tests._conn_support import close_leftovers, derive_config
from tests.tcp_proxy import TcpProxy

__all__ = ["close_leftovers"]  # autouse fixture: closes whatever a test left open

TYPES = ("normal", "pool", "async", "async_pool")
SMALL_POOL = {"min_size": 1, "max_size": 2, "timeout": 1, "check_on_checkout": True}
# libpq's smallest connect_timeout is 2 s (1 is read as 2).
CONNECT_TIMEOUT = 2
MARGIN = 2.5


@pytest.fixture
def proxy(sandbox: sb.Sandbox) -> Iterator[TcpProxy]:
    with TcpProxy(sandbox.host, sandbox.port, lifetime=60) as p:
        yield p
    assert p.alive_threads == 0


def proxied_config(base: Path, proxy: TcpProxy, dest: Path, **sections: Any) -> Path:
    settings = {"host": proxy.host, "port": proxy.port, "connect_timeout": CONNECT_TIMEOUT}
    settings.update(sections.pop("connection_settings", {}))
    return derive_config(
        base,
        dest,
        connection_settings=settings,
        pool_settings=SMALL_POOL,
        async_pool_settings=SMALL_POOL,
        **sections,
    )


def run_sync_or_async(ctype: str, body: Callable[..., Any], *args: Any) -> Any:
    """``body(*args)`` for the sync types, ``asyncio.run(body(*args))`` for the async ones."""
    if ctype.startswith("async"):
        return asyncio.run(body(*args))
    return body(*args)


def open_and_query(config: Path, ctype: str) -> Any:
    """Get (connect) the object for *ctype* and run one query; returns the error or None."""
    manager = PGConnectionManager()
    if ctype.startswith("async"):

        async def go() -> BaseException | None:
            try:
                obj = await asyncio.wait_for(
                    manager.get_database_connection(config, ctype), timeout=30
                )
                async with obj as conn:
                    await conn.execute("SELECT 1")
            except Exception as exc:
                return exc
            finally:
                await manager.clear_cache_async()
            return None

        return asyncio.run(go())
    try:
        with manager.get_database_connection(config, ctype) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return exc
    finally:
        manager.clear_cache()
    return None


# -- connect_timeout: a server that accepts and says nothing -------------------------------


def test_connect_timeout_through_a_stalled_proxy(
    sandbox: sb.Sandbox, proxy: TcpProxy, tmp_path: Path
) -> None:
    proxy.stall()
    config = proxied_config(sandbox.configs["password"], proxy, tmp_path)
    started = time.monotonic()
    # The four types at once (each waits ~connect_timeout), every one bounded by the executor.
    with ThreadPoolExecutor(max_workers=4) as ex:
        futures = {ctype: ex.submit(open_and_query, config, ctype) for ctype in TYPES}
        errors = {ctype: f.result(timeout=CONNECT_TIMEOUT + 20) for ctype, f in futures.items()}
    elapsed = time.monotonic() - started
    for ctype, exc in errors.items():
        assert isinstance(exc, psycopg.OperationalError), (ctype, exc)
        assert not isinstance(exc, PoolTimeout), (ctype, exc)  # the connect's own error
        assert "timeout" in str(exc).lower(), (ctype, str(exc))
    assert elapsed < CONNECT_TIMEOUT + MARGIN, elapsed
    assert proxy.accepted >= 4


# -- statement_timeout from sync_settings / async_settings ---------------------------------


@pytest.mark.parametrize("ctype", TYPES)
def test_statement_timeout_cancels_a_long_query(
    password_config: Path, tmp_path: Path, ctype: str
) -> None:
    settings = {"statement_timeout": "300ms"}
    config = derive_config(
        password_config,
        tmp_path,
        sync_settings=settings,
        async_settings=settings,
        pool_settings=SMALL_POOL,
        async_pool_settings=SMALL_POOL,
    )
    manager = PGConnectionManager()

    def sync() -> tuple[float, Any]:
        obj = manager.get_database_connection(config, ctype)
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            with obj as conn:
                conn.execute("SELECT pg_sleep(10)")
        elapsed = time.monotonic() - started
        with obj as conn:  # rolled back and usable again, the setting still applied
            row = conn.execute("SELECT 1, current_setting('statement_timeout')").fetchone()
        manager.clear_cache()
        return elapsed, row

    async def asynchronous() -> tuple[float, Any]:
        obj = await manager.get_database_connection(config, ctype)
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            async with obj as conn:
                await asyncio.wait_for(conn.execute("SELECT pg_sleep(10)"), timeout=20)
        elapsed = time.monotonic() - started
        async with obj as conn:
            cur = await conn.execute("SELECT 1, current_setting('statement_timeout')")
            row = await cur.fetchone()
        await manager.clear_cache_async()
        return elapsed, row

    elapsed, row = run_sync_or_async(ctype, asynchronous if ctype.startswith("async") else sync)
    assert elapsed < 3, elapsed
    assert row == (1, "300ms")


# -- pool timeout: the pool cannot grow because the backend stalls -------------------------


def test_pool_timeout_when_new_connections_stall(
    sandbox: sb.Sandbox, proxy: TcpProxy, tmp_path: Path
) -> None:
    config = proxied_config(sandbox.configs["password"], proxy, tmp_path)
    manager = PGConnectionManager()
    pool = manager.get_database_connection(config, "pool")
    with pool as held:  # the pool's one connection is busy; a second must be made
        held.execute("SELECT 1")
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(PoolTimeout, match=r"couldn.t get a connection after 1\.00 sec"):
            with pool:
                pass
        assert time.monotonic() - started < 1 + MARGIN
        assert held.execute("SELECT 2").fetchone() == (2,)  # the busy one is unharmed
    proxy.forward()
    with pool as conn:
        assert conn.execute("SELECT 3").fetchone() == (3,)
    stats = pool.pool.get_stats()
    assert stats["pool_size"] <= 2 and stats.get("requests_waiting", 0) == 0
    started = time.monotonic()
    manager.clear_cache()
    assert time.monotonic() - started < 10  # closing does not wait for the stalled attempt


async def test_async_pool_timeout_when_new_connections_stall(
    sandbox: sb.Sandbox, proxy: TcpProxy, tmp_path: Path
) -> None:
    config = proxied_config(sandbox.configs["password"], proxy, tmp_path)
    manager = PGConnectionManager()
    pool = await manager.get_database_connection(config, "async_pool")
    async with pool as held:
        await held.execute("SELECT 1")
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(PoolTimeout):
            async with pool:
                pass
        assert time.monotonic() - started < 1 + MARGIN
        cur = await held.execute("SELECT 2")
        assert await cur.fetchone() == (2,)
    proxy.forward()
    async with pool as conn:
        cur = await conn.execute("SELECT 3")
        assert await cur.fetchone() == (3,)
    stats = pool.pool.get_stats()
    assert stats["pool_size"] <= 2 and stats.get("requests_waiting", 0) == 0
    await asyncio.wait_for(manager.clear_cache_async(), timeout=10)


# -- a cut mid-query -----------------------------------------------------------------------


@pytest.mark.parametrize("ctype", TYPES)
def test_cut_mid_query_raises_operational_error_then_recovers(
    sandbox: sb.Sandbox, proxy: TcpProxy, tmp_path: Path, ctype: str
) -> None:
    config = proxied_config(sandbox.configs["password"], proxy, tmp_path)
    manager = PGConnectionManager()
    cutter = threading.Timer(0.5, proxy.cut)

    def sync() -> tuple[float, Any]:
        obj = manager.get_database_connection(config, ctype)
        cutter.start()
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError) as info:
            with obj as conn:
                conn.execute("SELECT pg_sleep(10)")
        elapsed = time.monotonic() - started
        with obj as conn:  # replaced (normal) or checked out anew (pool)
            row = conn.execute("SELECT 1").fetchone()
        manager.clear_cache()
        return elapsed, (info.value, row)

    async def asynchronous() -> tuple[float, Any]:
        obj = await manager.get_database_connection(config, ctype)
        cutter.start()
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError) as info:
            async with obj as conn:
                await asyncio.wait_for(conn.execute("SELECT pg_sleep(10)"), timeout=20)
        elapsed = time.monotonic() - started
        async with obj as conn:
            cur = await conn.execute("SELECT 1")
            row = await cur.fetchone()
        await manager.clear_cache_async()
        return elapsed, (info.value, row)

    try:
        elapsed, (exc, row) = run_sync_or_async(
            ctype, asynchronous if ctype.startswith("async") else sync
        )
    finally:
        cutter.cancel()
    assert elapsed < 0.5 + MARGIN, elapsed
    assert not isinstance(exc, PoolTimeout)
    assert "closed" in str(exc).lower() or "lost" in str(exc).lower(), str(exc)
    assert row == (1,)


# -- a cut while idle: the next block gets a working connection -----------------------------


@pytest.mark.parametrize("ctype", TYPES)
def test_cut_while_idle_is_replaced_at_the_next_block(
    sandbox: sb.Sandbox, proxy: TcpProxy, tmp_path: Path, ctype: str
) -> None:
    # SMALL_POOL has check_on_checkout: pools check; normal/async check their idle connection.
    config = proxied_config(sandbox.configs["password"], proxy, tmp_path)
    manager = PGConnectionManager()

    def sync() -> list[Any]:
        obj = manager.get_database_connection(config, ctype)
        rows = []
        for _ in range(3):
            with obj as conn:
                rows.append(conn.execute("SELECT 1").fetchone())
            assert proxy.cut() > 0
            time.sleep(0.1)  # the client's socket sees the close
        manager.clear_cache()
        return rows

    async def asynchronous() -> list[Any]:
        obj = await manager.get_database_connection(config, ctype)
        rows = []
        for _ in range(3):
            async with obj as conn:
                cur = await asyncio.wait_for(conn.execute("SELECT 1"), timeout=20)
                rows.append(await cur.fetchone())
            assert proxy.cut() > 0
            await asyncio.sleep(0.1)
        await manager.clear_cache_async()
        return rows

    started = time.monotonic()
    rows = run_sync_or_async(ctype, asynchronous if ctype.startswith("async") else sync)
    assert rows == [(1,)] * 3
    assert time.monotonic() - started < 10

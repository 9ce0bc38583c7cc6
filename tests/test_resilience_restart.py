"""A server restart under load: 200 asyncio tasks (async_pool) and 16 threads (pool).

A private sandbox (its own directory, stopped at the end of the module) is restarted while
the load runs, so the session's sandbox that other tests share is never disturbed. Every
query must either succeed or raise a clear error (the psycopg.OperationalError family, which
includes psycopg_pool's PoolTimeout), both pools must serve again within 5 s of the server's
return, and nothing may leak: pool statistics and the server's pg_stat_activity are checked.
"""

from __future__ import annotations

import asyncio
import collections
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgmonkey import PGConnectionManager
from pgmonkey import sandbox as sb
from tests._conn_support import app_name, close_leftovers, derive_config, server_connections

__all__ = ["close_leftovers"]  # autouse fixture: closes whatever a test left open

TASKS = 200
THREADS = 16
SYNC_POOL = {"min_size": 2, "max_size": 8, "timeout": 5, "check_on_checkout": True}
ASYNC_POOL = {"min_size": 2, "max_size": 10, "timeout": 5, "check_on_checkout": True}
SERVE_AGAIN_WITHIN = 5.0
QUERY = "SELECT %s::int, pg_sleep(0.002)"


@pytest.fixture(scope="module")
def own_sandbox() -> Iterator[sb.Sandbox]:
    # Short path: the server's socket path must stay under ~100 bytes.
    path = Path(tempfile.mkdtemp(prefix="pgm-restart-"))
    try:
        yield sb.start(path / "sb")
    finally:
        sb.stop(path / "sb")
        shutil.rmtree(path, ignore_errors=True)


class Outcomes:
    """Per pool: how many queries succeeded, which errors, and when successes happened."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ok = 0
        self.errors: collections.Counter[str] = collections.Counter()
        self.unclear: list[BaseException] = []
        self.success_times: list[float] = []

    def success(self) -> None:
        with self._lock:
            self.ok += 1
            self.success_times.append(time.monotonic())

    def failure(self, exc: BaseException) -> None:
        with self._lock:
            self.errors[f"{type(exc).__module__}.{type(exc).__qualname__}"] += 1
            if not isinstance(exc, psycopg.OperationalError):
                self.unclear.append(exc)

    def first_success_after(self, t: float) -> float | None:
        with self._lock:
            later = [s for s in self.success_times if s >= t]
        return min(later) if later else None


@pytest.mark.slow
def test_restart_under_load_every_query_accounted_no_leak(
    own_sandbox: sb.Sandbox, tmp_path: Path
) -> None:
    base = own_sandbox.configs["password"]
    extra = {"connect_timeout": 3}
    sync_cfg = derive_config(base, tmp_path, pool_settings=SYNC_POOL, connection_settings=extra)
    async_cfg = derive_config(
        base, tmp_path, async_pool_settings=ASYNC_POOL, connection_settings=extra
    )
    manager = PGConnectionManager()
    stop = threading.Event()
    sync_out, async_out = Outcomes(), Outcomes()
    loop_ready = threading.Event()
    async_state: dict[str, Any] = {}

    pool = manager.get_database_connection(sync_cfg, "pool")

    def worker(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                with pool as conn:
                    row = conn.execute(QUERY, (n * 100_000 + i,)).fetchone()
                    assert row is not None and row[0] == n * 100_000 + i
                sync_out.success()
            except Exception as exc:
                sync_out.failure(exc)
                time.sleep(0.01)  # a failing server is not hammered in a tight loop

    async def async_load() -> None:
        apool = await manager.get_database_connection(async_cfg, "async_pool")
        async_state["pool"] = apool

        async def task(n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    async with apool as conn:
                        cur = await conn.execute(QUERY, (n * 100_000 + i,))
                        row = await cur.fetchone()
                        assert row is not None and row[0] == n * 100_000 + i
                    async_out.success()
                except Exception as exc:
                    async_out.failure(exc)
                    await asyncio.sleep(0.01)

        tasks = [asyncio.create_task(task(n)) for n in range(TASKS)]
        loop_ready.set()
        # Bounded: tasks finish their current query once stop is set.
        while not stop.is_set():
            await asyncio.sleep(0.05)
        _done, pending = await asyncio.wait(tasks, timeout=20)
        async_state["pending"] = len(pending)
        for t in pending:
            t.cancel()
        async_state["stats"] = apool.pool.get_stats()
        await apool.disconnect()  # this one only: the manager also caches the sync pool

    def run_loop() -> None:
        try:
            asyncio.run(async_load())
        except BaseException as exc:  # reported by the main thread
            async_state["error"] = exc
            loop_ready.set()

    loop_thread = threading.Thread(target=run_loop, name="restart-async-load")
    threads = [threading.Thread(target=worker, args=(n,), name=f"w{n}") for n in range(THREADS)]
    loop_thread.start()
    for t in threads:
        t.start()
    try:
        assert loop_ready.wait(timeout=30), "the async load did not start"
        assert "error" not in async_state, async_state.get("error")
        time.sleep(1.0)  # load running on both pools
        assert sync_out.ok > 0 and async_out.ok > 0
        restart_started = time.monotonic()
        sb.restart(own_sandbox.dir)
        back = time.monotonic()
        # Serving again: successes on both pools, polled (never longer than the bound).
        deadline = back + SERVE_AGAIN_WITHIN + 1
        while time.monotonic() < deadline:
            if sync_out.first_success_after(back) and async_out.first_success_after(back):
                break
            time.sleep(0.05)
        time.sleep(0.5)  # a little steady load after recovery
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=20)
        loop_thread.join(timeout=40)
    assert not [t.name for t in threads if t.is_alive()], "worker threads hung"
    assert not loop_thread.is_alive(), "the async load hung"
    assert "error" not in async_state, async_state.get("error")
    assert async_state["pending"] == 0, "tasks still running 20 s after stop"

    # Every query accounted for: succeeded, or a clear (OperationalError family) error.
    for name, out in (("pool", sync_out), ("async_pool", async_out)):
        assert not out.unclear, (name, out.errors, out.unclear[:3])
        first = out.first_success_after(back)
        assert first is not None, (name, "never served again", out.errors)
        assert first - back < SERVE_AGAIN_WITHIN, (name, first - back, out.errors)
        assert out.first_success_after(restart_started) is not None

    # Nothing leaked: pool statistics and the server's own count.
    stats = pool.pool.get_stats()
    assert stats["pool_size"] <= SYNC_POOL["max_size"], stats
    assert stats.get("requests_waiting", 0) == 0, stats
    astats = async_state["stats"]
    assert astats["pool_size"] <= ASYNC_POOL["max_size"], astats
    assert astats.get("requests_waiting", 0) == 0, astats
    with psycopg.connect(own_sandbox.superuser_conninfo, autocommit=True) as admin:
        sync_name, async_name = app_name(sync_cfg), app_name(async_cfg)
        assert server_connections(admin, async_name) == 0  # closed with its loop
        assert server_connections(admin, sync_name) <= stats["pool_size"] <= 8
        with pool as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        manager.clear_cache()
        deadline = time.monotonic() + 5
        while server_connections(admin, sync_name) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server_connections(admin, sync_name) == 0

    # For the report (pytest -s shows it): what was survived.
    print(
        f"\nrestart under load: pool ok={sync_out.ok} errors={dict(sync_out.errors)} "
        f"first success {sync_out.first_success_after(back) - back:.2f}s after return; "  # type: ignore[operator]
        f"async_pool ok={async_out.ok} errors={dict(async_out.errors)} "
        f"first success {async_out.first_success_after(back) - back:.2f}s after return; "  # type: ignore[operator]
        f"restart took {back - restart_started:.2f}s"
    )

"""Server faults under load: 200 asyncio tasks (async_pool) and 16 threads (pool).

Faults: a server restart, a 2 s outage (stop, wait, start) and every backend of both pools
killed at once. A private sandbox (its own directory, stopped at the end of the module)
takes them, so the session's sandbox that other tests share is never disturbed. Every
query must either succeed or raise a clear error (the psycopg.OperationalError family, which
includes psycopg_pool's PoolTimeout), both pools must serve again within 5 s of the server's
return, and nothing may leak: pool statistics and the server's pg_stat_activity are checked.
"""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgmonkey import PGConnectionManager
from pgmonkey import sandbox as sb
from tests._conn_support import (
    app_name,
    close_leftovers,
    connections_after_close,
    derive_config,
    server_connections,
    terminate,
)

__all__ = ["close_leftovers"]  # autouse fixture: closes whatever a test left open

TASKS = 200
THREADS = 16
SYNC_POOL = {"min_size": 2, "max_size": 8, "timeout": 5, "check_on_checkout": True}
ASYNC_POOL = {"min_size": 2, "max_size": 10, "timeout": 5, "check_on_checkout": True}
SERVE_AGAIN_WITHIN = 5.0
OUTAGE = 2.0
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


def run_fault_under_load(
    box: sb.Sandbox, tmp_path: Path, fault: Callable[[sb.Sandbox, list[str]], None], what: str
) -> None:
    """Run the load on both pools, inject *fault*, check every outcome, recovery and leaks.

    *fault* gets the sandbox and the application names of the two pools; it returns once
    the server is back (serving again is timed from then).
    """
    base = box.configs["password"]
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
        fault(box, [app_name(sync_cfg), app_name(async_cfg)])
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
    with psycopg.connect(box.superuser_conninfo, autocommit=True) as admin:
        sync_name, async_name = app_name(sync_cfg), app_name(async_cfg)
        # Closed: the server may take a moment to see the backends go.
        assert connections_after_close(admin, async_name) == 0
        assert server_connections(admin, sync_name) <= stats["pool_size"] <= 8
        with pool as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        manager.clear_cache()
        assert connections_after_close(admin, sync_name) == 0

    # For the report (pytest -s shows it): what was survived.
    print(
        f"\n{what} under load: pool ok={sync_out.ok} errors={dict(sync_out.errors)} "
        f"first success {sync_out.first_success_after(back) - back:.2f}s after return; "  # type: ignore[operator]
        f"async_pool ok={async_out.ok} errors={dict(async_out.errors)} "
        f"first success {async_out.first_success_after(back) - back:.2f}s after return; "  # type: ignore[operator]
        f"fault took {back - restart_started:.2f}s"
    )


def _restart(box: sb.Sandbox, _names: list[str]) -> None:
    sb.restart(box.dir)


def _pg_ctl(box: sb.Sandbox, *args: str) -> None:
    """pg_ctl on the sandbox's data directory (as the server's user when we are root)."""
    cmd = [str(sb.find_bindir() / "pg_ctl"), "-D", str(box.server_dir / "data"), *args]
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        assert runuser is not None
        cmd = [runuser, "-u", "postgres", "--", *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    subprocess.run(cmd, check=True, env=env, timeout=60, capture_output=True, cwd=box.server_dir)


def _outage(box: sb.Sandbox, _names: list[str]) -> None:
    """The server stops (fast shutdown), stays away OUTAGE seconds, then starts again."""
    _pg_ctl(box, "-m", "fast", "-w", "-t", "30", "-s", "stop")
    time.sleep(OUTAGE)
    log = str(box.server_dir / "server.log")
    _pg_ctl(box, "-l", log, "-w", "-t", "30", "-s", "start")


def _kill_backends(box: sb.Sandbox, names: list[str]) -> None:
    """Every backend of both pools killed at once (pg_terminate_backend), twice."""
    with psycopg.connect(box.superuser_conninfo, autocommit=True) as admin:
        for _ in range(2):
            for name in names:
                assert terminate(admin, name) > 0
            time.sleep(0.3)


@pytest.mark.slow
def test_restart_under_load(own_sandbox: sb.Sandbox, tmp_path: Path) -> None:
    run_fault_under_load(own_sandbox, tmp_path, _restart, "restart")


@pytest.mark.slow
def test_killed_backends_under_load(own_sandbox: sb.Sandbox, tmp_path: Path) -> None:
    run_fault_under_load(own_sandbox, tmp_path, _kill_backends, "killed backends")


@pytest.mark.slow
def test_outage_under_load(tmp_path: Path) -> None:
    # A sandbox of its own: stopping the server behind the sandbox's back leaves its state
    # file with an old pid, so nothing else may use this one afterwards.
    path = Path(tempfile.mkdtemp(prefix="pgm-outage-"))
    try:
        box = sb.start(path / "sb")
        run_fault_under_load(box, tmp_path, _outage, f"{OUTAGE:g} s outage")
    finally:
        sb.stop(path / "sb")
        shutil.rmtree(path, ignore_errors=True)


# -- a loop that ends with the pool still open, while the pool reconnects ------------------


def test_asyncio_run_returns_with_an_open_pool_reconnecting(
    password_config: Path, tmp_path: Path, superuser_dsn: str
) -> None:
    """4.0-style code never closes its cached pool; asyncio.run must still return.

    Killed backends make the pool reconnect (check_on_checkout sweeps it); the loop then
    ends while its workers are connecting. psycopg_pool's workers swallow that cancellation
    and asyncio.run used to wait for them forever.
    """
    config = derive_config(
        password_config,
        tmp_path,
        async_pool_settings={
            "min_size": 3,
            "max_size": 5,
            "timeout": 10,
            "check_on_checkout": True,
        },
    )
    manager = PGConnectionManager()
    name = app_name(config)
    errors: list[BaseException] = []

    async def main() -> None:
        pool = await manager.get_database_connection(config, "async_pool")
        with psycopg.connect(superuser_dsn, autocommit=True) as admin:
            assert terminate(admin, name) == 3
        async with pool as conn:
            await conn.execute("SELECT 1")
        # Returns with the pool open and reconnecting.

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True, name="asyncio-run-open-pool")
    t.start()
    t.join(timeout=20)
    assert not t.is_alive(), "asyncio.run hung on the open, reconnecting pool"
    assert not errors, errors
    manager.clear_cache()  # the loop is closed: sockets are closed directly

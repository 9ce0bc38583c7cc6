"""Load without errors: the suite's small version of ``benchmarks/bench_load.py``.

2,000 queries from 500 concurrent tasks through one ``async_pool`` of max_size 10, and 2,000
from 32 threads through one ``pool`` of max_size 5. Every query must return its own value;
no timing is asserted (that is the benchmark's job).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import psycopg

from pgmonkey import PGConnectionManager
from tests._conn_support import app_name, close_leftovers, derive_config, server_connections

__all__ = ["close_leftovers"]  # autouse fixture: closes whatever a test left open

QUERIES = 2_000


async def test_2000_queries_from_500_tasks_through_async_pool_of_10(
    password_config: Path, tmp_path: Path, db_conn: psycopg.Connection[Any]
) -> None:
    config = derive_config(
        password_config,
        tmp_path,
        async_pool_settings={"min_size": 2, "max_size": 10, "timeout": 30},
    )
    manager = PGConnectionManager()
    numbers = iter(range(QUERIES))
    seen: list[int] = []
    peak = 0

    async def task() -> None:
        nonlocal peak
        for i in numbers:
            # The manager's cached call on every query, as application code does.
            pool = await manager.get_database_connection(config, "async_pool")
            async with pool as conn:
                cur = await conn.execute("SELECT %s::int", (i,))
                row = await cur.fetchone()
            assert row == (i,)
            seen.append(i)
            peak = max(peak, pool.pool.get_stats()["pool_size"])

    await asyncio.wait_for(asyncio.gather(*(task() for _ in range(500))), timeout=120)
    assert sorted(seen) == list(range(QUERIES))
    assert peak <= 10
    pool = await manager.get_database_connection(config, "async_pool")
    stats = pool.pool.get_stats()
    assert stats["pool_size"] <= 10 and stats.get("requests_waiting", 0) == 0
    assert server_connections(db_conn, app_name(config)) <= 10
    assert manager.cache_info["size"] == 1
    await manager.clear_cache_async()


def test_2000_queries_from_32_threads_through_pool_of_5(
    password_config: Path, tmp_path: Path, db_conn: psycopg.Connection[Any]
) -> None:
    config = derive_config(
        password_config, tmp_path, pool_settings={"min_size": 1, "max_size": 5, "timeout": 30}
    )
    manager = PGConnectionManager()
    numbers = iter(range(QUERIES))
    lock = threading.Lock()
    seen: list[int] = []
    errors: list[BaseException] = []

    def take() -> int | None:
        with lock:
            return next(numbers, None)

    def worker() -> None:
        try:
            while (i := take()) is not None:
                with manager.get_database_connection(config, "pool") as conn:
                    row = conn.execute("SELECT %s::int", (i,)).fetchone()
                assert row == (i,)
                with lock:
                    seen.append(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors[:3]
    assert sorted(seen) == list(range(QUERIES))
    pool = manager.get_database_connection(config, "pool")
    stats = pool.pool.get_stats()
    assert stats["pool_size"] <= 5 and stats.get("requests_waiting", 0) == 0
    assert server_connections(db_conn, app_name(config)) <= 5
    manager.clear_cache()

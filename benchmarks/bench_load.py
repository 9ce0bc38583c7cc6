"""Load benchmark: many concurrent tasks through a small async pool.

10,000 queries from 500 concurrent asyncio tasks through ``async_pool`` with ``max_size`` 10,
against a raw ``psycopg_pool.AsyncConnectionPool`` of the same size over the same conninfo,
in one run against a private sandbox. Every query must succeed (any error fails the run);
the report is throughput (queries/s) of each and the ratio, best of a few interleaved rounds.

Run: ``python benchmarks/bench_load.py [--queries N] [--tasks N] [--rounds N]``
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg_pool import AsyncConnectionPool

from pgmonkey import PGConnectionManager
from pgmonkey import sandbox as sb
from pgmonkey.config import connect_params, load_config

MAX_SIZE = 10
QUERY = "SELECT %s::int"


async def drive(
    borrow: Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]],
    queries: int,
    tasks: int,
) -> float:
    """Seconds to run *queries* queries from *tasks* concurrent tasks; checks every result."""
    counter = iter(range(queries))

    async def task() -> int:
        done = 0
        for i in counter:  # shared iterator: tasks take the next query number
            async with borrow() as conn:
                cur = await conn.execute(QUERY, (i,))
                row = await cur.fetchone()
            if row != (i,):
                raise AssertionError(f"query {i} returned {row!r}")
            done += 1
        return done

    started = time.perf_counter()
    counts = await asyncio.gather(*(task() for _ in range(tasks)))
    elapsed = time.perf_counter() - started
    if sum(counts) != queries:
        raise AssertionError(f"{sum(counts)} of {queries} queries ran")
    return elapsed


def pgmonkey_config(base: Path, dest: Path) -> Path:
    data = yaml.safe_load(base.read_text())
    data["async_pool_settings"] = {
        "min_size": MAX_SIZE,
        "max_size": MAX_SIZE,
        "timeout": 60,
        "check_on_checkout": False,
    }
    path = dest / "load.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


async def bench(config: Path, queries: int, tasks: int, rounds: int) -> dict[str, float]:
    manager = PGConnectionManager()
    pgm = await manager.get_database_connection(config, "async_pool")
    params = connect_params(load_config(config))
    raw: AsyncConnectionPool[Any] = AsyncConnectionPool(
        params.conninfo, min_size=MAX_SIZE, max_size=MAX_SIZE, timeout=60, open=False
    )
    await raw.open(wait=True)

    def pgm_borrow() -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return pgm  # type: ignore[no-any-return]

    def raw_borrow() -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        return raw.connection()

    best = {"pgmonkey": float("inf"), "raw": float("inf")}
    try:
        await drive(pgm_borrow, min(queries, 1000), tasks)  # warm-up both
        await drive(raw_borrow, min(queries, 1000), tasks)
        for _ in range(rounds):  # interleaved, best of: the machine is shared
            best["pgmonkey"] = min(best["pgmonkey"], await drive(pgm_borrow, queries, tasks))
            best["raw"] = min(best["raw"], await drive(raw_borrow, queries, tasks))
        stats = pgm.pool.get_stats()
        if stats["pool_size"] > MAX_SIZE or stats.get("requests_waiting", 0):
            raise AssertionError(f"pool statistics after the run: {stats}")
    finally:
        await raw.close()
        await manager.clear_cache_async()
    return best


def main(argv: list[str] | None = None) -> int:
    # SIGTERM (a kill, a runner's timeout) unwinds like Ctrl-C: the sandbox is stopped below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="pgm-bench-load-"))
    try:
        box = sb.start(tmp / "sb")
        config = pgmonkey_config(box.configs["password"], tmp)
        best = asyncio.run(bench(config, args.queries, args.tasks, args.rounds))
    finally:
        sb.stop(tmp / "sb")
        shutil.rmtree(tmp, ignore_errors=True)
    q = args.queries
    pgm_qps, raw_qps = q / best["pgmonkey"], q / best["raw"]
    print(
        f"{q} queries, {args.tasks} concurrent tasks, pool max_size {MAX_SIZE}, "
        f"best of {args.rounds} rounds, 0 errors"
    )
    print(f"  pgmonkey async_pool       {pgm_qps:9,.0f} queries/s ({best['pgmonkey']:.2f} s)")
    print(f"  raw AsyncConnectionPool   {raw_qps:9,.0f} queries/s ({best['raw']:.2f} s)")
    print(f"  ratio pgmonkey/raw        {pgm_qps / raw_qps:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

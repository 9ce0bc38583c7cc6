"""Connection benchmarks, as ratios measured in one run against a private sandbox.

1. A cached ``get_database_connection`` call vs a faithful re-creation of what 4.0.0 paid
   per cached call: read and ``yaml.safe_load`` the file, then ``json.dumps`` + SHA-256 of
   the dict to find the cache key, under a lock. Goal: ours at least 50x cheaper.
2. Pool borrow + ``SELECT 1`` through ``with pool as conn`` vs raw psycopg_pool
   (``with pool.connection() as conn``) over the same conninfo. Goal: within 1.1x.

Run: ``python benchmarks/bench_connections.py``
"""

from __future__ import annotations

import hashlib
import json
import signal
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from psycopg_pool import ConnectionPool

from pgmonkey import PGConnectionManager
from pgmonkey import sandbox as sb

POOL = {"min_size": 2, "max_size": 2, "timeout": 10}


def legacy_cached_call(path: Path, cache: dict[str, Any], lock: threading.Lock) -> Any:
    """What 4.0.0 did on every call, cache hit or not: parse, hash, look up."""
    with open(path) as f:
        config = yaml.safe_load(f)
    key = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()
    key += ":pool"
    with lock:
        return cache.get(key)


def per_call(fn: Callable[[], Any], n: int, repeats: int = 5) -> float:
    """Best-of-*repeats* seconds per call over *n* calls."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - started) / n)
    return best


def bench_cached_call(config: Path) -> float:
    manager = PGConnectionManager()
    pool = manager.get_database_connection(config, "pool")
    cache: dict[str, Any] = {}
    lock = threading.Lock()
    legacy_cached_call(config, cache, lock)

    ours = per_call(lambda: manager.get_database_connection(config, "pool"), 20000)
    legacy = per_call(lambda: legacy_cached_call(config, cache, lock), 500)
    assert manager.get_database_connection(config, "pool") is pool
    manager.clear_cache()
    ratio = legacy / ours
    print(
        f"cached get_database_connection: {ours * 1e6:8.2f} us/call   "
        f"4.0.0 re-creation: {legacy * 1e6:8.2f} us/call   -> {ratio:6.0f}x cheaper "
        f"(goal >= 50x)"
    )
    return ratio


def bench_borrow(config: Path) -> float:
    manager = PGConnectionManager()
    pool = manager.get_database_connection(config, "pool")
    raw: ConnectionPool[Any] = ConnectionPool(
        pool._conninfo, kwargs=pool.connect_kwargs(with_conninfo=False), open=False, **POOL
    )
    raw.open(wait=True)

    def ours() -> None:
        with pool as conn:
            conn.execute("SELECT 1")

    def baseline() -> None:
        with raw.connection() as conn:
            conn.execute("SELECT 1")

    for fn in (ours, baseline):  # warm up
        per_call(fn, 300, 1)
    # Interleaved rounds, so drift on a shared machine hits both sides alike.
    ratios: list[float] = []
    t_ours: list[float] = []
    t_raw: list[float] = []
    for i in range(15):
        first, second = (ours, baseline) if i % 2 == 0 else (baseline, ours)
        x = per_call(first, 500, 1)
        y = per_call(second, 500, 1)
        a, b = (x, y) if first is ours else (y, x)
        t_ours.append(a)
        t_raw.append(b)
        ratios.append(a / b)

    # The wrapper's own cost, without the round trip: borrow and return only.
    def ours_empty() -> None:
        with pool:
            pass

    def raw_empty() -> None:
        with raw.connection():
            pass

    overhead = per_call(ours_empty, 5000) - per_call(raw_empty, 5000)
    raw.close()
    manager.clear_cache()
    ratio = min(t_ours) / min(t_raw)
    print(
        f"pool borrow + SELECT 1: pgmonkey {min(t_ours) * 1e6:7.1f} us   "
        f"raw psycopg_pool {min(t_raw) * 1e6:7.1f} us   -> {ratio:5.3f}x best-of-"
        f"{len(ratios)} (median of interleaved ratios {statistics.median(ratios):5.3f}x; "
        f"goal <= 1.1x); wrapper overhead {overhead * 1e6:+.1f} us/borrow"
    )
    return ratio


def main() -> None:
    # SIGTERM (a kill, a runner's timeout) unwinds like Ctrl-C: the sandbox is stopped below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="pgm-bench-") as tmp:
        sandbox = sb.start(Path(tmp) / "sb")
        try:
            src = yaml.safe_load(sandbox.configs["password"].read_text())
            src["pool_settings"] = dict(POOL)
            config = Path(tmp) / "bench.yaml"
            config.write_text(yaml.safe_dump(src, sort_keys=False))
            config.chmod(0o600)
            bench_cached_call(config)
            bench_borrow(config)
        finally:
            sb.stop(Path(tmp) / "sb")


if __name__ == "__main__":
    main()

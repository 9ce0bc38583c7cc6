"""Benchmark: query -> DataFrame and DataFrame -> table, pgmonkey vs the usual ways.

    python benchmarks/bench_frames.py                 # 1,000,000 rows, own sandbox
    python benchmarks/bench_frames.py --rows 100000   # a quick run
    python benchmarks/bench_frames.py --dsn "host=... dbname=..."

Data: bigint, float8, varchar, timestamptz, bool, numeric (generate_series). to_sql also
appends into a table of other types (integer, real, varchar(16), timestamp, boolean,
numeric(12,2)), the path where the server casts every value. Every variant
runs in its own subprocess, timed best of ``--repeat`` (slow baselines once), and reports
its peak RSS (``ru_maxrss``: tracemalloc misses numpy's and libpq's allocations) and its
RSS before the first query (imports and connection). Ratios are against the baseline
measured in the same run. Goals: read_sql >= 4x faster than pandas.read_sql with no more
peak memory; to_sql >= 10x faster than DataFrame.to_sql through SQLAlchemy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

TABLE = "bench_frames"
QUERY = f"SELECT id, f, s, ts, b, n FROM {TABLE}"
READ_BASELINE = "pandas.read_sql"
WRITE_BASELINE = "pandas DataFrame.to_sql (SQLAlchemy)"
APPEND_CAST = "pgmonkey.to_sql append, other types"
# Variants that take tens of seconds at 1M rows are timed once.
SLOW = {READ_BASELINE, "fetchall + from_records", WRITE_BASELINE}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _read_variants(dsn: str) -> dict[str, Callable[[], Any]]:
    import pandas as pd
    import psycopg

    import pgmonkey

    conn = psycopg.connect(dsn, autocommit=True)

    def pandas_read_sql() -> Any:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "only SQLAlchemy connectables are supported"
            return pd.read_sql(QUERY, conn)

    def fetchall() -> Any:
        with conn.cursor() as cur:
            cur.execute(QUERY)
            names = [c.name for c in cur.description or ()]
            return pd.DataFrame.from_records(cur.fetchall(), columns=names)

    variants: dict[str, Callable[[], Any]] = {
        "__rows__": lambda: range(conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]),
        READ_BASELINE: pandas_read_sql,
        "fetchall + from_records": fetchall,
        "pgmonkey.read_sql": lambda: pgmonkey.read_sql(QUERY, conn),
    }
    try:
        import connectorx as cx

        url = _url(dsn, "postgresql")
        variants["connectorx"] = lambda: cx.read_sql(url, QUERY)
    except ImportError:
        pass
    return variants


def _write_variants(dsn: str) -> dict[str, Callable[[], Any]]:
    import psycopg

    import pgmonkey

    conn = psycopg.connect(dsn, autocommit=True)
    df = pgmonkey.read_sql(QUERY, conn)

    def append_cast() -> Any:
        # Into columns of other types: staged, then cast by the server as an INSERT would.
        conn.execute("TRUNCATE bench_cast")
        return pgmonkey.to_sql(df, "bench_cast", conn, if_exists="append")

    variants: dict[str, Callable[[], Any]] = {
        "__rows__": lambda: df,
        "pgmonkey.to_sql": lambda: pgmonkey.to_sql(df, "bench_out", conn, if_exists="replace"),
        APPEND_CAST: append_cast,
    }
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(_url(dsn, "postgresql+psycopg"))
        variants[WRITE_BASELINE] = lambda: df.to_sql(
            "bench_out_pandas", engine, if_exists="replace", index=False
        )
    except ImportError:
        print("SQLAlchemy is not installed: pip install 'pgmonkey[bench]'", file=sys.stderr)
    return variants


def _url(dsn: str, scheme: str) -> str:
    from urllib.parse import quote

    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(dsn)
    user = quote(str(p.get("user", "")), safe="")
    password = quote(str(p.get("password", "")), safe="")
    auth = f"{user}:{password}@" if password else f"{user}@"
    return f"{scheme}://{auth}{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{p.get('dbname')}"


def worker(kind: str, name: str, dsn: str, repeat: int) -> None:
    """Run one variant (in a subprocess) and print its JSON result."""
    variants = (_read_variants if kind == "read" else _write_variants)(dsn)
    if name not in variants:
        print(json.dumps(None))
        return
    fn = variants[name]
    before = _rss_mb()
    best = float("inf")
    rows = 0
    for _ in range(1 if name in SLOW else repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
        del result
    rows = len(variants["__rows__"]()) if "__rows__" in variants else 0
    print(json.dumps({"seconds": best, "rss_before": before, "rss_peak": _rss_mb(), "rows": rows}))


def _run_worker(kind: str, name: str, dsn: str, repeat: int) -> dict[str, Any] | None:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", kind, name, "--repeat", str(repeat)],
        input=dsn,  # on stdin: the DSN holds a password, never on a command line
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if out.returncode:
        print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] | None = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _setup(dsn: str, rows: int) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(
            f"""CREATE TABLE {TABLE} AS SELECT
                i::bigint AS id,
                random() * 1000 AS f,
                md5(i::text)::varchar(16) AS s,
                '2024-01-01'::timestamptz + i * interval '1 second' AS ts,
                i %% 3 = 0 AS b,
                (random() * 100000)::numeric(12, 2) AS n
            FROM generate_series(1, %s) AS i""",
            (rows,),
        )
        conn.execute(f"VACUUM ANALYZE {TABLE}")
        conn.execute("DROP TABLE IF EXISTS bench_cast")
        conn.execute(
            "CREATE TABLE bench_cast (id integer, f real, s varchar(16), ts timestamp,"
            " b boolean, n numeric(12, 2))"
        )


def _report(title: str, results: dict[str, dict[str, Any]], baseline: str) -> None:
    print(f"\n{title}")
    print(f"{'variant':40} {'rows':>9} {'seconds':>8} {'speedup':>8} {'peak RSS':>9} {'+RSS':>8}")
    base = results.get(baseline)
    for name, r in results.items():
        ratio = f"{base['seconds'] / r['seconds']:.1f}x" if base else "-"
        print(
            f"{name:40} {r['rows']:>9} {r['seconds']:>8.2f} {ratio:>8}"
            f" {r['rss_peak']:>7.0f}MB {r['rss_peak'] - r['rss_before']:>6.0f}MB"
        )


def main() -> None:
    # SIGTERM (a kill, a runner's timeout) unwinds like Ctrl-C: the sandbox is stopped below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N (slow baselines: 1)")
    parser.add_argument("--dsn", help="an existing server (default: a fresh sandbox)")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], sys.stdin.read().strip(), args.repeat)
        return

    from pgmonkey import sandbox

    tmp = None
    dsn = args.dsn
    if dsn is None:
        tmp = tempfile.mkdtemp(prefix="pgmonkey-bench-")
        dsn = sandbox.start(dir=tmp).superuser_conninfo
    try:
        _setup(dsn, args.rows)
        print(
            f"{args.rows:,} rows x 6 columns (bigint, float8, varchar, timestamptz, bool, numeric)"
        )
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, best of {args.repeat}")
        names = list(_read_variants_names())
        read = {n: r for n in names if (r := _run_worker("read", n, dsn, args.repeat))}
        _report("query -> DataFrame", read, READ_BASELINE)
        write_names = ["pgmonkey.to_sql", APPEND_CAST, WRITE_BASELINE]
        write = {n: r for n in write_names if (r := _run_worker("write", n, dsn, args.repeat))}
        _report("DataFrame -> table", write, WRITE_BASELINE)
    finally:
        if tmp is not None:
            try:
                sandbox.stop(tmp)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)


def _read_variants_names() -> list[str]:
    names = [READ_BASELINE, "fetchall + from_records", "pgmonkey.read_sql"]
    try:
        import connectorx  # noqa: F401

        names.append("connectorx")
    except ImportError:
        print("connectorx is not installed: skipped", file=sys.stderr)
    return names


if __name__ == "__main__":
    main()

"""Benchmark: pgmonkey.dask vs Dask's own SQL reader and writer, on one LocalCluster.

    python benchmarks/bench_dask.py                  # 4,000,000 rows, own sandbox
    python benchmarks/bench_dask.py --rows 200000    # a quick run

Needs ``pip install -e '.[dask,bench]'`` (SQLAlchemy for Dask's side). Data: bigint, float8,
varchar, timestamptz, bool, numeric (generate_series), as in ``bench_frames.py``. One
``LocalCluster`` of ``--workers`` single-threaded worker processes serves every contestant.

- read: ``pgmonkey.dask.read_sql`` (by table blocks, and by ``id`` ranges) vs
  ``dask.dataframe.read_sql_table`` (SQLAlchemy, ``pandas.read_sql`` per partition), same
  partition count; each result is persisted on the workers (not gathered to the client),
  timed from the call to the last partition in memory, and its row count checked.
- write: ``pgmonkey.dask.to_sql`` vs ``DataFrame.to_sql`` (``parallel=True``), from the same
  persisted frame, ``if_exists='replace'``.

Each contestant runs ``--repeat`` times (the slow baselines once); the best time counts.
Ratios are against Dask's own in the same run (goal: >= 5x both ways).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

TABLE = "bench_dask"


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
        conn.execute(f"ALTER TABLE {TABLE} ADD PRIMARY KEY (id)")
        conn.execute(f"VACUUM ANALYZE {TABLE}")


def _url(dsn: str) -> str:
    from urllib.parse import quote

    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(dsn)
    auth = f"{quote(str(p.get('user', '')), safe='')}:{quote(str(p.get('password', '')), safe='')}"
    return f"postgresql+psycopg://{auth}@{p.get('host')}:{p.get('port')}/{p.get('dbname')}"


def _best(repeat: int, fn: Callable[[], int]) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        rows = fn()
        best = min(best, time.perf_counter() - start)
    return best, rows


def main() -> None:
    # SIGTERM (a kill, a runner's timeout) unwinds like Ctrl-C: the sandbox is stopped below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2, help="best of N (Dask's own: 1)")
    args = parser.parse_args()

    import dask.dataframe as dd
    import distributed

    import pgmonkey.dask as pmd
    from pgmonkey import sandbox

    tmp = tempfile.mkdtemp(prefix="pgmonkey-bench-")
    box = sandbox.start(dir=tmp)
    config, dsn = str(box.configs["password"]), box.superuser_conninfo
    url = _url(dsn)  # holds the password: passed to Dask's reader, never printed
    cluster = distributed.LocalCluster(
        n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = distributed.Client(cluster)
    n = args.partitions
    try:
        _setup(dsn, args.rows)
        kinds = "bigint, float8, varchar, timestamptz, bool, numeric"
        print(f"{args.rows:,} rows x 6 columns ({kinds})")
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, LocalCluster of "
            f"{args.workers} worker processes, {n} partitions, best of {args.repeat}"
        )

        def persisted(ddf: Any) -> Any:
            ddf = client.persist(ddf)
            distributed.wait(ddf)
            return ddf

        def rows_of(ddf: Any) -> int:
            return int(ddf.map_partitions(len).compute().sum())

        def pm_blocks() -> int:
            ddf = persisted(pmd.read_sql(TABLE, config, partitions=n))
            return rows_of(ddf)

        def pm_ranges() -> int:
            ddf = persisted(pmd.read_sql(TABLE, config, partition_on="id", partitions=n))
            return rows_of(ddf)

        def dask_read() -> int:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ddf = dd.read_sql_table(TABLE, url, index_col="id", npartitions=n)
                ddf = persisted(ddf)
            return rows_of(ddf)

        reads: dict[str, tuple[float, int]] = {}
        reads["dask read_sql_table (SQLAlchemy)"] = _best(1, dask_read)
        reads["pgmonkey.dask.read_sql (blocks)"] = _best(args.repeat, pm_blocks)
        reads["pgmonkey.dask.read_sql (id ranges)"] = _best(args.repeat, pm_ranges)
        _report("table -> Dask DataFrame (persisted on the workers)", reads)

        source = persisted(pmd.read_sql(TABLE, config, partitions=n))

        def pm_write() -> int:
            return pmd.to_sql(source, f"{TABLE}_out", config, if_exists="replace")

        def dask_write() -> int:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                source.to_sql(f"{TABLE}_out2", url, if_exists="replace", index=False, parallel=True)
            return args.rows

        writes: dict[str, tuple[float, int]] = {}
        writes["dask DataFrame.to_sql (SQLAlchemy)"] = _best(1, dask_write)
        writes["pgmonkey.dask.to_sql"] = _best(args.repeat, pm_write)
        _report("Dask DataFrame -> table", writes)
    finally:
        client.close()
        cluster.close()
        try:
            sandbox.stop(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _report(title: str, results: dict[str, tuple[float, int]]) -> None:
    print(f"\n{title}")
    print(f"{'contestant':40} {'rows':>10} {'seconds':>8} {'speedup':>8}")
    base = next(iter(results.values()))[0]
    for name, (seconds, rows) in results.items():
        print(f"{name:40} {rows:>10} {seconds:>8.2f} {base / seconds:>7.1f}x")


if __name__ == "__main__":
    main()

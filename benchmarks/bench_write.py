"""Benchmark: DataFrame -> new table, pgmonkey.to_sql against ADBC, Polars and the psql floors.

    python benchmarks/bench_write.py                       # 1,000,000 rows, own sandbox
    python benchmarks/bench_write.py --rows 100000 --rounds 3
    python benchmarks/bench_write.py --dsn "host=... dbname=..." --no-setup

Shapes: the tables of ``bench_read.py`` (mixed: bigint, float8, varchar(16), timestamptz,
bool, numeric(12,2); floats: bigint and 20 float8; text: bigint and 4 text columns, 10%
NULL), each read into a pandas DataFrame by ``pgmonkey.read_sql`` before the clock starts
(numeric comes as float64, so every writer gets the same frame).

Contestants, each writing the whole frame into a table it creates (replacing the last
round's), committed:

- ``pgmonkey.to_sql(df, name, conn, if_exists="replace")``;
- ADBC: ``pyarrow.Table.from_pandas(df)`` then ``cursor.adbc_ingest(name, ..., mode="replace")``
  and ``commit()`` (the conversion is on the clock: the caller starts from pandas too);
- Polars: ``polars.from_pandas(df).write_database(name, uri, engine="adbc")``;
- the floors: whole ``psql`` processes loading ``\\copy name from 'file'`` in CSV and in binary
  into an empty table of the frame's column types, from files written before the clock starts
  (by ``COPY ... TO`` of what pgmonkey wrote): the server's own load, with nothing to convert.

Every measurement runs in a fresh process; imports, the connection, the frame and a one-row
write of the same shape happen before the clock starts; the contestants run interleaved,
round after round, and the report gives the median over the rounds, ratios against ADBC and
the floors measured in the same run (the machine may be loaded: compare ratios, not
seconds), and each one's peak RSS. After each write the table's row count is checked.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import bench_read
from bench_read import _pg_env, _rss_mb, _url

PG = "pgmonkey.to_sql"
ADBC = "ADBC adbc_ingest (from pandas)"
POLARS = "polars.write_database (ADBC)"
FLOOR_CSV = "psql \\copy from CSV (floor)"
FLOOR_BIN = "psql \\copy from BINARY (floor)"
CONTESTANTS = [PG, ADBC, POLARS, FLOOR_CSV, FLOOR_BIN]
SHAPES = ["mixed", "floats", "text"]
TARGET = {PG: "bw_pgmonkey", ADBC: "bw_adbc", POLARS: "bw_polars"}
# A worker's job that measures nothing: the floors' files, written in a process of its own
# (a process started from a big one inherits its peak RSS, so the main one stays small).
FLOOR_FILES = "floor files"
FLOOR_TABLE = "bw_floor"


def _frame(shape: str, dsn: str, rows: int | None = None) -> Any:
    import psycopg

    import pgmonkey

    limit = f" LIMIT {rows}" if rows is not None else ""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return pgmonkey.read_sql(f"SELECT * FROM bench_{shape}{limit}", conn)


def _contestant(name: str, frame: Any, dsn: str, files: str) -> Callable[[], Any] | None:
    """The write to time (everything it needs opened already), or None where it cannot run."""
    if name == PG:
        import psycopg

        import pgmonkey

        conn = psycopg.connect(dsn, autocommit=True)
        return lambda: pgmonkey.to_sql(frame, TARGET[PG], conn, if_exists="replace")
    if name == ADBC:
        import adbc_driver_postgresql.dbapi as adbc
        import pyarrow as pa

        aconn = adbc.connect(_url(dsn, "postgresql"))
        cur = aconn.cursor()

        def ingest() -> Any:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            written = cur.adbc_ingest(TARGET[ADBC], table, mode="replace")
            aconn.commit()
            return written

        return ingest
    if name == POLARS:
        import polars as pl

        url = _url(dsn, "postgresql")
        return lambda: pl.from_pandas(frame).write_database(
            TARGET[POLARS], url, engine="adbc", if_table_exists="replace"
        )
    if name.startswith("psql"):
        psql = shutil.which("psql")
        if psql is None:
            return None
        fmt = "csv" if "CSV" in name else "binary"
        path = os.path.join(files, f"frame.{fmt}")
        env = {**os.environ, **_pg_env(dsn)}
        cmd = [psql, "-X", "-q", "-c", f"\\copy {FLOOR_TABLE} from '{path}' (format {fmt})"]
        return lambda: subprocess.run(cmd, env=env, check=True)
    raise ValueError(name)


def _count(dsn: str, table: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else -1


def worker(name: str, shape: str, dsn: str, files: str) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    import psycopg

    if name == FLOOR_FILES:
        _floor_files(shape, dsn, files)
        print(json.dumps({}))
        return
    if name.startswith("psql"):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {FLOOR_TABLE}")
        frame = None
    else:
        # The same write of one row first: lazy imports and first-use set-up off the clock.
        warm = _contestant(name, _frame(shape, dsn, 1), dsn, files)
        assert warm is not None
        warm()
        frame = _frame(shape, dsn)
    fn = _contestant(name, frame, dsn, files)
    if fn is None:
        print(json.dumps(None))
        return
    before = _rss_mb()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    peak = max(_rss_mb(), _rss_mb(resource.RUSAGE_CHILDREN))
    rows = _count(dsn, TARGET.get(name, FLOOR_TABLE))
    print(json.dumps({"seconds": seconds, "rss_before": before, "rss_peak": peak, "rows": rows}))


def _run(name: str, shape: str, dsn: str, files: str) -> dict[str, Any] | None:
    return bench_read.run_worker(__file__, [name, shape, files], dsn)


def _floor_files(shape: str, dsn: str, files: str) -> None:
    """The floors' input: what pgmonkey.to_sql wrote, as CSV and binary COPY files, and an
    empty table of the same columns to load them into."""
    import psycopg

    import pgmonkey

    with psycopg.connect(dsn, autocommit=True) as conn:
        pgmonkey.to_sql(_frame(shape, dsn), TARGET[PG], conn, if_exists="replace")
        conn.execute(f"DROP TABLE IF EXISTS {FLOOR_TABLE}")
        conn.execute(f"CREATE TABLE {FLOOR_TABLE} (LIKE {TARGET[PG]})")
        for fmt in ("csv", "binary"):
            with (
                open(os.path.join(files, f"frame.{fmt}"), "wb") as out,
                conn.cursor().copy(f"COPY {TARGET[PG]} TO STDOUT (FORMAT {fmt})") as copy,
            ):
                for block in copy:
                    out.write(block)


def _report(shape: str, results: dict[str, list[dict[str, Any]]], rows: int) -> list[str]:
    med = {n: statistics.median(r["seconds"] for r in rs) for n, rs in results.items() if rs}
    peak = {n: max(r["rss_peak"] for r in rs) for n, rs in results.items() if rs}
    lines = [
        f"\n### {shape}: {rows:,} rows",
        "",
        "| contestant | median s | x ADBC | x psql CSV floor | x psql BINARY floor | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]

    def ratio(name: str, base: str) -> str:
        return f"{med[name] / med[base]:.2f}" if base in med else "-"

    for name in med:
        lines.append(
            f"| {name} | {med[name]:.3f} | {ratio(name, ADBC)} | {ratio(name, FLOOR_CSV)}"
            f" | {ratio(name, FLOOR_BIN)} | {peak[name]:.0f} |"
        )
    return lines


def main() -> None:
    # SIGTERM (a kill, a runner's timeout) unwinds like Ctrl-C: the sandbox is stopped below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = bench_read.arguments(__doc__, rounds=5, shapes=SHAPES)
    parser.add_argument("--no-setup", action="store_true", help="reuse bench_read's tables")
    parser.add_argument(
        "--worker", nargs=3, metavar=("NAME", "SHAPE", "DIR"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], sys.stdin.read().strip(), args.worker[2])
        return

    from pgmonkey import sandbox

    tmp = tempfile.mkdtemp(prefix="pgmonkey-bench-write-")
    dsn = args.dsn
    try:
        if dsn is None:
            dsn = sandbox.start(dir=os.path.join(tmp, "sandbox")).superuser_conninfo
        if not args.no_setup:
            bench_read._setup(dsn, args.rows)
        shapes = args.shapes.split(",")
        only = args.only.split(",") if args.only else None
        names = [n for n in CONTESTANTS if not only or n in only]
        lines = [bench_read._versions()]
        for shape in shapes:
            files = os.path.join(tmp, shape)
            os.makedirs(files)
            if _run(FLOOR_FILES, shape, dsn, files) is None:
                raise SystemExit("could not write the floors' files")
            results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
            expected = _count(dsn, f"bench_{shape}")
            for rnd in range(args.rounds):
                order = names if rnd % 2 == 0 else names[::-1]
                for name in order:
                    result = _run(name, shape, dsn, files)
                    if result is None:
                        continue
                    if result["rows"] != expected:
                        raise SystemExit(f"{name} wrote {result['rows']} rows of {expected}")
                    results[name].append(result)
                print(f"{shape}: round {rnd + 1}/{args.rounds} done", file=sys.stderr)
            lines += _report(shape, results, expected)
        print("\n".join(lines))
    finally:
        if args.dsn is None and os.path.isdir(os.path.join(tmp, "sandbox")):
            sandbox.stop(os.path.join(tmp, "sandbox"))
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

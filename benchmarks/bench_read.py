"""Benchmark: query -> pandas / Arrow / Polars, pgmonkey against its peers and the psql floors.

    python benchmarks/bench_read.py                       # 1,000,000 rows, own sandbox
    python benchmarks/bench_read.py --rows 100000 --rounds 3
    python benchmarks/bench_read.py --dsn "host=... dbname=..." --json results.json

Shapes (``SELECT * FROM`` a table made by generate_series):

- mixed: bigint, float8, varchar(16), timestamptz, bool, numeric(12,2)
- floats: a bigint id and 20 float8 columns
- text: a bigint id and 4 text columns of about 40 characters, 10% NULL
- small: 10 rows of the mixed table, called many times on an open connection (fixed cost
  per call, median of the calls)

Every measurement runs in a fresh process; imports, the connection and a one-row call of
the same shape (for lazy imports and first-use set-up) happen before the clock starts; the
contestants run interleaved, round after round, and the report gives the
median over the rounds, ratios against the peers measured in the same run (the machine may
be loaded: compare ratios, not seconds) and each contestant's peak RSS (``ru_maxrss``, which
sees numpy's, Arrow's and libpq's allocations). ADBC reads numeric as text, so its query casts
the numeric column to float8 (what pgmonkey returns for numeric). The psql floors are whole
``psql`` processes writing ``\\copy (query) to /dev/null`` in CSV and in binary.

The partitioned contestants (pgmonkey's and connectorx's) split on the bigint id column;
pgmonkey's borrow their two connections from a psycopg_pool pool opened off the clock.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

ROWS_SMALL = 10
CALLS_SMALL = 200
SHAPES = ["mixed", "floats", "text", "small"]
PG = "pgmonkey.read_sql"
PG_ARROW = "pgmonkey.read_arrow"
ADBC_PD = "ADBC -> pandas"
ADBC_PA = "ADBC -> Arrow"
FLOOR_CSV = "psql \\copy CSV floor"
FLOOR_BIN = "psql \\copy BINARY floor"
PG_OLD = "pgmonkey.read_sql (pandas CSV engine)"
PG_PYLOOP = "pgmonkey.read_sql (PGMONKEY_IMPL=python: nothing compiled)"
PG_PARTS = "pgmonkey.read_sql (2 partitions)"
PG_ARROW_PARTS = "pgmonkey.read_arrow (2 partitions)"
CONTESTANTS = [
    PG,
    PG_PYLOOP,
    PG_OLD,
    PG_ARROW,
    PG_PARTS,
    PG_ARROW_PARTS,
    "pgmonkey.read_polars",
    ADBC_PD,
    ADBC_PA,
    "connectorx (1 partition)",
    "connectorx (2 partitions)",
    "polars.read_database_uri",
    "pandas.read_sql (SQLAlchemy)",
    "psycopg fetchall -> DataFrame",
    FLOOR_CSV,
    FLOOR_BIN,
]
# Per-call contestants for the small shape (connectorx and polars connect on every call).
SMALL = [
    PG,
    PG_PYLOOP,
    PG_OLD,
    PG_ARROW,
    ADBC_PD,
    ADBC_PA,
    "pandas.read_sql (SQLAlchemy)",
    "psycopg fetchall -> DataFrame",
]


def _query(shape: str, numeric_as_float: bool = False, warm: bool = False) -> str:
    if warm:  # one row of the same shape: imports and first-use set-up, off the clock
        return f"SELECT * FROM ({_query(shape, numeric_as_float)}) AS w LIMIT 1"
    if shape == "mixed":
        n = "n::float8 AS n" if numeric_as_float else "n"
        return f"SELECT id, f, s, ts, b, {n} FROM bench_mixed"
    if shape == "small":
        n = "n::float8 AS n" if numeric_as_float else "n"
        return f"SELECT id, f, s, ts, b, {n} FROM bench_mixed LIMIT {ROWS_SMALL}"
    return f"SELECT * FROM bench_{shape}"


def _url(dsn: str, scheme: str) -> str:
    from urllib.parse import quote

    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(dsn)
    user = quote(str(p.get("user", "")), safe="")
    password = quote(str(p.get("password", "")), safe="")
    auth = f"{user}:{password}@" if password else f"{user}@"
    host = p.get("host", "127.0.0.1")
    return f"{scheme}://{auth}{host}:{p.get('port', 5432)}/{p.get('dbname')}"


def _rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kB on Linux


def _contestant(name: str, shape: str, dsn: str, warm: bool = False) -> Callable[[], Any] | None:
    """The call to time (everything it needs opened already), or None where it does not apply."""
    query = _query(shape, warm=warm)
    if name in (PG_PARTS, PG_ARROW_PARTS):
        import psycopg_pool

        import pgmonkey

        pool: Any = psycopg_pool.ConnectionPool(
            dsn, min_size=2, max_size=2, kwargs={"autocommit": True}, open=True
        )
        pool.wait()
        read = pgmonkey.read_sql if name == PG_PARTS else pgmonkey.read_arrow
        return lambda: read(query, pool, partition_on="id", partitions=2)
    if name.startswith("pgmonkey."):
        import psycopg

        import pgmonkey

        conn = psycopg.connect(dsn, autocommit=True)
        if name == PG_OLD:  # the reader before the Arrow and binary engines, for comparison
            from pgmonkey.frames import _api, _engines

            _api.choose_engine = _engines.PandasCsvEngine  # type: ignore[assignment]
        if name == PG_PYLOOP:  # without the compiled parts, as on a machine with no C compiler
            os.environ["PGMONKEY_IMPL"] = "python"
        fn = getattr(pgmonkey, name.split(".")[1].split(" ")[0])
        return lambda: fn(query, conn)
    if name.startswith("ADBC"):
        import adbc_driver_postgresql.dbapi as adbc

        aconn = adbc.connect(_url(dsn, "postgresql"))
        aquery = _query(shape, numeric_as_float=True, warm=warm)
        cur = aconn.cursor()

        def adbc_read() -> Any:
            cur.execute(aquery)
            return cur.fetch_df() if name == ADBC_PD else cur.fetch_arrow_table()

        return adbc_read
    if name.startswith("connectorx"):
        import connectorx as cx

        url = _url(dsn, "postgresql")
        if "2 partitions" in name:
            return lambda: cx.read_sql(url, query, partition_on="id", partition_num=2)
        return lambda: cx.read_sql(url, query)
    if name == "polars.read_database_uri":
        import polars as pl

        url = _url(dsn, "postgresql")
        return lambda: pl.read_database_uri(query, url)
    if name.startswith("pandas.read_sql"):
        import pandas as pd
        import sqlalchemy

        engine = sqlalchemy.create_engine(_url(dsn, "postgresql+psycopg"))
        sa_conn = engine.connect()
        return lambda: pd.read_sql(sqlalchemy.text(query), sa_conn)
    if name.startswith("psycopg fetchall"):
        import pandas as pd
        import psycopg

        conn = psycopg.connect(dsn, autocommit=True)

        def fetchall() -> Any:
            with conn.cursor() as cur:
                cur.execute(query)
                names = [c.name for c in cur.description or ()]
                return pd.DataFrame.from_records(cur.fetchall(), columns=names)

        return fetchall
    if name.startswith("psql"):
        fmt = "csv" if "CSV" in name else "binary"
        psql = shutil.which("psql")
        if psql is None:
            return None
        env = {**os.environ, **_pg_env(dsn)}
        cmd = [psql, "-X", "-q", "-c", f"\\copy ({query}) to /dev/null (format {fmt})"]
        return lambda: subprocess.run(cmd, env=env, check=True)
    raise ValueError(name)


def _pg_env(dsn: str) -> dict[str, str]:
    """libpq's environment variables for a conninfo: the password never on a command line."""
    from psycopg.conninfo import conninfo_to_dict

    names = {
        "host": "PGHOST",
        "port": "PGPORT",
        "user": "PGUSER",
        "password": "PGPASSWORD",
        "dbname": "PGDATABASE",
        "sslmode": "PGSSLMODE",
    }
    p = conninfo_to_dict(dsn)
    return {env: str(p[key]) for key, env in names.items() if key in p}


def _size_mb(result: Any) -> float | None:
    if hasattr(result, "memory_usage"):
        return float(result.memory_usage(deep=True).sum()) / 2**20
    if hasattr(result, "nbytes"):
        return float(result.nbytes) / 2**20
    if hasattr(result, "estimated_size"):
        return float(result.estimated_size()) / 2**20
    return None


def worker(name: str, shape: str, dsn: str) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    fn = _contestant(name, shape, dsn)
    if fn is None:
        print(json.dumps(None))
        return
    warm_up = _contestant(name, shape, dsn, warm=True)
    if warm_up is not None and not name.startswith("psql"):
        warm_up()
    before = _rss_mb()
    if shape == "small":
        for _ in range(20):
            fn()
        times = []
        for _ in range(CALLS_SMALL):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        print(
            json.dumps(
                {
                    "seconds": statistics.median(times),
                    "rss_before": before,
                    "rss_peak": _rss_mb(),
                    "size": None,
                }
            )
        )
        return
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    peak = (
        max(_rss_mb(), _rss_mb(resource.RUSAGE_CHILDREN))
        if name.startswith("psql")
        else (_rss_mb())
    )
    size = _size_mb(result)
    print(json.dumps({"seconds": seconds, "rss_before": before, "rss_peak": peak, "size": size}))


def _run(name: str, shape: str, dsn: str) -> dict[str, Any] | None:
    return run_worker(__file__, [name, shape], dsn)


def run_worker(script: str, args: list[str], dsn: str) -> dict[str, Any] | None:
    """``script --worker *args`` in a fresh interpreter: the JSON its last line prints, or
    None (its error shown) when it fails."""
    out = subprocess.run(
        [sys.executable, script, "--worker", *args],
        input=dsn,  # on stdin: the DSN holds a password, never on a command line
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if out.returncode:
        print(f"{' / '.join(args)}: failed\n{out.stderr[-1500:]}", file=sys.stderr)
        return None
    result: dict[str, Any] | None = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _setup(dsn: str, rows: int) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_mixed, bench_floats, bench_text")
        conn.execute(
            """CREATE TABLE bench_mixed AS SELECT
                i::bigint AS id,
                random() * 1000 AS f,
                md5(i::text)::varchar(16) AS s,
                '2024-01-01'::timestamptz + i * interval '1 second' AS ts,
                i %% 3 = 0 AS b,
                (random() * 100000)::numeric(12, 2) AS n
            FROM generate_series(1, %s) AS i""",
            (rows,),
        )
        floats = ", ".join(f"random() * 1e6 AS f{j}" for j in range(20))
        conn.execute(
            f"CREATE TABLE bench_floats AS SELECT i::bigint AS id, {floats}"
            " FROM generate_series(1, %s) AS i",
            (rows,),
        )
        texts = ", ".join(
            f"CASE WHEN random() < 0.1 THEN NULL ELSE md5(random()::text) || md5(i::text) END"
            f"::varchar(40) AS s{j}"
            for j in range(4)
        )
        conn.execute(
            f"CREATE TABLE bench_text AS SELECT i::bigint AS id, {texts}"
            " FROM generate_series(1, %s) i",
            (rows,),
        )
        conn.execute("VACUUM ANALYZE")


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"python {platform.python_version()}"]
    for dist in (
        "pgmonkey",
        "psycopg",
        "pandas",
        "pyarrow",
        "numpy",
        "polars",
        "connectorx",
        "adbc-driver-postgresql",
        "SQLAlchemy",
    ):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} (not installed)")
    return ", ".join(parts)


def _report(shape: str, results: dict[str, list[dict[str, Any]]], rows: int) -> list[str]:
    med = {n: statistics.median(r["seconds"] for r in rs) for n, rs in results.items() if rs}
    peak = {n: max(r["rss_peak"] for r in rs) for n, rs in results.items() if rs}
    size = {n: rs[0]["size"] for n, rs in results.items() if rs}
    unit, scale = ("ms/call", 1000.0) if shape == "small" else ("s", 1.0)
    title = f"{shape}: {ROWS_SMALL if shape == 'small' else rows:,} rows"
    lines = [
        f"\n### {title}",
        "",
        f"| contestant | median {unit} | x ADBC->pandas | x ADBC->Arrow | x psql CSV"
        " | peak RSS MB | result MB |",
        "|---|---|---|---|---|---|---|",
    ]

    def ratio(name: str, base: str) -> str:
        return f"{med[name] / med[base]:.2f}" if base in med else "-"

    for name in med:
        result_mb = f"{size[name]:.0f}" if size[name] is not None else "-"
        lines.append(
            f"| {name} | {med[name] * scale:.3f} | {ratio(name, ADBC_PD)} | {ratio(name, ADBC_PA)}"
            f" | {ratio(name, FLOOR_CSV)} | {peak[name]:.0f} | {result_mb} |"
        )
    # Each round's own ratio, then their median: a machine that slows down for a while slows
    # both sides of a round alike.
    per_round = []
    for name, base in ((PG, ADBC_PD), (PG_ARROW, ADBC_PA), (PG, FLOOR_CSV)):
        mine, theirs = results.get(name, []), results.get(base, [])
        if mine and len(mine) == len(theirs):  # every round of both went through
            ratios = [a["seconds"] / b["seconds"] for a, b in zip(mine, theirs, strict=True)]
            per_round.append(
                f"{name} / {base} {statistics.median(ratios):.2f}"
                f" ({min(ratios):.2f}-{max(ratios):.2f})"
            )
    if per_round:
        lines += ["", "Median of the per-round ratios (range): " + "; ".join(per_round) + "."]
    return lines


def arguments(doc: str, rounds: int, shapes: list[str]) -> argparse.ArgumentParser:
    """The options the read and write benchmarks share."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=rounds, help="measurements per contestant")
    parser.add_argument("--shapes", default=",".join(shapes))
    parser.add_argument("--only", help="comma-separated contestants (default: all)")
    parser.add_argument("--dsn", help="an existing server (default: a fresh sandbox)")
    return parser


def main() -> None:
    # SIGTERM (a kill, a runner's timeout) unwinds like Ctrl-C: the sandbox is stopped below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = arguments(__doc__, rounds=3, shapes=SHAPES)
    parser.add_argument("--json", help="also write the raw measurements here")
    parser.add_argument("--no-setup", action="store_true", help="reuse the tables")
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "SHAPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], sys.stdin.read().strip())
        return

    from pgmonkey import sandbox

    tmp = None
    dsn = args.dsn
    if dsn is None:
        tmp = tempfile.mkdtemp(prefix="pgmonkey-bench-")
        dsn = sandbox.start(dir=tmp).superuser_conninfo
    try:
        if not args.no_setup:
            _setup(dsn, args.rows)
        shapes = args.shapes.split(",")
        only = args.only.split(",") if args.only else None
        results: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in shapes}
        for rnd in range(args.rounds):
            for shape in shapes:
                names = SMALL if shape == "small" else CONTESTANTS
                # The order alternates, so no contestant always follows the same one.
                for name in names if rnd % 2 == 0 else reversed(names):
                    if only and name not in only:
                        continue
                    r = _run(name, shape, dsn)
                    if r is not None:
                        results[shape].setdefault(name, []).append(r)
            print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        lines = [
            f"{_versions()}; {os.cpu_count()} cpus; fresh process per measurement,"
            f" contestants interleaved (order alternating), median of {args.rounds} rounds"
        ]
        for shape in shapes:
            lines += _report(shape, results[shape], args.rows)
        print("\n".join(lines))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(
                    {"versions": _versions(), "rows": args.rows, "results": results}, f, indent=1
                )
    finally:
        if tmp is not None:
            try:
                sandbox.stop(tmp)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

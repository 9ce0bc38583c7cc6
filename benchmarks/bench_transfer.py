"""CSV import/export: pgmonkey vs ``psql \\copy`` on the same file, in the same run.

    python benchmarks/bench_transfer.py               # 1,000,000 rows, own sandbox
    python benchmarks/bench_transfer.py --rows 100000 # a quick run
    python benchmarks/bench_transfer.py --dsn "host=127.0.0.1 user=postgres dbname=postgres"

Each side is timed end to end (connect, CREATE TABLE, COPY, commit), best of --repeat.
Goal: both ratios within 1.3x.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pgmonkey import sandbox
from pgmonkey.transfer import detect_csv, export_csv, import_csv

COLUMNS = "id bigint, x double precision, name text, ts timestamptz, flag boolean, amount numeric"
GENERATE = (
    "SELECT g AS id, random() * 1000 AS x, md5(g::text) AS name, "
    "timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS ts, "
    "g % 3 = 0 AS flag, round((random() * 10000)::numeric, 2) AS amount "
    "FROM generate_series(1, {rows}) g"
)


def psql_env(dsn: str) -> dict[str, str]:
    """libpq environment for psql (keeps the password off the command line)."""
    names = {
        "host": "PGHOST",
        "port": "PGPORT",
        "user": "PGUSER",
        "password": "PGPASSWORD",
        "dbname": "PGDATABASE",
        "sslmode": "PGSSLMODE",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for key, value in conninfo_to_dict(dsn).items():
        if key in names and value is not None:
            env[names[key]] = str(value)
    return env


def psql(env: dict[str, str], *commands: str) -> None:
    args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1"]
    for c in commands:
        args += ["-c", c]
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)


def best_of(repeat: int, setup: Callable[[], None], run: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        setup()
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench(dsn: str, rows: int, repeat: int, work: Path) -> dict[str, float]:
    env = psql_env(dsn)
    csv_path = work / "bench.csv"
    psql(env, f"\\copy ({GENERATE.format(rows=rows)}) to '{csv_path}' (format csv, header true)")
    print(f"{rows:,} rows, {csv_path.stat().st_size / 2**20:.1f} MiB CSV", file=sys.stderr)

    detected = detect_csv(csv_path)
    print("detected types:", ", ".join(f"{c.name} {c.type}" for c in detected.columns))
    # Both sides create the very same table.
    types = [c.split(" ", 1)[1] for c in COLUMNS.split(", ")]
    settings = replace(
        detected,
        columns=tuple(replace(c, type=t) for c, t in zip(detected.columns, types, strict=True)),
    )

    with psycopg.connect(dsn, autocommit=True) as admin:

        def drop() -> None:
            admin.execute("DROP TABLE IF EXISTS bench_psql, bench_pgmonkey")

        def import_psql() -> None:
            psql(
                env,
                f"CREATE TABLE bench_psql ({COLUMNS})",
                f"\\copy bench_psql from '{csv_path}' (format csv, header true)",
            )

        def import_pgmonkey() -> None:
            with psycopg.connect(dsn) as conn:
                import_csv(csv_path, "bench_pgmonkey", conn, settings=settings, progress=False)

        results = {
            "import psql": best_of(repeat, drop, import_psql),
            "import pgmonkey": best_of(repeat, drop, import_pgmonkey),
        }
        # Interleave once more, so drift on a busy machine hits both sides.
        results["import psql"] = min(results["import psql"], best_of(1, drop, import_psql))
        results["import pgmonkey"] = min(
            results["import pgmonkey"], best_of(1, drop, import_pgmonkey)
        )
        count = admin.execute("SELECT count(*) FROM bench_pgmonkey").fetchone()
        assert count == (rows,), count

        out_psql, out_pgm = work / "out_psql.csv", work / "out_pgmonkey.csv"

        def export_psql() -> None:
            psql(env, f"\\copy bench_pgmonkey to '{out_psql}' (format csv, header true)")

        def export_pgmonkey() -> None:
            with psycopg.connect(dsn) as conn:
                export_csv(conn, out_pgm, table="bench_pgmonkey", progress=False)

        def nothing() -> None:
            pass

        results["export psql"] = best_of(repeat, nothing, export_psql)
        results["export pgmonkey"] = best_of(repeat, nothing, export_pgmonkey)
        results["export psql"] = min(results["export psql"], best_of(1, nothing, export_psql))
        results["export pgmonkey"] = min(
            results["export pgmonkey"], best_of(1, nothing, export_pgmonkey)
        )
        assert out_psql.read_bytes() == out_pgm.read_bytes(), "exports differ"
        drop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dsn", help="use this server instead of a fresh sandbox")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pgmonkey-bench-"))
    box = None
    try:
        if args.dsn:
            dsn = args.dsn
        else:
            box = sandbox.start(work / "sandbox")
            dsn = box.superuser_conninfo
        r = bench(dsn, args.rows, args.repeat, work)
    finally:
        if box is not None:
            sandbox.stop(box.dir)
        shutil.rmtree(work, ignore_errors=True)
    for what in ("import", "export"):
        base, ours = r[f"{what} psql"], r[f"{what} pgmonkey"]
        verdict = "OK" if ours <= 1.3 * base else "SLOWER THAN GOAL"
        print(
            f"{what}: psql \\copy {base:.3f} s, pgmonkey {ours:.3f} s, "
            f"ratio {ours / base:.2f}x (goal <= 1.30x) {verdict}"
        )


if __name__ == "__main__":
    main()

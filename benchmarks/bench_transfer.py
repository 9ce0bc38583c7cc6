"""CSV import/export as whole processes: ``pgmonkey pgimport``/``pgexport`` vs ``psql \\copy``.

    python benchmarks/bench_transfer.py                 # 1,000,000 rows, own sandbox
    python benchmarks/bench_transfer.py --rows 100000 --rounds 3
    python benchmarks/bench_transfer.py --dsn "host=127.0.0.1 user=postgres dbname=postgres"

Every measurement is one whole process, timed from its start to its exit, as a person at a
shell would time it (interpreter start, imports, config, connection, COPY, exit):

- export: ``pgmonkey pgexport --table bench --connconfig cfg.yaml --export_file out.csv``
  against ``psql -c "\\copy bench to 'out.csv' (format csv, header true)"``; the two files
  must be the same bytes. A third contestant adds ``--partitions 2`` (the table read in two
  ranges of its blocks on two connections at once, in one snapshot): the same bytes again.
- import: ``pgmonkey pgimport --table bench_in --connconfig cfg.yaml --import_file bench.csv``
  against ``psql -c "\\copy bench_in from 'bench.csv' (format csv, header true)"``, each into
  an empty table made afresh off the clock (same columns on both sides; pgmonkey's settings
  file beside the CSV names those types, so it runs the import, not the review step).
- 10 rows: the same export of a 10-row table, next to ``python -c pass`` in the same
  interpreter (Python's own start, the floor of any Python command) and to
  ``python -c "import fire, psycopg, yaml"`` (the floor of a fire CLI that reads a YAML
  config and talks to PostgreSQL through psycopg).

psql is the server's own binary (``pgmonkey.sandbox.find_bindir()``), not a wrapper script
on PATH such as Debian's, which adds a Perl start to every run.

The contestants run interleaved, round after round, the order alternating; the report gives
each one's median over the rounds, the ratio of the medians and the median of the per-round
ratios (the machine may be loaded: compare ratios, not seconds). Goal: ratios <= 1.05.

pgmonkey's bytecode is compiled first: an installed package has it, while a source checkout
run with PYTHONDONTWRITEBYTECODE would compile every module at every start.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import psycopg
import yaml
from psycopg.conninfo import conninfo_to_dict

import pgmonkey
from pgmonkey import sandbox
from pgmonkey.transfer import detect_csv, import_settings_path, write_import_settings

COLUMNS = "id bigint, x double precision, name text, ts timestamptz, flag boolean, amount numeric"
GENERATE = (
    "SELECT g AS id, random() * 1000 AS x, md5(g::text) AS name, "
    "timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS ts, "
    "g % 3 = 0 AS flag, round((random() * 10000)::numeric, 2) AS amount "
    "FROM generate_series(1, {rows}) g"
)
SMALL_ROWS = 10
IMPORTS = "import fire, psycopg, yaml"
GOAL = 1.05
# The table read in two ranges of its blocks on two connections at once (opt-in).
PARTITIONED = "pgmonkey --partitions 2"
CSV = "(format csv, header true)"


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


def write_config(dsn: str, path: Path) -> None:
    """A pgmonkey config for the same server (0600: it holds the password)."""
    settings = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    text = yaml.safe_dump({"connection_type": "normal", "connection_settings": settings})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def psql_binary() -> str:
    """The psql next to the server binaries; the one on PATH only when there is none."""
    try:
        candidate = Path(sandbox.find_bindir()) / "psql"
    except Exception:  # no server binaries found: whatever psql the shell would run
        return "psql"
    return str(candidate) if candidate.exists() else "psql"


def pgmonkey_command() -> list[str]:
    """The console script of this interpreter's environment (what a user types)."""
    script = Path(sys.executable).with_name("pgmonkey")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "pgmonkey"]


def timed(args: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Wall time of one whole process; its output is discarded, a failure stops the run."""
    t0 = time.perf_counter()
    res = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{args[0]} failed ({res.returncode}): {res.stderr.decode()[-2000:]}")
    return elapsed


def interleaved(
    rounds: int,
    contestants: dict[str, Callable[[], float]],
    before: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Run every contestant once per round, order alternating; ``before`` runs off the clock."""
    times: dict[str, list[float]] = {name: [] for name in contestants}
    names = list(contestants)
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            before()
            times[name].append(contestants[name]())
    return times


def ratios(ours: list[float], base: list[float]) -> tuple[float, float]:
    """(ratio of the medians, median of the per-round ratios)."""
    per_round = [a / b for a, b in zip(ours, base, strict=True)]
    return statistics.median(ours) / statistics.median(base), statistics.median(per_round)


def bench(dsn: str, rows: int, rounds: int, small_rounds: int, work: Path) -> list[str]:
    env = psql_env(dsn)
    cfg = work / "cfg.yaml"
    write_config(dsn, cfg)
    pgm = pgmonkey_command()
    psql_exe = psql_binary()
    out_psql, out_pgm = work / "out_psql.csv", work / "out_pgmonkey.csv"
    out_part = work / "out_pgmonkey_partitioned.csv"

    def psql(command: str) -> Callable[[], float]:
        args = [psql_exe, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command]
        return lambda: timed(args, env)

    def pgmonkey_cli(command: str, table: str, *args: str) -> Callable[[], float]:
        full = [*pgm, command, "--table", table, "--connconfig", str(cfg), *args]
        return lambda: timed(full)

    def export(table: str) -> dict[str, Callable[[], float]]:
        return {
            "psql": psql(f"\\copy {table} to '{out_psql}' {CSV}"),
            "pgmonkey": pgmonkey_cli("pgexport", table, "--export_file", str(out_pgm)),
        }

    def export_partitioned(table: str) -> dict[str, Callable[[], float]]:
        return {
            **export(table),
            PARTITIONED: pgmonkey_cli(
                "pgexport", table, "--export_file", str(out_part), "--partitions", "2"
            ),
        }

    csv_path = work / "bench.csv"
    psql(f"\\copy ({GENERATE.format(rows=rows)}) to '{csv_path}' {CSV}")()
    size = csv_path.stat().st_size / 2**20
    # pgmonkey's settings file: the detected settings with the very types psql's table has.
    detected = detect_csv(csv_path)
    types = [c.split(" ", 1)[1] for c in COLUMNS.split(", ")]
    columns = tuple(replace(c, type=t) for c, t in zip(detected.columns, types, strict=True))
    write_import_settings(replace(detected, columns=columns), import_settings_path(csv_path))

    report = [f"{rows:,} rows, {size:.1f} MiB CSV; {rounds} rounds, medians"]
    with psycopg.connect(dsn, autocommit=True) as admin:
        report.insert(0, versions(psql_exe, admin.info.server_version))
        admin.execute("DROP TABLE IF EXISTS bench, bench_in, bench_small")
        admin.execute(f"CREATE TABLE bench_in ({COLUMNS})")

        def fresh_table() -> None:
            admin.execute("DROP TABLE bench_in")
            admin.execute(f"CREATE TABLE bench_in ({COLUMNS})")
            admin.execute("CHECKPOINT")  # each side starts from the same server state

        imp = interleaved(
            rounds,
            {
                "psql": psql(f"\\copy bench_in from '{csv_path}' {CSV}"),
                "pgmonkey": pgmonkey_cli("pgimport", "bench_in", "--import_file", str(csv_path)),
            },
            before=fresh_table,
        )
        count = admin.execute("SELECT count(*) FROM bench_in").fetchone()
        assert count == (rows,), count
        report.append(line("import", imp))

        admin.execute("ALTER TABLE bench_in RENAME TO bench")
        admin.execute("VACUUM ANALYZE bench")
        exp = interleaved(rounds, export_partitioned("bench"))
        assert out_psql.read_bytes() == out_pgm.read_bytes(), "the exports differ"
        assert out_psql.read_bytes() == out_part.read_bytes(), "the partitioned export differs"
        report.append(line("export", exp))
        report.append(line("export --partitions 2", exp, PARTITIONED))

        admin.execute(
            f"CREATE TABLE bench_small AS SELECT * FROM bench ORDER BY id LIMIT {SMALL_ROWS}"
        )
        python = [sys.executable, "-c", "pass"]
        imports = [sys.executable, "-c", IMPORTS]
        small = interleaved(
            small_rounds,
            {
                "python -c pass": lambda: timed(python),
                IMPORTS: lambda: timed(imports),
                **export("bench_small"),
            },
        )
        assert out_psql.read_bytes() == out_pgm.read_bytes(), "the small exports differ"
        report.append(small_line(small, small_rounds))
        admin.execute("DROP TABLE IF EXISTS bench, bench_in, bench_small")
    return report


def line(what: str, t: dict[str, list[float]], ours_key: str = "pgmonkey") -> str:
    base, ours = t["psql"], t[ours_key]
    of_medians, per_round = ratios(ours, base)
    verdict = "OK" if of_medians <= GOAL else "SLOWER THAN GOAL"
    return (
        f"{what}: psql \\copy {statistics.median(base):.3f} s, "
        f"pgmonkey {statistics.median(ours):.3f} s, ratio {of_medians:.2f}x "
        f"(per-round median {per_round:.2f}x; goal <= {GOAL:.2f}x) {verdict}"
    )


def small_line(t: dict[str, list[float]], rounds: int) -> str:
    py, floor, base, ours = (
        statistics.median(t[k]) * 1000 for k in ("python -c pass", IMPORTS, "psql", "pgmonkey")
    )
    return (
        f"export of {SMALL_ROWS} rows ({rounds} rounds): python -c pass {py:.0f} ms, "
        f"python -c {IMPORTS!r} {floor:.0f} ms, psql \\copy {base:.0f} ms, "
        f"pgmonkey {ours:.0f} ms; pgmonkey - (psql + python -c pass) = {ours - base - py:+.0f} ms"
    )


def versions(psql_exe: str, server: int) -> str:
    psql_version = subprocess.run(
        [psql_exe, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return (
        f"pgmonkey {pgmonkey.__version__}, python {platform.python_version()}, "
        f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), {psql_version} "
        f"({psql_exe}), server {server // 10000}.{server % 10000}"
    )


def main() -> None:
    # SIGTERM (a kill, a runner's timeout) unwinds like Ctrl-C: the sandbox is stopped below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--small-rounds", type=int, default=21)
    parser.add_argument("--dsn", help="use this server instead of a fresh sandbox")
    args = parser.parse_args()
    compileall.compile_dir(Path(pgmonkey.__file__).parent, quiet=1)
    work = Path(tempfile.mkdtemp(prefix="pgmonkey-bench-"))
    box = None
    try:
        if args.dsn:
            dsn = args.dsn
        else:
            box = sandbox.start(work / "sandbox")
            dsn = box.superuser_conninfo
        report = bench(dsn, args.rows, args.rounds, args.small_rounds, work)
    finally:
        if box is not None:
            sandbox.stop(box.dir)
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(report))


if __name__ == "__main__":
    main()

"""A table's CSV export in ranges of its blocks over several connections (``partitions=``).

Ground truth is PostgreSQL's own ``COPY table TO STDOUT`` with the same options, read raw
through psycopg: the ranged export must write the same bytes (header once, generated and
dropped columns left out as COPY leaves them, no rows of inheritance children, the order of
the blocks). When something must happen while the ranges are read (two sessions reading
at once, rows committed meanwhile, a session terminated), the ranges' reads meet at a
barrier (``_meet``: a wrapper around the export's own read step, the server untouched) and
the test acts there, before any of their COPYs starts: never a sleep that guesses. (A
row-level security gate cannot hold them: such a table is exported by the one COPY.)
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgmonkey import PGConnectionManager
from pgmonkey.cli import run
from pgmonkey.errors import TransferError
from pgmonkey.frames._partition import block_queries
from pgmonkey.transfer import ExportSettings, _export, export_csv
from pgmonkey.transfer._sql import copy_options
from tests._conn_support import (
    POLL_DEADLINE,
    app_name,
    derive_config,
    poll,
    server_connections,
)

SCHEMA = "xpart"
ROLE = "xpart_reader"
ROLE_PASSWORD = "xpart-reader-pw"
ROWS = 3000

# Tables by what they test, each split in three ranges by its blocks (checked below).
TABLES = {
    "holes and moved rows": sql.Identifier(SCHEMA, "holes"),
    "inheritance parent": sql.Identifier(SCHEMA, "parent"),
    "quoted names": sql.Identifier("X Part", 'Odd "name"'),
}

SETTINGS = {
    "defaults": ExportSettings(),
    "no header": ExportSettings(has_headers=False),
    "semicolons, NA, quotes forced": ExportSettings(
        delimiter=";", quotechar="'", null_string="NA", force_quote=True
    ),
    "utf-8 with BOM": ExportSettings(encoding="utf-8-sig"),
    "latin-1 (PostgreSQL encodes)": ExportSettings(encoding="latin-1"),
    "utf-16 (Python encodes)": ExportSettings(encoding="utf-16"),
}


@pytest.fixture(scope="module")
def tables(superuser_dsn: str) -> Iterator[None]:
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS {SCHEMA}, "X Part" CASCADE')
        conn.execute(f"DROP ROLE IF EXISTS {ROLE}")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute('CREATE SCHEMA "X Part"')
        values = f"""SELECT i,
                CASE WHEN i % 10 = 0 THEN NULL WHEN i % 10 = 1 THEN ''
                     WHEN i % 10 = 2 THEN 'a "quoted", value' || i
                     WHEN i % 10 = 3 THEN e'two\\nlines ' || i
                     ELSE 'Zoë ' || repeat('x', i % 40) END,
                CASE WHEN i % 9 = 0 THEN NULL ELSE i * 1.25 END::numeric(12, 2),
                timestamptz '2024-03-31 01:30:00+00' + i * interval '97 minutes'
            FROM generate_series(1, {ROWS}) AS i"""
        conn.execute(
            f"""CREATE TABLE {SCHEMA}.holes (
                id int, gone text, t text, n numeric(12, 2), ts timestamptz,
                twice int GENERATED ALWAYS AS (id * 2) STORED)"""
        )
        conn.execute(f"ALTER TABLE {SCHEMA}.holes DROP COLUMN gone")
        conn.execute(f"INSERT INTO {SCHEMA}.holes (id, t, n, ts) {values}")
        # Holes in the early blocks, and updated rows moved to the last ones.
        conn.execute(f"DELETE FROM {SCHEMA}.holes WHERE id % 7 = 0")
        conn.execute(f"UPDATE {SCHEMA}.holes SET t = 'moved' WHERE id % 11 = 0")

        conn.execute(
            f"CREATE TABLE {SCHEMA}.parent (id int, t text, n numeric(12, 2), ts timestamptz)"
        )
        conn.execute(f"INSERT INTO {SCHEMA}.parent {values}")
        conn.execute(f"CREATE TABLE {SCHEMA}.child () INHERITS ({SCHEMA}.parent)")
        conn.execute(f"INSERT INTO {SCHEMA}.child {values}")

        odd = TABLES["quoted names"].as_string(conn)
        conn.execute(
            f'CREATE TABLE {odd} ("a,b" int, "q""uote" text, "N" numeric(12, 2), ts timestamptz)'
        )
        conn.execute(f"INSERT INTO {odd} {values}")

        # The role the fallback tests export as: row-level security applies to it (the
        # superuser bypasses it), and it holds column privileges only where they say so.
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(ROLE), sql.Literal(ROLE_PASSWORD)
            )
        )
        conn.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {ROLE}")
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.holes")
    yield
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA {SCHEMA}, "X Part" CASCADE')
        conn.execute(f"DROP ROLE {ROLE}")


@pytest.fixture(scope="module")
def manager() -> Iterator[PGConnectionManager]:
    manager = PGConnectionManager()
    yield manager
    manager.clear_cache()


def _copy_bytes(dsn: str, table: sql.Identifier, settings: ExportSettings) -> bytes:
    """What PostgreSQL writes for ``COPY table TO STDOUT`` with these settings."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        stmt = sql.SQL("COPY {} TO STDOUT {}").format(table, copy_options(settings))
        with cur.copy(stmt) as copy:
            data = b"".join(bytes(block) for block in copy)
    if settings.encoding == "utf-8-sig":
        return b"\xef\xbb\xbf" + data
    if settings.encoding == "utf-16":
        return data.decode("utf-8").encode("utf-16")
    return data


def _name(table: sql.Identifier, conn: psycopg.Connection[Any]) -> str:
    return table.as_string(conn)


def test_the_tables_split_as_the_tests_claim(tables: None, superuser_dsn: str) -> None:
    with psycopg.connect(superuser_dsn) as conn:
        for table in TABLES.values():
            assert len(block_queries(conn, table, 3)) == 3, _name(table, conn)
        row = conn.execute(
            f"SELECT count(*) FILTER (WHERE t = 'moved'), max(ctid) > min(ctid) FROM {SCHEMA}.holes"
        ).fetchone()
        assert row is not None and row[0] > 200 and row[1]
        row = conn.execute(f"SELECT count(*) FROM {SCHEMA}.parent").fetchone()
        assert row == (2 * ROWS,)  # the child's rows, which COPY parent leaves out


@pytest.mark.parametrize("shape", list(TABLES))
@pytest.mark.parametrize("how", list(SETTINGS))
def test_ranged_export_writes_what_copy_writes(
    tables: None, superuser_dsn: str, password_config: Path, tmp_path: Path, shape: str, how: str
) -> None:
    table, settings = TABLES[shape], SETTINGS[how]
    with psycopg.connect(superuser_dsn) as conn:
        name = _name(table, conn)
    expected = _copy_bytes(superuser_dsn, table, settings)
    out = tmp_path / "out.csv"
    result = export_csv(password_config, out, table=name, settings=settings, partitions=3)
    assert out.read_bytes() == expected
    assert result.bytes == len(expected)
    body = expected.decode(settings.encoding)
    assert result.rows == body.count("\n") - settings.has_headers - body.count("\nlines ")
    assert os.listdir(tmp_path) == ["out.csv"]  # the ranges' temporary files are gone


@pytest.mark.parametrize("con", ["pool", "psycopg", "psycopg in a transaction"])
def test_every_connection_kind(
    tables: None,
    superuser_dsn: str,
    password_config: Path,
    manager: PGConnectionManager,
    tmp_path: Path,
    con: str,
) -> None:
    table = TABLES["holes and moved rows"]
    expected = _copy_bytes(superuser_dsn, table, ExportSettings())
    out = tmp_path / "out.csv"
    if con == "pool":
        pool = manager.get_database_connection(str(password_config), "pool")
        export_csv(pool, out, table=f"{SCHEMA}.holes", partitions=2)
        assert pool.pool is not None
        stats = pool.pool.get_stats()
        assert stats["pool_available"] == stats["pool_size"], stats
    else:
        # One connection reads the ranges one after another; in the caller's transaction,
        # one COPY reads what that transaction sees.
        with psycopg.connect(superuser_dsn, autocommit=con == "psycopg") as conn:
            if con != "psycopg":
                conn.execute("SELECT 1")  # a transaction begins
            export_csv(conn, out, table=f"{SCHEMA}.holes", partitions=2)
            assert conn.info.transaction_status == (
                psycopg.pq.TransactionStatus.IDLE
                if con == "psycopg"
                else psycopg.pq.TransactionStatus.INTRANS
            )
    assert out.read_bytes() == expected


def test_the_callers_uncommitted_rows_are_exported(
    tables: None, superuser_dsn: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.csv"
    with psycopg.connect(superuser_dsn) as conn:
        conn.execute(f"INSERT INTO {SCHEMA}.holes (id, t) VALUES (-7, 'not yet committed')")
        result = export_csv(conn, out, table=f"{SCHEMA}.holes", partitions=2)
        seen = _copy_bytes_on(conn, TABLES["holes and moved rows"])
        conn.rollback()
    assert b"not yet committed" in out.read_bytes()
    assert out.read_bytes() == seen
    assert result.rows == seen.count(b"\n") - 1 - seen.count(b"\nlines ")


def _copy_bytes_on(conn: psycopg.Connection[Any], table: sql.Identifier) -> bytes:
    with conn.cursor() as cur:
        stmt = sql.SQL("COPY {} TO STDOUT {}").format(table, copy_options(ExportSettings()))
        with cur.copy(stmt) as copy:
            return b"".join(bytes(block) for block in copy)


def _meet(
    monkeypatch: pytest.MonkeyPatch,
    action: Callable[[list[int]], None] | None = None,
    *,
    at_once: int = 2,
) -> tuple[list[int], list[int]]:
    """Hold each range's read until ``at_once`` are about to read at once (or fail the
    test), run ``action`` with their sessions' pids then, before any of their COPYs starts;
    return the pids of the planning session and of the readers, as they come."""
    planners: list[int] = []
    readers: list[int] = []
    barrier = threading.Barrier(
        at_once, action=(lambda: action(readers)) if action else None, timeout=POLL_DEADLINE
    )
    plan, read = _export._Ranged._plan, _export._Ranged._read

    def planning(self: Any, conn: psycopg.Connection[Any], others: bool) -> Any:
        planners.append(conn.info.backend_pid)
        return plan(self, conn, others)

    def reading(self: Any, conn: psycopg.Connection[Any], stmt: str) -> Any:
        readers.append(conn.info.backend_pid)
        barrier.wait()
        return read(self, conn, stmt)

    monkeypatch.setattr(_export._Ranged, "_plan", planning)
    monkeypatch.setattr(_export._Ranged, "_read", reading)
    return planners, readers


@pytest.fixture
def twin_normal(
    tables: None, superuser_dsn: str, password_config: Path, tmp_path: Path
) -> Iterator[Any]:
    """A pgmonkey normal object of its own (a session the test may change, closed after),
    and an empty twin of xpart.holes in public: what "holes" names in a new session."""
    manager = PGConnectionManager()
    with psycopg.connect(superuser_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE TABLE public.holes AS SELECT * FROM {SCHEMA}.holes LIMIT 0")
        try:
            yield manager.get_database_connection(
                str(derive_config(password_config, tmp_path)), "normal"
            )
        finally:
            manager.clear_cache()
            admin.execute("DROP TABLE public.holes")


def test_the_other_sessions_read_the_table_the_callers_session_names(
    twin_normal: Any, superuser_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The normal object's session has a search_path that finds xpart.holes as "holes"; the
    # ranges' other connection is a new session, where "holes" is the empty twin. Each
    # session reads one range: the export is still COPY xpart.holes.
    _planners, readers = _meet(monkeypatch)
    with twin_normal as conn:
        conn.execute(f"SET search_path = {SCHEMA}, public")
        conn.commit()
    out = tmp_path / "out.csv"
    export_csv(twin_normal, out, table="holes", partitions=2)
    assert len(set(readers)) == 2
    expected = _copy_bytes(superuser_dsn, TABLES["holes and moved rows"], ExportSettings())
    assert out.read_bytes() == expected


def test_a_temporary_table_is_read_by_its_own_session_alone(
    twin_normal: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No other session sees a temporary table (there "holes" names the empty twin): one
    # COPY on its own session, which reads no range.
    _planners, readers = _meet(monkeypatch, at_once=1)
    with twin_normal as conn:
        conn.execute(f"CREATE TEMP TABLE holes AS SELECT * FROM {SCHEMA}.holes")
        conn.commit()
        assert len(block_queries(conn, sql.Identifier("holes"), 2)) == 2
        pid = conn.info.backend_pid
        conn.commit()
    out = tmp_path / "out.csv"
    export_csv(twin_normal, out, table="holes", partitions=2)
    assert readers == [pid]
    with twin_normal as conn:
        assert out.read_bytes() == _copy_bytes_on(conn, sql.Identifier("holes"))
        conn.commit()


def test_tables_that_do_not_split_export_as_without_partitions(
    tables: None, superuser_dsn: str, password_config: Path, tmp_path: Path
) -> None:
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {SCHEMA}.empty (a int, b text)")
        conn.execute(f"CREATE TABLE {SCHEMA}.small AS SELECT 1 AS a, 'x' AS b")
        conn.execute(f"CREATE VIEW {SCHEMA}.v AS SELECT * FROM {SCHEMA}.small")
        conn.execute(f"CREATE TABLE {SCHEMA}.pt (a int) PARTITION BY RANGE (a)")
    try:
        for name in ("empty", "small"):
            out = tmp_path / f"{name}.csv"
            export_csv(password_config, out, table=f"{SCHEMA}.{name}", partitions=4)
            ident = sql.Identifier(SCHEMA, name)
            assert out.read_bytes() == _copy_bytes(superuser_dsn, ident, ExportSettings())
        # What COPY refuses is refused the same way, and leaves no file.
        for name in ("v", "pt", "no_such_table"):
            errors = []
            for partitions in (None, 4):
                out = tmp_path / f"{name}-{partitions}.csv"
                with pytest.raises(psycopg.Error) as caught:
                    export_csv(
                        password_config, out, table=f"{SCHEMA}.{name}", partitions=partitions
                    )
                errors.append((type(caught.value), caught.value.diag.message_primary))
                assert not out.exists()
            assert errors[0] == errors[1], errors
    finally:
        with psycopg.connect(superuser_dsn, autocommit=True) as conn:
            conn.execute(f"DROP VIEW {SCHEMA}.v")
            conn.execute(f"DROP TABLE {SCHEMA}.empty, {SCHEMA}.small, {SCHEMA}.pt")


def _reader_config(password_config: Path, tmp_path: Path) -> Path:
    """A config for the fallback tests' role."""
    return derive_config(
        password_config, tmp_path, connection_settings={"user": ROLE, "password": ROLE_PASSWORD}
    )


def test_ranges_are_read_at_once_in_one_snapshot(
    tables: None,
    superuser_dsn: str,
    password_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two sessions are about to read a range each when the table's first row is deleted
    # (first range) and rows are added at its end (last range), committed: neither range
    # sees the change, as they share the snapshot taken before. The planning session idles
    # in that snapshot's transaction meanwhile, past the server's idle-in-transaction timeout
    # its config sets: the export does not let that end it.
    config = derive_config(
        password_config,
        tmp_path,
        connection_settings={"options": "-c idle_in_transaction_session_timeout=200"},
    )
    app = app_name(config)
    with psycopg.connect(superuser_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE TABLE {SCHEMA}.snap AS SELECT * FROM {SCHEMA}.parent")
        table = sql.Identifier(SCHEMA, "snap")
        before = _copy_bytes(superuser_dsn, table, ExportSettings())

        def meanwhile(readers: list[int]) -> None:
            admin.execute(f"DELETE FROM {SCHEMA}.snap WHERE ctid = '(0,1)'")
            admin.execute(
                f"INSERT INTO {SCHEMA}.snap (id, t)"
                " SELECT -3, 'committed meanwhile' FROM generate_series(1, 500)"
            )
            # Idle longer than the timeout (the server checks it while the session idles).
            time.sleep(0.6)

        planners, readers = _meet(monkeypatch, meanwhile)
        out = tmp_path / "out.csv"
        result = export_csv(config, out, table=f"{SCHEMA}.snap", partitions=2)
        assert len(set(readers)) == 2 and planners[0] in readers
        poll("the export's sessions closed", lambda: server_connections(admin, app) == 0)
        after = _copy_bytes(superuser_dsn, table, ExportSettings())
        admin.execute(f"DROP TABLE {SCHEMA}.snap")
    assert out.read_bytes() == before != after
    assert result.rows == 2 * ROWS  # the parent's and the child's rows, copied in
    assert after.count(b"committed meanwhile") == 500


@pytest.mark.parametrize("which", ["planning session", "other session"])
def test_a_failing_range_fails_the_export_and_leaves_nothing(
    tables: None,
    superuser_dsn: str,
    password_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    which: str,
) -> None:
    # One of the two sessions is terminated by the server just before its COPY.
    config = derive_config(password_config, tmp_path)
    app = app_name(config)
    with psycopg.connect(superuser_dsn, autocommit=True) as admin:
        planners: list[int] = []

        def terminate(readers: list[int]) -> None:
            others = [pid for pid in readers if pid != planners[0]]
            pid = planners[0] if which == "planning session" else others[0]
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

        planners, _readers = _meet(monkeypatch, terminate)
        out = tmp_path / "out.csv"
        with pytest.raises(psycopg.OperationalError):
            export_csv(config, out, table=f"{SCHEMA}.holes", partitions=2)
        assert sorted(os.listdir(tmp_path)) == [config.name]
        poll("the export's sessions closed", lambda: server_connections(admin, app) == 0)


@pytest.mark.parametrize("grant", ["row-level security", "column privileges"])
def test_tables_copy_reads_otherwise_are_exported_by_copy(
    tables: None,
    superuser_dsn: str,
    password_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    grant: str,
) -> None:
    # Under row-level security COPY reads the table through a planned query (here an index
    # scan, in key order, not block order); with column privileges only, a ctid filter is
    # refused. Both are exported by the one COPY, as the role's own COPY writes them.
    _planners, readers = _meet(monkeypatch, at_once=1)
    with psycopg.connect(superuser_dsn, autocommit=True) as admin:
        admin.execute(
            f"CREATE TABLE {SCHEMA}.guarded AS SELECT g AS id, md5(g::text) AS t"
            " FROM generate_series(20000, 1, -1) AS g"
        )
        admin.execute(f"ALTER TABLE {SCHEMA}.guarded ADD PRIMARY KEY (id)")
        admin.execute(f"ANALYZE {SCHEMA}.guarded")
        if grant == "row-level security":
            admin.execute(f"ALTER TABLE {SCHEMA}.guarded ENABLE ROW LEVEL SECURITY")
            admin.execute(
                f"CREATE POLICY few ON {SCHEMA}.guarded USING (id BETWEEN 10020 AND 10060)"
            )
            admin.execute(f"GRANT SELECT ON {SCHEMA}.guarded TO {ROLE}")
        else:
            admin.execute(f"GRANT SELECT (id, t) ON {SCHEMA}.guarded TO {ROLE}")
        try:
            config = _reader_config(password_config, tmp_path)
            with psycopg.connect(superuser_dsn, autocommit=True) as conn:
                assert len(block_queries(conn, sql.Identifier(SCHEMA, "guarded"), 2)) == 2
            out = tmp_path / "out.csv"
            export_csv(config, out, table=f"{SCHEMA}.guarded", partitions=2)
            assert len(readers) == 1
            with psycopg.connect(superuser_dsn, user=ROLE, password=ROLE_PASSWORD) as conn:
                expected = _copy_bytes_on(conn, sql.Identifier(SCHEMA, "guarded"))
            assert out.read_bytes() == expected
            if grant == "row-level security":
                ids = [int(line.split(b",")[0]) for line in expected.splitlines()[1:]]
                assert ids == list(range(10020, 10061))  # key order: an index scan
        finally:
            admin.execute(f"DROP TABLE {SCHEMA}.guarded")


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "2", None])
def test_bad_partitions_name_the_value(tables: None, password_config: Path, bad: Any) -> None:
    if bad is None:
        with pytest.raises(TransferError, match="a query's rows are exported on one connection"):
            export_csv(password_config, "x.csv", query="SELECT 1", partitions=2)
        return
    with pytest.raises(TransferError, match=f"partitions must be a positive integer, not {bad!r}"):
        export_csv(password_config, "x.csv", table=f"{SCHEMA}.holes", partitions=bad)


def test_the_cli_flag(
    tables: None, superuser_dsn: str, password_config: Path, tmp_path: Path
) -> None:
    out = tmp_path / "holes.csv"
    code = run(
        [
            "pgexport",
            "--table",
            f"{SCHEMA}.holes",
            "--connconfig",
            str(password_config),
            "--export_file",
            str(out),
            "--partitions",
            "3",
        ]
    )
    assert code == 0
    assert out.read_bytes() == _copy_bytes(
        superuser_dsn, TABLES["holes and moved rows"], ExportSettings()
    )


def test_the_magic(
    tables: None,
    superuser_dsn: str,
    password_config: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.fix_magics import connect, fresh_magics, ok, run

    with fresh_magics() as (ip, _magics):
        connect(ip, password_config)
        out = tmp_path / "magic.csv"
        ok(ip, f"%pgmonkey export {SCHEMA}.holes {out} --partitions 3")
        expected = _copy_bytes(superuser_dsn, TABLES["holes and moved rows"], ExportSettings())
        assert out.read_bytes() == expected
        capsys.readouterr()
        result = run(ip, f"%pgmonkey export {SCHEMA}.holes {out} --partitions 0")
        assert result.error_in_exec is not None
        shown = "".join(capsys.readouterr())
        assert "partitions must be a positive integer, not 0" in shown, shown
        assert "Traceback" not in shown
        assert out.read_bytes() == expected  # the file of the export before stays

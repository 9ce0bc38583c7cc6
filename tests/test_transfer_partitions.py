"""A table's CSV export in ranges of its blocks over several connections (``partitions=``).

Ground truth is PostgreSQL's own ``COPY table TO STDOUT`` with the same options, read raw
through psycopg: the ranged export must write the same bytes (header once, generated and
dropped columns left out as COPY leaves them, no rows of inheritance children, the order of
the blocks). When something must happen while the ranges are read (both waiting at once,
rows committed meanwhile, a failure in one range), a row-level security policy makes the
ranges' COPY wait on an advisory lock the test holds, and the test acts once it sees the
waiters in ``pg_locks``: never a sleep that guesses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgmonkey import PGConnectionManager
from pgmonkey.cli import run
from pgmonkey.errors import TransferError
from pgmonkey.frames._partition import block_queries
from pgmonkey.transfer import ExportSettings, export_csv
from pgmonkey.transfer._sql import copy_options
from tests._conn_support import (
    Background,
    advisory_waiters,
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

        # A role row-level security applies to (the superuser bypasses it): its policy
        # waits on an advisory lock in a range's COPY, or fails on one row of one range.
        conn.execute(f"CREATE TABLE {SCHEMA}.gated AS SELECT * FROM {SCHEMA}.parent")
        conn.execute(
            f"""CREATE FUNCTION {SCHEMA}.gate(id int) RETURNS bool
               LANGUAGE plpgsql VOLATILE AS $$
               DECLARE ranged bool := current_query() LIKE 'COPY (%';
               BEGIN
                 IF ranged AND id = -1 THEN RAISE EXCEPTION 'no row -1 in a range'; END IF;
                 IF ranged THEN
                   PERFORM pg_advisory_xact_lock_shared(
                     coalesce(current_setting('xpart.key', true), '0')::int8);
                 END IF;
                 RETURN true;
               END $$"""
        )
        conn.execute(f"ALTER TABLE {SCHEMA}.gated ENABLE ROW LEVEL SECURITY")
        conn.execute(f"CREATE POLICY gate ON {SCHEMA}.gated USING ({SCHEMA}.gate(id))")
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(ROLE), sql.Literal(ROLE_PASSWORD)
            )
        )
        conn.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {ROLE}")
        conn.execute(f"GRANT SELECT ON {SCHEMA}.gated TO {ROLE}")
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
        for table in (*TABLES.values(), sql.Identifier(SCHEMA, "gated")):
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


def test_the_other_sessions_read_the_table_the_callers_session_names(
    tables: None,
    superuser_dsn: str,
    password_config: Path,
    manager: PGConnectionManager,
    tmp_path: Path,
) -> None:
    # A pgmonkey normal connection keeps its session, whose search_path finds xpart.gated
    # as "gated"; the ranges' other connections are new sessions, where "gated" is a twin in
    # public. Both ranges wait at the gate, one on each session: the export is still what
    # COPY gated writes on the caller's session.
    key = 4444
    config, _app = _reader_config(password_config, tmp_path, key)
    normal = manager.get_database_connection(str(config), "normal")
    with psycopg.connect(superuser_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE TABLE public.gated AS SELECT * FROM {SCHEMA}.gated WHERE id < 0")
        admin.execute("ALTER TABLE public.gated ENABLE ROW LEVEL SECURITY")
        admin.execute(f"CREATE POLICY gate ON public.gated USING ({SCHEMA}.gate(id))")
        admin.execute(f"GRANT SELECT ON public.gated TO {ROLE}")
        try:
            with normal as conn:
                conn.execute(f"SET search_path = {SCHEMA}, public")
                conn.commit()
            out = tmp_path / "out.csv"
            admin.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                export = Background(lambda: export_csv(normal, out, table="gated", partitions=2))
                poll("both ranges waiting at once", lambda: advisory_waiters(admin, key) == 2)
            finally:
                admin.execute("SELECT pg_advisory_unlock(%s)", (key,))
            export.wait()
            expected = _copy_bytes(superuser_dsn, sql.Identifier(SCHEMA, "gated"), ExportSettings())
            assert out.read_bytes() == expected
        finally:
            with normal as conn:
                conn.execute("RESET search_path")
                conn.commit()
            admin.execute("DROP TABLE public.gated")


def test_a_temporary_table_is_read_by_its_own_session_alone(
    tables: None,
    superuser_dsn: str,
    password_config: Path,
    manager: PGConnectionManager,
    tmp_path: Path,
) -> None:
    # No other session sees a temporary table (and "gated" names xpart.gated there): it is
    # exported by one COPY, which the gate does not hold, so the export ends while the test
    # holds the lock the ranges would wait on.
    key = 4545
    config, _app = _reader_config(password_config, tmp_path, key)
    normal = manager.get_database_connection(str(config), "normal")
    with normal as conn:
        conn.execute(f"CREATE TEMP TABLE gated AS SELECT * FROM {SCHEMA}.gated WHERE id > 10")
        conn.execute("ALTER TABLE pg_temp.gated ENABLE ROW LEVEL SECURITY")
        conn.execute("ALTER TABLE pg_temp.gated FORCE ROW LEVEL SECURITY")
        conn.execute(f"CREATE POLICY gate ON pg_temp.gated USING ({SCHEMA}.gate(id))")
        conn.commit()
        assert len(block_queries(conn, sql.Identifier("gated"), 2)) == 2
        conn.commit()
    out = tmp_path / "out.csv"
    try:
        with psycopg.connect(superuser_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                export = Background(lambda: export_csv(normal, out, table="gated", partitions=2))
                export.wait()
            finally:
                admin.execute("SELECT pg_advisory_unlock(%s)", (key,))
        with normal as conn:
            assert out.read_bytes() == _copy_bytes_on(conn, sql.Identifier("gated"))
            conn.commit()
    finally:
        with normal as conn:
            conn.execute("DROP TABLE pg_temp.gated")
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


def _reader_config(password_config: Path, tmp_path: Path, key: int) -> tuple[Path, str]:
    """A config for the role the policy applies to, and the application_name it sets."""
    path = derive_config(
        password_config,
        tmp_path,
        connection_settings={
            "user": ROLE,
            "password": ROLE_PASSWORD,
            "options": f"-c xpart.key={key}",
        },
    )
    return path, app_name(path)


def test_ranges_are_read_at_once_in_one_snapshot(
    tables: None, superuser_dsn: str, password_config: Path, tmp_path: Path
) -> None:
    # Both ranges wait on the lock at once, on two sessions. Meanwhile the table's first row
    # is deleted (first range) and rows are added at its end (last range), committed: no
    # range sees either change, as they share the snapshot taken before.
    key = 4242
    config, app = _reader_config(password_config, tmp_path, key)
    gated = sql.Identifier(SCHEMA, "gated")
    out = tmp_path / "out.csv"
    with psycopg.connect(superuser_dsn, autocommit=True) as admin:
        before = _copy_bytes(superuser_dsn, gated, ExportSettings())
        admin.execute("SELECT pg_advisory_lock(%s)", (key,))
        export = Background(lambda: export_csv(config, out, table=f"{SCHEMA}.gated", partitions=2))
        try:
            poll("both ranges waiting at once", lambda: advisory_waiters(admin, key) == 2)
            assert server_connections(admin, app) == 2
            first = admin.execute(
                f"DELETE FROM {SCHEMA}.gated WHERE ctid = '(0,1)' RETURNING *"
            ).fetchall()
            admin.execute(
                f"INSERT INTO {SCHEMA}.gated (id, t)"
                f" SELECT -3, 'committed meanwhile' FROM generate_series(1, 500)"
            )
        finally:
            admin.execute("SELECT pg_advisory_unlock(%s)", (key,))
        result = export.wait()
        poll("the export's sessions closed", lambda: server_connections(admin, app) == 0)
        after = _copy_bytes(superuser_dsn, gated, ExportSettings())
        admin.execute(f"DELETE FROM {SCHEMA}.gated WHERE id = -3")
        admin.cursor().executemany(f"INSERT INTO {SCHEMA}.gated VALUES (%s, %s, %s, %s)", first)
    assert len(first) == 1
    assert out.read_bytes() == before != after
    assert result.rows == 2 * ROWS  # the parent's and the child's rows, copied in
    assert after.count(b"committed meanwhile") == 500


def test_a_failing_range_fails_the_export_and_leaves_nothing(
    tables: None, superuser_dsn: str, password_config: Path, tmp_path: Path
) -> None:
    key = 4343
    config, app = _reader_config(password_config, tmp_path, key)
    with psycopg.connect(superuser_dsn, autocommit=True) as admin:
        # A row only the last range reads (appended at the end), which the policy refuses.
        admin.execute(f"INSERT INTO {SCHEMA}.gated (id) VALUES (-1)")
        try:
            out = tmp_path / "out.csv"
            with pytest.raises(psycopg.errors.RaiseException, match="no row -1 in a range"):
                export_csv(config, out, table=f"{SCHEMA}.gated", partitions=2)
            assert os.listdir(tmp_path) == [config.name]
            poll("the export's sessions closed", lambda: server_connections(admin, app) == 0)
            # The same table exports without partitions (one COPY, not a range).
            result = export_csv(config, out, table=f"{SCHEMA}.gated")
            count = admin.execute(f"SELECT count(*) FROM {SCHEMA}.gated").fetchone()
            assert (result.rows,) == count
        finally:
            admin.execute(f"DELETE FROM {SCHEMA}.gated WHERE id = -1")


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

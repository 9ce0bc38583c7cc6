"""Hostile input for CSV import and export, beyond ``test_transfer_property.py``
(which round-trips well-formed random tables).

- random bytes as a CSV file, through the review step and the import;
- random rows into typed columns of an existing table (append);
- random settings files (column types are pasted into CREATE TABLE: they must be types);
- hostile table and column names: quotes, semicolons, spaces, unicode, very long names.

Properties: only TransferError or a psycopg error escapes; a failed import leaves no table it
created and no rows; nothing but the target table ever changes.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg import sql

from pgmonkey.errors import TransferError
from pgmonkey.transfer import (
    ColumnSpec,
    ImportSettings,
    export_csv,
    import_csv,
    import_settings_path,
)

Conn = psycopg.Connection[tuple[Any, ...]]
_DB = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def conn(superuser_dsn: str) -> Iterator[Conn]:
    with psycopg.connect(superuser_dsn, autocommit=True) as c:
        yield c


@pytest.fixture(scope="module")
def schema(conn: Conn) -> Iterator[str]:
    """One schema for the module, with a victim table nothing may touch."""
    name = f"fz_{uuid.uuid4().hex[:10]}"
    ident = sql.Identifier(name)
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
    conn.execute(sql.SQL("CREATE TABLE {}.victim (x int)").format(ident))
    conn.execute(sql.SQL("INSERT INTO {}.victim VALUES (1), (2)").format(ident))
    try:
        yield name
    finally:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(ident))


def _tables(conn: Conn, schema: str) -> set[str]:
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema]
    ).fetchall()
    return {r[0] for r in rows}


def _count(conn: Conn, schema: str, table: str) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
    ).fetchone()
    assert row is not None
    return int(row[0])


def _victim_intact(conn: Conn, schema: str) -> None:
    rows = conn.execute(
        sql.SQL("SELECT x FROM {} ORDER BY x").format(sql.Identifier(schema, "victim"))
    ).fetchall()
    assert rows == [(1,), (2,)]


def _fresh_dir(factory: pytest.TempPathFactory) -> Path:
    return factory.mktemp("fz", numbered=True)


# -- random bytes through review and import ------------------------------------------------

_csvish = st.one_of(
    st.binary(max_size=300),
    st.lists(
        st.sampled_from(
            [
                *(b",", b";", b"\t", b"|", b'"', b"'", b"\n", b"\r\n", b"\r", b"\\.", b"\\N"),
                *(b"a", b"1", b"-2.5", b"2024-01-01", b"true", b"\xef\xbb\xbf", b"\xff\xfe"),
                *(b"\xc3\xa9", b"\xe9", b"\x00", b"  ", b"id,name\n", b'"x""y"', b"1e999"),
            ]
        ),
        max_size=60,
    ).map(b"".join),
)


@_DB
@given(data=_csvish, if_exists=st.sampled_from(["fail", "append", "replace"]))
def test_random_bytes_only_clear_errors_and_failed_imports_leave_nothing(
    tmp_path_factory: pytest.TempPathFactory, conn: Conn, schema: str, data: bytes, if_exists: str
) -> None:
    src = _fresh_dir(tmp_path_factory) / "random.csv"
    src.write_bytes(data)
    table = f"r_{uuid.uuid4().hex[:10]}"
    before = _tables(conn, schema)
    try:
        first = import_csv(src, (schema, table), conn)
    except TransferError as exc:
        event("refused at detection")
        assert str(src) in str(exc) or "csv" in str(exc).lower(), str(exc)
        assert _tables(conn, schema) == before
        return
    assert first.review_needed and first.rows == 0
    assert import_settings_path(src).is_file()
    assert _tables(conn, schema) == before  # the review step touches no database
    try:
        result = import_csv(src, (schema, table), conn, if_exists=if_exists)
    except (TransferError, psycopg.Error) as exc:
        event(f"import failed: {type(exc).__name__}")
        assert not isinstance(exc, psycopg.OperationalError), exc  # never a broken connection
        assert _tables(conn, schema) == before, "a failed import left a table"
        _victim_intact(conn, schema)
        return
    event("imported")
    assert _tables(conn, schema) == before | {table}
    assert _count(conn, schema, table) == result.rows
    _victim_intact(conn, schema)
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, table)))


# -- random rows into typed columns of an existing table ------------------------------------

_TYPES = {"i": "int", "n": "numeric(6,2)", "d": "date", "b": "boolean", "t": "text"}
_cell = st.one_of(
    st.none(),
    st.integers(-(2**40), 2**40).map(str),
    st.sampled_from(["1", "-0", "3.14", "1e3", "2024-02-29", "2023-02-29", "t", "false"]),
    st.sampled_from(["", "NaN", "99999.999", "yes", "0x1F", " 7", "١٢", "\\N", '"', "a,b"]),
    st.text(max_size=6),
)


def _field(v: str | None) -> str:
    return "" if v is None else '"' + v.replace('"', '""') + '"'


@_DB
@given(rows=st.lists(st.tuples(*[_cell] * len(_TYPES)), min_size=1, max_size=6))
def test_random_rows_into_typed_columns_all_or_nothing(
    tmp_path_factory: pytest.TempPathFactory,
    conn: Conn,
    schema: str,
    rows: list[tuple[str | None, ...]],
) -> None:
    table = "typed"
    ident = sql.Identifier(schema, table)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
    columns = ", ".join(f"{k} {t}" for k, t in _TYPES.items())
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(ident, sql.SQL(columns)))
    conn.execute(sql.SQL("INSERT INTO {} (i, t) VALUES (0, 'existing')").format(ident))
    src = _fresh_dir(tmp_path_factory) / "typed.csv"
    lines = [",".join(_TYPES)] + [",".join(_field(v) for v in r) for r in rows]
    src.write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogatepass"))
    s = ImportSettings(columns=tuple(ColumnSpec(k, k, t) for k, t in _TYPES.items()))
    try:
        result = import_csv(src, (schema, table), conn, settings=s, if_exists="append")
    except TransferError as exc:
        event("refused")
        message = str(exc)
        assert "line " in message, message  # names the line (and the column when known)
        assert _count(conn, schema, table) == 1, "a failed import left rows"
        return
    event("imported")
    assert result.rows == len(rows)
    assert _count(conn, schema, table) == 1 + len(rows)


# -- settings files: column types are SQL text, so they must be types -----------------------

_type_text = st.one_of(
    st.sampled_from(
        [
            "int",
            "numeric(10,2)",
            "timestamp with time zone",
            "int[]",
            "character varying(5)",
            "int); DROP TABLE victim; --",
            "text DEFAULT now()",
            "text CHECK (false)",
            "int GENERATED ALWAYS AS (1) STORED",
            'text COLLATE "C"',
            "int /* x */",
            "text, evil int",
            "text REFERENCES victim",
            "int\n",
            "serial",
        ]
    ),
    st.text(alphabet="abcint (),;-'\"[]0123456789 /*", max_size=24),
)


@_DB
@given(ctype=_type_text)
def test_settings_file_column_types_cannot_carry_sql(
    tmp_path_factory: pytest.TempPathFactory, conn: Conn, schema: str, ctype: str
) -> None:
    d = _fresh_dir(tmp_path_factory)
    src = d / "one.csv"
    src.write_text("a\n1\n", encoding="utf-8")
    settings_file = import_settings_path(src)
    settings_file.write_text(
        yaml.safe_dump({"columns": [{"csv": "a", "name": "a", "type": ctype}]}), encoding="utf-8"
    )
    table = f"ty_{uuid.uuid4().hex[:10]}"
    before = _tables(conn, schema)
    conn.execute(sql.SQL("SET search_path = {}").format(sql.Identifier(schema)))
    try:
        result = import_csv(src, (schema, table), conn)
    except TransferError as exc:
        event("refused")
        assert str(settings_file) in str(exc) or "line " in str(exc), str(exc)
        assert _tables(conn, schema) == before
        return
    except psycopg.Error as exc:
        event(f"server refused: {type(exc).__name__}")
        assert not isinstance(exc, psycopg.OperationalError), exc
        assert _tables(conn, schema) == before
        return
    finally:
        conn.execute("RESET search_path")
        _victim_intact(conn, schema)
    event("imported")
    assert result.rows == 1
    # Exactly one column of a type: no default, constraint, generation or extra column.
    got = conn.execute(
        "SELECT column_name, column_default, is_generated FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s",
        [schema, table],
    ).fetchall()
    [(name, default, generated)] = got
    assert (name, generated) == ("a", "NEVER"), (ctype, got)
    if ctype.strip().lower() in ("serial", "bigserial", "smallserial"):  # a type with a default
        assert default is not None and default.startswith("nextval("), (ctype, got)
    else:
        assert default is None, (ctype, got)
    cons = conn.execute(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = to_regclass(%s)",
        [sql.Identifier(schema, table).as_string(conn)],
    ).fetchone()
    assert cons == (0,), ctype
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, table)))


def test_column_type_given_in_python_cannot_carry_sql(
    tmp_path: Path, conn: Conn, schema: str
) -> None:
    src = tmp_path / "one.csv"
    src.write_text("a\n1\n", encoding="utf-8")
    before = _tables(conn, schema)
    hostile = f'int); DROP TABLE "{schema}".victim; CREATE TABLE "{schema}".pwned (a int'
    s = ImportSettings(columns=(ColumnSpec("a", "a", hostile),))
    with pytest.raises(TransferError, match="invalid type"):
        import_csv(src, (schema, "t_hostile_type"), conn, settings=s)
    _victim_intact(conn, schema)
    assert _tables(conn, schema) == before


# -- hostile table and column names ---------------------------------------------------------

_name_chars = st.characters(exclude_categories=("Cs", "Cc"), exclude_characters="\x00")
_hostile_names = st.one_of(
    st.sampled_from(
        [
            'a"b',
            "x'; DROP TABLE victim; --",
            '"; DROP TABLE victim; --',
            "semi;colon",
            "spa ce",
            " leading and trailing ",
            "Ünïcødé ✓ 表",
            "dot.ted",
            "UPPER",
            "select",
            "$1",
            "%s",
            "{}",
            "a\\b",
            "é" * 31,  # 62 bytes: just under PostgreSQL's 63-byte limit
            "n" * 63,
        ]
    ),
    st.text(_name_chars, min_size=1, max_size=20),
)


@_DB
@given(
    table=_hostile_names,
    columns=st.lists(_hostile_names, min_size=1, max_size=4, unique=True),
    dotted=st.booleans(),
)
def test_hostile_names_round_trip_through_import_and_export(
    tmp_path_factory: pytest.TempPathFactory,
    conn: Conn,
    schema: str,
    table: str,
    columns: list[str],
    dotted: bool,
) -> None:
    if table == "victim" or any(len(n.encode()) > 63 for n in [table, *columns]):
        return  # longer names: see test_too_long_names
    d = _fresh_dir(tmp_path_factory)
    src = d / "h.csv"
    headers = [f"h{i}" for i in range(len(columns))]
    src.write_text(",".join(headers) + "\n" + ",".join(["1"] * len(columns)) + "\n")
    s = ImportSettings(
        columns=tuple(ColumnSpec(h, n) for h, n in zip(headers, columns, strict=True))
    )
    quoted_table = '"' + table.replace('"', '""') + '"'
    target: Any = f"{schema}.{quoted_table}" if dotted else (schema, table)
    before = _tables(conn, schema)
    try:
        result = import_csv(src, target, conn, settings=s)
        assert result.rows == 1
        assert _tables(conn, schema) == before | {table}
        got = conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            [schema, table],
        ).fetchall()
        assert [r[0] for r in got] == columns
        out = d / "out.csv"
        exported = export_csv(conn, out, table=target)
        assert exported.rows == 1
        with open(out, encoding="utf-8", newline="") as f:
            assert list(csv.reader(f)) == [columns, ["1"] * len(columns)]
        _victim_intact(conn, schema)
    finally:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, table)))


@pytest.mark.parametrize("what", ["table", "column"])
def test_too_long_names(tmp_path: Path, conn: Conn, schema: str, what: str) -> None:
    """A name over 63 bytes: PostgreSQL would truncate it silently; it must not be confused."""
    long = "L" * 70
    src = tmp_path / "l.csv"
    src.write_text("a\n1\n")
    table = long if what == "table" else "short_t"
    column = long if what == "column" else "a"
    s = ImportSettings(columns=(ColumnSpec("a", column),))
    before = _tables(conn, schema)
    try:
        result = import_csv(src, (schema, table), conn, settings=s)
    except TransferError as exc:
        assert "63" in str(exc) or "long" in str(exc), str(exc)
        assert _tables(conn, schema) == before
        return
    # Accepted: then the data is where the same (truncated) name finds it again.
    assert result.rows == 1
    out = tmp_path / "out.csv"
    assert export_csv(conn, out, table=(schema, table)).rows == 1
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, table)))

"""CSV import and export against the sandbox PostgreSQL."""

from __future__ import annotations

import codecs
import csv
import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from pgmonkey import PGConnectionManager
from pgmonkey.errors import TransferError
from pgmonkey.transfer import (
    ColumnSpec,
    ImportSettings,
    column_names,
    export_csv,
    import_csv,
    import_settings_path,
)

Conn = psycopg.Connection[tuple[Any, ...]]

# A CSV with what breaks naive parsers: quoted delimiters, doubled quotes, embedded
# newlines, non-ASCII text, NULL (unquoted empty) and '' (quoted empty).
TRICKY_ROWS = [
    ["id", "name", "note", "amount"],
    ["1", "Zoë", 'says "hi", then leaves', "1.50"],
    ["2", "", "line one\nline two", None],
    ["3", None, "a,b,c", "-3.25"],
    ["4", "Ærøskøbing", None, "0.00"],
]


def _csv_bytes(
    rows: list[list[str | None]], *, delimiter: str = ",", encoding: str = "utf-8"
) -> bytes:
    """Rows as CSV: None as an unquoted empty field, every other value quoted."""

    def field(v: str | None) -> str:
        return "" if v is None else '"' + v.replace('"', '""') + '"'

    text = "".join(delimiter.join(field(v) for v in row) + "\r\n" for row in rows)
    return text.encode(encoding)


def _records(path: Path, *, encoding: str = "utf-8", delimiter: str = ",") -> list[list[str]]:
    with open(path, encoding=encoding, newline="") as f:
        return list(csv.reader(f, delimiter=delimiter))


@pytest.fixture
def schema(db_conn: Conn) -> Iterator[str]:
    """A fresh schema per test, dropped with everything in it afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    db_conn.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(psycopg.sql.Identifier(name)))
    try:
        yield name
    finally:
        db_conn.execute(
            psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(psycopg.sql.Identifier(name))
        )


def _exists(conn: Conn, schema: str, table: str) -> bool:
    ident = psycopg.sql.Identifier(schema, table).as_string(conn)
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [ident]).fetchone()
    assert row is not None
    return bool(row[0])


def _import_twice(path: Path, table: str, con: Any, **kwargs: Any) -> Any:
    """First run: the review step (nothing imported); second run: the import."""
    first = import_csv(path, table, con, **kwargs)
    assert first.review_needed and first.rows == 0
    return import_csv(path, table, con, **kwargs)


@pytest.mark.parametrize(
    ("encoding", "delimiter"),
    [("utf-8", ","), ("utf-8-sig", ","), ("latin-1", ","), ("utf-8", "\t"), ("utf-16", ";")],
)
def test_round_trip(
    tmp_path: Path, db_conn: Conn, schema: str, encoding: str, delimiter: str
) -> None:
    src = tmp_path / "tricky.csv"
    src.write_bytes(_csv_bytes(TRICKY_ROWS, delimiter=delimiter, encoding=encoding))
    result = _import_twice(src, f"{schema}.tricky", db_conn)
    assert result.settings.encoding == encoding
    assert result.settings.delimiter == delimiter
    assert (result.rows, result.created) == (4, True)
    assert [c.type for c in result.settings.columns] == ["bigint", "text", "text", "numeric"]

    got = db_conn.execute(f'SELECT * FROM "{schema}".tricky ORDER BY id').fetchall()
    assert got == [
        (1, "Zoë", 'says "hi", then leaves', pytest.approx(1.5)),
        (2, "", "line one\nline two", None),
        (3, None, "a,b,c", pytest.approx(-3.25)),
        (4, "Ærøskøbing", None, pytest.approx(0)),
    ]

    out = tmp_path / "out.csv"
    exported = export_csv(db_conn, out, table=f"{schema}.tricky")
    assert exported.rows == 4 and exported.path == out
    # The same records, NULL written unquoted and '' quoted.
    expected = [[v or "" for v in row] for row in TRICKY_ROWS]
    assert sorted(_records(out)[1:]) == sorted(expected[1:])
    assert _records(out)[0] == ["id", "name", "note", "amount"]
    raw = out.read_text(encoding="utf-8")
    assert '2,"","line one\nline two",\n' in raw
    assert "3,,a,b,c" not in raw and '3,,"a,b,c",-3.25\n' in raw

    # And back in: the same table, NULLs and empty strings included.
    again = import_csv(
        out, f"{schema}.again", db_conn, settings=ImportSettings(columns=result.settings.columns)
    )
    assert again.rows == 4
    assert db_conn.execute(f'SELECT * FROM "{schema}".again ORDER BY id').fetchall() == got


def test_an_empty_tables_export_imports_as_an_empty_table(
    tmp_path: Path, db_conn: Conn, schema: str
) -> None:
    # The export is its header line alone; the import reads it as the header, not as a row.
    db_conn.execute(f'CREATE TABLE "{schema}".empty (id int, name text, amount numeric)')
    out = tmp_path / "empty.csv"
    assert export_csv(db_conn, out, table=f"{schema}.empty").rows == 0
    assert out.read_bytes() == b"id,name,amount\n"
    result = _import_twice(out, f"{schema}.copy", db_conn)
    assert (result.rows, result.created) == (0, True)
    got = db_conn.execute(f'SELECT * FROM "{schema}".copy')
    assert [c.name for c in got.description or []] == ["id", "name", "amount"]
    assert got.fetchall() == []


def test_first_run_is_a_review_and_touches_no_database(tmp_path: Path) -> None:
    src = tmp_path / "data.csv"
    src.write_text("Name,Age\nAlice,30\nBob,41\n", encoding="utf-8")
    result = import_csv(src, "public.people", object())  # the connection is never used
    assert result.review_needed and result.rows == 0
    settings_file = import_settings_path(src)
    assert settings_file == tmp_path / "data.csv.import.yaml" and settings_file.is_file()
    assert result.settings_path == settings_file
    text = result.report()
    assert "name (text)" in text and "age (bigint)" in text and "Alice" in text
    assert "run the import again" in text
    assert yaml.safe_load(settings_file.read_text(encoding="utf-8"))["if_exists"] == "fail"


def test_edited_settings_are_used(tmp_path: Path, db_conn: Conn, schema: str) -> None:
    src = tmp_path / "data.csv"
    src.write_text("Name,Age\nAlice,30\nBob,41\n", encoding="utf-8")
    import_csv(src, f"{schema}.people", db_conn)
    settings_file = import_settings_path(src)
    data = yaml.safe_load(settings_file.read_text(encoding="utf-8"))
    data["columns"][0]["name"] = "full_name"
    data["columns"][1]["type"] = "numeric(5,1)"
    settings_file.write_text(yaml.safe_dump(data), encoding="utf-8")
    result = import_csv(src, f"{schema}.people", db_conn)
    assert result.rows == 2
    cols = db_conn.execute(
        "SELECT column_name, data_type, numeric_scale FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = 'people' ORDER BY ordinal_position",
        [schema],
    ).fetchall()
    assert cols == [("full_name", "text", None), ("age", "numeric", 1)]


def test_if_exists(tmp_path: Path, db_conn: Conn, schema: str) -> None:
    src = tmp_path / "d.csv"
    src.write_text("a\n1\n2\n", encoding="utf-8")
    table = f"{schema}.d"
    _import_twice(src, table, db_conn)
    with pytest.raises(TransferError, match="already holds rows"):
        import_csv(src, table, db_conn)
    assert import_csv(src, table, db_conn, if_exists="append").rows == 2
    assert db_conn.execute(f'SELECT count(*) FROM "{schema}".d').fetchone() == (4,)
    result = import_csv(src, table, db_conn, if_exists="replace")
    assert result.created and result.rows == 2
    assert db_conn.execute(f'SELECT count(*) FROM "{schema}".d').fetchone() == (2,)
    # An existing empty table is filled under 'fail' (4.0 users pre-create tables).
    db_conn.execute(f'CREATE TABLE "{schema}".pre (a int)')
    result = import_csv(src, f"{schema}.pre", db_conn)
    assert not result.created and result.rows == 2


def test_an_export_loads_back_into_a_table_of_its_names(
    tmp_path: Path, db_conn: Conn, schema: str
) -> None:
    # Detection names columns as a new table gets them (UserID -> userid, First Name ->
    # first_name): a twin of the source table, made beforehand, refused them by name,
    # where psql's \copy ... csv header loads the file.
    source, twin = f'"{schema}".src', f'"{schema}".twin'
    db_conn.execute(f'CREATE TABLE {source} ("UserID" int, "First Name" text, "x" int)')
    db_conn.execute(f"INSERT INTO {source} VALUES (1, 'Ann', 3), (2, 'Bo', NULL)")
    db_conn.execute(f"CREATE TABLE {twin} (LIKE {source})")
    path = tmp_path / "src.csv"
    export_csv(db_conn, path, table=f"{schema}.src")
    result = _import_twice(path, f"{schema}.twin", db_conn)
    assert (result.rows, result.created) == (2, False)
    assert [c.name for c in result.settings.columns] == ["userid", "first_name", "x"]  # as saved
    rows = "SELECT * FROM {} ORDER BY 1"
    assert (
        db_conn.execute(rows.format(twin)).fetchall()
        == db_conn.execute(rows.format(source)).fetchall()
    )
    # A name the table lacks in every form stays, for the server to refuse by name.
    db_conn.execute(f'CREATE TABLE "{schema}".other (a int, b text, c int)')
    with pytest.raises(psycopg.errors.UndefinedColumn, match="userid"):
        import_csv(path, f"{schema}.other", db_conn)


BAD_FILES = [
    ("ragged_long", b"a,b\n1,2\n3,4,5\n", "line 3", "extra data after last expected column"),
    ("ragged_short", b"a,b\n1,2\n3\n", "line 3", 'missing data for column "b"'),
    ("bad_value", b"a,b\n1,2\n3,4\nx,5\n", "line 4, column 'a'", "invalid input syntax"),
    ("bad_bytes", b"a,b\n1,2\n3,\xe9t\xe9\n", "line 3", "invalid byte sequence"),
]


@pytest.mark.parametrize(
    ("name", "data", "where", "what"), BAD_FILES, ids=[b[0] for b in BAD_FILES]
)
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_bad_rows_fail_naming_the_line_and_leave_nothing(
    tmp_path: Path,
    db_conn: Conn,
    schema: str,
    name: str,
    data: bytes,
    where: str,
    what: str,
    existing: bool,
) -> None:
    src = tmp_path / f"{name}.csv"
    src.write_bytes(data)
    settings = ImportSettings(
        encoding="utf-8",
        columns=(ColumnSpec("a", "a", "bigint"), ColumnSpec("b", "b", "text")),
        if_exists="append",
    )
    if existing:
        db_conn.execute(f'CREATE TABLE "{schema}".t (a bigint, b text)')
    with pytest.raises(TransferError) as info:
        import_csv(src, f"{schema}.t", db_conn, settings=settings)
    message = str(info.value)
    assert str(src) in message and where in message and what in message
    if existing:
        assert db_conn.execute(f'SELECT count(*) FROM "{schema}".t').fetchone() == (0,)
    else:
        assert not _exists(db_conn, schema, "t")


def test_wrong_encoding_in_settings_fails_and_leaves_no_table(
    tmp_path: Path, db_conn: Conn, schema: str
) -> None:
    src = tmp_path / "latin.csv"
    src.write_bytes("name\nabc\nZoë\n".encode("latin-1"))
    settings_file = import_settings_path(src)
    settings_file.write_text(
        yaml.safe_dump({"encoding": "utf-8", "columns": [{"csv": "name", "name": "name"}]})
    )
    with pytest.raises(TransferError, match=r"line 3: invalid byte sequence.*'utf-8'"):
        import_csv(src, f"{schema}.latin", db_conn)
    assert not _exists(db_conn, schema, "latin")


def test_header_must_match_the_settings(tmp_path: Path, db_conn: Conn, schema: str) -> None:
    src = tmp_path / "h.csv"
    src.write_text("a,b\n1,2\n", encoding="utf-8")
    import_csv(src, f"{schema}.h", db_conn)
    src.write_text("a,c\n1,2\n", encoding="utf-8")
    with pytest.raises(TransferError, match="line 1: header 'c' where the settings expect 'b'"):
        import_csv(src, f"{schema}.h", db_conn)
    src.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    with pytest.raises(TransferError, match="line 1: the header has 3 columns"):
        import_csv(src, f"{schema}.h", db_conn)


def test_hostile_names_are_quoted_not_injected(tmp_path: Path, db_conn: Conn, schema: str) -> None:
    db_conn.execute(f'CREATE TABLE "{schema}".victim (x int)')
    table = f"""we"ird'; DROP TABLE "{schema}".victim; -- ü"""
    columns = [
        'c"; DROP TABLE victim; --',
        "spa ce",
        "ünïcødé",
        "semi;colon",
    ]
    src = tmp_path / "h.csv"
    src.write_text("a,b,c,d\n1,2,3,4\n", encoding="utf-8")
    settings = ImportSettings(
        columns=tuple(ColumnSpec(h, n) for h, n in zip("abcd", columns, strict=True))
    )
    result = import_csv(src, (schema, table), db_conn, settings=settings)
    assert result.rows == 1
    assert _exists(db_conn, schema, "victim")
    got = db_conn.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    assert [r[0] for r in got] == columns
    # The same names through a dotted string (quoted: the name holds a dot), and out again.
    out = tmp_path / "out.csv"
    quoted = '"' + table.replace('"', '""') + '"'
    exported = export_csv(db_conn, out, table=f"{schema}.{quoted}")
    assert exported.rows == 1
    assert _records(out) == [columns, ["1", "2", "3", "4"]]


def test_legacy_settings_file_is_honoured(tmp_path: Path, db_conn: Conn, schema: str) -> None:
    src = tmp_path / "data.csv"
    src.write_bytes("Name;Town\nZoë;Åre\nBob;Oslo\n".encode("latin-1"))
    (tmp_path / "data.yaml").write_text(
        yaml.safe_dump(
            {
                "delimiter": ";",
                "quotechar": '"',
                "encoding": "latin1",
                "has_headers": True,
                "auto_create_table": True,
                "enforce_lowercase": True,
            }
        )
    )
    result = import_csv(src, f"{schema}.legacy", db_conn)
    assert not result.review_needed and result.rows == 2
    assert result.settings_path == tmp_path / "data.yaml"
    assert not import_settings_path(src).exists()
    rows = db_conn.execute(f'SELECT name, town FROM "{schema}".legacy ORDER BY name').fetchall()
    assert rows == [("Bob", "Oslo"), ("Zoë", "Åre")]


def test_legacy_auto_create_false_needs_the_table(
    tmp_path: Path, db_conn: Conn, schema: str
) -> None:
    src = tmp_path / "data.csv"
    src.write_text("Name\nx\n", encoding="utf-8")
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"auto_create_table": False}))
    with pytest.raises(TransferError, match="does not exist and auto_create_table is false"):
        import_csv(src, f"{schema}.missing", db_conn)
    db_conn.execute(f'CREATE TABLE "{schema}".missing (name text)')
    assert import_csv(src, f"{schema}.missing", db_conn).rows == 1


def test_connection_config_with_the_same_stem_is_not_settings(
    tmp_path: Path, password_config: Path
) -> None:
    src = tmp_path / "config.csv"
    src.write_text("a\n1\n", encoding="utf-8")
    conf = tmp_path / "config.yaml"
    conf.write_bytes(password_config.read_bytes())
    result = import_csv(src, "public.whatever", conf)
    assert result.review_needed
    assert import_settings_path(src).is_file()
    assert conf.read_bytes() == password_config.read_bytes()


def test_import_and_export_through_each_auth_config(
    tmp_path: Path, db_conn: Conn, auth_config: Path
) -> None:
    table = f"t_{uuid.uuid4().hex[:12]}"  # public: the cert role may create tables there
    src = tmp_path / "a.csv"
    src.write_text("a,b\n1,x\n2,\n", encoding="utf-8")
    try:
        result = _import_twice(src, f"public.{table}", auth_config)
        assert result.rows == 2
        out = tmp_path / "b.csv"
        assert export_csv(auth_config, out, table=f"public.{table}").rows == 2
        assert out.read_text(encoding="utf-8") == "a,b\n1,x\n2,\n"
    finally:
        db_conn.execute(f"DROP TABLE IF EXISTS public.{table}")


def test_pgmonkey_connection_object(
    tmp_path: Path, db_conn: Conn, schema: str, password_config: Path
) -> None:
    manager = PGConnectionManager()
    conn_obj = manager.get_database_connection(password_config, "normal")
    pool_obj = manager.get_database_connection(password_config, "pool")
    src = tmp_path / "a.csv"
    src.write_text("a\n1\n2\n", encoding="utf-8")
    try:
        assert _import_twice(src, f"{schema}.a", conn_obj).rows == 2
        assert import_csv(src, f"{schema}.a", pool_obj, if_exists="append").rows == 2
        out = tmp_path / "out.csv"
        assert export_csv(pool_obj, out, query=f'SELECT sum(a) AS s FROM "{schema}".a').rows == 1
        assert out.read_text(encoding="utf-8") == "s\n6\n"
    finally:
        conn_obj.disconnect()
        pool_obj.disconnect()


def test_user_transaction_is_respected(tmp_path: Path, superuser_dsn: str, schema: str) -> None:
    src = tmp_path / "a.csv"
    src.write_text("a\n1\n", encoding="utf-8")
    with psycopg.connect(superuser_dsn) as conn:  # not autocommit: a transaction is open
        conn.execute("SELECT 1")
        _import_twice(src, f"{schema}.a", conn)
        conn.rollback()
        assert not _exists(conn, schema, "a")


def test_replace_recreates_the_table_in_its_own_schema(
    tmp_path: Path, db_conn: Conn, schema: str, superuser_dsn: str
) -> None:
    # The search_path's first schema lacks the table, the second has it: replace dropped it
    # there and created the new one in the first (the table moved, its grants gone with it).
    first = f"{schema}_first"
    ident = psycopg.sql.Identifier
    db_conn.execute(psycopg.sql.SQL("CREATE SCHEMA {}").format(ident(first)))
    try:
        db_conn.execute(
            psycopg.sql.SQL("CREATE TABLE {} AS SELECT 1 AS a").format(ident(schema, "t"))
        )
        src = tmp_path / "t.csv"
        src.write_text("a\n7\n8\n", encoding="utf-8")
        with psycopg.connect(superuser_dsn, autocommit=True) as conn:
            conn.execute(f'SET search_path = "{first}", "{schema}"')
            _import_twice(src, "t", conn, if_exists="replace")
        assert not _exists(db_conn, first, "t")
        got = db_conn.execute(
            psycopg.sql.SQL("SELECT a FROM {} ORDER BY a").format(ident(schema, "t"))
        )
        assert got.fetchall() == [(7,), (8,)]
    finally:
        db_conn.execute(psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(ident(first)))


def test_export_default_name_and_query(
    tmp_path: Path, db_conn: Conn, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_conn.execute(
        f'CREATE TABLE "{schema}".my_table AS '
        "SELECT g AS id, CASE WHEN g = 2 THEN NULL WHEN g = 3 THEN '' ELSE 'v' || g END AS v "
        "FROM generate_series(1, 3) g"
    )
    monkeypatch.chdir(tmp_path)
    result = export_csv(db_conn, table=f"{schema}.my_table")
    assert result.path == Path("my_table.csv")
    assert (tmp_path / "my_table.csv").read_text(encoding="utf-8") == 'id,v\n1,v1\n2,\n3,""\n'
    assert not (tmp_path / f"{schema}.csv").exists()

    q = export_csv(
        db_conn, "q.csv", query=f'SELECT v FROM "{schema}".my_table WHERE id > 1 ORDER BY id;'
    )
    assert q.rows == 2
    assert (tmp_path / "q.csv").read_text(encoding="utf-8") == 'v\n\n""\n'
    with pytest.raises(TransferError, match="needs a file name"):
        export_csv(db_conn, query="SELECT 1")
    with pytest.raises(TransferError, match="either a table or a query"):
        export_csv(db_conn, "x.csv")


def test_an_export_query_is_one_statement(
    tmp_path: Path, db_conn: Conn, schema: str, password_config: Path
) -> None:
    db_conn.execute(f'CREATE TABLE "{schema}".keep AS SELECT 1 AS x')
    # A comment on the query's last line used to take the closing parenthesis with it.
    out = tmp_path / "c.csv"
    assert export_csv(db_conn, out, query=f'SELECT x FROM "{schema}".keep -- the one row').rows == 1
    assert out.read_text(encoding="utf-8") == "x\n1\n"
    # A query that closes the parentheses it sits in used to add statements after the COPY
    # (and the export then spun for ever): refused, nothing run, no file, in a subprocess
    # so that a regression fails here instead of hanging the suite.
    closing = f'SELECT 1) TO STDOUT; DROP TABLE "{schema}".keep; COPY (SELECT 1'
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pgmonkey",
            "pgexport",
            "--connconfig",
            str(password_config),
            "--query",
            closing,
            "--export_file",
            str(tmp_path / "q.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "export query: not one statement" in done.stderr, done.stderr
    assert _exists(db_conn, schema, "keep")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv"]
    # Inside the caller's transaction, which goes on.
    with psycopg.connect(db_conn.info.dsn, password=db_conn.info.password) as conn:
        conn.execute("SELECT 1")
        with pytest.raises(TransferError, match="not one statement"):
            export_csv(conn, tmp_path / "t.csv", query=closing)
        assert conn.execute(f'SELECT x FROM "{schema}".keep').fetchone() == (1,)
    with pytest.raises(psycopg.errors.SyntaxError):
        export_csv(db_conn, tmp_path / "s.csv", query="SELEC 1")


@pytest.mark.parametrize(
    ("query", "where", "line"),
    [
        ("SELECT * FROM nope_t", "line 1, column 15", "SELECT * FROM nope_t"),
        ("SELECT 1 AS a,\n       nope_c", "line 2, column 8", "       nope_c"),
        ("\n\n  SELECT nope_c;", "line 3, column 10", "  SELECT nope_c"),
        ("SELECT\t1,\tnope_c", "line 1, column 11", "SELECT 1, nope_c"),  # a tab as a space
    ],
)
def test_an_export_query_error_is_placed_in_the_query(
    tmp_path: Path, db_conn: Conn, query: str, where: str, line: str
) -> None:
    # Its position used to be in the COPY statement around the query: "LINE 2" for line 1.
    with pytest.raises((psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn)) as caught:
        export_csv(db_conn, tmp_path / "e.csv", query=query)
    shown = str(caught.value).splitlines()
    assert shown[0].endswith(f"does not exist ({where} of the query)"), shown
    assert shown[1] == f"  {line}"
    column = int(where.rsplit(" ", 1)[1])
    assert shown[2] == "  " + " " * (column - 1) + "^"
    assert line[column - 1 :].startswith("nope_")
    assert not (tmp_path / "e.csv").exists()
    # The server's own error, its message rewritten: its details stay.
    assert caught.value.diag.sqlstate in ("42P01", "42703")
    assert caught.value.diag.message_primary == shown[0].split(" (line ")[0]
    assert caught.value.pgresult is not None


def test_an_export_query_takes_parameters(tmp_path: Path, db_conn: Conn) -> None:
    # Bound on the client as read_sql binds them: a float stays a float8, text stays text.
    out = tmp_path / "p.csv"
    query = "SELECT %(x)s AS x, %(f)s * 1 AS f, pg_typeof(%(f)s) AS t, %(s)s AS s"
    export_csv(db_conn, out, query=query, params={"x": 2, "f": -0.0, "s": "a'); DROP --"})
    assert out.read_text(encoding="utf-8") == "x,f,t,s\n2,-0,double precision,a'); DROP --\n"
    with pytest.raises(TransferError, match="params go with a query"):
        export_csv(db_conn, out, table="t", params=(1,))


def test_export_settings_files(tmp_path: Path, db_conn: Conn, schema: str) -> None:
    db_conn.execute(f"CREATE TABLE \"{schema}\".e AS SELECT 'Zoë; x' AS name, 1 AS n")
    out = tmp_path / "out.csv"
    (tmp_path / "out.csv.export.yaml").write_text(
        yaml.safe_dump({"delimiter": ";", "encoding": "latin-1", "has_headers": False})
    )
    export_csv(db_conn, out, table=f"{schema}.e")
    assert out.read_bytes() == '"Zoë; x";1\n'.encode("latin-1")

    out2 = tmp_path / "legacy.csv"
    (tmp_path / "legacy.yaml").write_text(yaml.safe_dump({"delimiter": "\t", "encoding": "utf-16"}))
    export_csv(db_conn, out2, table=f"{schema}.e")
    assert out2.read_bytes() == "name\tn\nZoë; x\t1\n".encode("utf-16")

    out3 = tmp_path / "config.csv"  # config.yaml is a connection config: not settings
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"connection_type": "normal"}))
    export_csv(db_conn, out3, table=f"{schema}.e")
    assert out3.read_text(encoding="utf-8") == "name,n\nZoë; x,1\n"


def test_failed_export_leaves_no_file(tmp_path: Path, db_conn: Conn) -> None:
    out = tmp_path / "boom.csv"
    query = "SELECT 1 / (5000 - g) FROM generate_series(1, 10000) g"
    with pytest.raises(psycopg.errors.DivisionByZero):
        export_csv(db_conn, out, query=query)
    assert list(tmp_path.iterdir()) == []
    # The connection is still usable.
    assert db_conn.execute("SELECT 1").fetchone() == (1,)


def test_big_export_row_count(tmp_path: Path, db_conn: Conn) -> None:
    out = tmp_path / "big.csv"
    query = "SELECT g, md5(g::text) FROM generate_series(1, 50000) g"
    result = export_csv(db_conn, out, query=query, progress=False)
    assert result.rows == 50000
    lines = out.read_bytes().splitlines()
    assert len(lines) == 50001 and lines[-1].startswith(b"50000,")
    assert result.bytes == out.stat().st_size


def test_bom_is_not_data(tmp_path: Path, db_conn: Conn, schema: str) -> None:
    src = tmp_path / "bom.csv"
    settings = ImportSettings(encoding="utf-8", has_headers=False, columns=(ColumnSpec(None, "x"),))
    src.write_bytes(codecs.BOM_UTF8 + b"first\nsecond\n")
    import_csv(src, f"{schema}.b", db_conn, settings=settings)
    rows = db_conn.execute(f'SELECT x FROM "{schema}".b').fetchall()
    assert rows == [("first",), ("second",)]


def test_progress_bar_when_asked(
    tmp_path: Path, db_conn: Conn, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "p.csv"
    src.write_bytes(_csv_bytes([["a"], *[[str(i)] for i in range(1000)]]))
    settings = ImportSettings(columns=(ColumnSpec("a", "a", "bigint"),))
    import_csv(src, f"{schema}.p", db_conn, settings=settings, progress=False)
    assert capsys.readouterr().err == ""
    from pgmonkey.transfer._progress import Progress, is_interactive

    assert not is_interactive()  # pytest captures stderr
    with Progress(100, "x", True) as bar:
        bar._bar.delay = 0  # show at once
        bar.update(100)
        bar._bar.refresh()
    assert "100" in capsys.readouterr().err


def test_parse_in_memory_csv_module_agrees() -> None:
    # Guard for _csv_bytes itself: what it writes the csv module reads back.
    data = _csv_bytes(TRICKY_ROWS).decode()
    assert list(csv.reader(io.StringIO(data, newline="")))[1][2] == 'says "hi", then leaves'


def test_bad_bytes_in_a_transcoded_file_name_the_line(
    tmp_path: Path, db_conn: Conn, schema: str
) -> None:
    src = tmp_path / "u16.csv"
    good = "a\n" + "".join(f"row {i}\n" for i in range(5))
    data = good.encode("utf-16-be")
    src.write_bytes(data + b"\xdc\x00" + "x\n".encode("utf-16-be"))  # a lone low surrogate
    settings = ImportSettings(encoding="utf-16-be", columns=(ColumnSpec("a", "a"),))
    with pytest.raises(TransferError, match=r"line 7: not valid 'utf-16-be'"):
        import_csv(src, f"{schema}.u", db_conn, settings=settings)
    assert not _exists(db_conn, schema, "u")


def test_unwritable_export_path_is_one_clear_error(tmp_path: Path, db_conn: Conn) -> None:
    out = tmp_path / "no" / "such" / "dir.csv"
    with pytest.raises(TransferError, match=r"cannot write .*dir\.csv"):
        export_csv(db_conn, out, query="SELECT 1")


# -- a file that changes while it is imported ------------------------------


def _changing_progress(src: Path, change: Any) -> type:
    """A progress bar that changes ``src`` after the first chunk went to COPY."""
    from pgmonkey.transfer._progress import Progress

    class Changing(Progress):
        done = False

        def update(self, nbytes: int) -> None:
            super().update(nbytes)
            if not Changing.done:
                Changing.done = True
                change()

    return Changing


@pytest.mark.parametrize("how", ["truncated", "grown"])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
def test_a_file_changed_during_the_import_commits_nothing(
    tmp_path: Path,
    db_conn: Conn,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    existing: bool,
) -> None:
    from pgmonkey.transfer import _import

    src = tmp_path / "big.csv"
    data = b"a\n" + b"".join(b"%d\n" % i for i in range(100_000))
    src.write_bytes(data)
    cut = data.index(b"\n", 300_000) + 1  # a line end, so the rest still parses

    def change() -> None:
        if how == "truncated":
            os.truncate(src, cut)
        else:
            with open(src, "ab") as f:
                f.write(b"1\n2\n")

    monkeypatch.setattr(_import, "CHUNK", 64 << 10)
    monkeypatch.setattr(_import, "Progress", _changing_progress(src, change))
    settings = ImportSettings(columns=(ColumnSpec("a", "a", "bigint"),), if_exists="append")
    if existing:
        db_conn.execute(f'CREATE TABLE "{schema}".t (a bigint)')
    with pytest.raises(TransferError) as info:
        import_csv(src, f"{schema}.t", db_conn, settings=settings)
    message = str(info.value)
    assert "the file changed while it was imported" in message
    assert f"{len(data)} bytes when the import started" in message
    assert "nothing was imported" in message
    if existing:
        assert db_conn.execute(f'SELECT count(*) FROM "{schema}".t').fetchone() == (0,)
    else:
        assert not _exists(db_conn, schema, "t")


def test_a_file_changed_during_a_rewritten_import_commits_nothing(
    tmp_path: Path, db_conn: Conn, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same through the rewriting path (skipped lines, CRLF sent as LF, UTF-16).
    from pgmonkey.transfer import _import

    src = tmp_path / "big.csv"
    text = "title\r\na\r\n" + "".join(f"{i}\r\n" for i in range(50_000))
    src.write_bytes(text.encode("utf-16"))
    monkeypatch.setattr(_import, "CHUNK", 64 << 10)
    monkeypatch.setattr(
        _import, "Progress", _changing_progress(src, lambda: os.truncate(src, 200_000))
    )
    settings = ImportSettings(
        encoding="utf-16",
        skip_lines=1,
        normalise_newlines=True,
        columns=(ColumnSpec("a", "a", "bigint"),),
    )
    with pytest.raises(TransferError, match="the file changed while it was imported"):
        import_csv(src, f"{schema}.t", db_conn, settings=settings)
    assert not _exists(db_conn, schema, "t")


# -- rewritten on the way to COPY: skipped lines, mixed line endings, aligned columns ---------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "latin-1"])
def test_detected_rewrites_import_every_row(
    tmp_path: Path, db_conn: Conn, schema: str, encoding: str
) -> None:
    text = (
        "Stations, measured by hand\r\n"
        "\r\n"
        "  station   temp   note\r\n"
        '  Zoë       -3.5   "a b"\r\n'
        "  Åre       10.0   x\r\n"
        "  Oslo       2.25  y\n"
    )
    src = tmp_path / "aligned.csv"
    src.write_bytes(text.encode(encoding))
    result = _import_twice(src, f"{schema}.st", db_conn)
    s = result.settings
    assert (s.skip_lines, s.collapse_whitespace, s.normalise_newlines) == (2, True, True)
    assert result.rows == 3
    rows = db_conn.execute(f'SELECT * FROM "{schema}".st ORDER BY ctid').fetchall()
    assert rows == [
        ("Zoë", pytest.approx(-3.5), "a b"),
        ("Åre", pytest.approx(10), "x"),
        ("Oslo", pytest.approx(2.25), "y"),
    ]


def test_errors_name_the_file_line_after_skipped_lines(
    tmp_path: Path, db_conn: Conn, schema: str
) -> None:
    src = tmp_path / "t.csv"
    src.write_text("Report\n\nid,v\n1,x\n2,y\nz,w\n", encoding="utf-8")
    settings = ImportSettings(
        skip_lines=2, columns=(ColumnSpec("id", "id", "bigint"), ColumnSpec("v", "v"))
    )
    with pytest.raises(TransferError, match=r"line 6, column 'id'"):
        import_csv(src, f"{schema}.t", db_conn, settings=settings)


def test_review_prints_the_evidence(tmp_path: Path) -> None:
    src = tmp_path / "data.csv"
    src.write_text("id,amount\n1,742.94\n2,nil\n", encoding="utf-8")
    text = import_csv(src, "public.t", object()).report()
    assert "header: line 1: 'id' is not bigint like the values below it" in text
    assert "delimiter: ',': 2 fields on each of the 3 sampled lines" in text
    assert "'amount' -> amount text: line 3: 'nil' is not a number (numeric)" in text
    assert "set null_string: 'nil'" in text


def test_the_review_shows_control_characters_escaped(tmp_path: Path) -> None:
    # The preview printed values as they are: an escape sequence in a file drove the
    # terminal (colours, a cleared screen, a title), a bidi override reordered the line.
    src = tmp_path / "c.csv"
    src.write_text('a,b\n"\x1b[2Jx\x07",\u202eevil\n', encoding="utf-8")
    review = import_csv(src, "c", "unused: no connection on a review")
    shown = review.report()
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert "\\x1b[2Jx\\x07" in review.preview_text() and "\\u202eevil" in review.preview_text()


def test_names_kept_as_written_fit_the_servers_byte_limit(db_conn: Conn) -> None:
    # Cut at 63 characters, a name of two-byte letters was still 126 bytes: the server cut
    # it again, and two headers that differ only past its 63 bytes became one column twice.
    headers = ["é" * 40 + "a", "é" * 40 + "b", "ü" * 70]
    names = column_names(headers, enforce_lowercase=False)
    assert len(set(names)) == 3
    for name in names:  # each is what the server keeps of it
        assert db_conn.execute("SELECT %s::name::text", [name]).fetchone() == (name,)

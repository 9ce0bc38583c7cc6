"""Differential tests of read_sql: every cell is what ``cursor.fetchall()`` gives, or both raise.

A wide catalogue of PostgreSQL types and edge values is read with ``read_sql`` (sync, async, and
the ``%pgmonkey`` magic in an in-process IPython shell) and with psycopg's own ``fetchall`` on
the same session settings. A DataFrame cell is turned back into a plain Python value only by
the documented dtype mapping (int64, float64, bool, datetime64, str; anything else is the value
psycopg loads), never by our own expectation of the value.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from IPython.core.interactiveshell import InteractiveShell

from pgmonkey.frames import read_sql, read_sql_async
from pgmonkey.magics import PgMonkeyMagics

Conn = psycopg.Connection[Any]

_TEXT_EDGES = [
    "",
    " ",
    "\\N",
    "NULL",
    "NaN",
    "t",
    '"',
    "a,b",
    "x\ry",
    "\r\n",
    "\n",
    "\t",
    "\ufeffbom",
    "\ufeff",
    "#comment",
    "".join(chr(c) for c in range(1, 32)) + "\x7f",
    "é ñ ß",
    "漢字 🐒 \u2028",
    "x" * 70_000,
]

# (type, literals): values of the type, NULL is added to each.
CATALOGUE: list[tuple[str, list[str]]] = [
    ("int2", ["'-32768'", "32767", "0"]),
    ("int4", ["'-2147483648'", "2147483647"]),
    ("int8", ["'-9223372036854775808'", "9223372036854775807"]),
    ("oid", ["0", "4294967295"]),
    ("float4", ["'NaN'", "'-Infinity'", "'-0'", "1.17549435e-38", "3.4028235e38"]),
    ("float8", ["'NaN'", "'Infinity'", "'-0'", "5e-324", "1.7976931348623157e308", "0.1"]),
    ("numeric", ["'NaN'", "'Infinity'", "1e-30", "123456789012345678901234567890.123", "-0.00"]),
    ("numeric(5,2)", ["1.10", "-999.99"]),
    ("bool", ["true", "false"]),
    ("text", []),  # the text edges
    ("varchar(3)", ["'ab'", "''"]),
    ("char(3)", ["'a'", "'abc'"]),
    ("name", ["'pg_class'", "''"]),
    ('"char"', ["'a'", "''"]),
    ("date", ["'0001-01-01'", "'9999-12-31'", "'2024-02-29'"]),
    (
        "timestamp",
        ["'0001-01-01 00:00:00'", "'9999-12-31 23:59:59.999999'", "'1677-09-21 00:12:43'"],
    ),
    (
        "timestamptz",
        ["'0001-01-01 00:00:00Z'", "'9999-12-30 23:59:59.999999Z'", "'1900-01-01 12:00+05:53:28'"],
    ),
    ("time", ["'00:00'", "'23:59:59.999999'"]),
    ("timetz", ["'12:00+14'", "'00:00-15:59'"]),
    (
        "interval",
        ["'178000000 years'", "'-1 mon +2 days -03:00'", "'0.000001 s'", "'-178000000 years'"],
    ),
    ("uuid", ["'00000000-0000-0000-0000-000000000000'", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"]),
    ("json", ["'{\"a\": [1, 2.5, null]}'", "'\"\\u00e9\"'", "'1e400'", "'null'"]),
    ("jsonb", ['\'{"a": {"b": null}}\'', "'[1, \"two\"]'", "'null'", "'\"\"'"]),
    ("xml", ["'<a>x &amp; y</a>'", "''"]),
    ("bytea", ["'\\x00ff0a2c22'", "''", "'\\x5c4e'"]),
    ("money", ["'12.34'", "'-92233720368547758.08'"]),
    ("inet", ["'192.168.0.1/24'", "'::1'"]),
    ("cidr", ["'10.0.0.0/8'"]),
    ("macaddr", ["'08:00:2b:01:02:03'"]),
    ("bit(3)", ["B'101'"]),
    ("varbit", ["B''", "B'1'"]),
    ("point", ["'(1,2)'"]),
    ("box", ["'((0,0),(1,1))'"]),
    ("tsvector", ["'a fat cat'"]),
    ("int4range", ["'[1,5)'", "'empty'", "'(,)'"]),
    ("tstzrange", ["'[2024-01-01 00:00+00,2025-01-01 00:00+00)'", "'(,)'"]),
    ("daterange", ["'[2024-01-01,2024-02-01)'"]),
    ("numrange", ["'(1.5,2.5]'"]),
    ("int4multirange", ["'{[1,3), [5,7)}'", "'{}'"]),
    ("int[]", ["'{1,2,NULL}'", "'{}'", "'{{1,2},{3,4}}'"]),
    ("text[]", ['\'{a,"b,c","",NULL,"NULL"}\'', "'{\"\\\\\"}'"]),
    ("float8[]", ["'{NaN,-0,Infinity}'"]),
    ("frames_mood", ["'sad'", "'happy'"]),
    ("frames_posint", ["1", "2147483647"]),
    ("frames_label", ["''", "'x'"]),
    ("frames_pair", ["ROW(1, 'a')", "ROW(NULL, NULL)", "ROW(2, '')"]),
    ("frames_mood[]", ["'{sad,happy}'"]),
]

# Values psycopg itself refuses to load: read_sql must raise too.
BOTH_RAISE: list[tuple[str, str]] = [
    ("date", "'infinity'"),
    ("date", "'4713-01-01 BC'"),
    ("timestamp", "'-infinity'"),
    ("timestamptz", "'infinity'"),
    ("timestamp", "'10000-01-01 00:00'"),
    ("timestamp", "'294276-12-31 23:59:59.999999'"),
    ("time", "'24:00'"),
    ("tstzrange", "'[2024-01-01 00:00+00,infinity)'"),
]

SESSIONS = [
    ("Asia/Kolkata", "ISO, MDY", "UTF8"),
    ("America/St_Johns", "SQL, DMY", "UTF8"),
    ("<-0230>+02:30", "German", "LATIN1"),
]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _values(sql_type: str, encoding: str) -> list[str]:
    values = CATALOGUE_BY_TYPE[sql_type]
    if sql_type != "text":
        return values
    texts = [t for t in _TEXT_EDGES if encoding == "UTF8" or _encodes(t, "latin-1")]
    return [_literal(t) for t in texts]


def _encodes(text: str, codec: str) -> bool:
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


CATALOGUE_BY_TYPE = dict(CATALOGUE)


def _column_query(sql_type: str, encoding: str) -> str:
    rows = [f"({lit}::{sql_type})" for lit in _values(sql_type, encoding)]
    rows.insert(min(1, len(rows)), f"(NULL::{sql_type})")
    return f"SELECT v FROM (VALUES {', '.join(rows)}) AS t(v)"


# psycopg cannot load timestamptz text under a non-ISO DateStyle (the per-type test checks
# that read_sql raises too); the wide query leaves them out there.
_ISO_ONLY = ("timestamptz", "tstzrange")


def _wide_query(encoding: str, iso: bool = True) -> str:
    """Every catalogue type as a column, one row per value, NULL where a column runs out."""
    columns = [(t, _values(t, encoding)) for t, _ in CATALOGUE if iso or t not in _ISO_ONLY]
    height = max(len(v) for _, v in columns) + 1
    selects = []
    for i, (sql_type, values) in enumerate(columns):
        cases = " ".join(f"WHEN {j} THEN {lit}::{sql_type}" for j, lit in enumerate(values))
        body = f"CASE r {cases} END" if values else "NULL"
        selects.append(f"({body})::{sql_type} AS c{i}")
    return f"SELECT {', '.join(selects)} FROM generate_series(0, {height - 1}) AS r ORDER BY r"


def _cell(value: Any, dtype: str) -> Any:
    """A DataFrame cell as a plain Python value, by the documented dtype mapping only."""
    if value is pd.NA or value is pd.NaT or value is None:
        return None
    if dtype == "str" and isinstance(value, float) and math.isnan(value):
        return None  # the missing value of pandas' str dtype
    if dtype.startswith("datetime64[s"):
        return value.date()
    if dtype.startswith("datetime64"):
        return value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        return value.item()
    return value


def _same(got: Any, expected: Any, dtype: str) -> bool:
    """Equal, where float64 columns hold NULL and NaN alike (documented) and NaN equals NaN."""
    if dtype == "float64":
        if isinstance(got, float) and math.isnan(got):
            if expected is None:
                return True
            return math.isnan(float(expected))
        if isinstance(expected, decimal.Decimal):
            return got == float(expected)
    if isinstance(got, decimal.Decimal) and isinstance(expected, decimal.Decimal):
        return str(got) == str(expected)  # NaN, -0.00 and the scale count
    if isinstance(got, float) and isinstance(expected, float):
        return got == expected or (math.isnan(got) and math.isnan(expected))
    if isinstance(got, (list, tuple)) and isinstance(expected, (list, tuple)):
        return (
            type(got) is type(expected)
            and len(got) == len(expected)
            and all(_same(g, e, "") for g, e in zip(got, expected, strict=True))
        )
    if isinstance(got, dt.datetime) and isinstance(expected, dt.datetime):
        if (got.tzinfo is None) != (expected.tzinfo is None):
            return False
    same = bool(got == expected) and type(got) is type(expected)
    return same or _loose_equal(got, expected)


def _loose_equal(got: Any, expected: Any) -> bool:
    # int64 columns give int for int2/int4/int8/oid; psycopg's loaders give int too.
    return isinstance(got, int) and isinstance(expected, int) and got == expected


def _assert_matches(df: pd.DataFrame, names: list[str], rows: list[tuple[Any, ...]]) -> None:
    assert list(df.columns) == names
    assert len(df) == len(rows)
    for j, name in enumerate(names):
        dtype = str(df.dtypes.iloc[j])
        for i, row in enumerate(rows):
            got = _cell(df.iat[i, j], dtype)
            assert _same(got, row[j], dtype), (name, i, dtype, got, row[j])
        if dtype.startswith("datetime64") and "UTC" in dtype:
            assert str(df.iloc[:, j].dt.tz) == "UTC"


@pytest.fixture(scope="module")
def catalogue_types(superuser_dsn: str) -> Iterator[None]:
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute(
            "DROP TYPE IF EXISTS frames_mood, frames_pair CASCADE;"
            " DROP DOMAIN IF EXISTS frames_posint, frames_label CASCADE;"
            " CREATE TYPE frames_mood AS ENUM ('sad', 'happy');"
            " CREATE DOMAIN frames_posint AS int CHECK (VALUE > 0);"
            " CREATE DOMAIN frames_label AS text;"
            " CREATE TYPE frames_pair AS (n int, s text)"
        )
        yield
        conn.execute(
            "DROP TYPE frames_mood, frames_pair CASCADE; DROP DOMAIN frames_posint, frames_label"
        )


def _session(dsn: str, session: tuple[str, str, str]) -> Conn:
    zone, style, encoding = session
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(
        "SELECT set_config('TimeZone', %s, false), set_config('DateStyle', %s, false)",
        (zone, style),
    )
    conn.execute("SELECT set_config('client_encoding', %s, false)", (encoding,))
    return conn


def _fetch(conn: Conn, query: str) -> tuple[list[str], list[tuple[Any, ...]]] | Exception:
    """Column names and rows from psycopg, or the error psycopg raises loading them.

    psycopg cannot load every value (a timestamptz under a non-ISO DateStyle, a date past
    year 9999): then read_sql must raise too.
    """
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return [c.name for c in cur.description or ()], cur.fetchall()
    except (psycopg.DataError, NotImplementedError) as error:
        return error


def _check(read: Callable[[], pd.DataFrame], expected: Any) -> None:
    if isinstance(expected, Exception):
        with pytest.raises(type(expected)):
            read()
        return
    _assert_matches(read(), *expected)


@pytest.mark.parametrize("session", SESSIONS, ids=[s[0] for s in SESSIONS])
@pytest.mark.parametrize("sql_type", [t for t, _ in CATALOGUE])
def test_each_type_reads_as_fetchall(
    superuser_dsn: str, catalogue_types: None, sql_type: str, session: tuple[str, str, str]
) -> None:
    with _session(superuser_dsn, session) as conn:
        query = _column_query(sql_type, session[2])
        expected = _fetch(conn, query)
        for decimal_ in (False, True):
            _check(lambda d=decimal_: read_sql(query, conn, decimal=d), expected)


@pytest.mark.parametrize("case", BOTH_RAISE, ids=[f"{t}-{v}" for t, v in BOTH_RAISE])
def test_values_psycopg_refuses_fail_read_sql_too(db_conn: Conn, case: tuple[str, str]) -> None:
    sql_type, literal = case
    db_conn.execute("SET TimeZone = 'Asia/Kolkata'")
    query = f"SELECT v FROM (VALUES ('2000-01-01'::{sql_type}), ({literal}::{sql_type})) AS t(v)"
    with pytest.raises(psycopg.DataError):
        db_conn.execute(query).fetchall()
    with pytest.raises(psycopg.DataError):
        read_sql(query, db_conn)


@pytest.mark.parametrize(
    "value", [-0.0, 0.1, 1e300, 5e-324, math.inf, -math.inf, math.nan, 2.0**53 + 2], ids=repr
)
def test_float_parameters_are_the_float8_psycopg_binds(db_conn: Conn, value: float) -> None:
    # The type the server gives the parameter, and its text: a numeric literal would say
    # 'numeric' and '0' for -0.0, and make arithmetic on it exact (no overflow to raise).
    query = "SELECT pg_typeof(%s)::text AS k, %s::text AS t, %s * 10.0 AS x"
    params = [value, value, value]
    expected = db_conn.execute(query, params).fetchall()
    got = read_sql(query, db_conn, params)
    assert [tuple(row) for row in got.astype(object).itertuples(index=False)] == [
        (expected[0][0], expected[0][1], pytest.approx(expected[0][2], nan_ok=True))
    ]
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        db_conn.execute("SELECT 1e308 * %s", [10.0])
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        read_sql("SELECT 1e308 * %s", db_conn, [10.0])


@pytest.mark.parametrize("session", SESSIONS, ids=[s[0] for s in SESSIONS])
def test_the_wide_catalogue_sync_and_async(
    superuser_dsn: str, catalogue_types: None, session: tuple[str, str, str]
) -> None:
    query = _wide_query(session[2], iso=session[1].startswith("ISO"))
    with _session(superuser_dsn, session) as conn:
        expected = _fetch(conn, query)
        assert not isinstance(expected, Exception)
        _check(lambda: read_sql(query, conn), expected)

    async def read_async() -> pd.DataFrame:
        zone, style, encoding = session
        aconn = await psycopg.AsyncConnection.connect(superuser_dsn, autocommit=True)
        async with aconn:
            await aconn.execute(
                "SELECT set_config('TimeZone', %s, false), set_config('DateStyle', %s, false),"
                " set_config('client_encoding', %s, false)",
                (zone, style, encoding),
            )
            return await read_sql_async(query, aconn)

    _check(lambda: asyncio.run(read_async()), expected)


def test_read_sql_reads_in_utc_what_the_session_zone_cannot_show(db_conn: Conn) -> None:
    # In Asia/Kolkata this instant is past year 9999, which psycopg cannot load; read_sql
    # reads timestamptz as UTC, where it is a valid datetime64.
    db_conn.execute("SET TimeZone = 'Asia/Kolkata'")
    query = "SELECT '9999-12-31 23:59:59.999999Z'::timestamptz AS v"
    with pytest.raises(psycopg.DataError):
        db_conn.execute(query).fetchall()
    got = read_sql(query, db_conn)["v"].tolist()
    assert got == [pd.Timestamp("9999-12-31 23:59:59.999999", tz="UTC")]


@pytest.fixture
def ip() -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.run_cell("%load_ext pgmonkey")
    before = list(shell.configurables)
    shell.configurables[:] = [c for c in before if not isinstance(c, PgMonkeyMagics)]
    magics = PgMonkeyMagics(shell=shell)
    shell.register_magics(magics)
    shell.configurables.append(magics)
    try:
        yield shell
    finally:
        shell.configurables[:] = before
        magics.close_all()


def _cell_result(ip: InteractiveShell, code: str) -> Any:
    result = ip.run_cell(code, store_history=False)
    assert result.error_in_exec is None, result.error_in_exec
    assert result.error_before_exec is None
    return result.result


@pytest.mark.parametrize("ctype", ["normal", "async"])
def test_the_wide_catalogue_through_the_magics(
    ip: InteractiveShell,
    password_config: Path,
    superuser_dsn: str,
    catalogue_types: None,
    ctype: str,
) -> None:
    query = _wide_query("UTF8")
    _cell_result(ip, f"%pgmonkey connect {password_config} {ctype}")
    _cell_result(ip, "%pgmonkey SET TimeZone = 'Pacific/Chatham'")
    df = _cell_result(ip, "%%pgmonkey\n" + query)
    with _session(superuser_dsn, ("Pacific/Chatham", "ISO, MDY", "UTF8")) as conn:
        expected = _fetch(conn, query)
    assert not isinstance(expected, Exception)
    _assert_matches(df, *expected)


@settings(max_examples=40, deadline=None)
@given(
    texts=st.lists(st.text(max_size=12), min_size=1, max_size=5),
    ints=st.lists(st.integers(-(2**63), 2**63 - 1) | st.none(), min_size=1, max_size=5),
    floats=st.lists(st.floats(width=32) | st.none(), min_size=1, max_size=5),
)
def test_random_values_read_as_fetchall(
    superuser_dsn: str, texts: list[str], ints: list[int | None], floats: list[float | None]
) -> None:
    texts = [t.replace("\x00", "") for t in texts]
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'Asia/Kathmandu'")
        query = psycopg.sql.SQL(
            "SELECT * FROM unnest({}::text[], {}::int8[], {}::float4[], {}::text[][])"
            " AS t(s, i, f, a)"
        ).format(
            psycopg.sql.Literal(texts),
            psycopg.sql.Literal(ints),
            psycopg.sql.Literal(floats),
            psycopg.sql.Literal([[t] for t in texts]),
        )
        text = query.as_string(conn)
        expected = _fetch(conn, text)
        assert not isinstance(expected, Exception)
        _assert_matches(read_sql(text, conn), *expected)

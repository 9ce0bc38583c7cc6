"""The read engines (binary COPY, Arrow CSV, pandas CSV) give the same frames, value for value.

Each query is read through every engine that can take it; the frames must be equal (values
and dtypes) to the pandas CSV engine's (the reader before the faster engines existed) and,
cell by cell, to what ``cursor.fetchall()`` gives. Which engine reads a result is forced by
replacing ``choose_engine`` for one call: the database is always the real one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
import psycopg
import pytest
from pandas.testing import assert_frame_equal

import pgmonkey
from pgmonkey.errors import TransferError
from pgmonkey.frames import _api, _bincompiled, _bincopy, _engines, read_sql_async
from pgmonkey.frames import _read as _read_module
from pgmonkey.frames._read import Plan

pa = pytest.importorskip("pyarrow")

Conn = psycopg.Connection[Any]
ENGINES: dict[str, Callable[[Plan], Any]] = {
    "pandas-csv": _engines.PandasCsvEngine,
    "arrow-csv": _engines.ArrowCsvEngine,
    "binary": _engines.BinaryEngine,
    "compiled-binary": _engines.CompiledBinaryEngine,
}
COMPILED = _bincompiled._decoder() is not None

TS = "'2024-02-29 12:34:56.123456'::timestamp"
# Fixed-width results (all three engines), then any result (the two CSV engines).
FIXED = [
    "SELECT i::int2 a, i::int4 b, i::int8 c, i::oid d, i::float8 / 3 e"
    " FROM generate_series(1, 50) i",
    "SELECT 9223372036854775807::int8 a, '-9223372036854775808'::int8 b, 4294967295::oid c,"
    " '-32768'::int2 d, '-2147483648'::int4 e",
    "SELECT 'NaN'::float8 a, 'Infinity'::float8 b, '-Infinity'::float8 c, '-0'::float8 d,"
    " 5e-324::float8 e, 1.7976931348623157e308::float8 f, 0.1::float8 g",
    f"SELECT NULLIF(i, 3)::int8 a, NULLIF(i, 4)::float8 / 7 b, NULLIF(i % 3, 1) = 0 c,"
    f" {TS} + NULLIF(i, 5) * interval '1.5 s' d, '2024-01-01'::date + NULLIF(i, 6) e,"
    f" ({TS} + NULLIF(i, 7) * interval '1 s')::timestamptz f FROM generate_series(1, 300) i",
    "SELECT NULL::int a, NULL::bool b, NULL::date c, NULL::float8 d, NULL::timestamptz e",
    "SELECT 1::int8 a, 2::float8 b WHERE false",
    "SELECT '0001-01-01'::date a, '9999-12-31'::date b, '0001-01-01 00:00:00'::timestamp c,"
    " '9999-12-31 23:59:59.999999'::timestamp d, '1969-07-20 20:17:40Z'::timestamptz e,"
    " '2000-01-01 00:00:00.000001'::timestamptz f",
    # 70 columns: two bitmask columns
    "SELECT "
    + ", ".join(f"NULLIF(i, {j % 5})::int4 AS c{j}" for j in range(70))
    + " FROM generate_series(0, 20) i",
]
ANY = [
    f"SELECT i::int8 a, i::float8 / 3 b, i % 3 = 0 c, {TS} + i * interval '1 s' d,"
    f" '2024-01-01'::date + i e, (i::text || 'x') f, i::numeric / 7 g,"
    f" ({TS} + i * interval '1 s')::timestamptz h FROM generate_series(1, 2000) i",
    "SELECT ''::text a, NULL::text b, 'NaN'::text c, 't'::text d, '\\N'::text e,"
    " 'a,\"b\"\r\nc'::varchar f, 'x'::char(3) g, 'n'::name h, 'c'::\"char\" i",
    "SELECT NULL::text a",
    "SELECT chr(i) a, i b, NULLIF(chr(i), chr(5)) c FROM generate_series(1, 400) i",
    "SELECT string_agg(chr(i), '') a FROM generate_series(1, 127) i",
    "SELECT 1.5::float4 a, 0.1::float4 b, NULL::float4 c, '-0'::float4 d",
    "SELECT 1e300::numeric * 1e300 a, 'Infinity'::numeric b, '-Infinity'::numeric c,"
    " 'NaN'::numeric d, 0.1::numeric e, NULL::numeric f, -0.0::numeric g",
    "SELECT '1e-400'::numeric a, '-1e-330'::numeric b, 123456789012345678901234567890.5::numeric c,"
    " 0.12345678901234567890123456789::numeric d, -98765.4321::numeric e, 1e20::numeric f,"
    " 9007199254740993::numeric g, 2.5e-308::numeric h, '1e308'::numeric * 2 i",
    "SELECT NULLIF(i, 3)::numeric(12, 2) / 7 a, NULLIF(md5(i::text), md5('5')) b,"
    " 'é✓𝄞'::text || i c, repeat('x', i * 40)::varchar d, ''::text e"
    " FROM generate_series(1, 200) i",
    "SELECT '{\"a\": 1}'::jsonb j, NULL::jsonb k, '\\x00ff'::bytea b, '{1,NULL}'::int[] c,"
    " ROW(NULL::int, NULL::text) r, '12:34:56.5'::time t, '1 day'::interval v",
    "SELECT NULL::int a, NULL::bool b, NULL::date c, '' d",
    "SELECT 1::int8 a, 'x'::text b WHERE false",
]
# Errors raised, the same (type and message) by every engine.
ERRORS = [
    "SELECT 'infinity'::timestamp a",
    "SELECT '-infinity'::date a",
    "SELECT '0044-03-15 BC'::date a",
    "SELECT '20000-01-01 00:00:00.5'::timestamptz a",
    "SELECT '0001-01-01 00:00:00 BC'::timestamp a",
    # Past int64 microseconds since 1970 (PostgreSQL counts from 2000: it has 30 years more).
    "SELECT '294276-12-31 23:59:59.999999'::timestamp a",
    "SELECT '294247-01-10 04:00:54.775808+00'::timestamptz a",
    "SELECT 'infinity'::timestamp a, 'x'::text b",
    "SELECT '0044-03-15 BC'::date a, 'x'::text b",
]


def _engines_for(conn: Conn, query: str) -> list[str]:
    description = conn.execute(f"SELECT * FROM ({query}) AS s LIMIT 0").description or []
    plan = Plan.build([(c.name, c.type_code) for c in description], conn, decimal=False)
    names = ["pandas-csv", "arrow-csv"]
    if _bincopy.usable(plan):
        names.append("binary")
    if _bincompiled.usable(plan):
        names.append("compiled-binary")
    return names


def _read(
    monkeypatch: pytest.MonkeyPatch, engine: str, query: str, conn: Any, **kw: Any
) -> pd.DataFrame:
    with monkeypatch.context() as m:
        m.setattr(_api, "choose_engine", ENGINES[engine])
        return pgmonkey.read_sql(query, conn, **kw)


def _cell(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None  # float columns: NULL and NaN are both NaN
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value


def _truth(value: Any) -> Any:
    import decimal

    if isinstance(value, decimal.Decimal):
        value = float(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return dt.datetime(value.year, value.month, value.day)
    return value


def _check_against_fetchall(conn: Conn, query: str, frame: pd.DataFrame) -> None:
    rows = conn.execute(query).fetchall()
    got = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    assert got == [[_truth(v) for v in row] for row in rows]


@pytest.mark.parametrize("query", FIXED + ANY)
def test_engines_agree(db_conn: Conn, monkeypatch: pytest.MonkeyPatch, query: str) -> None:
    # A session zone far from UTC: timestamptz values must not depend on it.
    db_conn.execute("SET TimeZone = 'Asia/Kolkata'")
    names = _engines_for(db_conn, query)
    assert ("binary" in names) == (query in FIXED)
    if COMPILED and (query in FIXED or query in (ANY[0], ANY[6], ANY[7], ANY[8])):
        assert "compiled-binary" in names
    frames = {name: _read(monkeypatch, name, query, db_conn) for name in names}
    for name in names[1:]:
        assert_frame_equal(frames[name], frames["pandas-csv"], obj=name)
    _check_against_fetchall(db_conn, query, frames[names[-1]])


@pytest.mark.parametrize("query", ERRORS)
def test_engines_raise_alike(db_conn: Conn, monkeypatch: pytest.MonkeyPatch, query: str) -> None:
    raised = {}
    for name in _engines_for(db_conn, query):
        with pytest.raises(psycopg.DataError) as info:
            _read(monkeypatch, name, query, db_conn)
        raised[name] = str(info.value)
    assert len(set(raised.values())) == 1, raised
    assert db_conn.execute("SELECT 1").fetchone() == (1,)


def test_rounded_float_output_is_read_as_the_text_engines_read_it(
    db_conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_conn.execute("SET extra_float_digits = -3")
    query = "SELECT (i::float8 / 3) a FROM generate_series(1, 20) i"
    for engine in ["binary", "compiled-binary"] if COMPILED else ["binary"]:
        binary = _read(monkeypatch, engine, query, db_conn)
        assert_frame_equal(binary, _read(monkeypatch, "pandas-csv", query, db_conn))
        assert binary["a"].tolist() == [r[0] for r in db_conn.execute(query).fetchall()]
        assert binary["a"].iloc[0] == 0.333333333333


def _wide(n: int, expr: str) -> str:
    columns = ", ".join(f"{expr} AS c{i}" for i in range(n))
    return f"SELECT {columns} FROM generate_series(1, 3) AS g"


def test_a_result_too_wide_for_the_null_masks(superuser_dsn: str, db_conn: Conn) -> None:
    # The engines that add NULL masks to the COPY (a bit per column in extra int8 columns)
    # are not chosen, or refuse, where the masks would pass PostgreSQL's 1664 columns: the
    # COPY would fail, and abort the caller's transaction.
    def plan(conn: Conn, query: str) -> Plan:
        description = conn.execute(f"SELECT * FROM ({query}) AS s LIMIT 0").description or []
        return Plan.build([(c.name, c.type_code) for c in description], conn, decimal=False)

    assert _bincopy.usable(plan(db_conn, _wide(1630, "g")))
    assert not _bincopy.usable(plan(db_conn, _wide(1640, "g")))
    with psycopg.connect(superuser_dsn) as conn:  # a transaction of the caller's
        conn.execute("SET client_encoding = 'LATIN1'")
        assert pgmonkey.read_sql(_wide(1600, "g::text"), conn).shape == (3, 1600)
        with pytest.raises(TransferError, match="1640 columns, 1640 of them read as strings"):
            pgmonkey.read_sql(_wide(1640, "g::text"), conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert pgmonkey.read_sql(_wide(1640, "g"), conn).shape == (3, 1640)  # no strings
        conn.execute("SET client_encoding = 'UTF8'")
        assert pgmonkey.read_sql(_wide(1640, "g::text"), conn).shape == (3, 1640)


def test_byte_order_mark_at_the_start_of_the_first_value(db_conn: Conn) -> None:
    # Arrow skips a BOM at the start of its input: the engine puts a line of its own first.
    query = "SELECT E'\\uFEFFab'::text a, 'x'::text b"
    df = pgmonkey.read_sql(query, db_conn)
    assert df["a"].tolist() == [db_conn.execute(query).fetchone()[0]] == ["\ufeffab"]
    # The same in a result large enough to be parsed while it streams in.
    large = (
        "SELECT CASE WHEN i = 1 THEN E'\\uFEFFab' ELSE md5(i::text) END a, i b"
        " FROM generate_series(1, 100000) i"
    )
    assert pgmonkey.read_sql(large, db_conn)["a"].iloc[0] == "\ufeffab"


def test_large_result_crosses_blocks(db_conn: Conn) -> None:
    # Several receive blocks and parse blocks, rows cut at block edges, NULLs spread over them.
    fixed = (
        "SELECT NULLIF(i, 77777)::int8 a, i::float8 b, i % 2 = 0 c"
        " FROM generate_series(1, 300000) i"
    )
    mixed = (
        "SELECT i a, CASE WHEN i % 10 = 0 THEN NULL ELSE md5(i::text) END s"
        " FROM generate_series(1, 200000) i"
    )
    for query in (fixed, mixed):
        df = pgmonkey.read_sql(query, db_conn)
        rows = db_conn.execute(query).fetchall()
        assert len(df) == len(rows)
        first = [None if pd.isna(v) else v for v in df.iloc[:, 1].tolist()]
        assert first == [r[1] for r in rows]
    assert df["s"].isna().sum() == 20000


@pytest.fixture
async def aconn(superuser_dsn: str) -> Any:
    conn = await psycopg.AsyncConnection.connect(superuser_dsn, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.mark.parametrize("query", [FIXED[3], ANY[0], ANY[7]])
async def test_async_engines_agree(
    aconn: psycopg.AsyncConnection[Any], db_conn: Conn, query: str
) -> None:
    assert_frame_equal(await read_sql_async(query, aconn), pgmonkey.read_sql(query, db_conn))


ARROW_TYPES = [
    ("i::int8", "int64"),
    ("i::int2", "int64"),
    ("i::float8 / 3", "double"),
    ("i::numeric / 7", "double"),
    ("i % 2 = 0", "bool"),
    ("i::text", "large_string"),
    (f"{TS} + i * interval '1 s'", "timestamp[us]"),
    (f"({TS} + i * interval '1 s')::timestamptz", "timestamp[us, tz=UTC]"),
    ("'2024-01-01'::date + i", "date32[day]"),
    ("ARRAY[i]", "large_string"),
]


@pytest.mark.parametrize("with_text", [False, True], ids=["binary", "arrow-csv"])
def test_read_arrow_types_and_values(db_conn: Conn, with_text: bool) -> None:
    exprs = [e for e, _ in ARROW_TYPES if with_text or e not in ("i::text", "ARRAY[i]")]
    nullable = ", ".join(
        f"CASE WHEN i % 4 = 0 THEN NULL ELSE {e} END AS c{n}" for n, e in enumerate(exprs)
    )
    query = f"SELECT {nullable} FROM generate_series(1, 50) i"
    table = pgmonkey.read_arrow(query, db_conn)
    expected = dict(ARROW_TYPES)
    assert [str(t) for t in table.schema.types] == [expected[e] for e in exprs]
    frame = pgmonkey.read_sql(query, db_conn)
    for n, e in enumerate(exprs):
        column = table.column(n)
        assert column.null_count == 12
        got = column.to_pylist()
        want = [None if pd.isna(v) else v for v in frame.iloc[:, n].tolist()]
        if expected[e] == "date32[day]":
            want = [None if v is None else v.date() for v in want]
        elif expected[e].startswith("timestamp"):
            want = [None if v is None else v.to_pydatetime() for v in want]
        elif e == "ARRAY[i]":
            want = [None if v is None else "{" + str(v[0]) + "}" for v in want]
        assert got == want, e


def test_read_arrow_keeps_nan_apart_from_null(db_conn: Conn) -> None:
    query = "SELECT 'NaN'::float8 a, NULL::float8 b, 'NaN'::float8 c, NULL::text d"
    for q in (query, "SELECT 'NaN'::float8 a, NULL::float8 b"):
        table = pgmonkey.read_arrow(q, db_conn)
        assert table.column(0).null_count == 0 and math.isnan(table.column(0)[0].as_py())
        assert table.column(1).to_pylist() == [None]


def test_read_arrow_of_a_statement_that_is_not_a_plain_query(db_conn: Conn) -> None:
    db_conn.execute("CREATE TEMP TABLE arrow_dml (i int, s text)")
    table = pgmonkey.read_arrow(
        "INSERT INTO arrow_dml VALUES (1, 'a'), (2, NULL) RETURNING i, s", db_conn
    )
    assert table.to_pydict() == {"i": [1, 2], "s": ["a", None]}


def test_read_polars(db_conn: Conn) -> None:
    pl = pytest.importorskip("polars")
    query = "SELECT i AS n, NULLIF(i::text, '2') AS s FROM generate_series(1, 3) i"
    df = pgmonkey.read_polars(query, db_conn, None)
    assert isinstance(df, pl.DataFrame)
    assert df.to_dict(as_series=False) == {"n": [1, 2, 3], "s": ["1", None, "3"]}
    assert df.schema == {"n": pl.Int64, "s": pl.String}


async def test_read_arrow_and_polars_async(
    aconn: psycopg.AsyncConnection[Any], db_conn: Conn
) -> None:
    from pgmonkey.frames import read_arrow_async, read_polars_async

    for query in (FIXED[3], ANY[0]):
        assert (await read_arrow_async(query, aconn)).equals(pgmonkey.read_arrow(query, db_conn))
    pl = pytest.importorskip("polars")
    df = await read_polars_async("SELECT 1 AS a, 'x' AS b", aconn)
    assert df.to_dict(as_series=False) == {"a": [1], "b": ["x"]}
    assert df.schema == {"a": pl.Int64, "b": pl.String}


def test_engines_agree_on_a_large_result(db_conn: Conn, monkeypatch: pytest.MonkeyPatch) -> None:
    # Past the size where the Arrow engine converts its columns to pandas in one batch.
    query = (
        f"SELECT i::int8 a, NULLIF(i, 5)::int4 b, i::float8 / 3 c, NULLIF(i % 3, 1) = 0 d,"
        f" i % 2 = 0 e, {TS} + i * interval '1 s' f, '2024-01-01'::date + (i % 9000) g,"
        f" ({TS} + NULLIF(i, 9) * interval '1 s')::timestamptz h, NULLIF(i::text, '7') j,"
        f" (i % 100)::numeric / 7 k, CASE WHEN i % 3 = 0 THEN ARRAY[i] END l"
        f" FROM generate_series(1, 70000) i"
    )
    expected = _read(monkeypatch, "pandas-csv", query, db_conn)
    assert_frame_equal(_read(monkeypatch, "arrow-csv", query, db_conn), expected)
    fixed = "SELECT a, b, c, d, e, f, g, h FROM (" + query + ") AS q"
    assert_frame_equal(
        _read(monkeypatch, "binary", fixed, db_conn),
        _read(monkeypatch, "pandas-csv", fixed, db_conn),
    )
    if COMPILED:
        compiled = "SELECT a, b, c, d, e, f, g, h, j, k FROM (" + query + ") AS q"
        assert_frame_equal(
            _read(monkeypatch, "compiled-binary", compiled, db_conn),
            _read(monkeypatch, "pandas-csv", compiled, db_conn),
        )


def _assign_everywhere(frame: pd.DataFrame) -> pd.DataFrame:
    """Each column's second value written over its first, in place."""
    for j in range(frame.shape[1]):
        frame.iloc[0, j] = frame.iloc[1, j]
    return frame


# Small results (columns converted one by one) and one past the batch size (Arrow's
# to_pandas lends zero-copy columns of read-only memory).
WRITABLE = [
    ANY[0],
    FIXED[3],
    f"SELECT i::int8 a, NULLIF(i, 5)::int4 b, i::float8 / 3 c, NULLIF(i % 3, 1) = 0 d,"
    f" {TS} + i * interval '1 s' f, '2024-01-01'::date + (i % 9000) g,"
    f" ({TS} + i * interval '1 s')::timestamptz h, (i % 100)::numeric / 7 k"
    f" FROM generate_series(1, 70000) i",
]


@pytest.mark.parametrize("query", WRITABLE, ids=["mixed", "nulls", "large"])
def test_every_column_of_a_frame_can_be_written_to(
    db_conn: Conn, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    # A frame is the caller's own: pandas' own copy of it (memory pandas allocated) is the
    # ground truth for what an assignment gives. A column left a view of Arrow's or the
    # stream's read-only memory refused it ("assignment destination is read-only", or an
    # AssertionError from pandas for a datetime column).
    names = _engines_for(db_conn, query)
    assert "arrow-csv" in names
    for name in names:
        frame = _read(monkeypatch, name, query, db_conn)
        expected = _assign_everywhere(frame.copy())
        assert_frame_equal(_assign_everywhere(frame), expected, obj=name)


@pytest.mark.parametrize("engine", ["pandas-csv", "arrow-csv", "compiled-binary"])
@pytest.mark.parametrize("rows", [5, 70000], ids=["small", "large"])
def test_text_of_python_storage_where_pandas_is_told_so(
    db_conn: Conn, monkeypatch: pytest.MonkeyPatch, engine: str, rows: int
) -> None:
    # pandas' mode.string_storage option: what pandas itself makes of the same strings under
    # it is the ground truth, for the values and the labels; set after a read with the
    # default storage, as a notebook may.
    query = (
        f"SELECT i::text t, NULLIF(i::text, '3') u, i n FROM generate_series(1, {rows}) i"
        if engine == "compiled-binary"
        else f"SELECT i::text t, NULLIF(i::text, '3') u, interval '1 day' * i n"
        f" FROM generate_series(1, {rows}) i"
    )
    if engine not in _engines_for(db_conn, query):
        pytest.skip(f"{engine} does not read this result")
    _read(monkeypatch, engine, query, db_conn)
    with pd.option_context("mode.string_storage", "python"):
        frame = _read(monkeypatch, engine, query, db_conn)
        values = [str(i) for i in range(1, rows + 1)]
        expected = pd.DataFrame(
            {"t": pd.Series(values), "u": pd.Series([None if v == "3" else v for v in values])}
        )
    assert_frame_equal(frame[["t", "u"]], expected)
    assert frame["t"].dtype.storage == "python"


@pytest.fixture
def tiny_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Receive queues of one byte: the receiver waits for the parser at every block."""
    real = _read_module.QueueChunks

    monkeypatch.setattr(_api, "QueueChunks", lambda: real(limit=1))


@pytest.mark.usefixtures("tiny_queue")
def test_a_receiver_that_waits_for_the_parser_loses_nothing(db_conn: Conn) -> None:
    for query in (
        "SELECT NULLIF(i, 777)::int8 a, i::float8 / 7 b FROM generate_series(1, 400000) i",
        "SELECT i a, CASE WHEN i % 10 = 0 THEN NULL ELSE md5(i::text) END s"
        " FROM generate_series(1, 200000) i",
    ):
        rows = db_conn.execute(query).fetchall()
        df = pgmonkey.read_sql(query, db_conn)
        assert [None if pd.isna(v) else v for v in df.iloc[:, 1].tolist()] == [r[1] for r in rows]
        assert [None if pd.isna(v) else v for v in df.iloc[:, 0].tolist()] == [r[0] for r in rows]


@pytest.mark.usefixtures("tiny_queue")
async def test_an_async_receiver_that_waits_for_the_parser_loses_nothing(
    aconn: psycopg.AsyncConnection[Any], db_conn: Conn
) -> None:
    query = "SELECT i, md5(i::text) s FROM generate_series(1, 200000) i"
    assert_frame_equal(await read_sql_async(query, aconn), pgmonkey.read_sql(query, db_conn))


def test_a_parser_that_stops_releases_a_waiting_receiver() -> None:
    chunks = _read_module.QueueChunks(limit=1)
    chunks.put(b"first")  # an empty queue takes any block
    receiver = threading.Thread(target=chunks.put, args=(b"second",), daemon=True)
    receiver.start()  # no room: it waits for the parser
    chunks.abandon()  # the parser failed without reading on
    receiver.join(timeout=60)  # a hang guard, not a timing: it returns at once
    assert not receiver.is_alive()
    chunks.put(b"third")  # and nothing waits any more
    chunks.close()
    assert next(iter(chunks)) == b"first"


def test_wide_results_with_nulls_in_every_mask_group(
    db_conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 130 columns: three NULL bitmask groups of the binary engine (62 columns each), NULLs
    # in some rows of each group, none in others (where the server skips the bitmask).
    columns = ", ".join(
        f"CASE WHEN i % {k % 7 + 2} = 0 THEN NULL ELSE i * {k} END::int8 AS c{k}"
        if k % 3 == 0
        else f"(i * {k})::float8 AS c{k}"
        for k in range(130)
    )
    query = f"SELECT {columns} FROM generate_series(1, 500) AS i"
    binary = _read(monkeypatch, "binary", query, db_conn)
    assert_frame_equal(binary, _read(monkeypatch, "pandas-csv", query, db_conn))
    if COMPILED:
        assert_frame_equal(_read(monkeypatch, "compiled-binary", query, db_conn), binary)
    rows = db_conn.execute(query).fetchall()
    assert [[_cell(v) for v in row] for row in binary.itertuples(index=False)] == [
        list(row) for row in rows
    ]


@pytest.mark.usefixtures("tiny_queue")
async def test_many_async_reads_waiting_for_their_parsers_at_once(superuser_dsn: str) -> None:
    # More reads than the event loop's default executor has threads (min(32, cpus + 4)):
    # none of them may need that executor to make progress.
    query = "SELECT i, md5(i::text) s FROM generate_series(1, 60000) i"
    conns = [
        await psycopg.AsyncConnection.connect(superuser_dsn, autocommit=True) for _ in range(12)
    ]
    try:
        frames = await asyncio.wait_for(  # a hang guard, far beyond what the reads take
            asyncio.gather(*(read_sql_async(query, conn) for conn in conns)), timeout=600
        )
    finally:
        for conn in conns:
            await conn.close()
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        expected = pgmonkey.read_sql(query, conn)
    for frame in frames:
        assert_frame_equal(frame, expected)


class _FailingEngine:
    """The binary engine, with a parser that fails after its first block: no server sends
    data our parsers reject, so this stands in for a parser bug or an unreadable value."""

    def __init__(self, plan: Plan) -> None:
        self.inner = _engines.BinaryEngine(plan)
        self.threaded = True

    def configure(self, row: Any) -> None:
        self.inner.configure(row)

    def copy_statement(self, query: str) -> Any:
        return self.inner.copy_statement(query)

    def parser(self, output: str) -> Callable[[Any], Any]:
        def parse(source: Any) -> Any:
            for _ in source.blocks():
                raise ValueError("the parser gave up")
            raise AssertionError("no block")

        return parse


# Rows without end, for a reader that would receive them all: it would never return. (In
# the select list, the series streams; in FROM, the server would first store all of it.)
ENDLESS = "SELECT generate_series(1, 1000000000000)::int8 AS i"


def _no_copy_left(superuser_dsn: str) -> bool:
    with psycopg.connect(superuser_dsn, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'COPY%generate_series%'"
            " AND state = 'active' AND pid <> pg_backend_pid()"
        ).fetchone()
    return row == (0,)


def test_a_failing_parser_stops_the_copy(
    db_conn: Conn, monkeypatch: pytest.MonkeyPatch, superuser_dsn: str
) -> None:
    # The parser's error comes as soon as it fails, the server's COPY is cancelled, and the
    # connection reads the next query.
    monkeypatch.setattr(_api, "choose_engine", _FailingEngine)
    failure: list[BaseException] = []

    def read() -> None:
        try:
            pgmonkey.read_sql(ENDLESS, db_conn)
        except BaseException as error:
            failure.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=300)  # a hang guard: it ends at once
    assert not reader.is_alive(), "the reader went on receiving after its parser failed"
    assert len(failure) == 1 and "the parser gave up" in str(failure[0])
    assert db_conn.execute("SELECT 1").fetchone() == (1,)
    assert _no_copy_left(superuser_dsn)


async def test_a_failing_parser_stops_the_async_copy(
    aconn: psycopg.AsyncConnection[Any], monkeypatch: pytest.MonkeyPatch, superuser_dsn: str
) -> None:
    monkeypatch.setattr(_api, "choose_engine", _FailingEngine)
    with pytest.raises(ValueError, match="the parser gave up"):
        # A hang guard: it ends at once (a timeout would raise TimeoutError instead).
        await asyncio.wait_for(read_sql_async(ENDLESS, aconn), timeout=300)
    assert await (await aconn.execute("SELECT 1")).fetchone() == (1,)
    assert _no_copy_left(superuser_dsn)


# Values longer than Arrow's CSV block (1 MiB), alone and among many short rows (the stream
# is then read in parts with larger blocks), in types only the CSV engines read.
LONG_VALUES = [
    "SELECT jsonb_build_object('a', repeat('x', 2000000)) j, g FROM generate_series(1, 3) g",
    "SELECT repeat('x', 3000000)::bytea b",
    "SELECT CASE WHEN g % 50000 = 0 THEN repeat('é', 1500000 + g) ELSE md5(g::text) END t,"
    " g::float4 / 3 f, CASE WHEN g = 7 THEN ARRAY[repeat('z', 2500000)] END a"
    " FROM generate_series(1, 200000) g",
]


@pytest.mark.parametrize("query", LONG_VALUES)
def test_values_longer_than_a_parser_block(
    db_conn: Conn, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    names = _engines_for(db_conn, query)
    frames = {name: _read(monkeypatch, name, query, db_conn) for name in names}
    for name in names[1:]:
        assert_frame_equal(frames[name], frames["pandas-csv"], obj=name)
    _check_against_fetchall(db_conn, query, frames["arrow-csv"])
    table = pgmonkey.read_arrow(query, db_conn)
    assert table.num_rows == len(frames["arrow-csv"])


async def test_values_longer_than_a_parser_block_async(
    aconn: psycopg.AsyncConnection[Any], db_conn: Conn
) -> None:
    query = LONG_VALUES[2]
    assert_frame_equal(await read_sql_async(query, aconn), pgmonkey.read_sql(query, db_conn))


def test_block_sizes_stay_within_arrows_int32() -> None:
    from pgmonkey.frames import _arrow

    assert _arrow._block_size(0) == _arrow._block_size(1 << 19) == 1 << 20
    assert _arrow._block_size((1 << 19) + 1) == 1 << 21
    for longest in ((1 << 29) + 1, 1 << 30, (1 << 30) + 12345):
        assert _arrow._block_size(longest) == _arrow._MAX_BLOCK == (1 << 31) - 1


def test_after_a_long_row_the_stream_goes_back_to_small_blocks() -> None:
    from pgmonkey.frames import _arrow

    blocks = [b"a" * 100, b"b" * 3_000_000, b"c" * 2_500_000, b"d" * 100, b"e" * 100]
    parts = []
    for part, size in _arrow._segments(iter(blocks)):
        parts.append((part.read(), size))
    assert [p for p, _ in parts] == [
        _arrow._LEAD + b"a" * 100,
        _arrow._LEAD + b"b" * 3_000_000 + b"c" * 2_500_000,
        _arrow._LEAD + b"d" * 100 + b"e" * 100,
    ]
    assert [s for _, s in parts] == [1 << 20, 1 << 23, 1 << 20]
    empty = list(_arrow._segments(iter([])))
    assert len(empty) == 1 and empty[0][0].read() == _arrow._LEAD


@pytest.mark.parametrize("autocommit", [True, False])
def test_a_result_of_the_most_columns_postgresql_allows(
    superuser_dsn: str, autocommit: bool
) -> None:
    # The describe's extra column (the session's extra_float_digits) does not fit beside
    # 1664 columns: it is asked apart, and the result still comes through the engines.
    kinds = ["g::int8", "g::float8 / 3", "'2024-01-01'::date + g", "md5(g::text)"]
    columns = ", ".join(f"{kinds[i % 4]} AS c{i}" for i in range(1664))
    query = f"SELECT {columns} FROM generate_series(1, 3) AS g"
    with psycopg.connect(superuser_dsn, autocommit=autocommit) as conn:
        conn.execute("SET extra_float_digits = 0")
        table = pgmonkey.read_arrow(query, conn)
        frame = pgmonkey.read_sql(query, conn)
        rows = conn.execute(query).fetchall()
    assert table.num_columns == 1664 and str(table.schema.field("c2").type) == "date32[day]"
    assert frame["c1"].tolist() == [r[1] for r in rows]  # rounded as the session asks
    assert frame["c3"].tolist() == [r[3] for r in rows]


async def test_a_result_of_the_most_columns_postgresql_allows_async(
    aconn: psycopg.AsyncConnection[Any],
) -> None:
    kinds = ["g::float8 / 3", "'2024-01-01'::date + g"]
    columns = ", ".join(f"{kinds[i % 2]} AS c{i}" for i in range(1664))
    query = f"SELECT {columns} FROM generate_series(1, 3) AS g"
    await aconn.execute("SET extra_float_digits = -3")
    table = await pgmonkey.frames.read_arrow_async(query, aconn)
    rows = await (await aconn.execute(query)).fetchall()
    assert str(table.schema.field("c1").type) == "date32[day]"  # not the fetchall fallback
    assert table.column("c6").to_pylist() == [r[6] for r in rows]
    assert table.column("c6")[0].as_py() == 0.333333333333

"""read_sql / to_sql (and async twins) against the sandbox: dtypes, NULLs, binding, modes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import decimal
import uuid
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from pandas.testing import assert_frame_equal, assert_index_equal

from pgmonkey.errors import TransferError
from pgmonkey.frames import read_sql, read_sql_async, to_sql, to_sql_async

Conn = psycopg.Connection[Any]

# (SQL type, literal values without NULL, dtype without NULL, dtype with NULL)
TYPED_CASES: list[tuple[str, list[str], str, str]] = [
    ("int2", ["1", "'-32768'", "32767"], "int64", "Int64"),
    ("int4", ["1", "'-2147483648'"], "int64", "Int64"),
    ("int8", ["9223372036854775807", "'-9223372036854775808'"], "int64", "Int64"),
    ("float4", ["1.5", "-0.25", "'Infinity'"], "float64", "float64"),
    ("float8", ["0.1", "1e300", "'-Infinity'", "5e-324"], "float64", "float64"),
    ("numeric", ["1.10", "12345678901.25", "-0.5"], "float64", "float64"),
    ("bool", ["true", "false"], "bool", "boolean"),
    ("text", ["'a'", "''", "'t'", "'NaN'"], "str", "str"),
    ("varchar(5)", ["'ab'", "''"], "str", "str"),
    ("char(3)", ["'ab'", "'xyz'"], "str", "str"),
    ("date", ["'2024-02-29'", "'0001-01-01'", "'9999-12-31'"], "datetime64[s]", "datetime64[s]"),
    (
        "timestamp",
        ["'2024-02-29 12:34:56.123456'", "'1900-01-01 00:00:00'"],
        "datetime64[us]",
        "datetime64[us]",
    ),
    (
        "timestamptz",
        ["'2024-02-29 12:34:56.123456+05:30'", "'1969-07-20 20:17:40Z'"],
        "datetime64[us, UTC]",
        "datetime64[us, UTC]",
    ),
    ("time", ["'12:34:56.5'", "'00:00'"], "object", "object"),
    ("interval", ["'1 day 02:03:04'", "'-5 seconds'"], "object", "object"),
    ("uuid", ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"], "object", "object"),
    ("json", ["'{\"a\": [1, 2]}'", "'\"x\"'"], "object", "object"),
    ("jsonb", ['\'{"a": {"b": null}}\'', "'[1, \"two\"]'"], "object", "object"),
    ("bytea", ["'\\x00ff0a2c22'::bytea", "''::bytea"], "object", "object"),
    ("int[]", ["'{1,2,NULL}'", "'{}'"], "object", "object"),
    ("text[]", ['\'{a,"b,c",""}\'', "'{}'"], "object", "object"),
]


def _values_query(sql_type: str, literals: list[str], with_null: bool) -> str:
    rows = [f"({lit}::{sql_type})" for lit in literals]
    if with_null:
        rows.insert(1, f"(NULL::{sql_type})")
    return f"SELECT v FROM (VALUES {', '.join(rows)}) AS t(v)"


def _plain(value: Any, sql_type: str) -> Any:
    """A DataFrame cell as the Python value psycopg would give."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, pd.Timestamp):
        return value.date() if sql_type == "date" else value.to_pydatetime()
    if hasattr(value, "item"):
        return value.item()
    return value


def _expected(value: Any, sql_type: str) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if sql_type == "timestamptz" and value is not None:
        return value.astimezone(dt.UTC)
    return value


@pytest.mark.parametrize("with_null", [False, True], ids=["no-null", "null"])
@pytest.mark.parametrize("case", TYPED_CASES, ids=[c[0] for c in TYPED_CASES])
def test_dtype_fidelity(
    db_conn: Conn, case: tuple[str, list[str], str, str], with_null: bool
) -> None:
    sql_type, literals, dtype, null_dtype = case
    # A session zone far from UTC: timestamptz values must not depend on it.
    db_conn.execute("SET TimeZone = 'Asia/Kolkata'")
    query = _values_query(sql_type, literals, with_null)
    expected = [_expected(r[0], sql_type) for r in db_conn.execute(query).fetchall()]

    df = read_sql(query, db_conn)

    assert list(df.columns) == ["v"]
    assert str(df["v"].dtype) == (null_dtype if with_null else dtype)
    got = [_plain(v, sql_type) for v in df["v"].tolist()]
    assert got == expected
    if sql_type == "timestamptz":
        assert str(df["v"].dt.tz) == "UTC"


def test_rows_of_nulls_are_not_null(db_conn: Conn) -> None:
    query = "SELECT ROW(NULL::int, NULL::text) AS r, NULL::record AS n"
    expected = db_conn.execute(query).fetchone()
    df = read_sql(query, db_conn)
    assert expected == ((None, None), None)
    assert df["r"].tolist() == [(None, None)]
    assert df["n"].tolist() == [None]


def test_numeric_as_decimal(db_conn: Conn) -> None:
    df = read_sql(
        "SELECT v FROM (VALUES (1.10::numeric), (NULL), (1e-30), ('NaN')) AS t(v)",
        db_conn,
        decimal=True,
    )
    values = df["v"].tolist()
    assert values[0] == decimal.Decimal("1.10") and str(values[0]) == "1.10"
    assert values[1] is None
    assert values[2] == decimal.Decimal("1e-30")
    assert values[3].is_nan()


HOSTILE_TEXT = [
    "",
    "plain",
    'quote " inside',
    "comma, and; semicolon",
    "new\nline and\r\ncrlf",
    "tab\there",
    "back\\slash \\N",
    "\\N",
    "t",
    "f",
    "NaN",
    "NULL",
    "unicode: é ñ 漢字 🐒",
    "'; DROP TABLE x; --",
]


def test_empty_string_null_and_hostile_text(db_conn: Conn) -> None:
    values = [*HOSTILE_TEXT, None]
    db_conn.execute("CREATE TEMP TABLE hostile (i int, s text, v varchar)")
    with db_conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO hostile VALUES (%s, %s, %s)", [(i, v, v) for i, v in enumerate(values)]
        )
    df = read_sql("SELECT s, v FROM hostile ORDER BY i", db_conn)
    for column in ("s", "v"):
        got = [None if pd.isna(x) else x for x in df[column].tolist()]
        assert got == values
    assert df["s"].iloc[0] == ""
    assert pd.isna(df["s"].iloc[-1])


def test_params_are_bound_not_pasted(db_conn: Conn) -> None:
    hostile = "x'); DROP TABLE victim; --"
    db_conn.execute("CREATE TEMP TABLE victim (s text)")
    db_conn.execute("INSERT INTO victim VALUES (%s)", (hostile,))
    df = read_sql("SELECT s, %s AS echo FROM victim WHERE s = %s", db_conn, (hostile, hostile))
    assert df["s"].tolist() == [hostile]
    assert df["echo"].tolist() == [hostile]
    named = read_sql("SELECT %(n)s::int8 * 2 AS twice", db_conn, {"n": 21})
    assert named["twice"].tolist() == [42]
    assert db_conn.execute("SELECT count(*) FROM victim").fetchone() == (1,)


def test_empty_result_keeps_columns_and_dtypes(db_conn: Conn) -> None:
    df = read_sql(
        "SELECT 1::int8 AS a, 1.5::float8 AS b, 'x'::text AS c, now() AS d, true AS e,"
        " '{}'::jsonb AS f WHERE false",
        db_conn,
    )
    assert len(df) == 0
    assert list(df.columns) == ["a", "b", "c", "d", "e", "f"]
    assert [str(t) for t in df.dtypes] == [
        "int64",
        "float64",
        "str",
        "datetime64[us, UTC]",
        "bool",
        "object",
    ]


def test_duplicate_and_odd_column_names(db_conn: Conn) -> None:
    df = read_sql('SELECT 1 AS a, 2 AS a, 3 AS "we""ird col", 4', db_conn)
    assert list(df.columns) == ["a", "a", 'we"ird col', "?column?"]
    assert df.iloc[0].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1 AS a, 'x'::text AS b, now() AS c",  # the binary engine
        "SELECT 1 AS a, '{}'::json AS b, interval '1 day' AS c",  # a CSV engine
    ],
)
def test_column_labels_are_each_frames_own(db_conn: Conn, query: str) -> None:
    # Each frame's labels are its own: setting them on one frame must not reach the next
    # frame of the same query.
    first = read_sql(query, db_conn)
    first.columns.name = "renamed"
    first.columns.names = ["renamed again"]
    second = read_sql(query, db_conn)
    assert_index_equal(second.columns, pd.Index(["a", "b", "c"]), exact=True)
    assert second.columns.name is None
    assert first.columns.name == "renamed again"


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1 AS a, 'x'::text AS b, now() AS c",  # the binary engine
        "SELECT 1 AS a, '{}'::json AS b, interval '1 day' AS c",  # a CSV engine
    ],
)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"future.infer_string": False},
        {"mode.string_storage": "python"},
    ],
    ids=["default", "infer-string-off", "python-storage"],
)
def test_column_labels_are_of_the_dtype_pandas_infers(
    db_conn: Conn, query: str, options: dict[str, Any]
) -> None:
    # pandas' options decide the dtype of str labels (object with the deprecated
    # future.infer_string off; str of Python storage with mode.string_storage python):
    # pandas' own Index of the same names, under the same options, is the ground truth.
    settings = [x for option in options.items() for x in option]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # future.infer_string's deprecation warning
        with pd.option_context(*settings) if settings else contextlib.nullcontext():
            frame = read_sql(query, db_conn)
            expected = pd.Index(["a", "b", "c"])
    assert_index_equal(frame.columns, expected, exact=True)


def test_query_shapes(db_conn: Conn) -> None:
    # Trailing semicolon and comment, VALUES, TABLE, CTE, a literal '%' without params.
    assert read_sql("SELECT 1 AS a; ", db_conn)["a"].tolist() == [1]
    assert read_sql("SELECT 1 AS a -- trailing comment", db_conn)["a"].tolist() == [1]
    assert read_sql("VALUES (1), (2)", db_conn)["column1"].tolist() == [1, 2]
    assert read_sql("WITH x AS (SELECT 'a%' AS p) SELECT p FROM x", db_conn)["p"].tolist() == ["a%"]
    db_conn.execute("CREATE TEMP TABLE shapes AS SELECT 1 AS a")
    assert read_sql("TABLE shapes", db_conn)["a"].tolist() == [1]


def test_statements_that_are_not_plain_queries(db_conn: Conn) -> None:
    db_conn.execute("CREATE TEMP TABLE dml (a int)")
    # DML with RETURNING cannot be wrapped: it runs as written, rows come back.
    df = read_sql("INSERT INTO dml VALUES (1), (NULL) RETURNING a", db_conn)
    assert df["a"].tolist()[0] == 1 and pd.isna(df["a"].tolist()[1])
    assert str(df["a"].dtype) == "Int64"
    assert read_sql("SHOW TimeZone", db_conn).columns.tolist() == ["TimeZone"]
    with pytest.raises(TransferError, match="statement returns no rows"):
        read_sql("UPDATE dml SET a = 2", db_conn)


def test_no_columns_and_empty_frames(db_conn: Conn) -> None:
    no_columns = read_sql("SELECT FROM generate_series(1, 3)", db_conn)
    assert no_columns.shape == (3, 0)
    empty = pd.DataFrame({"a": pd.Series([], dtype="int64"), "s": pd.Series([], dtype="str")})
    assert to_sql(empty, "frames_empty", db_conn, if_exists="replace") == 0
    try:
        assert_frame_equal(read_sql("SELECT * FROM frames_empty", db_conn), empty)
    finally:
        db_conn.execute("DROP TABLE frames_empty")


def test_errors_are_the_servers_own(db_conn: Conn) -> None:
    with pytest.raises(psycopg.errors.UndefinedTable) as info:
        read_sql("SELECT * FROM no_such_table_here", db_conn)
    # The error is from the query as written, so its position points into it.
    assert info.value.diag.statement_position == "15"


MID_COPY_ERROR = "SELECT i, 1 / (i - 20000) AS x FROM generate_series(1, 30000) AS i"


def test_error_in_the_middle_of_the_copy(db_conn: Conn) -> None:
    with pytest.raises(psycopg.errors.DivisionByZero):
        read_sql(MID_COPY_ERROR, db_conn)
    assert read_sql("SELECT 1 AS a", db_conn)["a"].tolist() == [1]  # still usable


async def test_async_error_in_the_middle_of_the_copy(aconn: psycopg.AsyncConnection[Any]) -> None:
    with pytest.raises(psycopg.errors.DivisionByZero):
        await read_sql_async(MID_COPY_ERROR, aconn)
    assert (await read_sql_async("SELECT 1 AS a", aconn))["a"].tolist() == [1]


def test_inside_a_transaction_a_failed_describe_does_not_abort_it(superuser_dsn: str) -> None:
    with psycopg.connect(superuser_dsn) as conn:  # not autocommit
        conn.execute("CREATE TEMP TABLE tx (a int)")
        conn.execute("INSERT INTO tx VALUES (7)")
        df = read_sql("DELETE FROM tx RETURNING a", conn)
        assert df["a"].tolist() == [7]
        assert read_sql("SELECT count(*) AS n FROM tx", conn)["n"].tolist() == [0]
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        conn.rollback()


# Inside the caller's transaction: describes that fail in the raw parse (DML in a
# subquery) and in the analysis (a data-modifying WITH below the top level) run as written
# after the savepoint is rolled back, and one that succeeds is read through COPY; the
# transaction goes on, and no savepoint of ours is left in it.
IN_TRANSACTION = [
    ("DELETE FROM tx WHERE a = 7 RETURNING a", [7]),
    ("WITH d AS (DELETE FROM tx WHERE a = 8 RETURNING a) SELECT a FROM d", [8]),
    ("SELECT a FROM tx WHERE a = 9", [9]),
]


def _no_savepoint_left(conn: psycopg.Connection[Any]) -> None:
    # In a savepoint of the test's own, rolled back with the expected error.
    with pytest.raises(psycopg.errors.InvalidSavepointSpecification), conn.transaction():
        conn.execute("RELEASE SAVEPOINT pgmonkey_describe")


def test_inside_a_transaction_describes_that_fail_abort_nothing(superuser_dsn: str) -> None:
    with psycopg.connect(superuser_dsn) as conn:  # not autocommit
        conn.execute("CREATE TEMP TABLE tx (a int)")
        conn.execute("INSERT INTO tx VALUES (7), (8), (9), (10)")
        for query, expected in IN_TRANSACTION:
            assert read_sql(query, conn)["a"].tolist() == expected
            _no_savepoint_left(conn)
        with pytest.raises(psycopg.errors.UndefinedTable):
            read_sql("SELECT * FROM tx_missing", conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.rollback()


async def test_async_inside_a_transaction_describes_that_fail_abort_nothing(
    superuser_dsn: str,
) -> None:
    async with await psycopg.AsyncConnection.connect(superuser_dsn) as conn:
        await conn.execute("CREATE TEMP TABLE tx (a int)")
        await conn.execute("INSERT INTO tx VALUES (7), (8), (9), (10)")
        for query, expected in IN_TRANSACTION:
            assert (await read_sql_async(query, conn))["a"].tolist() == expected
        assert (await read_sql_async("SELECT count(*) AS n FROM tx", conn))["n"].tolist() == [2]
        with pytest.raises(psycopg.errors.InvalidSavepointSpecification):
            async with conn.transaction():
                await conn.execute("RELEASE SAVEPOINT pgmonkey_describe")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        await conn.rollback()


# Every way a read describes its query gives the same frame, or the same error: in
# autocommit, in a transaction not begun yet, and inside one (between a savepoint and its
# release); as Parse and Describe in libpq's pipeline mode (libpq 14+), and as the statement
# run where libpq has no pipeline mode (a client library no server can stand in for: the
# capability check is made to say no).
BOTH_DESCRIBES = [
    'SELECT 1 AS a, 2 AS a, 3 AS "we""ird col", 4',
    """SELECT 'x'::text AS "ünïcode ✓", '2024-02-29 12:00+01'::timestamptz AS t, NULL AS n,
    1.5::float8 AS f""",
    "SELECT FROM generate_series(1, 3)",
    "VALUES (1, 'a'), (2, 'b')",
    "SELECT * FROM no_such_table_here",
    "SELECT 1 / 0 AS x",  # fails when planned: in the COPY, not in a Parse
    "SELECT 1 AS a; SELECT 2 AS b",
    "SHOW TimeZone",
    "SELECT $1 AS p",
    "SELECT '{1,2}'::int[] AS a, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u",
]


@pytest.mark.parametrize("query", BOTH_DESCRIBES)
def test_every_describe_reads_the_same(
    superuser_dsn: str, query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert psycopg.Pipeline.is_supported()

    def outcome(autocommit: bool, begun: bool) -> Any:
        with psycopg.connect(superuser_dsn, autocommit=autocommit) as conn:
            if begun:
                conn.execute("SELECT 1")
            try:
                return read_sql(query, conn)
            except psycopg.Error as error:
                return type(error), error.sqlstate

    modes = [(True, False), (False, False), (False, True)]
    outcomes = [outcome(*mode) for mode in modes]
    monkeypatch.setattr(psycopg.Pipeline, "is_supported", classmethod(lambda cls: False))
    outcomes += [outcome(*mode) for mode in modes]
    first = outcomes[0]
    for other in outcomes[1:]:
        if isinstance(first, pd.DataFrame):
            assert_frame_equal(other, first)
        else:
            assert other == first


# Queries made to close the describe's own wrapping and run a statement of their own: one
# for the pipelined describe's, one for the describe this replaced (a query run as one
# simple query, several statements and all). A Parse takes one statement at most.
BREAKING_OUT = [
    "SELECT 1 AS a\n) AS _q LIMIT 0; SELECT nextval('pgm_smuggled'); SELECT * FROM (SELECT 1 AS a",
    "SELECT 1 AS a\n) AS _q0 LIMIT 0) AS _q ON true; SELECT nextval('pgm_smuggled');"
    " SELECT * FROM (SELECT 1) AS _s LEFT JOIN (SELECT * FROM (SELECT 1 AS a",
]


@pytest.mark.parametrize("query", BREAKING_OUT)
@pytest.mark.parametrize("autocommit", [True, False])
def test_the_describe_runs_no_statement_of_a_query(
    db_conn: Conn, superuser_dsn: str, query: str, autocommit: bool
) -> None:
    # A sequence: its nextval stays called when the transaction around it rolls back.
    db_conn.execute("DROP SEQUENCE IF EXISTS pgm_smuggled")
    db_conn.execute("CREATE SEQUENCE pgm_smuggled")
    try:
        with psycopg.connect(superuser_dsn, autocommit=autocommit) as conn:
            if not autocommit:
                conn.execute("SELECT 1")  # inside a transaction: the describe's savepoint
            with pytest.raises(psycopg.errors.SyntaxError):  # the query as written
                read_sql(query, conn)
            conn.rollback()
        row: Any = db_conn.execute("SELECT is_called FROM pgm_smuggled").fetchone()
        assert row == (False,)
    finally:
        db_conn.execute("DROP SEQUENCE pgm_smuggled")


@pytest.mark.parametrize("query", ["SELECT %s AS v", "SELECT 1 WHERE 2 > %(limit)s"])
def test_a_placeholder_without_params_is_named(db_conn: Conn, query: str) -> None:
    # The server's own error stays (a syntax error at "%"); a note says what is missing.
    placeholder = query[query.index("%") :].split()[0]
    with pytest.raises(psycopg.errors.SyntaxError) as info:
        read_sql(query, db_conn)
    assert info.value.__notes__ == [
        f"{placeholder!r} is a parameter placeholder and no params were given: pass them "
        "with params="
    ]
    with pytest.raises(psycopg.errors.UndefinedFunction) as other:  # % as an operator
        read_sql("SELECT 5 %% 2", db_conn)
    assert not getattr(other.value, "__notes__", None)
    assert read_sql("SELECT 5 % 2 AS m", db_conn)["m"].tolist() == [1]


async def test_async_placeholder_without_params_is_named(
    aconn: psycopg.AsyncConnection[Any],
) -> None:
    with pytest.raises(psycopg.errors.SyntaxError) as info:
        await read_sql_async("SELECT %(n)s", aconn)
    assert "'%(n)s' is a parameter placeholder" in info.value.__notes__[0]


def test_a_read_in_the_callers_pipeline_is_refused(db_conn: Conn) -> None:
    # A read is a COPY, which libpq refuses in pipeline mode: psycopg's error (to_sql gets
    # the same), nothing sent into or read out of the caller's pipeline, which ends cleanly.
    with db_conn.pipeline():
        cur = db_conn.execute("SELECT 1 AS a")
        with pytest.raises(psycopg.NotSupportedError, match="pipeline"):
            read_sql("SELECT 2 AS b", db_conn)
    assert cur.fetchone() == (1,)
    assert read_sql("SELECT 3 AS c", db_conn)["c"].tolist() == [3]


async def test_async_read_in_the_callers_pipeline_is_refused(
    aconn: psycopg.AsyncConnection[Any],
) -> None:
    async with aconn.pipeline():
        cur = await aconn.execute("SELECT 1 AS a")
        with pytest.raises(psycopg.NotSupportedError, match="pipeline"):
            await read_sql_async("SELECT 2 AS b", aconn)
    assert await cur.fetchone() == (1,)
    assert (await read_sql_async("SELECT 3 AS c", aconn))["c"].tolist() == [3]


async def test_reads_at_once_on_one_async_connection(aconn: psycopg.AsyncConnection[Any]) -> None:
    # The second read waits for the first one's describe (the connection's lock), not
    # taking its pipeline mode for the caller's.
    a, b = await asyncio.gather(
        read_sql_async("SELECT 1 AS a", aconn), read_sql_async("SELECT 2 AS b", aconn)
    )
    assert a["a"].tolist() == [1] and b["b"].tolist() == [2]


async def test_a_read_beside_another_command_keeps_the_transaction(superuser_dsn: str) -> None:
    # The savepoint is chosen from the transaction's state under the lock, not while the
    # other command runs (its state then reads ACTIVE, not INTRANS).
    async with await psycopg.AsyncConnection.connect(superuser_dsn) as conn:
        await conn.execute("SELECT 1")
        _, frame = await asyncio.gather(
            conn.execute("SELECT 1"), read_sql_async("SHOW TimeZone", conn)
        )
        assert frame.columns.tolist() == ["TimeZone"]
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        await conn.rollback()


async def test_a_read_cancelled_while_it_waits_leaves_the_others_alone(
    superuser_dsn: str,
) -> None:
    # Read A waits for the lock while read B describes; A is cancelled there. A's cleanup
    # must not end B's describe (it runs under the lock, for a describe of its own only).
    async with await psycopg.AsyncConnection.connect(superuser_dsn, autocommit=True) as conn:
        first = asyncio.create_task(conn.execute("SELECT 1"))
        b = asyncio.create_task(read_sql_async("SELECT 2 AS b", conn))
        a = asyncio.create_task(read_sql_async("SELECT 3 AS a", conn))
        for _ in range(100_000):
            if conn.pgconn.pipeline_status:  # B's describe has begun; A waits for the lock
                break
            await asyncio.sleep(0)
        else:
            pytest.fail("read B's describe was never seen in pipeline mode")
        a.cancel()
        got_a, got_b, _ = await asyncio.gather(a, b, first, return_exceptions=True)
        assert isinstance(got_a, asyncio.CancelledError)
        assert got_b["b"].tolist() == [2]
        assert (await read_sql_async("SELECT 4 AS c", conn))["c"].tolist() == [4]


def test_a_table_that_changes_columns_is_read_again(db_conn: Conn, superuser_dsn: str) -> None:
    # A table another session makes anew with other column types, read with the same query
    # text more often than psycopg's prepare threshold: each read describes it as it is.
    with psycopg.connect(superuser_dsn, autocommit=True) as reader:
        try:
            for i in range(8):
                db_conn.execute("DROP TABLE IF EXISTS frames_reshaped")
                value = ("1::int", "'x'::text", "1.5::float8", "date '2024-01-01'")[i % 4]
                db_conn.execute(f"CREATE TABLE frames_reshaped AS SELECT {value} AS a, {i} AS i")
                got = read_sql("SELECT * FROM frames_reshaped", reader)
                assert got.columns.tolist() == ["a", "i"] and got["i"].tolist() == [i]
        finally:
            db_conn.execute("DROP TABLE IF EXISTS frames_reshaped")


def test_con_as_config_path(auth_config: Path, db_conn: Conn) -> None:
    table = f"frames_auth_{auth_config.stem.replace('-', '_')}"
    df = pd.DataFrame({"a": [1, 2], "s": ["x", None]})
    assert to_sql(df, table, auth_config, if_exists="replace") == 2
    try:
        got = read_sql(f"SELECT * FROM {table} ORDER BY a", str(auth_config))
        assert_frame_equal(got, df)
    finally:
        db_conn.execute(f"DROP TABLE IF EXISTS {table}")


def test_con_as_pgmonkey_object(password_config: Path) -> None:
    try:
        from pgmonkey.manager import PGConnectionManager
    except ImportError:
        pytest.skip("pgmonkey.manager is not written yet")
    manager = PGConnectionManager()
    for ctype in ("normal", "pool"):
        con = manager.get_database_connection(str(password_config), ctype)
        assert read_sql("SELECT %s::int AS a", con, (5,))["a"].tolist() == [5]


def test_con_of_the_wrong_kind() -> None:
    with pytest.raises(TypeError, match="con must be"):
        read_sql("SELECT 1", 42)


def _sample_frame(n: int = 50) -> pd.DataFrame:
    idx = range(n)
    return pd.DataFrame(
        {
            "id": pd.Series(list(idx), dtype="int64"),
            "f": pd.Series([i / 7 if i % 5 else None for i in idx], dtype="float64"),
            "s": pd.Series([HOSTILE_TEXT[i % len(HOSTILE_TEXT)] for i in idx], dtype="str"),
            "ts": pd.Series(
                pd.date_range("1999-12-31 23:59:59.999999", periods=n, freq="37min", tz="UTC")
            ),
            "naive": pd.Series(pd.date_range("2024-01-01", periods=n, freq="h")).astype(
                "datetime64[us]"
            ),
            "b": pd.Series([i % 3 == 0 for i in idx], dtype="bool"),
            "ni": pd.Series([i if i % 4 else None for i in idx], dtype="Int64"),
            "nb": pd.Series([bool(i % 2) if i % 6 else None for i in idx], dtype="boolean"),
        }
    ).assign(s=lambda d: d["s"].mask(d["id"] % 9 == 8))


def test_round_trip_read_to_read(db_conn: Conn) -> None:
    first = read_sql(
        "SELECT i::int8 AS id, i / 3.0::float8 AS f, md5(i::text)::varchar(12) AS s,"
        " '2024-01-01'::timestamptz + i * interval '1 second' AS ts, i % 2 = 0 AS b,"
        " (i * 1.25)::numeric(12, 2) AS n FROM generate_series(1, 2000) AS i",
        db_conn,
    )
    assert to_sql(first, "frames_round_trip", db_conn, if_exists="replace") == 2000
    try:
        again = read_sql("SELECT * FROM frames_round_trip ORDER BY id", db_conn)
        assert_frame_equal(again, first)
    finally:
        db_conn.execute("DROP TABLE frames_round_trip")


def test_round_trip_with_nulls_and_hostile_text(db_conn: Conn) -> None:
    df = _sample_frame()
    assert to_sql(df, "frames_nulls", db_conn, if_exists="replace") == len(df)
    try:
        types = dict(
            db_conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                " WHERE table_name = 'frames_nulls'"
            ).fetchall()
        )
        assert types == {
            "id": "bigint",
            "f": "double precision",
            "s": "text",
            "ts": "timestamp with time zone",
            "naive": "timestamp without time zone",
            "b": "boolean",
            "ni": "bigint",
            "nb": "boolean",
        }
        got = read_sql("SELECT * FROM frames_nulls ORDER BY id", db_conn)
        assert_frame_equal(got, df)
    finally:
        db_conn.execute("DROP TABLE frames_nulls")


def test_to_sql_csv_path_for_other_types(db_conn: Conn) -> None:
    u = uuid.uuid4()
    df = pd.DataFrame(
        {
            "d": [decimal.Decimal("1.10"), None],
            "j": [{"a": [1, "x"]}, None],
            "raw": [b"\x00\xff,\n", None],
            "day": [dt.date(2024, 2, 29), None],
            "u": [u, None],
            "cat": pd.Categorical(["x", None]),
            "s": ["", None],
        }
    )
    assert to_sql(df, "frames_other", db_conn, if_exists="replace") == 2
    try:
        rows = db_conn.execute("SELECT * FROM frames_other").fetchall()
        assert rows[0] == (
            decimal.Decimal("1.10"),
            {"a": [1, "x"]},
            b"\x00\xff,\n",
            dt.date(2024, 2, 29),
            u,
            "x",
            "",
        )
        assert rows[1] == (None,) * 7
    finally:
        db_conn.execute("DROP TABLE frames_other")


def test_to_sql_if_exists_modes(db_conn: Conn) -> None:
    df = pd.DataFrame({"a": [1, 2]})
    db_conn.execute("DROP TABLE IF EXISTS frames_modes")
    try:
        assert to_sql(df, "frames_modes", db_conn) == 2
        with pytest.raises(TransferError, match=r"^table 'frames_modes' already exists"):
            to_sql(df, "frames_modes", db_conn)
        assert to_sql(df, "frames_modes", db_conn, if_exists="append") == 2
        assert db_conn.execute("SELECT count(*) FROM frames_modes").fetchone() == (4,)
        wider = pd.DataFrame({"a": [9], "b": ["new"]})
        assert to_sql(wider, "frames_modes", db_conn, if_exists="replace") == 1
        assert db_conn.execute("SELECT * FROM frames_modes").fetchall() == [(9, "new")]
        with pytest.raises(TransferError, match="if_exists must be one of"):
            to_sql(df, "frames_modes", db_conn, if_exists="truncate")
    finally:
        db_conn.execute("DROP TABLE IF EXISTS frames_modes")


def test_to_sql_is_one_transaction(db_conn: Conn) -> None:
    db_conn.execute("DROP TABLE IF EXISTS frames_atomic")
    db_conn.execute("CREATE TABLE frames_atomic (a int8 NOT NULL)")
    db_conn.execute("INSERT INTO frames_atomic VALUES (42)")
    try:
        with pytest.raises(psycopg.errors.NotNullViolation):
            to_sql(
                pd.DataFrame({"a": [1, None]}, dtype="Int64"), "frames_atomic", db_conn, "append"
            )
        # replace: drop, create and a failing COPY roll back together
        bad = pd.DataFrame({"a": pd.Series([1, "not a number"], dtype=object)})
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            to_sql(bad, "frames_atomic", db_conn, "replace")
        assert db_conn.execute("SELECT a FROM frames_atomic").fetchall() == [(42,)]
    finally:
        db_conn.execute("DROP TABLE frames_atomic")


@pytest.mark.parametrize(
    "name",
    ['robert"); DROP TABLE students; --', "MiXeD Case", "with.dot", "ünï cödé"],
)
def test_hostile_table_and_column_names(db_conn: Conn, name: str) -> None:
    db_conn.execute('CREATE SCHEMA IF NOT EXISTS "frames schema"')
    df = pd.DataFrame({name: [1], "x": ["y"]})
    try:
        assert to_sql(df, name, db_conn, schema="frames schema") == 1
        got = read_sql(
            psycopg.sql.SQL("SELECT * FROM {}").format(
                psycopg.sql.Identifier("frames schema", name)
            ),
            db_conn,
        )
        assert_frame_equal(got, df)
    finally:
        db_conn.execute('DROP SCHEMA "frames schema" CASCADE')


def test_schema_dot_table(db_conn: Conn) -> None:
    db_conn.execute("CREATE SCHEMA IF NOT EXISTS frames_s")
    try:
        to_sql(pd.DataFrame({"a": [1]}), "frames_s.t", db_conn)
        assert db_conn.execute("SELECT a FROM frames_s.t").fetchall() == [(1,)]
    finally:
        db_conn.execute("DROP SCHEMA frames_s CASCADE")


@pytest.fixture
async def aconn(superuser_dsn: str) -> Any:
    conn = await psycopg.AsyncConnection.connect(superuser_dsn, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


async def test_async_text_column_of_other_values(
    aconn: psycopg.AsyncConnection[Any], db_conn: Conn
) -> None:
    # The server writes the text of values that are not strings, as for an INSERT.
    values = ["a", True, decimal.Decimal("1E+3"), dt.timedelta(days=2), None]
    df = pd.DataFrame({"v": pd.Series(values, dtype=object)})
    try:
        assert await to_sql_async(df, "frames_async_text", aconn, if_exists="replace") == 5
        got = db_conn.execute("SELECT v FROM frames_async_text").fetchall()
        assert [r[0] for r in got] == ["a", "true", "1000", "2 days", None]
        with pytest.raises(psycopg.ProgrammingError, match="column 'v', row 1"):
            bad = pd.DataFrame({"v": pd.Series(["a", {"x": 1}], dtype=object)})
            await to_sql_async(bad, "frames_async_text", aconn, if_exists="replace")
    finally:
        db_conn.execute("DROP TABLE IF EXISTS frames_async_text")


async def test_async_twins(aconn: psycopg.AsyncConnection[Any], db_conn: Conn) -> None:
    df = _sample_frame(300)
    assert await to_sql_async(df, "frames_async", aconn, if_exists="replace") == 300
    try:
        got = await read_sql_async("SELECT * FROM frames_async ORDER BY id", aconn)
        assert_frame_equal(got, df)
        hostile = "'; DROP TABLE frames_async; --"
        one = await read_sql_async("SELECT %s AS s", aconn, (hostile,))
        assert one["s"].tolist() == [hostile]
        dml = await read_sql_async("DELETE FROM frames_async WHERE id < 2 RETURNING id", aconn)
        assert dml["id"].tolist() == [0, 1]
        with pytest.raises(TransferError):
            await to_sql_async(df, "frames_async", aconn)
        with pytest.raises(psycopg.errors.UndefinedTable):
            await read_sql_async("SELECT * FROM frames_missing", aconn)
    finally:
        db_conn.execute("DROP TABLE IF EXISTS frames_async")


async def test_async_large_enough_to_stream(aconn: psycopg.AsyncConnection[Any]) -> None:
    # More than one block handed to the parsing thread.
    df = await read_sql_async(
        "SELECT i, repeat('x', 100) AS s FROM generate_series(1, 30000) AS i", aconn
    )
    assert len(df) == 30000 and df["i"].sum() == 30000 * 30001 // 2


async def test_async_con_as_pgmonkey_object(password_config: Path) -> None:
    try:
        from pgmonkey.manager import PGConnectionManager
    except ImportError:
        pytest.skip("pgmonkey.manager is not written yet")
    manager = PGConnectionManager()
    for ctype in ("async", "async_pool"):
        con = await manager.get_database_connection(str(password_config), ctype)
        df = await read_sql_async("SELECT %s::int AS a", con, (6,))
        assert df["a"].tolist() == [6]
        with pytest.raises(TypeError, match="asynchronous"):
            read_sql("SELECT 1", con)


async def test_async_con_as_config_path(password_config: Path) -> None:
    df = await read_sql_async("SELECT 1 AS a", password_config)
    assert df["a"].tolist() == [1]


def test_import_pgmonkey_does_not_import_pandas() -> None:
    import subprocess
    import sys

    code = "import sys, pgmonkey, pgmonkey.frames; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

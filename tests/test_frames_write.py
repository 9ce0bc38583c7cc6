"""to_sql stores what PostgreSQL itself would store: one regression test per write defect.

Expected values come from the server (psycopg's parameterised INSERT into a twin table, or
the server's own cast of the value's text), never from what we think it should store.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import ipaddress
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pytest

from pgmonkey.config import REDACTED
from pgmonkey.errors import TransferError
from pgmonkey.frames import read_sql, read_sql_async, to_sql, to_sql_async
from pgmonkey.frames._write import pg_type

Conn = psycopg.Connection[Any]


@pytest.fixture
def fresh(db_conn: Conn) -> Iterator[str]:
    """A table name free for the test, dropped (with its twin) afterwards."""
    db_conn.execute("DROP TABLE IF EXISTS frames_w, frames_w_twin")
    yield "frames_w"
    db_conn.execute("DROP TABLE IF EXISTS frames_w, frames_w_twin")


def _session(dsn: str, **settings: str) -> Conn:
    conn = psycopg.connect(dsn, autocommit=True)
    for name, value in settings.items():
        conn.execute(
            psycopg.sql.SQL("SET {} TO {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.Literal(value)
            )
        )
    return conn


def _texts(conn: Conn, table: str, order: str = "k") -> list[tuple[Any, ...]]:
    """Every row as the server's text of each value (exact: floats, intervals, zones)."""
    cols = [
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum",
            (table,),
        ).fetchall()
    ]
    exprs = psycopg.sql.SQL(", ").join(
        psycopg.sql.SQL("{}::text").format(psycopg.sql.Identifier(c)) for c in cols
    )
    query = psycopg.sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
        exprs, psycopg.sql.Identifier(table), psycopg.sql.Identifier(order)
    )
    return conn.execute(query).fetchall()


@pytest.mark.parametrize("csv_path", [False, True], ids=["binary", "csv"])
def test_client_encoding_is_honoured(
    superuser_dsn: str, db_conn: Conn, fresh: str, csv_path: bool
) -> None:
    conn = _session(superuser_dsn, client_encoding="WIN1252")
    df = pd.DataFrame({"k": [0, 1], "s": ["café", "naïve € œ"]})
    if csv_path:  # a Decimal column sends the frame as CSV
        df["d"] = [decimal.Decimal("1.5"), None]
    try:
        assert to_sql(df, fresh, conn) == 2
    finally:
        conn.close()
    assert [r[0] for r in db_conn.execute(f"SELECT s FROM {fresh} ORDER BY k")] == [
        "café",
        "naïve € œ",
    ]


@pytest.mark.parametrize("csv_path", [False, True], ids=["binary", "csv"])
def test_a_character_the_encoding_lacks_is_a_clear_error(
    superuser_dsn: str, db_conn: Conn, fresh: str, csv_path: bool
) -> None:
    conn = _session(superuser_dsn, client_encoding="WIN1252")
    df = pd.DataFrame({"k": [0, 1, 2], "s": ["café", "ok", "漢字"]})
    if csv_path:
        df["d"] = [decimal.Decimal("1.5"), None, None]
    try:
        with pytest.raises(psycopg.errors.UntranslatableCharacter) as info:
            to_sql(df, fresh, conn)
    finally:
        conn.close()
    assert str(info.value).endswith("column 's', row 2, value '漢字'")
    assert "'cp1252'" in str(info.value)
    assert db_conn.execute("SELECT to_regclass(%s)", (fresh,)).fetchone() == (None,)


def test_nanosecond_limits(db_conn: Conn, fresh: str) -> None:
    stamps = pd.Series(
        [pd.Timestamp.min, pd.Timestamp.max, pd.Timestamp("1969-12-31 23:59:59.9999995")]
    )
    assert stamps.dtype == "datetime64[ns]"
    deltas = pd.Series([pd.Timedelta.min, pd.Timedelta.max, pd.Timedelta(-1, "ns")])
    df = pd.DataFrame(
        {"k": [0, 1, 2], "ts": stamps, "tz": stamps.dt.tz_localize("UTC"), "iv": deltas}
    )
    to_sql(df, fresh, db_conn)
    # The server's own reading of each value's full text (psycopg's text dumpers).
    expected = [
        db_conn.execute(
            "SELECT %t::timestamp::text, %t::timestamptz::text, %t::interval::text",
            (ts, tz, iv),
        ).fetchone()
        for ts, tz, iv in zip(df["ts"], df["tz"], df["iv"], strict=True)
    ]
    got = [r[1:] for r in _texts(db_conn, fresh)]
    assert got == expected
    assert got[0][0].startswith("1677-09-21") and got[1][0].startswith("2262-04-11")
    assert got[0][2].startswith("-106752 days")


# Instants past pandas' nanosecond range, as numpy writes them (astronomical years: 0000 is
# 1 BC), and as PostgreSQL writes them: the server's cast of the latter is the expected value.
FAR_STAMPS = [
    ("1500-01-01T00:00:01", "1500-01-01 00:00:01"),
    ("0001-01-01T00:00:00", "0001-01-01 00:00:00"),
    ("0000-02-29T23:59:59", "0001-02-29 23:59:59 BC"),
    ("-4713-11-24T00:00:00", "4714-11-24 00:00:00 BC"),
    ("3000-06-01T12:00:00", "3000-06-01 12:00:00"),
    ("10000-01-01T00:00:00", "10000-01-01 00:00:00"),
    ("294276-12-31T23:59:59", "294276-12-31 23:59:59"),
]


@pytest.mark.parametrize("csv_path", [False, True], ids=["binary", "csv"])
@pytest.mark.parametrize("unit", ["s", "ms", "us"])
def test_timestamps_past_the_nanosecond_range(
    db_conn: Conn, fresh: str, unit: str, csv_path: bool
) -> None:
    # int64 microseconds end in the year 294247 (and numpy's parse wraps around past it).
    cases = [c for c in FAR_STAMPS if unit != "us" or not c[0].startswith("294276")]
    stamps = pd.Series(np.array([*(n for n, _ in cases), "NaT"], dtype=f"datetime64[{unit}]"))
    df = pd.DataFrame({"k": range(len(stamps)), "ts": stamps, "tz": stamps.dt.tz_localize("UTC")})
    if csv_path:  # a Decimal column sends the frame as CSV
        df["d"] = decimal.Decimal("1.5")
    to_sql(df, fresh, db_conn)
    expected = [
        db_conn.execute(
            "SELECT %s::timestamp::text, (%s || '+00')::timestamptz::text", (pg, pg)
        ).fetchone()
        for _, pg in cases
    ]
    assert [r[1:3] for r in _texts(db_conn, fresh)] == [*expected, (None, None)]


@pytest.mark.parametrize("csv_path", [False, True], ids=["binary", "csv"])
@pytest.mark.parametrize(
    ("unit", "numpy_text"),
    [
        ("s", "294277-01-01T00:00:00"),  # past PostgreSQL's last year
        ("s", "-4713-11-23T23:59:59"),  # before its first day
        ("s", "300000-01-01T00:00:00"),  # past int64 microseconds since 1970, too
        ("us", "-290000-01-01T00:00:00"),  # 2000 minus this would wrap around int64
    ],
)
@pytest.mark.parametrize("aware", [False, True], ids=["naive", "aware"])
def test_a_timestamp_past_postgresqls_range_is_a_clear_error(
    db_conn: Conn, fresh: str, unit: str, numpy_text: str, aware: bool, csv_path: bool
) -> None:
    stamps = pd.Series(np.array(["2000-01-01", numpy_text], dtype=f"datetime64[{unit}]"))
    df = pd.DataFrame({"k": [0, 1], "ts": stamps.dt.tz_localize("UTC") if aware else stamps})
    if csv_path:
        df["d"] = decimal.Decimal("1.5")
    overflow = psycopg.errors.DatetimeFieldOverflow
    with pytest.raises(overflow, match="timestamp out of range") as info:
        to_sql(df, fresh, db_conn)
    assert "column 'ts', row 1, value Timestamp(" in str(info.value)
    assert db_conn.execute("SELECT to_regclass(%s)", (fresh,)).fetchone() == (None,)


def test_float_nan_on_the_csv_path(db_conn: Conn, fresh: str) -> None:
    df = pd.DataFrame(
        {
            "k": [0, 1, 2],
            "f": [np.nan, -0.0, np.inf],
            "d": [decimal.Decimal("1.5"), None, decimal.Decimal("-2")],
        }
    )
    to_sql(df, fresh, db_conn)
    assert _texts(db_conn, fresh) == [
        ("0", None, "1.5"),
        ("1", "-0", None),
        ("2", "Infinity", "-2"),
    ]


def test_bare_carriage_returns_on_the_csv_path(db_conn: Conn, fresh: str) -> None:
    strings = ["a\rb", "\r", "c\r\nd", "e\nf", "\r\r\n\n", "", "end\r"]
    df = pd.DataFrame(
        {"k": range(len(strings)), "s": strings, "d": [decimal.Decimal(1)] * len(strings)}
    )
    to_sql(df, fresh, db_conn)
    assert [r[1] for r in _texts(db_conn, fresh)] == strings


def test_categorical_of_integers_with_a_missing_value(db_conn: Conn, fresh: str) -> None:
    df = pd.DataFrame(
        {"k": [0, 1, 2], "c": pd.Categorical([2**62, None, 7], categories=[7, 2**62])}
    )
    to_sql(df, fresh, db_conn)
    assert _types(db_conn, fresh) == ["bigint", "bigint"]
    assert [r[1] for r in _texts(db_conn, fresh)] == [str(2**62), None, "7"]


# (type of the existing column, frame column): the stored values must be the INSERT's.
APPEND_CASES = [
    ("integer", pd.Series([1, -2, 2**31 - 1], dtype="int64")),
    ("smallint", pd.Series([1, None, -7], dtype="Int64")),
    ("numeric", pd.Series([1, 2**62, -5], dtype="int64")),
    ("numeric", pd.Series([0.1 + 0.2, 1e-7, 2.5], dtype="float64")),
    ("real", pd.Series([1.5, 0.1, 1e30], dtype="float64")),
    ("numeric(12,3)", pd.Series([1.0005, 2.0004, -3.14159], dtype="float64")),
    ("date", pd.Series(pd.to_datetime(["2024-01-01 23:59:59", "1900-02-28 00:00:01", None]))),
    ("text", pd.Series([1.5, 0.1 + 0.2, -0.0], dtype="float64")),
    ("text", pd.Series([True, None, False], dtype="boolean")),
    ("varchar(5)", pd.Series(["ab", "abcde   ", None], dtype="str")),
    ("jsonb", pd.Series(['{"a": 1}', "[1, 2]", '"x"'], dtype="str")),
    ("interval", pd.Series(["1 day", "-2 hours", "P1Y"], dtype="str")),
    ("bigint", pd.Series([1.0, 2.0, None], dtype="float64")),
    (
        "timestamp(0)",
        pd.Series(pd.to_datetime(["2024-01-01 00:00:00.5", "2024-01-01 00:00:01.5", None])),
    ),
]


@pytest.mark.parametrize("case", APPEND_CASES, ids=[f"{c[0]}-{c[1].dtype}" for c in APPEND_CASES])
@pytest.mark.parametrize("run", ["sync", "async"])
async def test_append_into_compatible_types(
    superuser_dsn: str, db_conn: Conn, fresh: str, case: tuple[str, pd.Series], run: str
) -> None:
    sql_type, values = case
    for table in (fresh, "frames_w_twin"):
        db_conn.execute(f"CREATE TABLE {table} (k int8, v {sql_type}, other text DEFAULT 'd')")
    df = pd.DataFrame({"k": range(len(values)), "v": values})
    if run == "sync":
        assert to_sql(df, fresh, db_conn, if_exists="append") == len(df)
    else:
        async with await psycopg.AsyncConnection.connect(superuser_dsn, autocommit=True) as aconn:
            assert await to_sql_async(df, fresh, aconn, if_exists="append") == len(df)
    with db_conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO frames_w_twin (k, v) VALUES (%s, %t)",
            [(k, None if pd.isna(v) else v) for k, v in zip(df["k"], df["v"], strict=True)],
        )
    assert _texts(db_conn, fresh) == _texts(db_conn, "frames_w_twin")


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata", "EST5EDT", "<+0330>-03:30"])
def test_append_across_time_zones_lands_at_the_servers_instant(
    superuser_dsn: str, db_conn: Conn, fresh: str, zone: str
) -> None:
    conn = _session(superuser_dsn, TimeZone=zone, DateStyle="SQL, DMY")
    naive = pd.Series(
        pd.to_datetime(["2024-03-10 02:30", "2024-11-03 01:30", "1900-01-01 12:00", None])
    )
    aware = naive.dt.tz_localize("Asia/Tokyo")
    df = pd.DataFrame({"k": range(4), "into_tz": naive, "into_naive": aware})
    try:
        for table in (fresh, "frames_w_twin"):
            conn.execute(
                f"CREATE TABLE {table} (k int8, into_tz timestamptz, into_naive timestamp)"
            )
        to_sql(df, fresh, conn, if_exists="append")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO frames_w_twin VALUES (%s, %t, %t)",
                [
                    tuple(None if pd.isna(v) else v for v in row)
                    for row in df.itertuples(index=False)
                ],
            )
        assert _texts(conn, fresh) == _texts(conn, "frames_w_twin")
    finally:
        conn.close()


async def test_a_leading_byte_order_mark_is_data(superuser_dsn: str, db_conn: Conn) -> None:
    query = "SELECT E'\\uFEFFa' AS s, 1 AS i UNION ALL SELECT E'\\uFEFF', 2"
    assert read_sql(query, db_conn)["s"].tolist() == ["\ufeffa", "\ufeff"]
    one = read_sql("SELECT E'\\uFEFF' AS s", db_conn)
    assert one["s"].tolist() == ["\ufeff"]
    async with await psycopg.AsyncConnection.connect(superuser_dsn) as aconn:
        got = await read_sql_async(query, aconn)
    assert got["s"].tolist() == ["\ufeffa", "\ufeff"]


def _count(conn: Conn, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


async def _append(run: str, df: pd.DataFrame, table: str, conn: Conn, dsn: str) -> None:
    """``to_sql(..., if_exists="append")`` on ``conn``, or its async twin on a new connection."""
    if run == "sync":
        to_sql(df, table, conn, if_exists="append")
    else:
        async with await psycopg.AsyncConnection.connect(dsn) as aconn:
            await to_sql_async(df, table, aconn, if_exists="append")


@pytest.mark.parametrize("run", ["sync", "async"])
async def test_a_value_the_server_rejects_names_column_row_and_value(
    superuser_dsn: str, db_conn: Conn, fresh: str, run: str
) -> None:
    db_conn.execute(f"CREATE TABLE {fresh} (v integer, n numeric(4, 1), s text)")
    db_conn.execute(f"INSERT INTO {fresh} VALUES (1, 1, 'before')")
    cases: list[tuple[pd.DataFrame, type[Exception], str]] = [
        (
            pd.DataFrame({"v": [1, 2, 3_000_000_000, 4]}),
            psycopg.errors.NumericValueOutOfRange,
            "integer out of range: column 'v', row 2, value 3000000000",
        ),
        (
            pd.DataFrame({"n": [1.5, 12345.0]}, index=["a", "b"]),
            psycopg.errors.NumericValueOutOfRange,
            "numeric field overflow: column 'n', row 1 (index 'b'), value 12345.0",
        ),
        (
            pd.DataFrame({"v": ["7", "x2"]}, dtype="str"),
            psycopg.errors.InvalidTextRepresentation,
            "invalid input syntax for type integer: \"x2\": column 'v', row 1, value 'x2'",
        ),
        (
            pd.DataFrame({"s": ["fine", "nul\x00inside"]}),
            psycopg.errors.CharacterNotInRepertoire,
            "column 's', row 1, value 'nul\\x00inside'",
        ),
    ]
    for df, kind, message in cases:
        with pytest.raises(kind) as info:
            await _append(run, df, fresh, db_conn, superuser_dsn)
        assert str(info.value).endswith(message), str(info.value)
        assert "\n" not in str(info.value)
        assert _count(db_conn, fresh) == 1  # nothing written
    assert db_conn.execute(
        "SELECT count(*) FROM pg_class WHERE relname LIKE '\\_pgmonkey\\_%'"
    ).fetchone() == (0,)


def test_values_of_sensitive_columns_are_redacted(db_conn: Conn, fresh: str) -> None:
    db_conn.execute(f"CREATE TABLE {fresh} (k int, api_token smallint, user_password text)")
    df = pd.DataFrame({"k": [1], "api_token": [123456]})
    with pytest.raises(psycopg.errors.NumericValueOutOfRange) as info:
        to_sql(df, fresh, db_conn, if_exists="append")
    assert str(info.value).endswith(f"column 'api_token', row 0, value {REDACTED}")
    assert "123456" not in str(info.value)
    bad = pd.DataFrame({"user_password": ["hunter2\x00"]})
    with pytest.raises(psycopg.errors.CharacterNotInRepertoire) as info2:
        to_sql(bad, fresh, db_conn, if_exists="append")
    assert "hunter2" not in str(info2.value) and REDACTED in str(info2.value)


def test_a_constraint_violation_is_located_too(db_conn: Conn, fresh: str) -> None:
    db_conn.execute(f"CREATE TABLE {fresh} (k int PRIMARY KEY, v smallint NOT NULL)")
    df = pd.DataFrame({"k": [1, 2, 3, 2, 5], "v": [1, 1, 1, 1, 1]})
    with pytest.raises(psycopg.errors.UniqueViolation) as info:
        to_sql(df, fresh, db_conn, if_exists="append")
    assert str(info.value).endswith(": row 3")
    assert _count(db_conn, fresh) == 0


def test_a_column_the_table_lacks(db_conn: Conn, fresh: str) -> None:
    db_conn.execute(f"CREATE TABLE {fresh} (k int)")
    with pytest.raises(psycopg.errors.UndefinedColumn, match="column 'nope' of table 'frames_w'"):
        to_sql(pd.DataFrame({"k": [1], "nope": [2]}), fresh, db_conn, if_exists="append")


def test_python_timedeltas_keep_days_apart(db_conn: Conn, fresh: str) -> None:
    values = [dt.timedelta(days=-1, seconds=5), dt.timedelta(microseconds=7), dt.timedelta(days=3)]
    df = pd.DataFrame({"k": range(3), "t": pd.Series(values, dtype=object)})
    to_sql(df, fresh, db_conn)
    db_conn.execute(f"CREATE TABLE frames_w_twin (LIKE {fresh})")
    with db_conn.cursor() as cur:
        cur.executemany("INSERT INTO frames_w_twin VALUES (%s, %s)", list(enumerate(values)))
    assert _texts(db_conn, fresh) == _texts(db_conn, "frames_w_twin")


def test_a_sensitive_value_quoted_by_the_server_is_not_shown(db_conn: Conn, fresh: str) -> None:
    db_conn.execute(f"CREATE TABLE {fresh} (k int, pin_secret integer)")
    df = pd.DataFrame({"k": [1, 2], "pin_secret": ["12", "hunter2"]}, dtype="str")
    with pytest.raises(psycopg.errors.InvalidTextRepresentation) as info:
        to_sql(df, fresh, db_conn, if_exists="append")
    assert str(info.value) == (
        f"invalid input syntax for type integer: column 'pin_secret', row 1, value {REDACTED}"
    )
    assert info.value.__cause__ is None  # the server's own message quotes the value


def test_not_null_on_the_direct_binary_path_names_the_column(db_conn: Conn, fresh: str) -> None:
    db_conn.execute(f"CREATE TABLE {fresh} (k bigint, v bigint NOT NULL)")
    df = pd.DataFrame({"k": [1, 2], "v": pd.array([5, None], dtype="Int64")})
    with pytest.raises(psycopg.errors.NotNullViolation) as info:
        to_sql(df, fresh, db_conn, if_exists="append")
    assert str(info.value).endswith("column 'v', row 1, value <NA>")
    assert isinstance(info.value.__cause__, psycopg.errors.NotNullViolation)
    assert _count(db_conn, fresh) == 0


@pytest.mark.parametrize("style", ["postgres", "sql_standard", "iso_8601"])
def test_python_timedeltas_under_every_interval_style(
    superuser_dsn: str, fresh: str, style: str
) -> None:
    values = [
        dt.timedelta(days=-1, seconds=5),
        dt.timedelta(seconds=-1),
        dt.timedelta(days=2, microseconds=-7),
        dt.timedelta.max,
        dt.timedelta.min,
    ]
    with _session(superuser_dsn, IntervalStyle=style) as conn:
        df = pd.DataFrame({"k": range(len(values)), "t": pd.Series(values, dtype=object)})
        to_sql(df, fresh, conn)
        conn.execute(f"CREATE TABLE frames_w_twin (LIKE {fresh})")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO frames_w_twin VALUES (%s, %s)", list(enumerate(values)))
        assert _texts(conn, fresh) == _texts(conn, "frames_w_twin")


def test_column_labels_that_are_not_strings(db_conn: Conn, fresh: str) -> None:
    df = pd.DataFrame({0: [1, 2], 1: ["a", None], 2: [decimal.Decimal("1.5"), None]})
    assert to_sql(df, fresh, db_conn) == 2
    rows = db_conn.execute(f'SELECT "0", "1", "2" FROM {fresh} ORDER BY "0"').fetchall()
    assert rows == [(1, "a", decimal.Decimal("1.5")), (2, None, None)]
    assert to_sql(df[[0, 1]], fresh, db_conn, if_exists="append") == 2


def test_times_with_a_zone_keep_it(db_conn: Conn, fresh: str) -> None:
    zone = dt.timezone(dt.timedelta(hours=9, minutes=30))
    values = [dt.time(12, 0, 1, 5, tzinfo=zone), None]
    to_sql(pd.DataFrame({"k": [0, 1], "t": pd.Series(values, dtype=object)}), fresh, db_conn)
    db_conn.execute(f"CREATE TABLE frames_w_twin (LIKE {fresh})")
    assert _types(db_conn, fresh)[1] == "time with time zone"
    with db_conn.cursor() as cur:
        cur.executemany("INSERT INTO frames_w_twin VALUES (%s, %s)", list(enumerate(values)))
    assert _texts(db_conn, fresh) == _texts(db_conn, "frames_w_twin")
    assert _texts(db_conn, fresh)[0][1] == "12:00:01.000005+09:30"


def test_bytes_of_a_sensitive_value_the_server_refuses_are_not_shown(
    superuser_dsn: str, db_conn: Conn
) -> None:
    # A WIN1252 database has no '漢': the server refuses the UTF-8 bytes it gets and names
    # them ("byte sequence 0xe6 0xbc 0xa2"), which for a sensitive column would show part
    # of the value.
    from psycopg.conninfo import make_conninfo

    db_conn.execute("DROP DATABASE IF EXISTS frames_win1252")
    db_conn.execute(
        "CREATE DATABASE frames_win1252 ENCODING 'WIN1252' TEMPLATE template0"
        " LC_COLLATE 'C' LC_CTYPE 'C'"
    )
    try:
        dsn = make_conninfo(superuser_dsn, dbname="frames_win1252")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET client_encoding = 'UTF8'")
            for column, shown in (("api_key", False), ("note", True)):
                df = pd.DataFrame({column: ["fine", "x漢"]})
                with pytest.raises(psycopg.errors.UntranslatableCharacter) as info:
                    to_sql(df, "t", conn, if_exists="replace")
                message = str(info.value)
                assert ("0xe6 0xbc 0xa2" in message) == shown, message
                assert (REDACTED in message) != shown, message
                if not shown:
                    assert info.value.__cause__ is None
    finally:
        db_conn.execute("DROP DATABASE frames_win1252")


def test_a_frame_without_columns_is_refused_by_name(db_conn: Conn, fresh: str) -> None:
    with pytest.raises(TransferError, match=f"no columns to write into '{fresh}'"):
        to_sql(pd.DataFrame(index=range(3)), fresh, db_conn)


def _chain(error: BaseException) -> str:
    """Every message an error carries along, chained and in context, as printed or logged."""
    seen: list[str] = []
    while error is not None and len(seen) < 10:
        seen.append(f"{error!s} {error.args!r}")
        error = error.__cause__ or error.__context__  # type: ignore[assignment]
    return "\n".join(seen)


@pytest.mark.parametrize("run", ["sync", "async"])
@pytest.mark.parametrize(
    "ddl",
    [
        # Checked after the COPY, not told by row: the server's DETAIL quotes the key.
        "CREATE TABLE frames_w_twin (k text PRIMARY KEY);"
        " CREATE TABLE frames_w (user_password text REFERENCES frames_w_twin)",
        # Checked at COMMIT.
        "CREATE TABLE frames_w (user_password text UNIQUE DEFERRABLE INITIALLY DEFERRED);"
        " INSERT INTO frames_w VALUES ('hunter2')",
        "CREATE TABLE frames_w (user_password text CHECK (length(user_password) > 10))",
        "CREATE TABLE frames_w (user_password integer)",
    ],
    ids=["foreign-key", "deferred-unique", "check", "cast"],
)
async def test_no_error_of_a_sensitive_column_carries_its_value(
    superuser_dsn: str, db_conn: Conn, fresh: str, ddl: str, run: str
) -> None:
    db_conn.execute(ddl)
    df = pd.DataFrame({"user_password": ["hunter2"]})
    kind = psycopg.errors.DataError if "integer)" in ddl else psycopg.errors.IntegrityError
    with pytest.raises(kind) as info:
        await _append(run, df, fresh, db_conn, superuser_dsn)
    assert "hunter2" not in _chain(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert "frames_w" in str(info.value) or REDACTED in str(info.value)
    # Without a sensitive name the server's own error comes through whole, DETAIL and all.
    db_conn.execute("DROP TABLE IF EXISTS frames_w, frames_w_twin")
    db_conn.execute(ddl.replace("user_password", "note"))
    with pytest.raises(psycopg.Error) as plain:
        to_sql(df.rename(columns={"user_password": "note"}), fresh, db_conn, if_exists="append")
    assert "hunter2" in _chain(plain.value)


@pytest.mark.parametrize(
    ("target", "values", "row", "shown"),
    [
        ("varchar(3)", pd.Series(["ok", "toolong"], dtype="str"), 1, "'toolong'"),
        ("char(2)", pd.Series(["ok", "tol  "], dtype="str"), 1, "'tol  '"),
        ("varchar(4)", pd.Series([True, False]), 1, "False"),
        ("varchar(2)", pd.Series([1.5, 0.25]), 0, "1.5"),
    ],
)
def test_a_value_too_long_for_its_column_is_told_by_column(
    db_conn: Conn, fresh: str, target: str, values: pd.Series, row: int, shown: str
) -> None:
    db_conn.execute(f"CREATE TABLE {fresh} (a text, b {target})")
    db_conn.execute("CREATE TABLE frames_w_twin (LIKE frames_w)")
    df = pd.DataFrame({"a": ["x", "y"], "b": values})
    with pytest.raises(psycopg.errors.StringDataRightTruncation) as info:
        to_sql(df, fresh, db_conn, if_exists="append")
    assert str(info.value).endswith(f"column 'b', row {row}, value {shown}")
    with pytest.raises(psycopg.errors.StringDataRightTruncation):  # what INSERT does
        with db_conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO frames_w_twin VALUES (%s, %s)", df.astype(object).values.tolist()
            )
    # Trailing spaces past the length are cut, as an INSERT cuts them.
    to_sql(pd.DataFrame({"a": ["z"], "b": ["ab   "]}), fresh, db_conn, if_exists="append")
    assert _count(db_conn, fresh) == 1


def _types(db_conn: Conn, table: str) -> list[str]:
    """The table's column types, in column order."""
    return [
        r[0]
        for r in db_conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (table,),
        )
    ]


def _twin_texts(db_conn: Conn, fresh: str, df: pd.DataFrame) -> list[tuple[Any, ...]]:
    """What psycopg's INSERT stores of ``df``'s cells into a twin of ``fresh``."""
    db_conn.execute(f"CREATE TABLE frames_w_twin (LIKE {fresh})")
    marks = ", ".join(["%s"] * df.shape[1])
    rows = [
        tuple(None if v is None or (np.ndim(v) == 0 and pd.isna(v)) else v for v in row)
        for row in df.astype(object).itertuples(index=False)
    ]
    with db_conn.cursor() as cur:
        cur.executemany(f"INSERT INTO frames_w_twin VALUES ({marks})", rows)
    return _texts(db_conn, "frames_w_twin")


@pytest.mark.parametrize("csv_path", [False, True], ids=["binary", "csv"])
def test_arrow_uint64_past_bigint_is_numeric(db_conn: Conn, fresh: str, csv_path: bool) -> None:
    values = [2**64 - 1, 2**63, None, 0]
    df = pd.DataFrame({"k": range(4), "u": pd.Series(values, dtype=pd.ArrowDtype(pa.uint64()))})
    if csv_path:
        df["d"] = decimal.Decimal("1.5")
    to_sql(df, fresh, db_conn)
    assert [r[1] for r in _texts(db_conn, fresh)] == [
        "18446744073709551615",
        "9223372036854775808",
        None,
        "0",
    ]
    assert _texts(db_conn, fresh) == _twin_texts(db_conn, fresh, df)


@pytest.mark.parametrize("csv_path", [False, True], ids=["binary", "csv"])
@pytest.mark.parametrize(
    "dtype", ["float32", "float16", "Float32", pd.ArrowDtype(pa.float32())], ids=str
)
def test_narrow_floats_are_reals(db_conn: Conn, fresh: str, dtype: Any, csv_path: bool) -> None:
    # A real holds each exactly, as psycopg binds a float32 or float16; they were created
    # double precision, so an append into numeric or text got the widened double's digits.
    values = pd.Series([0.1, 3.4e38 if dtype != "float16" else 65504.0, -0.0, None], dtype=dtype)
    df = pd.DataFrame({"k": range(4), "f": values})
    if csv_path:
        df["d"] = decimal.Decimal("1.5")
    to_sql(df, fresh, db_conn)
    assert _types(db_conn, fresh)[1] == "real"
    got = _texts(db_conn, fresh)
    assert got[0][1] == ("0.099975586" if dtype == "float16" else "0.1")  # float16 has no 0.1
    assert got == _twin_texts(db_conn, fresh, df)
    db_conn.execute(f"DROP TABLE {fresh}")
    db_conn.execute(f"CREATE TABLE {fresh} (k bigint, f numeric, d numeric)")
    to_sql(df, fresh, db_conn, if_exists="append")
    db_conn.execute("DROP TABLE frames_w_twin")
    cells = [np.float32(v) if pd.notna(v) else None for v in values.astype(object)]
    twin = df.assign(f=pd.Series(cells, dtype=object))  # bound as psycopg binds the scalars
    assert _texts(db_conn, fresh) == _twin_texts(db_conn, fresh, twin)


@pytest.mark.parametrize("csv_path", [False, True], ids=["binary", "csv"])
def test_numpy_scalars_in_an_object_column_keep_their_type(
    db_conn: Conn, fresh: str, csv_path: bool
) -> None:
    # They were created text ('True', '1'); a float32 among doubles went as its short text.
    columns = {
        "i": [np.int64(-(2**63)), np.int16(7), None],
        "u": [np.uint64(2**64 - 1), np.uint64(0), None],
        "b": [np.bool_(True), np.bool_(False), None],
        "f": [np.float64(0.1), np.float32(0.1), np.float16(0.1)],
    }
    df = pd.DataFrame(
        {"k": range(3), **{c: pd.Series(v, dtype=object) for c, v in columns.items()}}
    )
    if csv_path:
        df["d"] = decimal.Decimal("1.5")
    to_sql(df, fresh, db_conn)
    assert _types(db_conn, fresh)[1:5] == ["bigint", "numeric", "boolean", "double precision"]
    got = _texts(db_conn, fresh)
    assert got[0][1:4] == ("-9223372036854775808", "18446744073709551615", "true")
    assert [r[4] for r in got] == ["0.1", "0.10000000149011612", "0.0999755859375"]
    assert got == _twin_texts(db_conn, fresh, df)


def test_floats_of_mixed_widths_in_an_object_column(db_conn: Conn, fresh: str) -> None:
    # A float32 first made the column real: a later double lost its digits (16777217 was
    # stored 16777216, an append into numeric too, through a real staging
    # column), and one half way between two reals was rounded twice (1 + 2**-24 became
    # 1.0000001, not 1). The column is one of doubles now, the narrow ones widened exactly.
    tie = 1 + 2**-24
    cells = [np.float32(0.5), tie, np.float64(tie), np.float16(0.1), -tie, 1e-45, 16777217.0, None]
    df = pd.DataFrame({"k": range(len(cells)), "f": pd.Series(cells, dtype=object)})
    doubles = df.assign(f=pd.Series([None if c is None else float(c) for c in cells], dtype=object))
    to_sql(df, fresh, db_conn)
    assert _types(db_conn, fresh)[1] == "double precision"
    assert _texts(db_conn, fresh) == _twin_texts(db_conn, fresh, df)
    for target in ("real", "numeric", "text"):
        db_conn.execute(f"DROP TABLE {fresh}, frames_w_twin")
        db_conn.execute(f"CREATE TABLE {fresh} (k bigint, f {target})")
        to_sql(df, fresh, db_conn, if_exists="append")
        got = _texts(db_conn, fresh)
        assert got == _twin_texts(db_conn, fresh, doubles)
        if target == "real":  # each double rounded once, as the server's cast does
            assert [r[1] for r in got] == [
                *("0.5", "1", "1", "0.099975586", "-1", "1e-45", "1.6777216e+07", None)
            ]
        if target == "numeric":  # every digit of each value, the narrow ones' too
            assert [r[1] for r in got][:7] == [
                "0.5",
                "1.00000005960464",
                "1.00000005960464",
                "0.0999755859375",
                "-1.00000005960464",
                "0." + "0" * 44 + "1",  # the double 1e-45
                "16777217",
            ]
    # Beyond a real's range either way: refused by the server, as the INSERT is.
    db_conn.execute(f"DROP TABLE {fresh}")
    db_conn.execute(f"CREATE TABLE {fresh} (f real)")
    for value in (1e39, 1e-50):
        out = pd.DataFrame({"f": pd.Series([np.float32(1), value], dtype=object)})
        with pytest.raises(psycopg.errors.NumericValueOutOfRange, match="out of range"):
            to_sql(out, fresh, db_conn, if_exists="append")


@pytest.mark.parametrize("target", ["name", "char(2)", "tsvector", "integer"])
def test_a_lone_backslash_dot_is_a_value_not_the_end(
    db_conn: Conn, fresh: str, target: str
) -> None:
    # A one-column CSV COPY read a line of only \. as the end of its data: the rows after it
    # were lost, and to_sql returned the frame's row count all the same.
    df = pd.DataFrame({"v": ["1", "\\.", "2"]})
    db_conn.execute(f"CREATE TABLE {fresh} (v {target})")
    if target == "integer":  # not an integer: refused, as by the INSERT
        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="row 1"):
            to_sql(df, fresh, db_conn, if_exists="append")
        return
    assert to_sql(df, fresh, db_conn, if_exists="append") == 3
    db_conn.execute(f"CREATE TABLE frames_w_twin (LIKE {fresh})")
    with db_conn.cursor() as cur:  # one column, as the frame has: no k to order by
        cur.executemany("INSERT INTO frames_w_twin VALUES (%s)", [(v,) for v in df["v"]])
    got = _texts(db_conn, fresh, order="v")
    assert len(got) == 3 and got == _texts(db_conn, "frames_w_twin", order="v")


_AT_MINUS_5 = dt.timezone(dt.timedelta(hours=-5))
MIXED_OBJECTS = [
    # Stored as an INSERT stores them; they were a repr, a TypeError, 17 digits, a day off.
    ("bytes-like", [bytearray(b"ab"), memoryview(b"cd"), None], "bytea", "bytea"),
    ("bytes-and-strings", [b"\x00", "abc", None], "bytea", "bytea"),
    (
        "decimal-and-floats",
        [decimal.Decimal("1"), 0.1 + 0.2, np.float32(0.1), 1e20, float("nan")],
        "numeric",
        "numeric(30,3)",
    ),
    (
        "date-and-aware",
        [dt.date(2020, 1, 1), dt.datetime(2020, 1, 1, 23, tzinfo=_AT_MINUS_5)],
        "timestamp with time zone",
        "date",
    ),
]


@pytest.mark.parametrize(
    ("values", "natural", "target"),
    [m[1:] for m in MIXED_OBJECTS],
    ids=[m[0] for m in MIXED_OBJECTS],
)
def test_an_object_column_of_mixed_values_is_stored_as_the_insert_stores_it(
    db_conn: Conn, fresh: str, values: list[Any], natural: str, target: str
) -> None:
    df = pd.DataFrame({"k": range(len(values)), "v": pd.Series(values, dtype=object)})
    to_sql(df, fresh, db_conn)
    assert _types(db_conn, fresh)[1] == natural
    assert _texts(db_conn, fresh) == _twin_texts(db_conn, fresh, df)
    db_conn.execute(f"DROP TABLE {fresh}, frames_w_twin")
    db_conn.execute(f"CREATE TABLE {fresh} (k bigint, v {target})")
    to_sql(df, fresh, db_conn, if_exists="append")
    assert _texts(db_conn, fresh) == _twin_texts(db_conn, fresh, df)


class _Color(enum.Enum):
    RED = 1


FOREIGN_IN_TEXT = [
    "a",
    True,
    decimal.Decimal("1E+3"),
    dt.timedelta(days=1, microseconds=5),
    b"\x01",
    dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
    _Color.RED,
    ipaddress.ip_address("1.2.3.4"),
    1e15,
    [1, 2],
    np.int64(5),
    uuid.UUID(int=1),
    None,
]


@pytest.mark.parametrize("target", [None, "text", "varchar(40)"])
def test_values_that_are_not_strings_in_a_text_column(
    db_conn: Conn, fresh: str, target: str | None
) -> None:
    # They were written as Python's str(): True, 1E+3, "1 day, 0:00:00.000005", b'\x01',
    # +00:00, _Color.RED, 1000000000000000.0, [1, 2]; the INSERT stores the server's text
    # of each value bound in its own type.
    df = pd.DataFrame({"k": range(len(FOREIGN_IN_TEXT)), "v": pd.Series(FOREIGN_IN_TEXT)})
    if target is not None:
        db_conn.execute(f"CREATE TABLE {fresh} (k bigint, v {target})")
    to_sql(df, fresh, db_conn, if_exists="append")
    got = _texts(db_conn, fresh)
    assert got == _twin_texts(db_conn, fresh, df)
    by_k = {int(k): v for k, v in got}
    assert [by_k[1], by_k[2], by_k[3]] == ["true", "1000", "1 day 00:00:00.000005"]


def test_a_value_psycopg_cannot_bind_is_refused_by_row(db_conn: Conn, fresh: str) -> None:
    df = pd.DataFrame({"v": pd.Series(["a", {"x": 1}], dtype=object)})
    with pytest.raises(psycopg.ProgrammingError, match="cannot adapt type 'dict'") as info:
        to_sql(df, fresh, db_conn)
    assert "column 'v', row 1" in str(info.value)


def test_a_bytea_column_refuses_what_the_insert_refuses(db_conn: Conn, fresh: str) -> None:
    df = pd.DataFrame({"v": pd.Series([b"\x01", 5], dtype=object)})
    with pytest.raises(psycopg.errors.DatatypeMismatch, match="column 'v', row 1, value 5"):
        to_sql(df, fresh, db_conn)


def test_arrow_lists_with_nulls_are_json_nulls(db_conn: Conn, fresh: str) -> None:
    # The numpy array pandas gives for a list cell had NaN for a null: "invalid input
    # syntax for type json" (and 1 was 1.0).
    from psycopg.types.json import Jsonb

    values = [[1, None], [2], None, []]
    arrow = pa.list_(pa.int64())
    df = pd.DataFrame(
        {"k": range(4), "v": pd.Series(pa.array(values, type=arrow), dtype=pd.ArrowDtype(arrow))}
    )
    to_sql(df, fresh, db_conn)
    db_conn.execute(f"CREATE TABLE frames_w_twin (LIKE {fresh})")
    with db_conn.cursor() as cur:
        rows = [(k, None if v is None else Jsonb(v)) for k, v in enumerate(values)]
        cur.executemany("INSERT INTO frames_w_twin VALUES (%s, %s)", rows)
    assert _texts(db_conn, fresh) == _texts(db_conn, "frames_w_twin")
    assert _texts(db_conn, fresh)[0][1] == "[1, null]"


@pytest.mark.parametrize("csv_path", [False, True], ids=["binary", "csv"])
def test_arrow_dates_and_timestamps_before_year_1(
    db_conn: Conn, fresh: str, csv_path: bool
) -> None:
    # A Python date or datetime has no year before 1: typing the column by its first value
    # raised pyarrow's bare "OverflowError: date value out of range".
    days = pa.array([-720000, -719162, None], type=pa.date32())
    seconds = pa.array([-62200000000, 0, None], type=pa.timestamp("s"))
    df = pd.DataFrame(
        {
            "k": range(3),
            "d": pd.Series(days, dtype=pd.ArrowDtype(days.type)),
            "t": pd.Series(seconds, dtype=pd.ArrowDtype(seconds.type)),
        }
    )
    if csv_path:
        df["x"] = decimal.Decimal("1.5")
    to_sql(df, fresh, db_conn)
    assert _types(db_conn, fresh)[1:3] == ["date", "timestamp without time zone"]
    assert [r[1:3] for r in _texts(db_conn, fresh)] == [
        ("0003-09-16 BC", "0003-12-17 14:13:20 BC"),
        ("0001-01-01", "1970-01-01 00:00:00"),
        (None, None),
    ]


def test_an_arrow_interval_is_refused_by_name(db_conn: Conn, fresh: str) -> None:
    arrow = pa.month_day_nano_interval()
    values = pa.array([pa.scalar((1, 2, 3000), type=arrow)])
    df = pd.DataFrame({"span": pd.Series(values, dtype=pd.ArrowDtype(arrow))})
    with pytest.raises(TransferError, match="column 'span': Arrow's month_day_nano_interval"):
        to_sql(df, fresh, db_conn)


def test_only_numpy_scalars_take_their_dtypes_type() -> None:
    # Anything with a .dtype is not a numpy scalar: a Series or an array in a cell is text.
    assert pg_type(pd.Series([pd.Series([1, 2]), None], dtype=object)) == "text"
    assert pg_type(pd.Series([np.array([1, 2])], dtype=object)) == "text"
    assert pg_type(pd.Series([np.int8(1)], dtype=object)) == "bigint"


def test_a_zone_on_any_value_of_an_object_column_is_kept(db_conn: Conn, fresh: str) -> None:
    plus5 = dt.timezone(dt.timedelta(hours=5))
    stamps = [dt.datetime(2020, 1, 1, 12), dt.datetime(2020, 1, 1, 12, tzinfo=plus5), None]
    times = [dt.time(1, 2, 3), dt.time(1, 2, 3, tzinfo=plus5), None]
    db_conn.execute("SET TimeZone = 'America/St_Johns'")
    try:
        columns = {"s": pd.Series(stamps, dtype=object), "t": pd.Series(times, dtype=object)}
        df = pd.DataFrame({"k": range(3), **columns})
        to_sql(df, fresh, db_conn)
        assert _texts(db_conn, fresh) == _twin_texts(db_conn, fresh, df)
        assert _texts(db_conn, fresh)[1][1] == "2020-01-01 03:30:00-03:30"
    finally:
        db_conn.execute("RESET TimeZone")


def test_a_time_in_a_zone_without_a_fixed_offset_is_refused(db_conn: Conn, fresh: str) -> None:
    from zoneinfo import ZoneInfo

    paris = dt.time(1, 2, 3, tzinfo=ZoneInfo("Europe/Paris"))
    df = pd.DataFrame({"t": pd.Series([dt.time(1, 2, 3, tzinfo=dt.UTC), paris], dtype=object)})
    with pytest.raises(psycopg.DataError, match="without a date") as info:
        to_sql(df, fresh, db_conn)
    assert "column 't', row 1, value datetime.time(1, 2, 3, tzinfo=" in str(info.value)
    with pytest.raises(psycopg.DataError, match="without a date"):  # as psycopg refuses it
        db_conn.execute("SELECT %s", (paris,))
    assert db_conn.execute("SELECT to_regclass(%s)", (fresh,)).fetchone() == (None,)


def test_arrow_lists_are_json(db_conn: Conn, fresh: str) -> None:
    lists = pd.Series([[1, 2], None, []], dtype=pd.ArrowDtype(pa.list_(pa.int64())))
    to_sql(pd.DataFrame({"k": range(3), "j": lists}), fresh, db_conn)
    assert [r[1] for r in _texts(db_conn, fresh)] == ["[1, 2]", None, "[]"]


@pytest.mark.parametrize("run", ["sync", "async"])
async def test_names_past_the_identifier_length_append_as_they_were_created(
    superuser_dsn: str, db_conn: Conn, fresh: str, run: str
) -> None:
    # The server cuts an identifier to 63 bytes (at a character's edge): the table created
    # from the frame has the cut names, and the same frame appends into it, as an INSERT
    # naming the long columns would.
    df = pd.DataFrame({"x" * 70: [1], "é" * 40: ["a"], "k": [2]})
    to_sql(df, fresh, db_conn)
    names = [c.name for c in db_conn.execute(f"SELECT * FROM {fresh}").description or []]
    assert names == ["x" * 63, "é" * 31, "k"]
    await _append(run, df, fresh, db_conn, superuser_dsn)
    assert db_conn.execute(f"SELECT * FROM {fresh}").fetchall() == [(1, "a", 2)] * 2


def _dictionary(values: list[Any], arrow_type: Any) -> pd.Series:
    return pd.Series(
        pd.arrays.ArrowExtensionArray(pa.array(values, arrow_type).dictionary_encode())
    )


@pytest.mark.parametrize("csv_path", [False, True], ids=["binary", "csv"])
@pytest.mark.parametrize(
    ("column", "natural", "texts"),
    [
        (
            _dictionary([2**64 - 1, None, 1], pa.uint64()),
            "numeric",
            ["18446744073709551615", None, "1"],
        ),
        (
            _dictionary(
                [dt.datetime(2020, 1, 1), None, dt.datetime(1500, 1, 1)], pa.timestamp("us", "UTC")
            ),
            "timestamp with time zone",
            ["2020-01-01 00:00:00+00", None, "1500-01-01 00:00:00+00"],
        ),
        (_dictionary(["a", None, ""], pa.string()), "text", ["a", None, ""]),
        (
            pd.Series(pd.arrays.ArrowExtensionArray(pa.array(["a", None, ""], pa.string_view()))),
            "text",
            ["a", None, ""],
        ),
        (
            pd.Series(
                pd.arrays.ArrowExtensionArray(pa.array([b"a", None, b"\0"], pa.binary_view()))
            ),
            "bytea",
            ["\\x61", None, "\\x00"],
        ),
    ],
    ids=[
        "dictionary-uint64",
        "dictionary-timestamptz",
        "dictionary-string",
        "string-view",
        "binary-view",
    ],
)
def test_arrow_encoded_columns_are_written_as_their_values(
    db_conn: Conn, fresh: str, column: pd.Series, natural: str, texts: list[Any], csv_path: bool
) -> None:
    # A dictionary's indices, a view's layout are how Arrow holds the values, not the values:
    # a dictionary of uint64 was bigint (its values past 2**63 wrapped around), a timestamp
    # dictionary failed on the binary path, the views in pandas' own dtype checks.
    df = pd.DataFrame({"k": range(3), "c": column})
    if csv_path:
        df["d"] = decimal.Decimal("1.5")
    to_sql(df, fresh, db_conn)
    assert _types(db_conn, fresh)[1] == natural
    assert [r[1] for r in _texts(db_conn, fresh)] == texts

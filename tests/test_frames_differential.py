"""Differential tests of to_sql: what it stores equals what psycopg's INSERT stores, or both raise.

Random DataFrames (hypothesis, a fixed example budget) over pandas dtypes at their edges are
written with ``to_sql`` into a new table, or appended into an existing table of some other
PostgreSQL type, in a session with a non-UTC ``TimeZone``, a non-ISO ``DateStyle``, an
``IntervalStyle`` and a non-UTF8 ``client_encoding``. The twin table (same definition) gets
the same cells through psycopg's parameterised ``INSERT`` with its text dumpers (``%t``: the
value's full text, typed, read by the server). Missing values (``pandas.isna``) are NULL on
both sides. Rows are compared as the server's text of every value, so ``-0``, ``NaN``,
interval fields and zones count.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.types.json import Jsonb

from pgmonkey.frames import to_sql
from pgmonkey.frames._write import pg_type

Conn = psycopg.Connection[Any]

NEW = "frames_diff_new"
TWIN = "frames_diff_twin"
ROWS = st.integers(min_value=0, max_value=6)
SESSIONS = st.tuples(
    st.sampled_from(["America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "<-0230>+02:30"]),
    st.sampled_from(["WIN1252", "LATIN9", "UTF8"]),
    st.sampled_from(["ISO, MDY", "SQL, DMY", "German", "Postgres, YMD"]),
    # Not sql_standard: there psycopg's own dumper drops a pd.Timedelta's nanoseconds
    # (tests/test_frames_write.py covers Python timedeltas under it).
    st.sampled_from(["postgres", "iso_8601", "postgres_verbose"]),
)

# Text that reaches every control character, CSV's and COPY's specials, and characters some
# encodings lack (both sides must then raise).
_ALPHABET = st.one_of(
    st.characters(min_codepoint=0, max_codepoint=0x20),
    st.sampled_from(list("\x7f\"',;\\N\r\n\t é€œ漢🐒\ufeff\u2028")),
    st.characters(codec="utf-8"),
)
TEXT = st.text(_ALPHABET, max_size=8)
# Strings some other type can parse, so appends of strings into such columns succeed too.
PARSEABLE = st.sampled_from(
    [
        *("1", "-7", " 42 ", "1e3", "NaN", "t", "abc", "abcdef", "x  ", "\\x00ff"),
        *("2024-02-29", "12:30", "2024-02-29 12:00+05", "1 day", "-2 hours"),
        *("{}", "[1]", '"x"'),
    ]
)
STRINGS = st.one_of(TEXT, PARSEABLE)

_I64 = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 2**31, -(2**31) - 1, 2**63 - 1, -(2**63), 32767, -32768]),
)
_FLOAT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([-0.0, 0.1 + 0.2, 5e-324, 1.7976931348623157e308, 3.4028235e38, 1e39]),
)
_TD_NS = st.one_of(
    st.integers(min_value=pd.Timedelta.min.value, max_value=pd.Timedelta.max.value),
    st.sampled_from([pd.Timedelta.min.value, pd.Timedelta.max.value, -1, 1, -86_400 * 10**9]),
)
_ZONES = ["UTC", "Asia/Tokyo", "America/St_Johns", "Europe/Amsterdam"]
_DECIMAL = st.one_of(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=None, min_value=-(10**20), max_value=10**20
    ),
    st.sampled_from([decimal.Decimal("-0"), decimal.Decimal("1E+2"), decimal.Decimal("0.000001")]),
)
_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=5,
)


@dataclass(frozen=True)
class Kind:
    """A pandas column kind: how to build it, and types an existing column may have."""

    name: str
    build: Callable[[st.DrawFn, int], pd.Series]
    targets: tuple[str, ...]


def _maybe(draw: st.DrawFn, values: st.SearchStrategy[Any], n: int) -> list[Any]:
    return [draw(st.one_of(st.none(), values, values)) for _ in range(n)]


def _nullable_int(draw: st.DrawFn, n: int) -> pd.Series:
    return pd.Series(_maybe(draw, _I64, n), dtype="Int64")


def _int64(draw: st.DrawFn, n: int) -> pd.Series:
    return pd.Series([draw(_I64) for _ in range(n)], dtype="int64")


def _uint64(draw: st.DrawFn, n: int) -> pd.Series:
    values = [draw(st.integers(0, 2**64 - 1) | st.just(2**64 - 1)) for _ in range(n)]
    return pd.Series(values, dtype="uint64")


def _float(draw: st.DrawFn, n: int) -> pd.Series:
    return pd.Series([draw(_FLOAT) for _ in range(n)], dtype="float64")


def _float32(draw: st.DrawFn, n: int) -> pd.Series:
    """A float32 column (a NaN is missing there, as in float64)."""
    return pd.Series([draw(st.floats(width=32)) for _ in range(n)], dtype="float32")


def _arrow_uint64(draw: st.DrawFn, n: int) -> pd.Series:
    import pyarrow as pa

    values = _maybe(draw, st.integers(0, 2**64 - 1) | st.just(2**63), n)
    return pd.Series(values, dtype=pd.ArrowDtype(pa.uint64()))


def _boolean(draw: st.DrawFn, n: int) -> pd.Series:
    return pd.Series(_maybe(draw, st.booleans(), n), dtype="boolean")


def _stamps(draw: st.DrawFn, n: int, margin: int = 0) -> pd.Series:
    """A datetime64 column of any unit (pandas 3 reads text and datetimes as ``us``): every
    instant ``ns`` holds, or in the coarser units every one of the years 1 to 9999 (what
    psycopg can send), ``margin`` seconds inside either end."""
    unit = draw(st.sampled_from(["ns", "us", "ms", "s"]))
    if unit == "ns":
        lo, hi = pd.Timestamp.min.value, pd.Timestamp.max.value
    else:
        lo = int(np.datetime64("0001-01-01", unit).astype(np.int64))
        hi = int(np.datetime64("9999-12-31T23:59:59.999999").astype(f"M8[{unit}]").astype(np.int64))
    per_second = int(np.timedelta64(1, "s") / np.timedelta64(1, unit))
    lo, hi = lo + margin * per_second, hi - margin * per_second
    values = st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi, -1, 0, 500, 1500, -500]))
    raw = [np.iinfo(np.int64).min if v is None else v for v in _maybe(draw, values, n)]
    return pd.Series(np.array(raw, dtype=np.int64).view(f"M8[{unit}]"))  # int64 min: NaT


def _naive(draw: st.DrawFn, n: int) -> pd.Series:
    return _stamps(draw, n)


def _aware(draw: st.DrawFn, n: int) -> pd.Series:
    zone = draw(st.sampled_from(_ZONES))
    if zone == "UTC":
        return _stamps(draw, n).dt.tz_localize("UTC")
    # Neither pandas nor psycopg holds a local time past its limits: a day of margin.
    return _stamps(draw, n, margin=86_400).dt.tz_localize("UTC").dt.tz_convert(zone)


_OFFSETS = st.sampled_from(
    [dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(-dt.timedelta(hours=14))]
)


def _pydatetime(draw: st.DrawFn, n: int) -> pd.Series:
    """Python datetimes (object column): all naive, or all with a fixed offset."""
    zone = draw(st.none() | _OFFSETS)
    return pd.Series(_maybe(draw, st.datetimes(timezones=st.just(zone)), n), dtype=object)


def _pytime(draw: st.DrawFn, n: int) -> pd.Series:
    zone = draw(st.none() | _OFFSETS)
    return pd.Series(_maybe(draw, st.times(timezones=st.just(zone)), n), dtype=object)


def _dates(draw: st.DrawFn, n: int) -> pd.Series:
    return pd.Series(_maybe(draw, st.dates(), n), dtype=object)


def _timedelta(draw: st.DrawFn, n: int) -> pd.Series:
    values = [None if v is None else pd.Timedelta(v, "ns") for v in _maybe(draw, _TD_NS, n)]
    return pd.Series(values, dtype="timedelta64[ns]")


def _pytimedelta(draw: st.DrawFn, n: int) -> pd.Series:
    delta = st.timedeltas(min_value=dt.timedelta(days=-(10**6)), max_value=dt.timedelta(days=10**6))
    return pd.Series(_maybe(draw, delta, n), dtype=object)


def _decimal(draw: st.DrawFn, n: int) -> pd.Series:
    return pd.Series(_maybe(draw, _DECIMAL, n), dtype=object)


def _str(draw: st.DrawFn, n: int) -> pd.Series:
    return pd.Series(_maybe(draw, STRINGS, n), dtype="str")


def _object_str(draw: st.DrawFn, n: int) -> pd.Series:
    return pd.Series(_maybe(draw, STRINGS, n), dtype=object)


def _object_numpy(draw: st.DrawFn, n: int) -> pd.Series:
    """numpy scalars of one integer dtype, or floats of several, in an object column (they
    were created ``text``; a float32 among them went as its short text, another double, and
    a double among reals was rounded twice)."""
    kind = draw(st.sampled_from([np.int64, np.int16, np.uint8, np.uint64, np.bool_]))
    if kind is np.bool_:
        values: st.SearchStrategy[Any] = st.booleans().map(np.bool_)
    else:
        info = np.iinfo(kind)
        values = st.integers(int(info.min), int(info.max)).map(kind)
    if draw(st.booleans()):
        # Floats of mixed widths, Python's among them: the first value types the column.
        values = st.one_of(
            *(st.floats(width=np.finfo(k).bits).map(k) for k in (np.float16, np.float32)),
            st.floats().map(np.float64),
            st.floats(),
            st.sampled_from([1 + 2**-24, -(1 + 3 * 2**-24), 2**-149 * 1.5]),  # ties for a real
        )
    return pd.Series(_maybe(draw, values, n), dtype=object)


def _bytes(draw: st.DrawFn, n: int) -> pd.Series:
    return pd.Series(_maybe(draw, st.binary(max_size=6), n), dtype=object)


def _category(draw: st.DrawFn, n: int) -> pd.Series:
    if draw(st.booleans()):
        cats = draw(st.lists(_I64, min_size=1, max_size=3, unique=True))
    else:
        cats = draw(st.lists(TEXT, min_size=1, max_size=3, unique=True))
    values = _maybe(draw, st.sampled_from(cats), n)
    return pd.Series(pd.Categorical(values, categories=cats))


def _json(draw: st.DrawFn, n: int) -> pd.Series:
    values = [
        draw(
            st.one_of(
                st.none(), st.lists(_JSON, max_size=3), st.dictionaries(TEXT, _JSON, max_size=3)
            )
        )
        for _ in range(n)
    ]
    return pd.Series(values, dtype=object)


_INTS = (
    "integer",
    "smallint",
    "numeric",
    "numeric(10,2)",
    "real",
    "double precision",
    "text",
    "varchar(3)",
)
KINDS = [
    Kind("Int64", _nullable_int, _INTS),
    Kind("int64", _int64, _INTS),
    Kind("uint64", _uint64, ("numeric", "bigint", "double precision", "text")),
    Kind("float64", _float, ("real", "numeric", "numeric(12,3)", "bigint", "integer", "text")),
    Kind("float32", _float32, ("real", "numeric", "double precision", "text")),
    Kind("arrow-uint64", _arrow_uint64, ("numeric", "bigint", "text")),
    Kind("boolean", _boolean, ("boolean", "text", "integer", "varchar(4)")),
    Kind("naive", _naive, ("timestamptz", "date", "timestamp(0)", "timestamptz(3)", "text")),
    Kind("aware", _aware, ("timestamp", "date", "timestamptz(0)", "time", "text")),
    Kind("date", _dates, ("timestamp", "timestamptz", "text")),
    Kind("pydatetime", _pydatetime, ("timestamp", "timestamptz", "date", "time", "text")),
    Kind("pytime", _pytime, ("time", "timetz", "time(0)", "text")),
    Kind("timedelta", _timedelta, ("interval(0)", "interval day to second", "text")),
    Kind("pytimedelta", _pytimedelta, ("interval(0)", "text")),
    Kind("decimal", _decimal, ("numeric(8,2)", "double precision", "real", "integer", "text")),
    Kind("str", _str, ("varchar(5)", "char(3)", "integer", "date", "jsonb", "interval", "bytea")),
    Kind("object-str", _object_str, ("varchar(5)", "name", "numeric", "timestamptz")),
    Kind("object-numpy", _object_numpy, ("numeric", "integer", "real", "text")),
    Kind("bytes", _bytes, ("text", "varchar(20)")),
    Kind("category", _category, ("text", "integer", "varchar(2)")),
    Kind("json", _json, ("json", "text")),
]


@st.composite
def frames(draw: st.DrawFn) -> tuple[pd.DataFrame, list[Kind]]:
    n = draw(ROWS)
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=4))
    data: dict[str, pd.Series] = {"k": pd.Series(range(n), dtype="int64")}
    for i, kind in enumerate(kinds):
        data[f"c{i}"] = kind.build(draw, n)
    return pd.DataFrame(data), kinds


def _reference(value: Any, pg: str) -> Any:
    """The cell as a psycopg parameter: the value itself, NULL when pandas calls it missing."""
    if isinstance(value, (dict, list)):
        return Jsonb(value)
    if value is None or (np.ndim(value) == 0 and pd.isna(value)):
        return None
    if pg == "jsonb":  # a scalar among JSON values
        return Jsonb(value)
    if isinstance(value, np.floating) and pg == "double precision":
        # An object column of mixed widths is one of doubles (to_sql's documented choice:
        # a real's six digits would be lost to numeric or text, not kept).
        return float(value)
    if isinstance(value, np.floating):
        return value  # psycopg binds a float16 or float32 as a real, a float64 as a double
    if isinstance(value, np.generic):
        return value.item()
    if pg == "real" and isinstance(value, float):  # a float32 column's cell, as astype gives it
        return np.float32(value)
    return value


def _texts(conn: Conn, table: str) -> list[tuple[Any, ...]]:
    cols = [
        r[0]
        for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum",
            (table,),
        )
    ]
    exprs = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in cols)
    query = sql.SQL("SELECT {} FROM {} ORDER BY k").format(exprs, sql.Identifier(table))
    return conn.execute(query).fetchall()


def _insert_twin(conn: Conn, df: pd.DataFrame) -> Exception | None:
    types = [pg_type(df[c]) for c in df.columns]  # a scalar in a JSON column is JSON
    names = sql.SQL(", ").join(sql.Identifier(str(c)) for c in df.columns)
    marks = sql.SQL(", ").join(sql.Placeholder(format="t") for _ in df.columns)
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(sql.Identifier(TWIN), names, marks)
    rows = [
        tuple(_reference(v, t) for v, t in zip(row, types, strict=True))
        for row in df.astype(object).itertuples(index=False)
    ]
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(query, rows)
    except (psycopg.Error, UnicodeEncodeError) as error:
        return error
    return None


def _write(conn: Conn, df: pd.DataFrame, if_exists: str) -> Exception | None:
    try:
        to_sql(df, NEW, conn, if_exists=if_exists)
    except (psycopg.Error, UnicodeEncodeError) as error:
        return error
    return None


def _set_session(conn: Conn, session: tuple[str, str, str, str]) -> None:
    zone, encoding, style, interval_style = session
    conn.execute("SELECT set_config('TimeZone', %s, false)", (zone,))
    conn.execute("SELECT set_config('client_encoding', %s, false)", (encoding,))
    conn.execute("SELECT set_config('DateStyle', %s, false)", (style,))
    conn.execute("SELECT set_config('IntervalStyle', %s, false)", (interval_style,))


@pytest.fixture(scope="module")
def conn(superuser_dsn: str) -> Iterator[Conn]:
    # Not prepared: a twin INSERT's parameter types would outlive the twin's definition.
    c = psycopg.connect(superuser_dsn, autocommit=True, prepare_threshold=None)
    try:
        yield c
    finally:
        c.execute(f"DROP TABLE IF EXISTS {NEW}, {TWIN}")
        c.close()


def _compare(conn: Conn, ours: Exception | None, theirs: Exception | None) -> None:
    assert (ours is None) == (theirs is None), f"to_sql: {ours!r}; INSERT: {theirs!r}"
    event("stored" if ours is None else "both raise")
    if ours is None:
        conn.execute("SET client_encoding TO UTF8")  # JSON may hold what WIN1252 lacks
        assert _texts(conn, NEW) == _texts(conn, TWIN)


WRITE_EXAMPLES = 150
APPEND_EXAMPLES = 200


@settings(max_examples=WRITE_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=frames(), session=SESSIONS)
def test_to_sql_into_a_new_table_stores_what_insert_stores(
    conn: Conn, case: tuple[pd.DataFrame, list[Kind]], session: tuple[str, str, str, str]
) -> None:
    df, _ = case
    _set_session(conn, session)
    conn.execute(f"DROP TABLE IF EXISTS {NEW}, {TWIN}")
    types = [pg_type(df[c]) for c in df.columns]
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(str(c)), sql.SQL(t))
        for c, t in zip(df.columns, types, strict=True)
    )
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(TWIN), columns))
    ours = _write(conn, df, "replace")
    theirs = _insert_twin(conn, df)
    if ours is None:
        created = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum",
            (NEW,),
        ).fetchall()
        twin = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum",
            (TWIN,),
        ).fetchall()
        assert created == twin
    _compare(conn, ours, theirs)


@settings(max_examples=APPEND_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=frames(), session=SESSIONS, data=st.data())
def test_to_sql_appended_into_other_types_stores_what_insert_stores(
    conn: Conn,
    case: tuple[pd.DataFrame, list[Kind]],
    session: tuple[str, str, str, str],
    data: st.DataObject,
) -> None:
    df, kinds = case
    _set_session(conn, session)
    conn.execute(f"DROP TABLE IF EXISTS {NEW}, {TWIN}")
    types = ["bigint"] + [
        data.draw(st.sampled_from([*kind.targets, pg_type(df[f"c{i}"])]), label=f"c{i} type")
        for i, kind in enumerate(kinds)
    ]
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(str(c)), sql.SQL(t))
        for c, t in zip(df.columns, types, strict=True)
    )
    for table in (NEW, TWIN):
        conn.execute(sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(table), columns))
    ours = _write(conn, df, "append")
    theirs = _insert_twin(conn, df)
    _compare(conn, ours, theirs)

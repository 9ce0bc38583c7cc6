"""How a query's rows split into partitions: the SQL both the Dask and the local reads plan with.

A result splits by ranges of one column: ``n`` ranges of equal width between the column's
lowest and highest finite values (one scan); NULLs land in the first range and NaN (above
every number in PostgreSQL) in the last, whose ends are open, so every row is read by
exactly one partition, whatever the bounds. A table read by its name can also split by
ranges of its blocks (TID range scans), which needs no index and no scan at all.

Each partition is the query wrapped as ``SELECT * FROM (query) AS _q WHERE <range>``: the
same text the unpartitioned read sends, with a filter the server can push down.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql

from pgmonkey.errors import TransferError

from ._read import (
    _KIND_BY_OID,
    DATE,
    FLOAT,
    INT,
    NUMERIC,
    OTHER,
    TIMESTAMP,
    TIMESTAMPTZ,
    describe_statement,
    strip_query,
)

BYTES_PER_PARTITION: Final = 64 << 20  # default partition size of a block range read

# A table name: `name` or `schema.name`, each part plain or double-quoted.
_PART: Final = r'(?:[A-Za-z_][A-Za-z0-9_$]*|"(?:[^"]|"")+")'
_TABLE: Final = re.compile(rf"\s*({_PART})(?:\s*\.\s*({_PART}))?\s*;?\s*\Z")


# Kinds of column a range can split: they have an order and a width.
_RANGEABLE: Final = frozenset({INT, FLOAT, NUMERIC, DATE, TIMESTAMP, TIMESTAMPTZ})


@dataclass(frozen=True)
class Split:
    """A local read in ``partitions`` ranges of the result column ``column``."""

    column: str
    partitions: int
    consistent: bool


def check_partitions(partitions: Any) -> None:
    """``partitions`` is None or a positive integer (``True`` is not a count)."""
    if partitions is None:
        return
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise TransferError(f"partitions must be a positive integer, not {partitions!r}")


def split_of(partition_on: Any, partitions: Any, consistent: bool) -> Split | None:
    """The local read asked for, or None for an ordinary read on one connection."""
    check_partitions(partitions)
    if partition_on is None:
        if partitions not in (None, 1):
            raise TransferError(
                f"partitions={partitions!r} needs partition_on: the result column whose "
                "ranges the partitions read"
            )
        return None
    if not isinstance(partition_on, str):
        raise TransferError(f"partition_on must be a column name, not {partition_on!r}")
    if partitions is None:
        raise TransferError(
            f"partition_on={partition_on!r} needs partitions: how many ranges to read at once"
        )
    if partitions == 1:
        return None
    return Split(partition_on, partitions, bool(consistent))


def plan_split(conn: psycopg.Connection[Any], text: str, split: Split) -> list[str]:
    """The queries of ``split``'s ranges of ``text`` (a bound query), planned on ``conn``.

    One describe (``LIMIT 0``) finds the column and its type, one scan its bounds.
    """
    body = strip_query(text)
    with conn.cursor() as cur:
        cur.execute(describe_statement(body))
        columns = list(cur.description or ())
    key = key_index([c.name for c in columns], split.column)
    kind = _KIND_BY_OID.get(columns[key].type_code, OTHER)
    if kind not in _RANGEABLE:
        raise TransferError(
            f"partition_on={split.column!r} must be a numeric, date or timestamp column, "
            f"not {columns[key].type_display}"
        )
    _count, bounds, _nulls = scan(conn, body, len(columns), key, integer_key=kind == INT)
    assert bounds is not None
    return range_queries(conn, body, split.column, bounds, split.partitions)


def table_name(query: str) -> sql.Identifier | None:
    """``query`` as a table identifier, if it is a bare (possibly qualified) table name."""
    match = _TABLE.match(query)
    if match is None:
        return None
    names = [_unquote(p) for p in match.groups() if p is not None]
    return sql.Identifier(*names)


def _unquote(part: str) -> str:
    if part.startswith('"'):
        return part[1:-1].replace('""', '"')
    return part.lower()  # as PostgreSQL folds an unquoted name


def source_body(conn: psycopg.Connection[Any], query: str) -> tuple[str, sql.Identifier | None]:
    """The query to wrap (``SELECT * FROM table`` for a table name) and the table, if any."""
    table = table_name(query)
    if table is not None:
        return sql.SQL("SELECT * FROM {}").format(table).as_string(conn), table
    return strip_query(query), None


def key_index(names: Sequence[str], partition_on: str) -> int:
    """The position of the partition column in the result, which must have it once."""
    if names.count(partition_on) != 1:
        found = "several columns" if partition_on in names else "no column"
        raise TransferError(f"the result has {found} named {partition_on!r}")
    return list(names).index(partition_on)


def scan(
    conn: psycopg.Connection[Any],
    body: str,
    width: int,
    key: int | None,
    *,
    integer_key: bool = True,
    maybe_null: Sequence[int] = (),
) -> tuple[int, tuple[Any, Any] | None, list[bool]]:
    """One pass over the result: its row count, the bounds of column ``key`` and NULLs.

    The bounds are the lowest and highest values, infinities left out (a range up to
    ``infinity`` would have no width to split); ``(None, None)`` when there is none. The
    last item says, for each column position in ``maybe_null``, whether a NULL occurs.
    """
    aliases = sql.SQL(", ").join(sql.Identifier(f"c{i}") for i in range(width))
    aggs: list[sql.Composable] = [sql.SQL("count(*)")]
    if key is not None:
        col = sql.Identifier(f"c{key}")
        finite = (
            sql.SQL("")
            if integer_key
            else sql.SQL(" FILTER (WHERE {c} > '-infinity' AND {c} < 'infinity')").format(c=col)
        )
        aggs += [sql.SQL("min({})").format(col) + finite, sql.SQL("max({})").format(col) + finite]
    aggs += [sql.SQL("bool_or({} IS NULL)").format(sql.Identifier(f"c{i}")) for i in maybe_null]
    statement = sql.SQL("SELECT {} FROM (\n{}\n) AS _q({})").format(
        sql.SQL(", ").join(aggs), sql.SQL(body), aliases
    )
    row = conn.execute(statement).fetchone()
    assert row is not None
    bounds = (row[1], row[2]) if key is not None else None
    nulls = row[3:] if key is not None else row[1:]
    return row[0], bounds, [bool(n) for n in nulls]


def range_queries(
    conn: psycopg.Connection[Any], body: str, column: str, bounds: tuple[Any, Any], n: int
) -> list[str]:
    """``body`` split in ``n`` ranges of ``column`` between ``bounds`` (fewer if they are close)."""
    low, high = bounds
    ref = sql.SQL("_q.{}").format(sql.Identifier(column))
    edges = [] if low is None or high is None or n == 1 else inner_edges(low, high, n)
    if not edges:
        return [body]
    preds: list[sql.Composable] = [
        sql.SQL("{c} < {e} OR {c} IS NULL").format(c=ref, e=sql.Literal(edges[0]))
    ]
    for a, b in itertools.pairwise(edges):
        preds.append(
            sql.SQL("{c} >= {a} AND {c} < {b}").format(c=ref, a=sql.Literal(a), b=sql.Literal(b))
        )
    # NaN sorts above every number in PostgreSQL: it lands here, with the top range.
    preds.append(sql.SQL("{c} >= {e}").format(c=ref, e=sql.Literal(edges[-1])))
    return [
        sql.SQL("SELECT * FROM (\n{}\n) AS _q WHERE {}").format(sql.SQL(body), pred).as_string(conn)
        for pred in preds
    ]


def inner_edges(low: Any, high: Any, n: int) -> list[Any]:
    """The n-1 boundaries between n equal ranges of [low, high], without repeats."""
    if isinstance(low, dt.datetime) and low.tzinfo is not None:
        # In UTC: Python compares, subtracts and adds datetimes of one zone by their wall
        # clock, so across a change to summer time an edge could fall in the skipped hour,
        # before the previous edge, and the ranges between them overlap.
        low, high = low.astimezone(dt.UTC), high.astimezone(dt.UTC)
    if high <= low:
        return []
    edges: list[Any] = []
    for k in range(1, n):
        if isinstance(low, int):
            edge: Any = low + (high - low) * k // n
        elif isinstance(low, decimal.Decimal):
            edge = low + (high - low) * k / decimal.Decimal(n)
        else:  # float, date, datetime (a timedelta step; a date keeps whole days)
            edge = low + (high - low) * k / n
        if edge > low and (not edges or edge > edges[-1]):
            edges.append(edge)
    return edges


def block_queries(
    conn: psycopg.Connection[Any],
    table: sql.Identifier,
    partitions: int | None,
    select: sql.Composable | None = None,
) -> list[str]:
    """``table`` split in ranges of its blocks: ``partitions``, or one per 64 MiB.

    Each range is ``select`` (by default ``SELECT * FROM table``) with a ``ctid`` filter.
    """
    row = conn.execute(
        "SELECT pg_catalog.pg_relation_size(%s::regclass), current_setting('block_size')::int8",
        (table.as_string(conn),),
    ).fetchone()
    assert row is not None
    size, block = row
    n = partitions or max(1, math.ceil(size / BYTES_PER_PARTITION))
    pages = size // block
    edges = sorted({pages * k // n for k in range(1, n)} - {0})
    if select is None:
        select = sql.SQL("SELECT * FROM {}").format(table)
    if not edges:
        return [select.as_string(conn)]

    def tid(page: int) -> sql.Composable:
        return sql.SQL("{}::tid").format(sql.Literal(f"({page},0)"))

    # The last range is open: blocks added after planning are read too.
    preds = [sql.SQL("ctid < {}").format(tid(edges[0]))]
    preds += [
        sql.SQL("ctid >= {} AND ctid < {}").format(tid(a), tid(b))
        for a, b in itertools.pairwise(edges)
    ]
    preds.append(sql.SQL("ctid >= {}").format(tid(edges[-1])))
    return [sql.SQL("{} WHERE {}").format(select, p).as_string(conn) for p in preds]


def not_null_columns(conn: psycopg.Connection[Any], table: sql.Identifier) -> set[str]:
    """The names of ``table``'s columns declared ``NOT NULL``."""
    rows = conn.execute(
        "SELECT attname FROM pg_catalog.pg_attribute"
        " WHERE attrelid = %s::regclass AND attnum > 0 AND attnotnull AND NOT attisdropped",
        (table.as_string(conn),),
    ).fetchall()
    return {r[0] for r in rows}

"""Query -> DataFrame: the plan (written once) shared by the sync and async readers.

The fast path streams ``COPY (query) TO STDOUT (FORMAT csv)`` straight into pandas' C CSV
reader, with a dtype per column chosen from the result description (type OIDs). The query
is wrapped so the server helps where it is cheap for it and costly for us:

- ``timestamptz`` leaves the server as UTC wall time (``AT TIME ZONE 'UTC'``), so pandas
  parses plain ISO strings whatever the session ``TimeZone`` is;
- CSV cannot tell ``''`` from NULL once pandas has stripped the quotes, so one extra
  ``int8`` column carries a NULL bitmask for every column read as strings (it leads the
  row, so a U+FEFF starting the first string is data, not taken for a BOM).

Types pandas cannot parse (json, arrays, bytea, uuid, interval, time, ...) travel as their
text representation and are loaded by psycopg's own loaders: correct, if slower.
Nothing here keeps a reference to the data once the DataFrame is returned.
"""

from __future__ import annotations

import asyncio
import io
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from psycopg import sql
from psycopg.abc import Loader
from psycopg.pq import Format
from psycopg.types.string import TextLoader

from pgmonkey import _psycopg

if TYPE_CHECKING:
    import pandas as pd
    from psycopg import BaseConnection, Connection

# Kinds of result columns, by type OID (pg_type.oid values are fixed for built-in types).
INT: Final = "int"
FLOAT: Final = "float"
NUMERIC: Final = "numeric"
BOOL: Final = "bool"
TEXT: Final = "text"
TIMESTAMPTZ: Final = "timestamptz"
TIMESTAMP: Final = "timestamp"
DATE: Final = "date"
OTHER: Final = "other"

_KIND_BY_OID: Final[dict[int, str]] = {
    20: INT,  # int8
    21: INT,  # int2
    23: INT,  # int4
    26: INT,  # oid
    700: FLOAT,  # float4
    701: FLOAT,  # float8
    1700: NUMERIC,
    16: BOOL,
    25: TEXT,  # text
    1043: TEXT,  # varchar
    1042: TEXT,  # bpchar
    19: TEXT,  # name
    18: TEXT,  # "char"
    1184: TIMESTAMPTZ,
    1114: TIMESTAMP,
    1082: DATE,
}
_DATETIME_KINDS: Final = frozenset({TIMESTAMPTZ, TIMESTAMP, DATE})
# Columns read by pandas as strings: their NULLs come from the bitmask column.
_STRING_KINDS: Final = frozenset({TEXT, OTHER})
_MASK_BITS: Final = 62  # bits per mask column (int8, kept positive)
_MAX_COLUMNS: Final = 1664  # PostgreSQL's limit on a SELECT's columns


def masks_fit(columns: int, masked: int) -> bool:
    """Whether a COPY of ``columns`` with the masks of ``masked`` of them stays in
    PostgreSQL's limit on a SELECT's columns."""
    return columns + -(-masked // _MASK_BITS) <= _MAX_COLUMNS


_UNIT: Final = {TIMESTAMPTZ: "us", TIMESTAMP: "us", DATE: "s"}


def copy_select(query: str, exprs: list[sql.Composable], columns: int, fmt: str) -> sql.Composed:
    """``COPY (SELECT exprs FROM (query) AS _q(c0, ...)) TO STDOUT (FORMAT fmt)``: the
    expressions name the query's columns ``_q.c0``, ``_q.c1``, ... (``fmt``: csv or binary)."""
    aliases = ", ".join(f"c{i}" for i in range(columns))
    return sql.Composed(
        [
            sql.SQL("COPY (SELECT "),
            sql.SQL(", ").join(exprs),
            sql.SQL(" FROM (\n"),
            sql.SQL(query),  # already bound by psycopg
            sql.SQL(f"\n) AS _q({aliases})) TO STDOUT (FORMAT {fmt})"),
        ]
    )


@dataclass(frozen=True)
class Column:
    """One result column: its name, type OID and how it is read."""

    name: str
    oid: int
    kind: str


@dataclass
class Plan:
    """How to fetch and type one query's result; built from its description."""

    columns: list[Column]
    encoding: str
    loaders: dict[int, Loader] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        description: Sequence[tuple[str, int]],
        conn: BaseConnection[Any],
        *,
        decimal: bool,
    ) -> Plan:
        # Dates are parsed as ISO strings: any other DateStyle goes through psycopg's loaders.
        iso = (conn.info.parameter_status("DateStyle") or "ISO").startswith("ISO")
        columns = []
        loaders: dict[int, Loader] = {}
        for name, oid in description:
            kind = _KIND_BY_OID.get(oid, OTHER)
            if (kind == NUMERIC and decimal) or (kind in _DATETIME_KINDS and not iso):
                kind = OTHER
            if kind == OTHER and oid not in loaders:
                # No loader (an unknown type): psycopg's own default is the text as str.
                cls_ = conn.adapters.get_loader(oid, Format.TEXT) or TextLoader
                loaders[oid] = cls_(oid, conn)
            columns.append(Column(name, oid, kind))
        return cls(columns, conn.info.encoding, loaders)

    @property
    def string_columns(self) -> list[int]:
        return [i for i, c in enumerate(self.columns) if c.kind in _STRING_KINDS]

    def copy_statement(self, query: str) -> sql.Composed:
        """``COPY (SELECT ... FROM (query) AS _q(c0, ...)) TO STDOUT (FORMAT csv)``."""
        exprs: list[sql.Composable] = []
        for i, col in enumerate(self.columns):
            ref: sql.Composable = sql.SQL(f"_q.c{i}")
            if col.kind == TIMESTAMPTZ:
                ref = sql.SQL("({} AT TIME ZONE 'UTC')").format(ref)
            exprs.append(ref)
        strings = self.string_columns
        masks: list[sql.Composable] = []
        for start in range(0, len(strings), _MASK_BITS):
            # num_nulls(), not IS NULL: ROW(NULL, NULL) IS NULL, yet the row is a value.
            bits = [
                sql.SQL(f"(pg_catalog.num_nulls(_q.c{i})::int8 << {b})")
                for b, i in enumerate(strings[start : start + _MASK_BITS])
            ]
            masks.append(sql.SQL(" | ").join(bits))
        # Masks first: pandas drops a U+FEFF at the very start of the data as a BOM, and a
        # string in the first field could begin with one; a number cannot.
        return copy_select(query, masks + exprs, len(self.columns), "csv")

    def parse(self, source: Any) -> pd.DataFrame:
        """Read the COPY's CSV stream (a file-like object) into a typed DataFrame."""
        import pandas as pd

        names = [f"c{i}" for i in range(len(self.columns))]
        n_masks = -(-len(self.string_columns) // _MASK_BITS)
        mask_names = [f"m{j}" for j in range(n_masks)]
        dtype: dict[str, Any] = dict.fromkeys(mask_names, "int64")
        na_values: dict[str, list[str]] = {}
        dates: list[str] = []
        for name, col in zip(names, self.columns, strict=True):
            if col.kind == INT:
                dtype[name] = "Int64"
                na_values[name] = [""]
            elif col.kind in (FLOAT, NUMERIC):
                dtype[name] = "float64"
                na_values[name] = ["", "NaN"]
            elif col.kind == BOOL:
                dtype[name] = "boolean"
                na_values[name] = [""]
            elif col.kind in _DATETIME_KINDS:
                dates.append(name)
                na_values[name] = [""]
            else:  # strings: no NA value at all, so '' stays ''; NULLs come from the mask
                dtype[name] = str if col.kind == TEXT else object
        frame = pd.read_csv(
            source,
            header=None,
            names=mask_names + names,
            dtype=dtype,
            keep_default_na=False,
            na_values=na_values,
            true_values=["t"],
            false_values=["f"],
            parse_dates=dates,
            date_format="ISO8601",
            encoding=self.encoding,
            engine="c",
            skip_blank_lines=False,  # a one-column row holding NULL is an empty line
        )
        masks = [frame.pop(m).to_numpy() for m in mask_names]
        out: dict[str, Any] = {}
        for i, (name, col) in enumerate(zip(names, self.columns, strict=True)):
            series = frame.pop(name)
            if col.kind in _STRING_KINDS:
                pos = self.string_columns.index(i)
                isnull = (masks[pos // _MASK_BITS] >> (pos % _MASK_BITS)) & 1 == 1
                series = self._strings(series, col, isnull)
            out[name] = self._finish(series, col)
        del frame
        return self._frame(out)

    def from_rows(self, rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
        """The slow path: rows already fetched (and loaded) by psycopg."""
        import pandas as pd

        out: dict[str, Any] = {}
        for i, col in enumerate(self.columns):
            values = [row[i] for row in rows]
            name = f"c{i}"
            if col.kind == INT:
                series = pd.Series(values, dtype="Int64")
            elif col.kind in (FLOAT, NUMERIC):
                series = pd.Series(
                    [None if v is None else float(v) for v in values], dtype="float64"
                )
            elif col.kind == BOOL:
                series = pd.Series(values, dtype="boolean")
            elif col.kind == TIMESTAMPTZ:
                series = pd.Series(pd.to_datetime(values, utc=True))
            elif col.kind in (TIMESTAMP, DATE):
                series = pd.Series(pd.to_datetime(values))
            elif col.kind == TEXT:
                series = pd.Series(values, dtype=str).mask(pd.Series([v is None for v in values]))
            else:
                series = pd.Series(values, dtype=object)
            out[name] = self._finish(series, col)
        return self._frame(out, len(rows))

    def _strings(self, series: pd.Series, col: Column, isnull: Any) -> pd.Series:
        import pandas as pd

        if col.kind == TEXT:
            return series.mask(isnull) if isnull.any() else series
        load = self.loaders[col.oid].load
        encoding = self.encoding
        values = [
            None if null else load(value.encode(encoding))
            for value, null in zip(series.tolist(), isnull.tolist(), strict=True)
        ]
        return pd.Series(values, dtype=object)

    @staticmethod
    def _finish(series: pd.Series, col: Column) -> pd.Series:
        """Narrow nullable dtypes when no NULL occurred; datetimes to their unit and zone."""
        import pandas as pd

        if col.kind in (INT, BOOL):
            if not series.hasnans:
                return series.astype("int64" if col.kind == INT else "bool")
            return series
        if col.kind in _DATETIME_KINDS:
            if not pd.api.types.is_datetime64_any_dtype(series.dtype):
                # No rows, or values pandas' ISO parser rejects (BC, infinity): psycopg decides.
                series = _reload_datetimes(series, col)
            unit = _UNIT[col.kind]
            if col.kind == TIMESTAMPTZ:
                if series.dt.tz is None:
                    series = series.dt.tz_localize("UTC")
                return series.astype(f"datetime64[{unit}, UTC]")
            return series.astype(f"datetime64[{unit}]")
        return series

    def _frame(self, out: dict[str, Any], rows: int = 0) -> pd.DataFrame:
        import pandas as pd

        frame = pd.concat(out, axis=1) if out else pd.DataFrame(index=pd.RangeIndex(rows))
        frame.columns = pd.Index([c.name for c in self.columns])
        return frame


def _reload_datetimes(series: pd.Series, col: Column) -> pd.Series:
    import pandas as pd
    from psycopg.types.datetime import DateLoader, TimestampLoader

    loader: Loader = (DateLoader if col.kind == DATE else TimestampLoader)(col.oid)
    values = [None if pd.isna(v) else loader.load(str(v).encode()) for v in series.tolist()]
    if col.kind == TIMESTAMPTZ:
        return pd.Series(pd.to_datetime(values, utc=True))
    return pd.Series(pd.to_datetime(values))


def describe_statement(query: str) -> sql.Composed:
    """A statement that plans ``query`` and returns its columns, without running it."""
    return sql.Composed(
        [sql.SQL("SELECT * FROM (\n"), sql.SQL(query), sql.SQL("\n) AS _q LIMIT 0")]
    )


def describe_and_settings(query: str) -> sql.Composed:
    """:func:`describe_statement` that also returns one row: the session's
    ``extra_float_digits`` first (the binary engines need it to read float8 as the text
    engines do), then ``query``'s columns, all NULL. One round trip instead of two: ``query``
    is still planned, not run (``LIMIT 0`` fetches nothing)."""
    return sql.Composed(
        [
            sql.SQL(
                "SELECT _s.efd, _q.* FROM"
                " (SELECT pg_catalog.current_setting('extra_float_digits') AS efd) AS _s"
                " LEFT JOIN (SELECT * FROM (\n"
            ),
            sql.SQL(query),
            sql.SQL("\n) AS _q0 LIMIT 0) AS _q ON true"),
        ]
    )


def strip_query(query: str) -> str:
    """Drop trailing blanks and semicolons, so the query can sit inside parentheses."""
    return query.rstrip().rstrip(";").rstrip()


def copy_chunks(conn: Connection[Any], size: int = 1 << 18, least: int = 1) -> Iterator[bytes]:
    """Blocks of a running ``COPY ... TO STDOUT`` on ``conn`` (see :func:`copy_block`):
    at most ``size`` bytes, and at least ``least`` (but the last) even if that means
    waiting for the network."""
    encoding = conn.info.encoding
    while True:
        block, end = _psycopg.wait(conn, _psycopg.copy_block(conn.pgconn, size, encoding, least))
        if block:
            yield block
        if end:
            return


class CopyReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (a COPY's rows), for the parsers.

    :meth:`read` hands a chunk over as it is when it fits, and joins (one copy) otherwise:
    a parser on another thread spends as little time as possible holding the GIL the
    receiving thread needs.
    """

    def __init__(self, chunks: Iterator[Any]) -> None:
        super().__init__()
        self._chunks = chunks
        self._head = b""  # the chunk being read, from ``_pos`` on
        self._pos = 0
        self._eof = False
        # What stopped the source (Ctrl-C, a lost connection): pandas' parser reports it
        # as its own ParserError, and the caller re-raises this instead.
        self.failure: BaseException | None = None

    def readable(self) -> bool:
        return True

    def _next(self) -> bytes | None:
        if self._eof:
            return None
        try:
            chunk: bytes = next(self._chunks)
        except StopIteration:
            self._eof = True
            return None
        except BaseException as exc:
            self.failure = exc
            raise
        return chunk

    def blocks(self) -> Iterator[bytes]:
        """The rest of the stream in the source's own chunks, not copied into a buffer."""
        if self._pos < len(self._head):
            yield self._head[self._pos :]
        self._head, self._pos = b"", 0
        while (chunk := self._next()) is not None:
            yield chunk

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(list(self.blocks()))
        parts: list[bytes] = []
        got = 0
        while got < size:
            if self._pos >= len(self._head):
                chunk = self._next()
                if chunk is None:
                    break
                self._head, self._pos = chunk, 0
            take = min(size - got, len(self._head) - self._pos)
            if take == len(self._head):
                parts.append(self._head)
            else:
                parts.append(self._head[self._pos : self._pos + take])
            self._pos += take
            got += take
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        n = len(data)
        b[:n] = data
        return n


_END: Final = object()


class QueueChunks:
    """Chunks handed over by another thread (the receiving one, or the async reader's loop).

    At most ``limit`` bytes wait at a time (or one chunk, however large): a receiver faster
    than the parser waits in :meth:`put` (:meth:`put_async` awaits, in its event loop)
    instead of holding the whole result in memory, and the server waits for it. The parser's
    side calls :meth:`abandon` when it stops (done or failed): a waiting receiver returns,
    and ``put`` returns False from then on, so the receiver can stop reading a result
    nobody parses.
    """

    def __init__(self, limit: int = 16 << 20) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._limit = limit
        self._waiting = 0  # bytes put and not yet taken
        self._room = threading.Condition()
        self._abandoned = False
        # Event loops awaiting room in put_async, woken from the parser's thread.
        self._loop_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def _fits(self, size: int) -> bool:
        return self._abandoned or not self._waiting or self._waiting + size <= self._limit

    def _add(self, chunk: bytes) -> bool:
        """Queue ``chunk`` (the caller holds ``_room`` and has made sure it fits)."""
        if self._abandoned:
            return False
        self._waiting += len(chunk)
        self._queue.put(chunk)
        return True

    def put(self, chunk: bytes) -> bool:
        """Queue ``chunk`` once there is room; False if the parser has stopped."""
        with self._room:
            self._room.wait_for(lambda: self._fits(len(chunk)))
            return self._add(chunk)

    async def put_async(self, chunk: bytes) -> bool:
        """:meth:`put` for an event loop: waits for room in the loop, never in a thread."""
        while True:
            with self._room:
                if self._fits(len(chunk)):
                    return self._add(chunk)
                room = asyncio.Event()
                self._loop_waiters.append((asyncio.get_running_loop(), room))
            await room.wait()

    def _wake(self) -> None:
        """Wake the receivers waiting for room (the caller holds ``_room``)."""
        self._room.notify_all()
        waiters, self._loop_waiters = self._loop_waiters, []
        for loop, room in waiters:
            with suppress(RuntimeError):  # a loop already closed has nothing to wake
                loop.call_soon_threadsafe(room.set)

    def close(self, error: BaseException | None = None) -> None:
        self._queue.put(_END if error is None else error)

    def abandon(self) -> None:
        """Nothing more is read: let a waiting :meth:`put` return, and later ones not wait."""
        with self._room:
            self._abandoned = True
            self._wake()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            with self._room:
                self._waiting -= len(item)
                self._wake()
            yield item


def no_rows_error(query: str) -> Exception:
    from pgmonkey.errors import TransferError

    head = " ".join(query.split())[:60]
    return TransferError(f"statement returns no rows, read_sql needs a query: {head!r}")

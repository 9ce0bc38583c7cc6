"""DataFrame -> table: the plan (written once) shared by the sync and async writers.

What ``to_sql`` stores is what PostgreSQL itself would store for the same values bound as
parameters of an ``INSERT``: a column of the frame is a value of its natural type (the
reverse of the reader's mapping: ``int64`` is ``bigint``, ``float64`` is ``double
precision``, a ``str`` is text the server parses, ...), and the server converts it to the
column's type with its own rules, in the session's ``TimeZone``, ``DateStyle`` and
``client_encoding``.

- A new table gets the natural types, and the frame travels by binary COPY when every
  column has an encoder (``_binary``), else as CSV.
- Appending, the table's column types are read first. Where each column's type is its
  natural type (or the column holds strings, which the server parses with the column's own
  input function, as it does an untyped parameter), the COPY fills the table directly.
  Otherwise the frame is copied into a temporary table of natural types and moved with
  ``INSERT ... SELECT``, so the server applies the same assignment casts as for an
  ``INSERT`` (``bigint`` into ``integer`` checks the range, ``float8`` into ``numeric(12,3)``
  rounds, a naive timestamp into ``timestamptz`` is read in the session's ``TimeZone``).

An ``object`` column is typed by its first value (a numpy scalar by its dtype), with one
exception: float32 or float16 scalars among doubles make a ``double precision`` column, as
a ``real`` one would round the doubles. Such a column is one of doubles, the narrow values
widened exactly; appended into ``numeric`` or text, a narrow value keeps all its digits,
where an ``INSERT`` binding it as a ``real`` would keep the six the server's ``real`` casts
write.

Missing values (``pandas.isna``: ``None``, ``NaN``, ``NaT``, ``NA``) are NULL. A value the
server rejects fails the whole write (one transaction: nothing is stored) with an error of
psycopg's own class whose message names the column, the row (position in the frame) and the
value, redacted when the column's name looks sensitive.

On the CSV path NULL is a random token that no real value can match, so ``''`` and NULL stay
apart; rows end in ``\\r\\n``, so a field holding a bare ``\\r`` or ``\\n`` is quoted.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import uuid
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg import sql

from pgmonkey.config import REDACTED, is_sensitive_key
from pgmonkey.errors import TransferError
from pgmonkey.transfer._sql import parse_table

from ._sqltext import bc_years

if TYPE_CHECKING:
    import pandas as pd

IF_EXISTS: Final = ("fail", "append", "replace")
CHUNK_ROWS: Final = 100_000

# Python type of the first non-null value of an object column -> PostgreSQL type.
# Order matters: bool before int (bool is an int), datetime before date.
_OBJECT_TYPES: Final[tuple[tuple[type, str], ...]] = (
    (str, "text"),
    (bool, "boolean"),
    (int, "bigint"),
    (float, "double precision"),
    (decimal.Decimal, "numeric"),
    (dt.datetime, "timestamp"),  # tz-aware values: timestamptz, see _object_type
    (dt.date, "date"),
    (dt.time, "time"),  # with a zone: timetz
    (dt.timedelta, "interval"),
    (uuid.UUID, "uuid"),
    (bytes, "bytea"),
    (bytearray, "bytea"),
    (memoryview, "bytea"),
    (dict, "jsonb"),
    (list, "jsonb"),
)

# Type OIDs of the natural types (fixed for built-in types).
NATURAL_OIDS: Final[dict[str, int]] = {
    "bigint": 20,
    "real": 700,
    "double precision": 701,
    "boolean": 16,
    "timestamp": 1114,
    "timestamptz": 1184,
    "text": 25,
    "numeric": 1700,
    "date": 1082,
    "time": 1083,
    "timetz": 1266,
    "interval": 1186,
    "uuid": 2950,
    "bytea": 17,
    "jsonb": 3802,
}

# How a column reaches the table.
DIRECT: Final = "direct"  # the table's type is the natural one: COPY straight in
PARSE: Final = "parse"  # strings: parsed by the column type's input function
CAST: Final = "cast"  # another type: staged, then cast as an INSERT would

# varchar and char: a string's assignment cast to them checks the length exactly as their
# input function does, so strings bound for them may travel as text, binary.
_VARCHAR: Final = 1043
_LENGTH_LIMITED: Final = frozenset({_VARCHAR, 1042})
# Names of the row-number column of the staging table.
_ROW: Final = "_pgmonkey_row"
# Parts of column names whose values are never shown in messages.
# Bytes of a value as the server shows them ("invalid byte sequence ...: 0xe9 0x74").
_BYTES: Final = re.compile(r"0x[0-9a-fA-F]{2}(?: 0x[0-9a-fA-F]{2})*")
_SECRET_PARTS: Final = ("pass", "pwd", "ssn", "apikey", "api_key", "private")


class Rejected(Exception):
    """A value the server would refuse, found before sending it (column and row positions)."""

    def __init__(
        self, kind: type[psycopg.Error], message: str, column: int | None, row: int
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.column = column
        self.row = row

    @classmethod
    def nul(cls, column: int, row: int) -> Rejected:
        return cls(
            psycopg.errors.CharacterNotInRepertoire,
            "text cannot contain the NUL character",
            column,
            row,
        )

    @classmethod
    def unencodable(cls, column: int, row: int, encoding: str) -> Rejected:
        return cls(
            psycopg.errors.UntranslatableCharacter,
            f"character not representable in the connection's encoding {encoding!r}",
            column,
            row,
        )


@dataclass(frozen=True)
class Target:
    """One column of an existing table: its type OID, modifier and SQL spelling."""

    oid: int
    typmod: int
    spelling: str


@dataclass(frozen=True)
class WritePlan:
    """Target table and the frame's column types (natural types)."""

    table: sql.Identifier
    name: str  # as given (not SQL-quoted), for messages
    columns: list[tuple[str, str]]  # (name, natural PostgreSQL type)
    if_exists: str
    null: str

    @classmethod
    def build(cls, df: pd.DataFrame, table: str, schema: str | None, if_exists: str) -> WritePlan:
        if if_exists not in IF_EXISTS:
            raise TransferError(
                f"if_exists must be one of {', '.join(IF_EXISTS)}, not {if_exists!r}"
            )
        if not table:
            raise TransferError("table name is empty")
        if schema is None:
            # 'schema.table' read as import and export read it: quotes keep a dot in a name
            # ('s."x.y"'), and 'a.b.c' is refused rather than half-read.
            parsed = parse_table(table)
            schema, table = parsed.schema, parsed.name
        ident = sql.Identifier(schema, table) if schema else sql.Identifier(table)
        names = [str(c) for c in df.columns]
        if not names:
            raise TransferError(f"the DataFrame has no columns to write into {table!r}")
        if len(set(names)) != len(names):
            raise TransferError(f"duplicate column names: {names!r}")
        columns = [(str(name), pg_type(df[name])) for name in df.columns]
        name = f"{schema}.{table}" if schema else table
        # pandas cuts na_rep to 32 characters in float columns: the token stays shorter.
        return cls(ident, name, columns, if_exists, f"\\N{uuid.uuid4().hex[:24]}")

    @property
    def sensitive(self) -> bool:
        """Whether a column's name looks sensitive (its values are never shown)."""
        return any(_secret(name) for name, _ in self.columns)

    def without_values(self, error: psycopg.Error) -> psycopg.Error:
        """``error``, leaving the write of a frame with a sensitive column, with no value in it.

        The server shows values in its details ("Key (password)=(...)", "Failing row
        contains (...)") and in some messages; a constraint checked after the COPY (a
        foreign key, a deferred one at commit) is not told by row and column, so its error
        would come through as the server wrote it. Only the server's first line is kept,
        without the quoted value, and nothing is chained: a chained error is printed too.
        Errors told by row and column (already without the value) are kept as they are.
        """
        if error.pgresult is None:  # ours, or the client's own: no value of the frame
            error.__cause__ = error.__context__ = None
            return error
        message = error.diag.message_primary or type(error).__name__
        safe = type(error)(_BYTES.sub(REDACTED, message.split(': "', 1)[0]))
        return safe

    def exists_query(self) -> sql.Composed:
        return sql.SQL("SELECT pg_catalog.to_regclass({})").format(
            sql.Literal(self.table.as_string())
        )

    def columns_query(self) -> sql.Composed:
        """The existing table's columns the frame's columns name: the frame's name, type OID,
        modifier, type as SQL.

        A name is matched as the server reads it in ``INSERT``, ``COPY`` and ``CREATE
        TABLE``: cut to its identifier length (63 bytes), which ``::name`` does.
        """
        names = [name for name, _ in self.columns]
        return sql.SQL(
            "SELECT f.name, a.atttypid::int8, a.atttypmod,"
            " pg_catalog.format_type(a.atttypid, a.atttypmod)"
            " FROM pg_catalog.unnest({}::text[]) AS f(name)"
            " JOIN pg_catalog.pg_attribute AS a ON a.attname = f.name::name"
            " WHERE a.attrelid = pg_catalog.to_regclass({}) AND a.attnum > 0"
            " AND NOT a.attisdropped"
        ).format(sql.Literal(names), sql.Literal(self.table.as_string()))

    def ddl(self, exists: bool) -> list[sql.Composed]:
        """Statements to run before the COPY, given whether the table exists."""
        create = _create(self.table, self.columns)
        if self.if_exists == "replace":
            return [sql.SQL("DROP TABLE IF EXISTS {}").format(self.table), create]
        if exists:
            if self.if_exists == "fail":
                raise TransferError(f"table {self.name!r} already exists (if_exists='fail')")
            return []
        return [create]

    def load(
        self,
        df: pd.DataFrame,
        exists: bool,
        existing: Sequence[Sequence[Any]],
        encoding: str,
    ) -> Load:
        """How ``df`` reaches the table, once its existence and column types are known."""
        statements = self.ddl(exists)
        targets: dict[str, Target] = {}
        if exists and self.if_exists == "append":
            targets = {str(r[0]): Target(int(r[1]), int(r[2]), str(r[3])) for r in existing}
            for name, _ in self.columns:
                if name not in targets:
                    raise psycopg.errors.UndefinedColumn(
                        f"column {name!r} of table {self.name!r} does not exist"
                    )
        routes = [_route(natural, targets.get(name)) for name, natural in self.columns]
        for i, route in enumerate(routes):
            if route == CAST and df.iloc[:, i].isna().all():
                routes[i] = PARSE  # only NULLs: untyped, as NULL parameters are
        return Load(self, _decategorized(df), routes, targets, encoding, statements)


@dataclass
class Load:
    """One write: the statements, the COPY and its data, and how errors are reported."""

    plan: WritePlan
    df: pd.DataFrame
    routes: list[str]
    targets: dict[str, Target]
    encoding: str
    before: list[sql.Composed]
    staging: sql.Identifier | None = None
    copy_types: list[str] = field(default_factory=list)  # types of the COPY's columns
    row_column: str = _ROW

    def __post_init__(self) -> None:
        names = {n for n, _ in self.plan.columns}
        while self.row_column in names:
            self.row_column += "_"
        self.copy_types = [
            self.targets[n].spelling if route == PARSE else natural
            for (n, natural), route in zip(self.plan.columns, self.routes, strict=True)
        ]
        if CAST in self.routes and len(self.df):
            # Staged in natural types (strings in the column's own type), then cast; with
            # no rows there is nothing to cast (an INSERT of no rows checks no types).
            self.staging = sql.Identifier("pg_temp", f"_pgmonkey_{uuid.uuid4().hex}")
            staged = [(n, t) for (n, _), t in zip(self.plan.columns, self.copy_types, strict=True)]
            self.before.append(
                _create(self.staging, [*staged, (self.row_column, "bigint")], temporary=True)
            )

    @property
    def binary(self) -> bool:
        """Binary COPY when every column's wire type is exactly its destination's."""
        from ._binary import BINARY_TYPES

        if PARSE in self.routes:
            return False
        return all(
            pg in BINARY_TYPES and (pg == "text" or str(dtype) != "object")
            for (_, pg), dtype in zip(self.plan.columns, self.df.dtypes, strict=True)
        )

    def _names(self) -> list[str]:
        names = [n for n, _ in self.plan.columns]
        return [*names, self.row_column] if self.staging is not None else names

    def copy_statement(self) -> sql.Composed:
        table = self.staging if self.staging is not None else self.plan.table
        names = sql.SQL(", ").join(sql.Identifier(n) for n in self._names())
        if self.binary:
            return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(table, names)
        return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, NULL {})").format(
            table, names, sql.Literal(self.plan.null)
        )

    @property
    def insert(self) -> sql.Composed | None:
        """The ``INSERT ... SELECT`` from the staging table, when there is one."""
        if self.staging is None:
            return None
        names = sql.SQL(", ").join(sql.Identifier(n) for n, _ in self.plan.columns)
        # No ORDER BY: a temporary table is never scanned in parallel nor from a
        # synchronised start, so its rows come back in the order they were copied.
        return sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
            self.plan.table, names, names, self.staging
        )

    @property
    def after(self) -> list[sql.Composed]:
        if self.staging is None:
            return []
        return [sql.SQL("DROP TABLE {}").format(self.staging)]

    def chunks(self) -> Iterator[bytes]:
        """The frame as COPY data (binary or CSV), ``CHUNK_ROWS`` rows at a time."""
        df = self.df
        if self.staging is not None:
            import numpy as np

            df = df.assign(**{self.row_column: np.arange(len(df), dtype=np.int64)})
        types = [*[t for _, t in self.plan.columns], "bigint"][: len(df.columns)]
        try:
            if self.binary:
                from ._binary import chunks

                yield from chunks(df, types, CHUNK_ROWS, self.encoding)
                return
            for start in range(0, len(df), CHUNK_ROWS):
                try:
                    part = _prepare(df.iloc[start : start + CHUNK_ROWS], types)
                except Rejected as rejected:
                    raise Rejected(
                        rejected.kind, rejected.message, rejected.column, start + rejected.row
                    ) from None
                text: str = part.to_csv(
                    header=False, index=False, na_rep=self.plan.null, lineterminator="\r\n"
                )
                if len(part.columns) == 1 and "\\." in text:
                    # A line of only \. ends COPY's data: the rows after it were lost.
                    text = _END_OF_DATA.sub('"\\\\."', text)
                if "\x00" in text:
                    raise _find_rejected(part, start, "\x00", self.encoding)
                try:
                    yield text.encode(self.encoding)
                except UnicodeEncodeError:
                    raise _find_rejected(part, start, None, self.encoding) from None
        except Rejected as rejected:
            raise self._rejected(rejected) from None

    def _rejected(self, rejected: Rejected) -> psycopg.Error:
        return self.error(rejected.kind, rejected.message, rejected.column, rejected.row)

    def error(
        self, kind: type[psycopg.Error], message: str, column: int | None, row: int
    ) -> psycopg.Error:
        """An error of psycopg's class ``kind`` naming the column, the row and the value."""
        where = f"row {row}"
        if 0 <= row < len(self.df):
            label = self.df.index[row]
            if label != row:
                where += f" (index {_show(label)})"
        secret = self.plan.sensitive
        if 0 <= row < len(self.df) and column is not None:
            name = self.plan.columns[column][0]
            secret = _secret(name)
            shown = REDACTED if secret else _show(self.df.iloc[row, column])
            where = f"column {name!r}, {where}, value {shown}"
        if secret:  # the server quotes the value it refused, or its bytes: keep them out
            message = _BYTES.sub(REDACTED, message.split(': "', 1)[0])
        return kind(f"{message}: {where}")

    def foreign_values(self) -> Iterator[tuple[int, list[int], list[Any]]]:
        """(column, rows, values): the values that are not strings in an object column of
        text (typed by its first value, a string), such as ``True`` or a ``Decimal``.

        Their Python text (``True``, ``1E+3``, ``1 day, 0:00:00``) is not what an INSERT
        stores: the server's own text of the value bound in its type (``true``, ``1000``,
        ``1 day``). The caller has the server write them (:func:`text_query`) and hands
        the texts back to :meth:`take_texts`.
        """
        for i, (_name, natural) in enumerate(self.plan.columns):
            series = self.df.iloc[:, i]
            if natural != "text" or series.dtype != object:
                continue
            missing = series.isna().to_numpy()
            rows = [r for r, v in enumerate(series) if not (missing[r] or isinstance(v, str))]
            if rows:
                yield i, rows, [series.iloc[r] for r in rows]

    def take_texts(self, column: int, rows: list[int], texts: list[str]) -> None:
        """The server's texts of :meth:`foreign_values`, in place of the values."""
        import pandas as pd

        cells = self.df.iloc[:, column].to_numpy(dtype=object, copy=True)
        cells[rows] = texts
        self.df = self.df.copy(deep=False)
        self.df.isetitem(column, pd.Series(cells, index=self.df.index, dtype=object))

    def unadaptable(self, column: int, rows: list[int], values: list[Any]) -> psycopg.Error | None:
        """The error for the first value psycopg cannot bind (a dict: no JSON without
        ``Jsonb``), as the INSERT would raise it, told by column and row."""
        from psycopg.adapt import PyFormat, Transformer

        tx = Transformer()
        for row, value in zip(rows, values, strict=True):
            try:
                tx.get_dumper(value, PyFormat.AUTO)
            except psycopg.ProgrammingError as error:
                return self.error(type(error), str(error).split("\n")[0], column, row)
        return None

    def cause(self, error: psycopg.Error) -> psycopg.Error | None:
        """The server's own error to chain, unless it may quote a sensitive value."""
        return None if self.plan.sensitive else error

    def copy_error(self, error: psycopg.Error) -> psycopg.Error | None:
        """The COPY's error told by column, row and value, when the server says where."""
        lines = (error.diag.context or "").split("\n")
        context = next((line for line in lines if line.startswith("COPY ")), "")
        found = re.search(r", line (\d+)", context)
        if not found:
            return None
        row = int(found.group(1)) - 1
        rest = context[found.end() :]
        column = None
        names = [n for n, _ in self.plan.columns]
        matches = [i for i, n in enumerate(names) if rest.startswith(f", column {n}")]
        if matches:
            column = max(matches, key=lambda i: len(names[i]))
        elif error.diag.column_name in names:  # a NOT NULL column, for one
            column = names.index(error.diag.column_name or "")
        primary = error.diag.message_primary or str(error).split("\n")[0]
        return self.error(type(error), primary, column, row)

    def locatable(self, error: psycopg.Error) -> bool:
        """Whether a failed ``INSERT ... SELECT`` is worth a search for its row."""
        return (error.sqlstate or "")[:2] in ("22", "23") and len(self.df) > 0

    def locate(self, error: psycopg.Error) -> Generator[sql.Composed, bool, psycopg.Error]:
        """Find the row and column a failed ``INSERT ... SELECT`` stumbled on.

        Yields statements to try (each in a savepoint that is rolled back) and is sent
        whether each one succeeded; returns the error to raise. Bisects on prefixes of the
        frame, so a row that fails only after others (a unique key) is found too.
        """
        assert self.staging is not None
        names = sql.SQL(", ").join(sql.Identifier(n) for n, _ in self.plan.columns)
        lo, hi = 0, len(self.df)  # a prefix of lo rows succeeds, one of hi rows fails
        while hi - lo > 1:
            mid = (lo + hi) // 2
            ok = yield sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} WHERE {} < {}").format(
                self.plan.table,
                names,
                names,
                self.staging,
                sql.Identifier(self.row_column),
                sql.Literal(mid),
            )
            lo, hi = (mid, hi) if ok else (lo, mid)
        row = hi - 1
        column = None
        for i, ((name, _), route) in enumerate(zip(self.plan.columns, self.routes, strict=True)):
            if route != CAST:
                continue
            ok = yield sql.SQL("SELECT {} FROM {} WHERE {} = {}").format(
                _assignment_cast(sql.Identifier(name), self.targets[name]),
                self.staging,
                sql.Identifier(self.row_column),
                sql.Literal(row),
            )
            if not ok:
                column = i
                break
        if column is None and error.diag.column_name in dict(self.plan.columns):
            column = [n for n, _ in self.plan.columns].index(error.diag.column_name or "")
        primary = error.diag.message_primary or str(error).split("\n")[0]
        return self.error(type(error), primary, column, row)


def _assignment_cast(column: sql.Identifier, target: Target) -> sql.Composed:
    """``column`` cast to ``target`` as an ``INSERT`` casts it (an assignment cast).

    An explicit ``CAST`` to ``varchar(n)`` or ``char(n)`` cuts a long value where the
    assignment fails; their length function, told the cast is not explicit, fails alike.
    """
    if target.oid in _LENGTH_LIMITED:
        base = "varchar" if target.oid == _VARCHAR else "bpchar"
        return sql.SQL("pg_catalog.{}(CAST({} AS pg_catalog.{}), {}, false)").format(
            sql.Identifier(base), column, sql.Identifier(base), sql.Literal(target.typmod)
        )
    return sql.SQL("CAST({} AS {})").format(column, sql.SQL(target.spelling))


def _create(
    table: sql.Identifier, columns: Sequence[tuple[str, str]], temporary: bool = False
) -> sql.Composed:
    return sql.SQL("CREATE {}TABLE {} ({})").format(
        sql.SQL("TEMPORARY " if temporary else ""),
        table,
        sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in columns
        ),
    )


def _route(natural: str, target: Target | None) -> str:
    if target is None:  # a new table
        return DIRECT
    if target.oid == NATURAL_OIDS[natural] and target.typmod == -1:
        return DIRECT
    if natural == "text" and target.oid not in _LENGTH_LIMITED:
        return PARSE
    return CAST


# Parameters per query of text_query: well under the protocol's 65,535.
TEXT_BATCH: Final = 10_000


def text_query(count: int) -> sql.Composed:
    """``SELECT ARRAY[%s::text, ...]``: the server's text of ``count`` values bound as an
    INSERT binds them (a cast to text is an assignment cast for every type), in order."""
    marks = sql.SQL(", ").join(sql.SQL("%s::text") for _ in range(count))
    return sql.SQL("SELECT ARRAY[{}]").format(marks)


def _secret(name: str) -> bool:
    low = name.lower()
    return is_sensitive_key(name) or any(part in low for part in _SECRET_PARTS)


def _show(value: Any) -> str:
    import numpy as np

    if isinstance(value, np.generic):
        value = value.item()  # 3000000000, not np.int64(3000000000)
    try:
        text = repr(value)
    except NotImplementedError:  # pandas cannot show an aware Timestamp past the year 9999
        text = f"{value.tz_localize(None)!r} in {value.tz}"
    return text if len(text) <= 80 else text[:77] + "..."


def pg_type(series: pd.Series) -> str:
    """The PostgreSQL type a column is created with (its natural type)."""
    import pandas as pd
    from pandas.api import types

    dtype = series.dtype
    if _encoded(dtype):
        return pg_type(_decategorize(series))
    if isinstance(dtype, pd.ArrowDtype) and (arrow := _arrow_type(series)) is not None:
        return arrow
    if types.is_bool_dtype(dtype):
        return "boolean"
    if types.is_integer_dtype(dtype):
        # uint64 (numpy, nullable or Arrow) reaches past bigint: numeric holds every value.
        return "numeric" if dtype.kind == "u" and dtype.itemsize == 8 else "bigint"
    if types.is_float_dtype(dtype):
        # float32 and float16 as real, which holds each exactly, as psycopg binds them.
        return "real" if getattr(dtype, "itemsize", 8) <= 4 else "double precision"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "timestamptz"
    if types.is_datetime64_dtype(dtype):
        return "timestamp"
    if types.is_timedelta64_dtype(dtype):
        return "interval"
    if types.is_string_dtype(dtype) and not types.is_object_dtype(dtype):
        return "text"
    return _object_type(series)


def _arrow_type(series: pd.Series) -> str | None:
    """The natural type of an Arrow column that pandas cannot type by its values, if any.

    By the type, not by a value: Python's datetime and date cannot hold a year before 1,
    and pandas gives no values at all of Arrow's month-day-nano intervals.
    """
    import pyarrow as pa

    arrow = series.dtype.pyarrow_dtype
    if pa.types.is_timestamp(arrow):
        return "timestamptz" if arrow.tz is not None else "timestamp"
    if pa.types.is_date(arrow):
        return "date"
    if pa.types.is_interval(arrow):
        raise TransferError(
            f"column {series.name!r}: Arrow's {arrow} has no pandas values to write; "
            "cast it to a duration or to strings first"
        )
    return None


def _object_type(series: pd.Series) -> str:
    import numpy as np
    import pandas as pd

    values = series.dropna()
    if not len(values):
        return "text"
    first = values.iloc[0]
    if isinstance(first, np.generic) and first.dtype.kind in "biuf":
        # A numpy scalar, typed as its dtype would be (psycopg binds it so); a float32 or
        # float16 among doubles (Python's or numpy's) is not a real's column, which would
        # round the doubles.
        if first.dtype.kind == "f" and first.dtype.itemsize <= 4 and any(map(_double, values)):
            return "double precision"
        return pg_type(pd.Series([], dtype=first.dtype))
    for py_type, pg in _OBJECT_TYPES:
        if isinstance(first, py_type):
            # With a zone on any value (not only the first), as an INSERT binds that value
            # with its zone: a naive type would drop it.
            if py_type in (dt.datetime, dt.time) and any(
                getattr(v, "tzinfo", None) is not None for v in values
            ):
                return "timestamptz" if py_type is dt.datetime else "timetz"
            # Dates first, and a datetime with a zone later: that one's date is the
            # session's, as the INSERT's cast makes it; a date column would drop the zone.
            if pg == "date" and any(
                isinstance(v, dt.datetime) and v.tzinfo is not None for v in values
            ):
                return "timestamptz"
            return pg
    return "text"


def _double(value: Any) -> bool:
    """A float wider than a real: Python's (np.float64 is one), or a numpy longdouble."""
    import numpy as np

    return isinstance(value, float) or (isinstance(value, np.floating) and value.dtype.itemsize > 4)


def _encoded(dtype: Any) -> bool:
    """Whether a column holds its values encoded: a categorical, an Arrow dictionary, or an
    Arrow view type (which pandas' dtype checks do not know)."""
    import pandas as pd

    if isinstance(dtype, pd.CategoricalDtype):
        return True
    if not isinstance(dtype, pd.ArrowDtype):
        return False
    import pyarrow as pa

    arrow = dtype.pyarrow_dtype
    return bool(
        pa.types.is_dictionary(arrow)
        or pa.types.is_string_view(arrow)
        or pa.types.is_binary_view(arrow)
    )


def _decategorize(series: pd.Series) -> pd.Series:
    """A categorical's values in the categories' own dtype (integers stay exact, as Int64);
    an Arrow dictionary's in its values' type, an Arrow view's in the large type."""
    import pandas as pd

    if isinstance(series.dtype, pd.ArrowDtype):
        import pyarrow as pa

        arrow = series.dtype.pyarrow_dtype
        if pa.types.is_dictionary(arrow):
            plain = arrow.value_type
        else:
            plain = pa.large_string() if pa.types.is_string_view(arrow) else pa.large_binary()
        # Cast by Arrow: pandas' astype fails on the view types as on its own checks.
        decoded = pd.arrays.ArrowExtensionArray(pa.array(series.array).cast(plain))
        return pd.Series(decoded, index=series.index, name=series.name)
    categories = series.cat.categories
    kind = categories.dtype.kind
    if kind in "iub":  # nullable twins, so a missing value does not turn them into floats
        nullable = (
            "boolean" if kind == "b" else str(categories.dtype).replace("u", "U").replace("i", "I")
        )
        categories = pd.array(categories.to_numpy(), dtype=nullable)
    else:
        categories = pd.array(categories)
    values = categories.take(series.cat.codes.to_numpy(), allow_fill=True)
    return pd.Series(values, index=series.index, name=series.name)


def _decategorized(df: pd.DataFrame) -> pd.DataFrame:
    positions = [i for i, t in enumerate(df.dtypes) if _encoded(t)]
    if not positions:
        return df
    df = df.copy(deep=False)
    for i in positions:
        df.isetitem(i, _decategorize(df.iloc[:, i]))
    return df


def _prepare(part: pd.DataFrame, types: list[str]) -> pd.DataFrame:
    """Convert the few columns whose CSV form pandas would get wrong for PostgreSQL."""
    import pandas as pd
    from pandas.api.types import is_datetime64_any_dtype

    changed: dict[int, Any] = {}
    for i, pg in enumerate(types):
        series = part.iloc[:, i]
        if pg == "jsonb" and isinstance(series.dtype, pd.ArrowDtype):
            # Arrow's own Python values: a null in a list is None (JSON null), where the
            # numpy array pandas gives for the cell has NaN, and integers are floats.
            import pyarrow as pa

            cells = [None if v is None else _json(v) for v in pa.array(series.array).to_pylist()]
            changed[i] = pd.Series(cells, index=series.index, dtype=object)
        elif pg == "jsonb":
            changed[i] = series.map(_json, na_action="ignore")
        elif pg == "bytea":
            changed[i] = _byteas(series, i)
        elif pg == "numeric" and series.dtype == object:
            # Built as objects: map() would infer floats from a column of numpy uint64s.
            cells = [_numeric(v) for v in series]
            changed[i] = pd.Series(cells, index=series.index, dtype=object)
        elif pg == "interval":
            changed[i] = series.map(_interval, na_action="ignore")
        elif pg in ("timestamp", "timestamptz") and is_datetime64_any_dtype(series.dtype):
            changed[i] = _stamps(series)
        elif pg == "date" and isinstance(series.dtype, pd.ArrowDtype):
            changed[i] = _arrow_dates(series)
        elif pg == "real" and getattr(series.dtype, "itemsize", 4) < 4:
            changed[i] = _doubles(series)
        elif pg in ("real", "double precision") and series.dtype == object:
            changed[i] = series.map(_widened, na_action="ignore")
        elif pg == "timetz":
            _check_offsets(series, i)
    if not changed:
        return part
    part = part.copy(deep=False)
    for pos, values in changed.items():
        part.isetitem(pos, values)
    return part


# A CSV line that is only \. (COPY's end-of-data marker), which the value quoted escapes.
_END_OF_DATA: Final = re.compile(r"^\\\.(?=\r$)", re.M)


def _stamps(series: pd.Series) -> pd.Series:
    """A datetime64 column as ISO text that the server reads the same in any ``DateStyle``.

    pandas' own CSV form has no year before 1 (PostgreSQL writes those ``BC``) and, with a
    time zone, no year past 9999; numpy's has both. Aware values go in UTC, marked ``+00``.
    """
    import numpy as np
    import pandas as pd

    aware = series.dt.tz is not None
    if aware:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    unit = series.dt.unit
    values = series.to_numpy(dtype=f"datetime64[{unit}]")
    text = np.datetime_as_string(values, unit=unit)
    if aware:
        text = np.char.add(text, "+00")
    cells = text.astype(object)
    missing = np.isnat(values)
    cells[missing] = None
    for row in np.flatnonzero(values < np.datetime64("0001-01-01", unit)):  # NaT compares False
        cells[row] = bc_years(cells[row])
    return pd.Series(cells, index=series.index, dtype=object)


def _arrow_dates(series: pd.Series) -> pd.Series:
    """An Arrow date column as ISO text, years before 1 written BC (Python's date, which
    pandas would make of each value, has none)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    values = pa.array(series.array)
    days = values.cast(pa.date32()).cast(pa.int32()).fill_null(0).to_numpy()
    text = np.datetime_as_string(days.astype("datetime64[D]"), unit="D")
    cells = text.astype(object)
    cells[values.is_null().to_numpy(zero_copy_only=False)] = None
    for row in np.flatnonzero(days < -719162):  # before 0001-01-01
        cells[row] = bc_years(cells[row])
    return pd.Series(cells, index=series.index, dtype=object)


def _doubles(series: pd.Series) -> pd.Series:
    """A float16 column as the doubles it widens to, exactly.

    pandas writes a float16 as its shortest float16 text (``0.1``), which the server would
    read as another real (0.1, not 0.099975586). A NaN that is not missing (an Arrow
    float's) stays NaN.
    """
    import numpy as np
    import pandas as pd

    missing = series.isna().to_numpy()
    cells = series.to_numpy(dtype=np.float64, na_value=np.nan).astype(object)
    cells[missing] = None
    return pd.Series(cells, index=series.index, dtype=object)


def _widened(value: Any) -> Any:
    """A numpy float in an object column as the double it widens to (its own text, ``0.1``
    for a float16 or float32, is another value); any other value as it is."""
    import numpy as np

    return float(value) if isinstance(value, np.floating) else value


def _check_offsets(series: pd.Series, column: int) -> None:
    """Refuse a time whose zone has no fixed offset, as psycopg does: a ``time`` has no date
    to resolve it on, and the server would take the session's offset instead."""
    for row, value in enumerate(series):
        tz = getattr(value, "tzinfo", None)
        if tz is not None and value.utcoffset() is None:
            raise Rejected(
                psycopg.DataError,
                f"cannot calculate the offset of tzinfo '{tz}' without a date",
                column,
                row,
            )


def _json(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _json_default(value: Any) -> Any:
    """numpy's arrays and scalars as JSON (an Arrow list column's cells are numpy arrays)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _byteas(series: pd.Series, column: int) -> pd.Series:
    """A bytea column's cells as bytea input: bytes-like values in hex, strings as they are
    (the server reads them as bytea input, as an INSERT's untyped string); anything else is
    refused as the INSERT refuses it."""
    import pandas as pd

    cells: list[Any] = []
    missing = series.isna().to_numpy()
    for row, value in enumerate(series):
        if missing[row] or isinstance(value, str):
            pass
        elif isinstance(value, (bytes, bytearray, memoryview)):
            value = "\\x" + bytes(value).hex()
        else:
            raise Rejected(
                psycopg.errors.DatatypeMismatch,
                f"a bytea column cannot take a value of type {type(value).__name__}",
                column,
                row,
            )
        cells.append(value)
    return pd.Series(cells, index=series.index, dtype=object)


def _numeric(value: Any) -> Any:
    """A float in a numeric column as the server's own cast from its type writes it: a
    double with 15 significant digits, a float32 or float16 (bound as a real) with 6."""
    import numpy as np

    if not isinstance(value, (float, np.floating)) or value != value:
        return value  # NaN is missing: NULL
    digits = 6 if isinstance(value, np.floating) and value.dtype.itemsize <= 4 else 15
    text = f"{value:.{digits}g}"
    return _INFINITIES.get(text, text)


_INFINITIES: Final = {"inf": "Infinity", "-inf": "-Infinity"}


def _interval(value: Any) -> str:
    # Days apart from the time of day, as psycopg stores a timedelta. Every field carries
    # its sign: under IntervalStyle sql_standard a lone leading '-' would negate them all.
    # pandas' own form carries nanoseconds (which the server rounds as it parses) and
    # always signs the time after negative days.
    if isinstance(value, dt.timedelta) and not hasattr(value, "nanoseconds"):
        return f"{value.days:+d} days {value.seconds:+d} seconds {value.microseconds:+d} us"
    return str(value)


def _find_rejected(part: pd.DataFrame, start: int, char: str | None, encoding: str) -> Rejected:
    """The first cell holding ``char`` (or, with None, a character ``encoding`` lacks)."""
    for row in range(len(part)):
        for col in range(part.shape[1]):
            value = part.iat[row, col]
            if not isinstance(value, str):
                continue
            if char is not None and char in value:
                return Rejected.nul(col, start + row)
            if char is None:
                try:
                    value.encode(encoding)
                except UnicodeEncodeError:
                    return Rejected.unencodable(col, start + row, encoding)
    return Rejected(psycopg.DataError, "value cannot be sent", None, start)

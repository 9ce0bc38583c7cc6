"""DataFrame -> table: the plan (written once) shared by the sync and async writers.

Column types come from the dtypes (the reverse of the reader's mapping); the data travels
as CSV through ``COPY ... FROM STDIN``, written by pandas in chunks so memory stays bounded.
NULL is a random token that no real value can match, so ``''`` and NULL stay apart.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from psycopg import sql

from pgmonkey.errors import TransferError

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
    (dt.time, "time"),
    (dt.timedelta, "interval"),
    (uuid.UUID, "uuid"),
    (bytes, "bytea"),
    (dict, "jsonb"),
    (list, "jsonb"),
)


@dataclass(frozen=True)
class WritePlan:
    """Target table, column types and the COPY that fills it."""

    table: sql.Identifier
    name: str  # as given (not SQL-quoted), for messages
    columns: list[tuple[str, str]]  # (name, PostgreSQL type)
    if_exists: str
    null: str
    binary: bool  # binary COPY built with numpy, when every column has an encoder

    @classmethod
    def build(cls, df: pd.DataFrame, table: str, schema: str | None, if_exists: str) -> WritePlan:
        if if_exists not in IF_EXISTS:
            raise TransferError(
                f"if_exists must be one of {', '.join(IF_EXISTS)}, not {if_exists!r}"
            )
        if not table:
            raise TransferError("table name is empty")
        if schema is None and "." in table:
            schema, table = table.split(".", 1)
        ident = sql.Identifier(schema, table) if schema else sql.Identifier(table)
        names = [str(c) for c in df.columns]
        if len(set(names)) != len(names):
            raise TransferError(f"duplicate column names: {names!r}")
        from ._binary import BINARY_TYPES

        columns = [(str(name), pg_type(df[name])) for name in df.columns]
        # Object columns (but strings) go through CSV: the server checks their values.
        binary = all(
            pg in BINARY_TYPES and (pg == "text" or df[name].dtype != object)
            for (_, pg), name in zip(columns, df.columns, strict=True)
        )
        name = f"{schema}.{table}" if schema else table
        return cls(ident, name, columns, if_exists, f"\\N{uuid.uuid4().hex}", binary)

    def exists_query(self) -> sql.Composed:
        return sql.SQL("SELECT pg_catalog.to_regclass({})").format(
            sql.Literal(self.table.as_string())
        )

    def ddl(self, exists: bool) -> list[sql.Composed]:
        """Statements to run before the COPY, given whether the table exists."""
        create = sql.SQL("CREATE TABLE {} ({})").format(
            self.table,
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in self.columns
            ),
        )
        if self.if_exists == "replace":
            return [sql.SQL("DROP TABLE IF EXISTS {}").format(self.table), create]
        if exists:
            if self.if_exists == "fail":
                raise TransferError(f"table {self.name!r} already exists (if_exists='fail')")
            return []
        return [create]

    def copy_statement(self) -> sql.Composed:
        names = sql.SQL(", ").join(sql.Identifier(n) for n, _ in self.columns)
        if self.binary:
            return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(self.table, names)
        return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, NULL {})").format(
            self.table, names, sql.Literal(self.null)
        )

    def chunks(self, df: pd.DataFrame) -> Iterator[bytes]:
        """The frame as COPY data (binary or CSV), ``CHUNK_ROWS`` rows at a time."""
        if self.binary:
            from ._binary import chunks

            yield from chunks(df, [t for _, t in self.columns], CHUNK_ROWS)
            return
        for start in range(0, len(df), CHUNK_ROWS):
            part = _prepare(df.iloc[start : start + CHUNK_ROWS], self.columns)
            text: str = part.to_csv(
                header=False, index=False, na_rep=self.null, lineterminator="\n"
            )
            yield text.encode()


def pg_type(series: pd.Series) -> str:
    """The PostgreSQL type a column is created with."""
    import pandas as pd
    from pandas.api import types

    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return pg_type(series.astype(dtype.categories.dtype)) if len(dtype.categories) else "text"
    if types.is_bool_dtype(dtype):
        return "boolean"
    if types.is_integer_dtype(dtype):
        return "numeric" if str(dtype).lower() == "uint64" else "bigint"
    if types.is_float_dtype(dtype):
        return "double precision"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "timestamptz"
    if types.is_datetime64_dtype(dtype):
        return "timestamp"
    if types.is_timedelta64_dtype(dtype):
        return "interval"
    if types.is_string_dtype(dtype) and not types.is_object_dtype(dtype):
        return "text"
    return _object_type(series)


def _object_type(series: pd.Series) -> str:
    values = series.dropna()
    if not len(values):
        return "text"
    first = values.iloc[0]
    for py_type, pg in _OBJECT_TYPES:
        if isinstance(first, py_type):
            if py_type is dt.datetime and getattr(first, "tzinfo", None) is not None:
                return "timestamptz"
            return pg
    return "text"


def _prepare(part: pd.DataFrame, columns: list[tuple[str, str]]) -> pd.DataFrame:
    """Convert the few columns whose CSV form pandas would get wrong for PostgreSQL."""
    changed: dict[int, Any] = {}
    for i, (_, pg) in enumerate(columns):
        series = part.iloc[:, i]
        if pg == "jsonb":
            changed[i] = series.map(_json, na_action="ignore")
        elif pg == "bytea":
            changed[i] = series.map(_bytea, na_action="ignore")
        elif pg == "interval" and series.dtype.kind == "m":
            changed[i] = series.map(_interval, na_action="ignore")
    if not changed:
        return part
    part = part.copy(deep=False)
    for pos, values in changed.items():
        part.isetitem(pos, values)
    return part


def _json(value: Any) -> str:
    return json.dumps(value)


def _bytea(value: Any) -> str:
    return "\\x" + bytes(value).hex()


def _interval(value: Any) -> str:
    micros = value.to_timedelta64().astype("timedelta64[us]").astype("int64")
    return f"{micros} microseconds"

"""The query engine of the magics: a cell's statements on one connection, one transaction.

The last statement that returns rows goes through :func:`pgmonkey.frames.read_sql`; others
run on a client-side cursor. ``Run.sync`` and ``Run.async_`` are twins that differ only in
``await``: keep them in step (``tests/test_magics.py`` runs queries on all four connection
types).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from pgmonkey.errors import MagicCellError
from pgmonkey.frames._sqltext import standard_strings

from ._display import error_message
from ._params import Statement, parse


@dataclass
class Affected:
    """A statement that returned no rows."""

    rowcount: int
    status: str

    def message(self) -> str:
        if self.rowcount >= 0:
            return f"{self.rowcount} row{'' if self.rowcount == 1 else 's'} affected"
        return self.status or "done"


# Statements PostgreSQL refuses inside a transaction block: alone in a cell, they run in
# autocommit mode, as in psql.
_NO_TRANSACTION = re.compile(
    r"(vacuum|alter\s+system|(create|drop)\s+(database|tablespace)"
    r"|(create|drop)\s+(unique\s+)?index\s+concurrently|reindex\s.*\sconcurrently)\b",
    re.IGNORECASE | re.DOTALL,
)

_TRANSACTION_CONTROL = frozenset(
    {"begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release"}
)


class Run:
    """The statements of one query cell, run on one connection in one transaction."""

    def __init__(
        self,
        sql: str,
        statements: Sequence[Statement],
        params: Sequence[dict[str, Any] | None],
        decimal: bool,
        first_line: int = 1,
        ns: Mapping[str, Any] | None = None,
        output: str = "pandas",
    ) -> None:
        self.first_line = first_line
        self.output = output
        self.sql = sql
        self.statements = statements
        self.params = params
        self.decimal = decimal
        self.ns = ns

    def _read_as_session(
        self, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]
    ) -> None:
        """Re-read the cell as this session reads SQL, when that differs from the default.

        With ``standard_conforming_strings = off`` a backslash escapes a quote inside
        ``'...'``: the server's strings end elsewhere, and a ``:name`` that looked like code
        may be text (or the reverse). Binding where the server reads code keeps a value from
        ever being read as SQL.
        """
        if self.ns is None or standard_strings(conn):
            return
        self.statements = parse(self.sql, standard_strings=False)
        self.params = [st.params(self.ns) for st in self.statements]

    def _outside_transaction(self) -> bool:
        """A cell of one statement that cannot run in a transaction block (VACUUM, ...)."""
        return len(self.statements) == 1 and bool(_NO_TRANSACTION.match(self.statements[0].text))

    def _one_transaction(self) -> bool:
        """Whether to wrap the statements in ``conn.transaction()``.

        One statement runs as the connection is configured (so VACUUM works with
        ``autocommit: true``); several share one transaction, unless the cell manages
        transactions itself (BEGIN, COMMIT, ...), which psycopg's block must not get into.
        """
        return len(self.statements) > 1 and not any(
            st.keyword in _TRANSACTION_CONTROL for st in self.statements
        )

    def _reader(self) -> tuple[str, bool]:
        """The format the last statement's rows are read in, and whether that result still
        has to be converted to :attr:`output`.

        With ``decimal`` on, numeric stays exact: the pandas frame (of ``Decimal`` values),
        converted, gives an Arrow ``decimal128`` column, not read_arrow's float64.
        """
        if self.output == "pandas" or self.decimal:
            return "pandas", self.output != "pandas"
        return self.output, False

    def sync(self, conn: psycopg.Connection[Any]) -> Any:
        from pgmonkey.frames import read_arrow, read_polars, read_sql

        fmt, convert = self._reader()
        read = {"pandas": read_sql, "arrow": read_arrow, "polars": read_polars}[fmt]
        options: dict[str, Any] = {"decimal": True} if fmt == "pandas" and self.decimal else {}
        self._read_as_session(conn)
        result: Any = None
        if self._outside_transaction() and not conn.autocommit:
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                conn.autocommit = True
                try:
                    return self.sync(conn)
                finally:
                    conn.autocommit = False
        tx = conn.transaction() if self._one_transaction() else contextlib.nullcontext()
        with tx:
            for st, params in zip(self.statements, self.params, strict=True):
                fast = st is self.statements[-1] and st.returns_rows
                try:
                    if fast:
                        result = read(st.query, conn, params, **options)
                        if convert:
                            result = as_output(result, self.output)
                    else:
                        with psycopg.ClientCursor(conn) as cur:
                            cur.execute(st.query, params)
                            last = st is self.statements[-1]
                            rows = cur.fetchall() if last and cur.description else None
                            result = as_output(_cursor_result(cur, rows), self.output)
                except psycopg.Error as exc:
                    sent = _literal_lengths(psycopg.ClientCursor(conn), params)
                    raise MagicCellError(
                        error_message(exc, self.sql, st, sent, self.first_line)
                    ) from exc
        return result

    async def async_(self, conn: psycopg.AsyncConnection[Any]) -> Any:
        from pgmonkey.frames import read_arrow_async, read_polars_async, read_sql_async

        fmt, convert = self._reader()
        read = {"pandas": read_sql_async, "arrow": read_arrow_async, "polars": read_polars_async}[
            fmt
        ]
        options: dict[str, Any] = {"decimal": True} if fmt == "pandas" and self.decimal else {}
        self._read_as_session(conn)
        result: Any = None
        if self._outside_transaction() and not conn.autocommit:
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                await conn.set_autocommit(True)
                try:
                    return await self.async_(conn)
                finally:
                    await conn.set_autocommit(False)
        atx = conn.transaction() if self._one_transaction() else contextlib.nullcontext()
        async with atx:
            for st, params in zip(self.statements, self.params, strict=True):
                fast = st is self.statements[-1] and st.returns_rows
                try:
                    if fast:
                        result = await read(st.query, conn, params, **options)
                        if convert:
                            result = as_output(result, self.output)
                    else:
                        async with psycopg.AsyncClientCursor(conn) as acur:
                            await acur.execute(st.query, params)
                            last = st is self.statements[-1]
                            rows = await acur.fetchall() if last and acur.description else None
                            result = as_output(_cursor_result(acur, rows), self.output)
                except psycopg.Error as exc:
                    sent = _literal_lengths(psycopg.AsyncClientCursor(conn), params)
                    raise MagicCellError(
                        error_message(exc, self.sql, st, sent, self.first_line)
                    ) from exc
        return result


def _literal_lengths(cur: Any, params: Mapping[str, Any] | None) -> dict[str, int] | None:
    """Length of each value as sent: bound client-side, as psycopg's quoted literal.

    Client-side binding (read_sql does the same, COPY takes no ``$n``) lets ``:name`` work
    in statements the server cannot bind parameters in: ``SET``, ``CREATE TABLE ... AS``.
    """
    if not params:
        return None
    try:
        return {name: len(cur.mogrify("%s", [value])) for name, value in params.items()}
    except Exception:
        return None


def _cursor_result(cur: Any, rows: list[Any] | None) -> Any:
    """The result of a statement judged not to return rows (DDL, DML without RETURNING)."""
    if cur.description is None or rows is None:
        return Affected(cur.rowcount, cur.statusmessage or "")
    # Rows after all (CALL with OUT parameters): few rows, typed by psycopg.
    import pandas as pd

    return pd.DataFrame.from_records(rows, columns=[c.name for c in cur.description])


def _refuse_special_decimals(frame: Any, output: str) -> None:
    """A numeric NaN or infinity (read as a ``Decimal``, alone or in an array) has no Arrow
    decimal: Arrow would make NaN a null, so the cell fails instead, naming the column."""
    for i, name in enumerate(frame.columns):
        column = frame.iloc[:, i]  # by position: a result may repeat a column name
        if column.dtype != object:
            continue
        special = next((s for s in map(_special_decimal, column) if s is not None), None)
        if special is not None:
            raise MagicCellError(
                f"the result cannot be given as {output}: column {name!r} holds numeric "
                f"{special}, which an Arrow decimal cannot hold (--out-format pandas returns "
                "it as a Decimal)"
            )


def _special_decimal(value: Any) -> Decimal | None:
    """The first NaN or infinite ``Decimal`` in ``value`` (an array's items included)."""
    if isinstance(value, Decimal):
        return None if value.is_finite() else value
    if isinstance(value, (list, tuple)):
        return next((s for s in map(_special_decimal, value) if s is not None), None)
    return None


def as_output(result: Any, output: str) -> Any:
    """A pandas result (``Affected`` stays as it is) as a pyarrow Table or polars DataFrame."""
    if output == "pandas" or isinstance(result, Affected):
        return result
    import pyarrow as pa

    from pgmonkey.frames._engines import ARROW, convert

    _refuse_special_decimals(result, output)
    try:
        table = convert(result, ARROW)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError) as exc:
        # Python objects Arrow cannot put in one column (decimal mode reads through pandas).
        raise MagicCellError(
            f"the result cannot be given as {output}: {exc} (--out-format pandas returns it)"
        ) from exc
    if output == "arrow":
        return table
    import polars as pl

    return pl.from_arrow(table)

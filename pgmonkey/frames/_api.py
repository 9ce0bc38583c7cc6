"""The entry points: query results to DataFrames and DataFrames to tables, through ``COPY``.

:func:`read_sql` streams ``COPY (query) TO STDOUT`` into pandas' C CSV reader with one
dtype per column, chosen from the query's result description (see ``_read``);
:func:`to_sql` writes a frame through ``COPY ... FROM STDIN`` in one transaction (see
``_write``). The async twins share that code: only the I/O differs.

``con`` is a pgmonkey connection object (``with con as conn`` gives the connection, so a
pool lends one), a psycopg connection, or the path of a pgmonkey YAML config.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any, TypeAlias

import psycopg
from psycopg import sql
from psycopg.pq import ExecStatus, PipelineStatus, TransactionStatus

from .. import _connect, _psycopg
from ._engines import (
    ARROW,
    PANDAS,
    ParseThread,
    choose_engine,
    convert,
    first_blocks,
    parse_in_thread,
)
from ._parallel import read_split
from ._partition import Split, split_of
from ._read import (
    CopyReader,
    Plan,
    QueueChunks,
    copy_chunks,
    describe_and_settings,
    describe_statement,
    strip_query,
)
from ._sqltext import bind, note_unbound
from ._write import TEXT_BATCH, WritePlan, text_query

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    import pyarrow as pa

__all__ = [
    "read_arrow",
    "read_arrow_async",
    "read_polars",
    "read_polars_async",
    "read_sql",
    "read_sql_async",
    "to_sql",
    "to_sql_async",
]

Query: TypeAlias = "str | sql.Composable"
Params: TypeAlias = "Sequence[Any] | Mapping[str, Any] | None"

_BLOCK = 1 << 18  # bytes handed from the receiving to the parsing thread at a time
_INLINE = 1 << 20  # a result this small is parsed once received, without a worker thread
_LEAST = 1 << 18  # ... and at least this much, so the parser is not woken for every row
# The setting the binary engines need: run with the describe (see _describe).
_SETTINGS = "SELECT pg_catalog.current_setting('extra_float_digits')"
_SETTINGS_BYTES = _SETTINGS.encode()


def read_sql(
    query: Query,
    con: Any,
    params: Params = None,
    *,
    decimal: bool = False,
    partition_on: str | None = None,
    partitions: int | None = None,
    consistent: bool = False,
) -> pd.DataFrame:
    """Run ``query`` and return its rows as a DataFrame, typed from the result columns.

    ``params`` are bound by psycopg (``%s`` / ``%(name)s`` placeholders), never pasted as
    text. A statement that returns no rows raises :class:`~pgmonkey.errors.TransferError`
    (after it ran: as with ``pandas.read_sql``).

    ``partition_on`` (a numeric, date or timestamp column of the result) and ``partitions``
    (an int): read the result in that many ranges of the column, of equal width between its
    lowest and highest values, over as many connections at once, for a server with cores to
    spare. NULLs are read with the first range, NaN with the last: every row exactly once.
    Rows come range by range (order within a range as the server gives it; an ``ORDER BY``
    holds only within each range); the dtypes are the unpartitioned read's. ``con`` gives
    the connections: a pool lends up to ``partitions`` (as many as it can spare, at most its
    ``max_size``: fewer read more ranges each); a config path or dict, or a pgmonkey
    ``normal`` object, opens the others with the same config; a psycopg connection cannot
    open more, so its ranges are read one after another on it, as they are on a connection
    in a transaction that has written (what it has not committed, only it sees). The other
    connections are new sessions: each is given the lent session's own ``SET``s
    (search_path, TimeZone, ...) for its transaction; a lent session with a temporary table
    or a ``SET ROLE`` reads every range itself, as no other can. Each range costs the server
    a scan of ``query`` unless an index on the column serves the range. ``consistent=True``:
    every range reads one snapshot of the database (exported by the first connection, from
    a ``REPEATABLE READ READ ONLY`` transaction); on a connection in the caller's own
    repeatable read transaction, every range is read on it, in that transaction's snapshot
    (a read committed one is refused). An error in any range (or Ctrl-C) cancels
    the others and is raised; the connections go back usable. ``partitions=1`` or no
    ``partition_on`` is the ordinary read on one connection.
    """
    frame: pd.DataFrame = _read_on_split(
        con, query, params, decimal, PANDAS, split_of(partition_on, partitions, consistent)
    )
    return frame


def read_arrow(
    query: Query,
    con: Any,
    params: Params = None,
    *,
    partition_on: str | None = None,
    partitions: int | None = None,
    consistent: bool = False,
) -> pa.Table:
    """:func:`read_sql`, as a ``pyarrow.Table``, without going through pandas.

    Column types: ``int64`` (integers), ``double`` (float4, float8, numeric), ``bool``,
    ``large_string`` (text types), ``timestamp[us, tz=UTC]`` (timestamptz), ``timestamp[us]``,
    ``date32``; other types arrive as their PostgreSQL text. NULL is null in every column
    (a float NaN stays NaN). Results that only pandas' reader takes (a client encoding other
    than UTF-8, statements that are not plain queries) are that frame converted by
    ``pyarrow.Table.from_pandas``. ``partition_on``, ``partitions``, ``consistent``: as for
    :func:`read_sql`.
    """
    table: pa.Table = _read_on_split(
        con, query, params, False, ARROW, split_of(partition_on, partitions, consistent)
    )
    return table


def read_polars(
    query: Query,
    con: Any,
    params: Params = None,
    *,
    partition_on: str | None = None,
    partitions: int | None = None,
    consistent: bool = False,
) -> pl.DataFrame:
    """:func:`read_arrow`, as a ``polars.DataFrame`` (``pip install 'pgmonkey[polars]'``)."""
    frame: pl.DataFrame = _polars().from_arrow(
        read_arrow(
            query,
            con,
            params,
            partition_on=partition_on,
            partitions=partitions,
            consistent=consistent,
        )
    )
    return frame


def _read_on(con: Any, query: Query, params: Params, decimal: bool, output: str) -> Any:
    with _connect.connection(con) as conn:
        _outside_pipeline(conn)
        text = bind(conn, query, params)
        try:
            return _read(conn, text, decimal, output)
        except BaseException as error:
            # Ctrl-C, an error mid-COPY: the server stops, the connection stays usable.
            _psycopg.cancel_and_drain(conn)
            if params is None:
                note_unbound(error, text)
            raise


def _read_on_split(
    con: Any, query: Query, params: Params, decimal: bool, output: str, split: Split | None
) -> Any:
    """:func:`_read_on`, in ranges over several connections if ``split`` asks for it
    (``_parallel``; the async readers have no partitioned read)."""
    if split is None:
        return _read_on(con, query, params, decimal, output)
    with _connect.connection(con) as conn:
        _outside_pipeline(conn)
        text = bind(conn, query, params)
        return read_split(con, conn, text, split, lambda c, q: _read(c, q, decimal, output), output)


def _read(conn: psycopg.Connection[Any], text: str, decimal: bool, output: str = PANDAS) -> Any:
    body = strip_query(text)
    with conn.cursor() as cur:
        description = settings = None
        try:
            description, settings = _describe(conn, cur, body)
        except psycopg.errors.QueryCanceled:
            raise  # cancelled (or statement_timeout): an answer, not a statement to run as is
        except psycopg.Error:
            _psycopg.cancel_and_drain(conn)
        if not description:
            # Not a plain query (DML ... RETURNING, SHOW, several statements, no
            # columns, or an error): run it as written, so errors point at the
            # user's own text.
            cur.execute(text)
            plan = _plan_or_raise(cur, conn, text, decimal)
            return convert(plan.from_rows(cur.fetchall()), output)
        plan = Plan.build(description, conn, decimal=decimal)
        engine = choose_engine(plan)
        engine.configure(settings)
        parse = engine.parser(output)
        if not engine.threaded:
            reader = CopyReader(copy_chunks(conn))
            with cur.copy(engine.copy_statement(body)):
                try:
                    return parse(reader)
                except Exception:
                    if reader.failure is not None:  # pandas wrapped it in its ParserError
                        raise reader.failure from None
                    raise
        worker = None
        with cur.copy(engine.copy_statement(body)):
            # Blocks of a quarter MiB at least: each one handed over wakes the parser.
            blocks = copy_chunks(conn, _BLOCK, _LEAST)
            head, ended = first_blocks(blocks, _INLINE)
            if not ended:
                # A large result: a worker thread parses while this one receives the rest.
                chunks = QueueChunks()
                reader = CopyReader(iter(chunks))
                worker = ParseThread(parse, reader, chunks)
                try:
                    for block in itertools.chain(head, blocks):
                        if not chunks.put(block):
                            # The parser stopped before the end: its error, raised here,
                            # stops the COPY instead of receiving the rest for nothing.
                            worker.result(reader)
                            raise AssertionError("the parser stopped without an error")
                    del head
                except BaseException as error:
                    chunks.close(error)
                    worker.join()
                    raise
                chunks.close()
        if worker is None:  # all of it arrived in the first blocks: no thread to start
            return parse(head)
        return worker.result(reader)


async def read_sql_async(
    query: Query, con: Any, params: Params = None, *, decimal: bool = False
) -> pd.DataFrame:
    """:func:`read_sql` for a ``psycopg.AsyncConnection`` (or an async pgmonkey object/path).

    Parsing runs in a worker thread while the event loop receives the data.
    """
    frame: pd.DataFrame = await _read_on_async(con, query, params, decimal, PANDAS)
    return frame


async def read_arrow_async(query: Query, con: Any, params: Params = None) -> pa.Table:
    """:func:`read_arrow` for a ``psycopg.AsyncConnection`` (or an async pgmonkey object/path)."""
    table: pa.Table = await _read_on_async(con, query, params, False, ARROW)
    return table


async def read_polars_async(query: Query, con: Any, params: Params = None) -> pl.DataFrame:
    """:func:`read_polars` for a ``psycopg.AsyncConnection`` (or an async pgmonkey object/path)."""
    frame: pl.DataFrame = _polars().from_arrow(await read_arrow_async(query, con, params))
    return frame


async def _read_on_async(con: Any, query: Query, params: Params, decimal: bool, output: str) -> Any:
    async with _connect.async_connection(con) as conn:
        await _outside_pipeline_async(conn)
        text = bind(conn, query, params)
        try:
            return await _read_async(conn, text, decimal, output)
        except BaseException as error:
            # A cancellation, an error mid-COPY: the server stops, the connection stays usable.
            await _psycopg.cancel_and_drain_async(conn)
            if params is None:
                note_unbound(error, text)
            raise


async def _read_async(
    conn: psycopg.AsyncConnection[Any], text: str, decimal: bool, output: str = PANDAS
) -> Any:
    body = strip_query(text)
    async with conn.cursor() as cur:
        description = settings = None
        try:
            description, settings = await _describe_async(conn, cur, body)
        except psycopg.errors.QueryCanceled:
            raise  # cancelled (or statement_timeout): an answer, not a statement to run as is
        except psycopg.Error:
            await _psycopg.cancel_and_drain_async(conn)
        if not description:
            await cur.execute(text)
            plan = _plan_or_raise(cur, conn, text, decimal)
            return convert(plan.from_rows(await cur.fetchall()), output)
        plan = Plan.build(description, conn, decimal=decimal)
        engine = choose_engine(plan)
        engine.configure(settings)
        chunks = QueueChunks()
        reader = CopyReader(iter(chunks))
        parsed = parse_in_thread(engine.parser(output), reader, chunks)
        try:
            async with cur.copy(engine.copy_statement(body)):
                encoding = conn.info.encoding
                end = False
                while not end:
                    block, end = await _psycopg.wait_async(
                        conn, _psycopg.copy_block(conn.pgconn, _BLOCK, encoding, _LEAST)
                    )
                    if not await chunks.put_async(block):
                        # The parser stopped before the end: its error, raised here, stops
                        # the COPY instead of receiving the rest for nothing.
                        await parsed
                        raise AssertionError("the parser stopped without an error")
        except BaseException as error:
            chunks.close(error)
            with suppress(BaseException):
                await parsed
            raise
        chunks.close()
        try:
            return await parsed
        except Exception:
            if reader.failure is not None:  # pandas wrapped it in its ParserError
                raise reader.failure from None
            raise


def to_sql(
    df: pd.DataFrame,
    table: str,
    con: Any,
    if_exists: str = "fail",
    *,
    schema: str | None = None,
) -> int:
    """Write ``df`` to ``table`` through ``COPY``, in one transaction; return the row count.

    ``if_exists``: ``'fail'`` (raise :class:`~pgmonkey.errors.TransferError` if the table
    exists), ``'append'`` (create it if missing), ``'replace'`` (drop and create, in the
    same transaction). ``table`` may be ``'schema.table'``; names are always quoted. Column
    types come from the dtypes; the index is not written (``df.reset_index()`` keeps it).
    Appending stores what an ``INSERT`` of the same values would (see ``_write``); a value
    the server rejects raises psycopg's error naming the column, row and value, and nothing
    is written.
    """
    plan = WritePlan.build(df, table, schema, if_exists)
    try:
        return _to_sql(plan, df, con)
    except psycopg.Error as error:
        if not plan.sensitive:
            raise
        safe = plan.without_values(error)
    raise safe  # outside the handler: the server's error is not its context


def _to_sql(plan: WritePlan, df: pd.DataFrame, con: Any) -> int:
    with _connect.connection(con) as conn, conn.transaction(), conn.cursor() as cur:
        row = cur.execute(plan.exists_query()).fetchone()
        exists = row is not None and row[0] is not None
        existing = []
        if exists and plan.if_exists == "append":
            existing = cur.execute(plan.columns_query()).fetchall()
        load = plan.load(df, exists, existing, conn.info.encoding)
        for column, rows, values in list(load.foreign_values()):
            refused = load.unadaptable(column, rows, values)
            if refused is not None:
                raise refused
            texts: list[str] = []
            for start in range(0, len(values), TEXT_BATCH):
                part = values[start : start + TEXT_BATCH]
                found = cur.execute(text_query(len(part)), part).fetchone()
                texts += found[0] if found is not None else []
            load.take_texts(column, rows, texts)
        for statement in load.before:
            cur.execute(statement)
        try:
            with cur.copy(load.copy_statement()) as copy:
                for chunk in load.chunks():
                    copy.write(chunk)
        except psycopg.Error as error:
            told = load.copy_error(error)
            if told is None:
                raise
            raise told from load.cause(error)
        if load.insert is not None:
            try:
                with conn.transaction():
                    cur.execute(load.insert)
            except psycopg.Error as error:
                if not load.locatable(error):
                    raise
                search = load.locate(error)
                ok = None
                while True:
                    try:
                        statement = search.send(ok)  # type: ignore[arg-type]
                    except StopIteration as found:
                        raise found.value from load.cause(error)
                    try:
                        with conn.transaction(force_rollback=True):
                            cur.execute(statement)
                        ok = True
                    except psycopg.Error:
                        ok = False
        for statement in load.after:
            cur.execute(statement)
        return len(df)


async def to_sql_async(
    df: pd.DataFrame,
    table: str,
    con: Any,
    if_exists: str = "fail",
    *,
    schema: str | None = None,
) -> int:
    """:func:`to_sql` for a ``psycopg.AsyncConnection`` (or an async pgmonkey object/path)."""
    plan = WritePlan.build(df, table, schema, if_exists)
    try:
        return await _to_sql_async(plan, df, con)
    except psycopg.Error as error:
        if not plan.sensitive:
            raise
        safe = plan.without_values(error)
    raise safe  # outside the handler: the server's error is not its context


async def _to_sql_async(plan: WritePlan, df: pd.DataFrame, con: Any) -> int:
    async with (
        _connect.async_connection(con) as conn,
        conn.transaction(),
        conn.cursor() as cur,
    ):
        row = await (await cur.execute(plan.exists_query())).fetchone()
        exists = row is not None and row[0] is not None
        existing = []
        if exists and plan.if_exists == "append":
            existing = await (await cur.execute(plan.columns_query())).fetchall()
        load = plan.load(df, exists, existing, conn.info.encoding)
        for column, rows, values in list(load.foreign_values()):
            refused = load.unadaptable(column, rows, values)
            if refused is not None:
                raise refused
            texts: list[str] = []
            for start in range(0, len(values), TEXT_BATCH):
                part = values[start : start + TEXT_BATCH]
                found = await (await cur.execute(text_query(len(part)), part)).fetchone()
                texts += found[0] if found is not None else []
            load.take_texts(column, rows, texts)
        for statement in load.before:
            await cur.execute(statement)
        try:
            async with cur.copy(load.copy_statement()) as copy:
                for chunk in load.chunks():
                    await copy.write(chunk)
        except psycopg.Error as error:
            told = load.copy_error(error)
            if told is None:
                raise
            raise told from load.cause(error)
        if load.insert is not None:
            try:
                async with conn.transaction():
                    await cur.execute(load.insert)
            except psycopg.Error as error:
                if not load.locatable(error):
                    raise
                search = load.locate(error)
                ok = None
                while True:
                    try:
                        statement = search.send(ok)  # type: ignore[arg-type]
                    except StopIteration as found:
                        raise found.value from load.cause(error)
                    try:
                        async with conn.transaction(force_rollback=True):
                            await cur.execute(statement)
                        ok = True
                    except psycopg.Error:
                        ok = False
        for statement in load.after:
            await cur.execute(statement)
        return len(df)


def _polars() -> Any:
    try:
        import polars
    except ImportError:
        raise ImportError("read_polars needs polars: pip install 'pgmonkey[polars]'") from None
    return polars


def _describe(
    conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], body: str
) -> tuple[list[tuple[str, int]], Any]:
    """The query's columns, and a row of the session's ``extra_float_digits``.

    Where libpq has a pipeline mode (14+), the query is parsed and described, not run nor
    planned (``_psycopg.describe``), with the setting, in one round trip. Inside a
    transaction it goes between a ``SAVEPOINT`` and its ``RELEASE`` in that same round
    trip, so that a failure aborts nothing of the caller's (rolled back to the savepoint).
    The state that decides it is read under the connection's lock. A transaction not begun
    yet (psycopg begins it with the first statement), or no pipeline mode: the describe
    runs as a statement (:func:`_describe_by_query`).
    """
    if not psycopg.Pipeline.is_supported():
        return _describe_by_query(conn, cur, body)
    around = _Around(conn)
    try:
        results = _psycopg.run_and_describe(conn, describe_statement(body).as_bytes(conn), around)
        if results is None:
            return _describe_by_query(conn, cur, body)
        return _described(conn, results, around.at)
    except BaseException:
        if around.guarded and conn.info.transaction_status == TransactionStatus.INERROR:
            conn.execute(_UNDO, prepare=False)
        raise


async def _describe_async(
    conn: psycopg.AsyncConnection[Any], cur: psycopg.AsyncCursor[Any], body: str
) -> tuple[list[tuple[str, int]], Any]:
    """The async twin of :func:`_describe`."""
    if not psycopg.Pipeline.is_supported():
        return await _describe_by_query_async(conn, cur, body)
    around = _Around(conn)
    try:
        results = await _psycopg.run_and_describe_async(
            conn, describe_statement(body).as_bytes(conn), around
        )
        if results is None:
            return await _describe_by_query_async(conn, cur, body)
        return _described(conn, results, around.at)
    except BaseException:
        if around.guarded and conn.info.transaction_status == TransactionStatus.INERROR:
            await conn.execute(_UNDO, prepare=False)
        raise


def _outside_pipeline(conn: psycopg.Connection[Any]) -> None:
    """A read is a COPY, which libpq refuses in pipeline mode: psycopg's own error for it
    (as ``to_sql`` gets), before anything is sent into, or read out of, the caller's
    pipeline. Under the connection's lock: another read's describe is in pipeline mode
    while it holds it, a ``conn.pipeline()`` block of the caller's is between commands."""
    with _psycopg.lock(conn):
        _refuse_pipeline(conn)


async def _outside_pipeline_async(conn: psycopg.AsyncConnection[Any]) -> None:
    """The async twin of :func:`_outside_pipeline`."""
    async with _psycopg.lock(conn):
        _refuse_pipeline(conn)


def _refuse_pipeline(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    if conn.pgconn.pipeline_status != PipelineStatus.OFF:
        raise psycopg.NotSupportedError(
            "COPY cannot be used in pipeline mode: read outside the conn.pipeline() block"
        )


class _Around:
    """The commands around a pipelined describe, chosen from the connection's state under
    its lock (``_psycopg.run_and_describe`` calls it): the setting's query before it, and
    inside a transaction a ``SAVEPOINT`` before and its ``RELEASE`` after. None where the
    describe should run as a statement: a transaction not begun yet, or a command still
    running (a COPY of another thread: psycopg's own error comes from the statement)."""

    def __init__(self, conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.guarded = False
        self.at = 0  # where the Describe's result is

    def __call__(self) -> tuple[list[bytes], list[bytes]] | None:
        status = self.conn.info.transaction_status
        if status == TransactionStatus.ACTIVE or (
            status == TransactionStatus.IDLE and not self.conn.autocommit
        ):
            return None
        self.guarded = status == TransactionStatus.INTRANS
        before = [_SAVEPOINT_BYTES, _SETTINGS_BYTES] if self.guarded else [_SETTINGS_BYTES]
        self.at = len(before) + 1
        return before, [_RELEASE_ALONE] if self.guarded else []


def _described(
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any], results: list[Any], at: int
) -> tuple[list[tuple[str, int]], tuple[str]]:
    """The columns (the Describe's result is ``results[at]``) and the setting's row (the
    result of the command just before the Parse); the server's error, as psycopg raises
    it, where a command failed."""
    encoding = conn.info.encoding
    for result in results:
        if result.status == ExecStatus.FATAL_ERROR:
            raise _psycopg.error_from_result(result, encoding=encoding)
    value = results[at - 2].get_value(0, 0)
    described = results[at]
    columns = [
        ((described.fname(i) or b"").decode(encoding), described.ftype(i))
        for i in range(described.nfields)
    ]
    return columns, ("" if value is None else bytes(value).decode(encoding),)


def _describe_by_query(
    conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], body: str
) -> tuple[list[tuple[str, int]], Any]:
    """:func:`_describe` as a statement run (``describe_and_settings``): where libpq has no
    pipeline mode, and for the first statement of a transaction not begun yet."""
    try:
        _run_describe(conn, cur, describe_and_settings(body))
        return (_columns(cur) or [])[1:], cur.fetchone()
    except psycopg.errors.TooManyColumns:
        # As many columns as PostgreSQL allows: none left for the setting, asked apart.
        _run_describe(conn, cur, describe_statement(body))
        description = _columns(cur) or []
        return description, cur.execute(_SETTINGS).fetchone()


async def _describe_by_query_async(
    conn: psycopg.AsyncConnection[Any], cur: psycopg.AsyncCursor[Any], body: str
) -> tuple[list[tuple[str, int]], Any]:
    """The async twin of :func:`_describe_by_query`."""
    try:
        await _run_describe_async(conn, cur, describe_and_settings(body))
        return (_columns(cur) or [])[1:], await cur.fetchone()
    except psycopg.errors.TooManyColumns:
        # As many columns as PostgreSQL allows: none left for the setting, asked apart.
        await _run_describe_async(conn, cur, describe_statement(body))
        description = _columns(cur) or []
        return description, await (await cur.execute(_SETTINGS)).fetchone()


# The describe in a savepoint of its own (without a pipeline mode, the RELEASE goes with the
# describe, as one query).
_SAVEPOINT = "SAVEPOINT pgmonkey_describe"
_SAVEPOINT_BYTES = _SAVEPOINT.encode()
_RELEASE = sql.SQL(";\nRELEASE SAVEPOINT pgmonkey_describe")
_RELEASE_ALONE = b"RELEASE SAVEPOINT pgmonkey_describe"
_UNDO = "ROLLBACK TO SAVEPOINT pgmonkey_describe; RELEASE SAVEPOINT pgmonkey_describe"


def _run_describe(
    conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], statement: sql.Composed
) -> None:
    """Run a describe statement, its result then current on ``cur`` (where libpq has no
    pipeline mode: see :func:`_describe`).

    Never prepared (psycopg prepares a statement run five times): a prepared describe
    fails with "cached plan must not change result type" once its tables change columns.
    Inside a transaction it runs in a savepoint of its own, so that its failure aborts
    nothing of the caller's. The statement and the ``RELEASE`` go as one simple query,
    two round trips instead of three; the ``SAVEPOINT`` cannot join them: a query the
    server cannot parse (the caller's ``DELETE ... RETURNING`` in a subquery) runs none of
    its statements. With nothing to protect (autocommit and idle), or a transaction aborted
    already (the statement fails there as any would), it runs alone.
    """
    status = conn.info.transaction_status
    if status == TransactionStatus.INERROR or (
        conn.autocommit and status == TransactionStatus.IDLE
    ):
        cur.execute(statement, prepare=False)
        return
    cur.execute(_SAVEPOINT, prepare=False)
    try:
        cur.execute(statement + _RELEASE, prepare=False)
    except BaseException:
        if conn.info.transaction_status == TransactionStatus.INERROR:
            conn.execute(_UNDO, prepare=False)
        raise


async def _run_describe_async(
    conn: psycopg.AsyncConnection[Any], cur: psycopg.AsyncCursor[Any], statement: sql.Composed
) -> None:
    """The async twin of :func:`_run_describe`."""
    status = conn.info.transaction_status
    if status == TransactionStatus.INERROR or (
        conn.autocommit and status == TransactionStatus.IDLE
    ):
        await cur.execute(statement, prepare=False)
        return
    await cur.execute(_SAVEPOINT, prepare=False)
    try:
        await cur.execute(statement + _RELEASE, prepare=False)
    except BaseException:
        if conn.info.transaction_status == TransactionStatus.INERROR:
            await conn.execute(_UNDO, prepare=False)
        raise


def _columns(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> list[tuple[str, int]] | None:
    description = cur.description  # built anew at each access
    if description is None:
        return None
    return [(c.name, c.type_code) for c in description]


def _plan_or_raise(
    cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any],
    conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
    text: str,
    decimal: bool,
) -> Plan:
    from ._read import no_rows_error

    description = _columns(cur)
    if description is None:
        raise no_rows_error(text)
    return Plan.build(description, conn, decimal=decimal)

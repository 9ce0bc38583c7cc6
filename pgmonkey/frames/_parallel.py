"""A query read in ranges of one column over several connections at once (``partition_on=``).

The connection the caller's ``con`` lends plans the ranges (``_partition``) and reads some of
them; more connections like it (``_connect.lender``: borrowed from the same pool, or opened
from the same config) each read the others on a thread of their own, taking the next range
left until none is, with the single-connection reader. A pool lends what it can spare now
(never past its ``max_size``); the ranges are shared among the connections there are. A
psycopg connection can open no other: its ranges are read one after another on it.

Results are put together in range order: rows come range by range, and the dtypes are those
of the whole result (pandas promotes ``int64`` to ``Int64`` where a NULL occurs in some range).

``consistent``: the planning connection exports its snapshot from a ``REPEATABLE READ READ
ONLY`` transaction, held open until every range is read; each other connection imports it
(``SET TRANSACTION SNAPSHOT``) before its first read.

A failure on any connection (or Ctrl-C) stops the others: the ranges not taken are left, the
queries running are cancelled on the server (``cancel_safe``) and drained, every thread is
joined, and only then is the first error raised; each connection goes back to where it came
from usable (a pool's, given back; an opened one, closed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from typing import Any, Final

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

from pgmonkey import _connect, _psycopg
from pgmonkey.errors import TransferError

from ._engines import ARROW, PANDAS, convert
from ._partition import Split, plan_split

Read = Callable[[psycopg.Connection[Any], str], Any]
# A session's own settings: their names and values (pg_settings' setting column).
Settings = tuple[list[str], list[str]]

_ONE_SNAPSHOT: Final = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
# Once stopped, the reads still running are cancelled again this often (seconds): a read
# sent just after its connection's cancel reached an idle server was not stopped by it.
_RECANCEL: Final = 0.5


def read_split(
    con: Any, conn: psycopg.Connection[Any], text: str, split: Split, read: Read, output: str
) -> Any:
    """``text`` (a bound query) read in ``split``'s ranges, ``conn`` (lent by ``con``) first."""
    parts = read_ranges(
        con, conn, lambda c, _others: plan_split(c, text, split), read, split.consistent
    )
    return combine(parts, output)


def read_ranges(
    con: Any,
    conn: psycopg.Connection[Any],
    plan: Callable[[psycopg.Connection[Any], bool], Sequence[str]],
    read: Read,
    consistent: bool,
    *,
    resolve_env: bool = False,
) -> list[Any]:
    """``read``'s result for each statement ``plan`` makes on ``conn``, in plan order.

    ``conn`` (lent by ``con``) plans, in the snapshot the others import if ``consistent``,
    and reads; more connections like it read at once when ``con`` can open them
    (``resolve_env`` as the caller opened ``conn``) and they can read as ``conn`` does
    (``plan``'s second argument says whether they will).
    """
    # In the caller's transaction, what it wrote and has not committed only it sees, and a
    # snapshot it holds cannot be exported from the savepoint a pgmonkey object's nested
    # block opens: its ranges are read on it alone.
    alone = _has_written(conn) or (
        consistent and conn.info.transaction_status != TransactionStatus.IDLE
    )
    more = None if alone else _connect.lender(con, conn, resolve_env=resolve_env)
    with _snapshot(conn, consistent, export=more is not None) as snapshot:
        try:
            settings = None if more is None else _session_settings(conn)
            statements = plan(conn, more is not None and settings is not None)
            if more is None or settings is None or len(statements) == 1:
                return [read(conn, q) for q in statements]
            return _read_parallel(conn, more, statements, read, snapshot, settings)
        except BaseException:
            # Ctrl-C, an error mid-COPY: the server stops, the connection stays usable.
            _psycopg.cancel_and_drain(conn)
            raise


def _has_written(conn: psycopg.Connection[Any]) -> bool:
    """Whether ``conn`` is in a transaction that has written: what it wrote and did not
    commit yet is seen by no other connection (nor in a snapshot it exports), so its ranges
    are all read on it."""
    if conn.info.transaction_status != TransactionStatus.INTRANS:
        return False
    row = conn.execute("SELECT pg_catalog.txid_current_if_assigned() IS NOT NULL").fetchone()
    return bool(row and row[0])


# Session settings not given to the other connections: the characteristics of the lent
# session's transaction (each other connection's transaction is set up here), temp_buffers
# (no session may change it once it has used a temporary table), and the idle timeout the
# other connections' transactions go without.
_NOT_GIVEN: Final = (
    "transaction_isolation",
    "transaction_read_only",
    "transaction_deferrable",
    "temp_buffers",
    "idle_in_transaction_session_timeout",
)


def _session_settings(conn: psycopg.Connection[Any]) -> Settings | None:
    """What the other connections need to read as ``conn`` does, or None if they cannot.

    They are new sessions: ``conn``'s own ``SET``s (search_path, TimeZone, DateStyle, a
    placeholder a row-level security policy reads, ...) are given to each for its
    transaction; a temporary table, a ``SET ROLE`` or a ``SET SESSION AUTHORIZATION``
    cannot be, nor settings a role without access to ``pg_settings`` cannot list: then
    ``conn`` reads every range itself.
    """
    row = conn.execute(
        "SELECT current_user = session_user AND session_user = %s"
        " AND NOT EXISTS (SELECT FROM pg_catalog.pg_class"
        "  WHERE relnamespace = pg_catalog.pg_my_temp_schema())"
        " AND pg_catalog.has_table_privilege('pg_catalog.pg_settings', 'SELECT')",
        (conn.info.user,),
    ).fetchone()
    if row is None or not row[0]:
        return None
    row = conn.execute(
        "WITH _s AS (SELECT name, setting FROM pg_catalog.pg_settings"
        " WHERE source = 'session' AND context IN ('user', 'superuser')"
        " AND name <> ALL(%s))"
        " SELECT ARRAY(SELECT name FROM _s ORDER BY name),"
        " ARRAY(SELECT setting FROM _s ORDER BY name)",
        (list(_NOT_GIVEN),),
    ).fetchone()
    assert row is not None
    return list(row[0]), list(row[1])


@contextmanager
def _snapshot(
    conn: psycopg.Connection[Any], consistent: bool, export: bool
) -> Iterator[str | None]:
    """The block in one snapshot on ``conn`` if ``consistent``; its id if ``export``."""
    if not consistent:
        yield None
        return
    if conn.info.transaction_status == TransactionStatus.IDLE:
        with conn.transaction():
            conn.execute(_ONE_SNAPSHOT)
            if export:
                # This transaction holds the snapshot the others read in, idle once its own
                # ranges are read: a server's idle-in-transaction timeout must not end it.
                conn.execute(
                    "SELECT pg_catalog.set_config('idle_in_transaction_session_timeout', '0', true)"
                )
            yield _export(conn) if export else None
        return
    # The caller's own transaction: one snapshot already, if it is REPEATABLE READ or more.
    row = conn.execute("SELECT pg_catalog.current_setting('transaction_isolation')").fetchone()
    level = row[0] if row is not None else None
    if level not in ("repeatable read", "serializable"):
        raise TransferError(
            "consistent=True needs a connection outside a transaction or in a repeatable read "
            f"one, not in a {level!r} transaction"
        )
    yield _export(conn) if export else None


def _export(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()
    assert row is not None
    return str(row[0])


class _Ranges:
    """The ranges left to read, what was read, and the first failure (shared by threads)."""

    def __init__(self, queries: Sequence[str]) -> None:
        self.queries = list(queries)
        self.results: list[Any] = [None] * len(queries)
        self.failure: BaseException | None = None
        self._next = 0
        self._stopped = False
        self._reading: set[psycopg.Connection[Any]] = set()
        self._lock = threading.Lock()

    @property
    def left(self) -> bool:
        with self._lock:
            return not self._stopped and self._next < len(self.queries)

    def take(self, conn: psycopg.Connection[Any]) -> int | None:
        """The next range for ``conn`` to read, or None (all taken, or stopped)."""
        with self._lock:
            if self._stopped or self._next == len(self.queries):
                return None
            self._next += 1
            self._reading.add(conn)
            return self._next - 1

    def done(self, conn: psycopg.Connection[Any], index: int, result: Any) -> None:
        with self._lock:
            self.results[index] = result
            self._reading.discard(conn)

    def fail(self, error: BaseException, conn: psycopg.Connection[Any] | None = None) -> None:
        """Stop: keep the first error, cancel the queries the other connections run.

        The errors the cancellation itself causes come after the first one: not kept. The
        lock is held until every cancel request is delivered, so no connection can finish
        its read, go back to its pool and be lent to someone whose query a late cancel
        would stop.
        """
        with self._lock:
            if not self._stopped:
                self._stopped = True
                self.failure = error
            if conn is not None:
                self._reading.discard(conn)
            self._cancel_reads()

    def cancel_again(self) -> None:
        """Once stopped, cancel the reads still running (see ``_RECANCEL``)."""
        with self._lock:
            if self._stopped:
                self._cancel_reads()

    def _cancel_reads(self) -> None:
        for conn in self._reading:
            with suppress(Exception):  # a connection already gone ends its read by itself
                conn.cancel_safe()


def _read_parallel(
    conn: psycopg.Connection[Any],
    more: _connect.Lender,
    queries: Sequence[str],
    read: Read,
    snapshot: str | None,
    settings: Settings,
) -> list[Any]:
    ranges = _Ranges(queries)
    extra = max(0, min(len(queries) - 1, more.spare()))
    threads = [threading.Thread(target=_lent, args=(ranges, read, conn), daemon=True)]
    threads += [
        threading.Thread(
            target=_another, args=(ranges, read, more, snapshot, settings), daemon=True
        )
        for _ in range(extra)
    ]
    try:
        for thread in threads:
            thread.start()
        _join(ranges, threads)
    except BaseException as error:  # Ctrl-C while the threads read
        ranges.fail(error)
        # Through further Ctrl-C: until they end, the threads hold connections of the
        # caller's (the one lent, a pool's), which go back only then.
        while True:
            with suppress(KeyboardInterrupt):
                _join(ranges, threads)
                break
        raise
    if ranges.failure is not None:
        raise ranges.failure
    return ranges.results


def _join(ranges: _Ranges, threads: Sequence[threading.Thread]) -> None:
    """Wait for every thread started; once stopped, cancel again what still reads."""
    for thread in threads:
        while thread.ident is not None and thread.is_alive():
            thread.join(_RECANCEL)
            ranges.cancel_again()


def _read_ranges(ranges: _Ranges, read: Read, conn: psycopg.Connection[Any]) -> None:
    """Read ranges on ``conn`` until none is left; a failure stops every connection."""
    while (index := ranges.take(conn)) is not None:
        try:
            result = read(conn, ranges.queries[index])
        except BaseException as error:
            _psycopg.cancel_and_drain(conn)
            ranges.fail(error, conn)
            raise
        ranges.done(conn, index, result)


def _lent(ranges: _Ranges, read: Read, conn: psycopg.Connection[Any]) -> None:
    """A thread's work on the connection that planned (the caller ends its transaction)."""
    with suppress(BaseException):  # kept by ranges.fail, raised by the caller
        _read_ranges(ranges, read, conn)


def _another(
    ranges: _Ranges,
    read: Read,
    more: _connect.Lender,
    snapshot: str | None,
    settings: Settings,
) -> None:
    """A thread's work on a connection of its own, borrowed or opened: in the snapshot, with
    the lent session's settings, for the length of one transaction."""
    try:
        if not ranges.left:
            return  # the others were quicker: no connection to take
        with ExitStack() as stack:
            try:
                conn = stack.enter_context(more.open())
            except psycopg.OperationalError:
                # None to be had now (a pool at its limit, a server at max_connections):
                # the connections there are read this one's share.
                return
            stack.enter_context(conn.transaction())
            if snapshot is not None:
                # Before any query: a snapshot is imported first in its transaction.
                conn.execute(_ONE_SNAPSHOT)
                conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
            # The lent session's settings, and no idle-in-transaction timeout: this
            # transaction may wait between its ranges for the others.
            names, values = settings
            conn.execute(
                "SELECT pg_catalog.set_config(n, v, true)"
                " FROM unnest(%s::text[], %s::text[]) AS s(n, v)",
                ([*names, "idle_in_transaction_session_timeout"], [*values, "0"]),
            )
            _read_ranges(ranges, read, conn)
    except BaseException as error:
        ranges.fail(error)


def combine(parts: Sequence[Any], output: str) -> Any:
    """The ranges' results as one, in range order, typed as the whole result is."""
    if output == PANDAS:
        return _concat_frames(parts)
    return _concat_tables(parts)


def _concat_frames(frames: Sequence[Any]) -> Any:
    import pandas as pd

    # An empty range adds no row, and could only blur a dtype (an empty object column).
    full = [f for f in frames if len(f)]
    if len(full) <= 1:
        return (full or frames)[0]
    return pd.concat(full, ignore_index=True)


def _concat_tables(tables: Sequence[Any]) -> Any:
    import pyarrow as pa

    if any(b"pandas" in (t.schema.metadata or {}) for t in tables):
        # Tables of pandas' engine carry each range's pandas dtypes in their metadata: the
        # whole result's are those of the frames put together.
        frames = [t.to_pandas() for t in tables]
        return convert(_concat_frames(frames), ARROW)
    return pa.concat_tables(tables, promote_options="default")

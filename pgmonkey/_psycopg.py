"""Every psycopg / psycopg_pool internal pgmonkey leans on, in one room.

The fast paths and the exit-hang fix use a few things psycopg does not document as public:

- ``Connection.wait`` / ``AsyncConnection.wait``: run a libpq generator on the connection's
  socket (the read path receives many COPY rows per wait instead of one).
- ``psycopg.waiting.Wait``: what such a generator yields to wait for the socket.
- ``psycopg.errors.error_from_result``: the exception psycopg itself raises for a result.
- pq-level COPY: ``PGconn.get_copy_data``, ``consume_input``, ``is_busy``, ``get_result`` on a
  connection inside ``cursor.copy()``.
- ``Connection.cancel_safe`` (3.2+) with the same pq-level calls, to leave a connection
  usable after an interrupt in the middle of a query.
- ``AsyncConnectionPool.worker``: the classmethod that runs a pool's maintenance jobs,
  overridden so that a cancelled worker stops.
- ``pool._pool``: the idle connections of a pool, closed by hand when its event loop is gone.

Nothing else in the package reaches for these. ``tests/test_psycopg_internals.py`` has a
canary per internal, so an upgrade that changes one fails with a message naming it and the
versions, instead of a deep traceback or a fix that silently stops working. The upper bounds
on psycopg and psycopg-pool in pyproject.toml stay until those canaries pass on a new release.
psycopg_pool is imported only by the functions that need it: ``import pgmonkey`` stays light.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, TypeVar, cast

import psycopg
from psycopg.errors import error_from_result
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.pq.abc import PGconn, PGresult
from psycopg.waiting import Wait

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

__all__ = [
    "SUPPORTED",
    "PGconn",
    "PGresult",
    "Wait",
    "cancel_and_drain",
    "cancel_and_drain_async",
    "cancellable_async_pool_class",
    "copy_block",
    "copy_out_result",
    "error_from_result",
    "idle_pool_connections",
    "internal_changed",
    "versions",
    "wait",
    "wait_async",
]

SUPPORTED = "psycopg and psycopg-pool 3.2 to 3.3"

_T = TypeVar("_T")
# A libpq generator as psycopg runs them: it yields what to wait for, gets back readiness.
PQGen = Generator[Wait, Any, _T]


def versions() -> str:
    """The installed psycopg and psycopg_pool versions, for messages."""
    try:
        import psycopg_pool

        pool_version = psycopg_pool.__version__
    except ImportError:  # pragma: no cover - a dependency of pgmonkey
        pool_version = "(not installed)"
    return f"psycopg {psycopg.__version__}, psycopg_pool {pool_version}"


def internal_changed(what: str) -> RuntimeError:
    """The error for an internal that is gone or changed: names it and the versions."""
    return RuntimeError(
        f"{what} is missing or changed in {versions()}; pgmonkey supports {SUPPORTED}"
    )


def wait(conn: psycopg.Connection[Any], gen: PQGen[_T]) -> _T:
    """Run a libpq generator on *conn*'s socket (``Connection.wait``)."""
    try:
        method = conn.wait
    except AttributeError:  # pragma: no cover - caught by the canary first
        raise internal_changed("psycopg.Connection.wait") from None
    return method(gen)


async def wait_async(conn: psycopg.AsyncConnection[Any], gen: PQGen[_T]) -> _T:
    """Run a libpq generator on *conn*'s socket (``AsyncConnection.wait``)."""
    try:
        method = conn.wait
    except AttributeError:  # pragma: no cover - caught by the canary first
        raise internal_changed("psycopg.AsyncConnection.wait") from None
    return cast("_T", await method(gen))


def idle_pool_connections(pool: ConnectionPool[Any] | AsyncConnectionPool[Any]) -> list[Any]:
    """The idle connections a pool holds (``pool._pool``), for closing without its loop."""
    return list(getattr(pool, "_pool", ()))


def copy_block(
    pgconn: PGconn, size: int, encoding: str, least: int = 1
) -> PQGen[tuple[bytes, bool]]:
    """Read COPY rows until ``size`` bytes (or what has arrived); True at the end.

    psycopg's ``Copy`` iteration runs a generator and a wait per row; reading many rows
    per wait here takes under half the CPU. Run it with :func:`wait` inside
    ``cursor.copy()``; at the end it consumes the final result as psycopg would, so the
    ``Copy`` block exits cleanly.
    """
    block = bytearray()
    while len(block) < size:
        nbytes, data = pgconn.get_copy_data(1)
        if nbytes > 0:
            block += data
        elif nbytes == 0:  # nothing buffered: hand over what we have, or wait for more
            if len(block) >= least:
                break
            while not (yield Wait.R):
                continue
            pgconn.consume_input()
        else:
            result = yield from _copy_result(pgconn)
            if result.status != ExecStatus.COMMAND_OK:
                raise error_from_result(result, encoding=encoding)
            return bytes(block), True
    return bytes(block), False


def _copy_result(pgconn: PGconn) -> PQGen[PGresult]:
    first: PGresult | None = None
    while True:
        while pgconn.is_busy():
            while not (yield Wait.R):
                continue
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            break
        first = first or result
    if first is None:  # pragma: no cover - libpq always sends the COPY's result
        raise psycopg.InterfaceError("no result at the end of COPY")
    return first


def copy_out_result(pgconn: PGconn, encoding: str) -> int:
    """The rows of a ``COPY ... TO STDOUT`` whose data is over (``get_copy_data`` gave -1)."""
    results = []
    while (res := pgconn.get_result()) is not None:
        results.append(res)
    if not results:
        raise psycopg.OperationalError("copy ended without a result")
    res = results[0]
    if res.status != ExecStatus.COMMAND_OK:
        raise error_from_result(res, encoding=encoding)
    return int(res.command_tuples or 0)


def _drain(pgconn: PGconn) -> PQGen[None]:
    """Consume what the server still sends for the query in progress (COPY data included)."""
    while True:
        while pgconn.is_busy():
            while not (yield Wait.R):
                continue
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            return
        if result.status == ExecStatus.COPY_OUT:
            while (nbytes := pgconn.get_copy_data(1)[0]) != -1:
                if nbytes == 0:
                    while not (yield Wait.R):
                        continue
                    pgconn.consume_input()
        elif result.status == ExecStatus.COPY_IN:
            pgconn.put_copy_end(b"interrupted")


def _busy(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    return not conn.closed and conn.pgconn.transaction_status == TransactionStatus.ACTIVE


def cancel_and_drain(conn: psycopg.Connection[Any]) -> None:
    """After an interrupt mid-query: cancel it on the server and read what is left.

    Without this a Ctrl-C (or any error) between sending a query and reading its last row
    leaves libpq in the middle of that query, and every later command on the connection
    fails with "another command is already in progress".
    """
    if not _busy(conn):
        return
    try:
        conn.cancel_safe()
        wait(conn, _drain(conn.pgconn))
    except (psycopg.Error, OSError):
        conn.close()  # unusable: closed, so the owner replaces it at its next use


async def cancel_and_drain_async(conn: psycopg.AsyncConnection[Any]) -> None:
    """The async twin of :func:`cancel_and_drain`."""
    if not _busy(conn):
        return
    try:
        await conn.cancel_safe()
        await wait_async(conn, _drain(conn.pgconn))
    except (psycopg.Error, OSError):
        await conn.close()


class _StopOnCancel:
    """A worker's queue that raises once the worker's task has been asked to cancel."""

    __slots__ = ("_queue",)

    def __init__(self, queue: Any) -> None:
        self._queue = queue

    async def get(self) -> Any:
        task = asyncio.current_task()
        if task is not None and getattr(task, "cancelling", lambda: 0)():
            raise asyncio.CancelledError
        return await self._queue.get()


@functools.cache
def cancellable_async_pool_class() -> type[AsyncConnectionPool[Any]]:
    """psycopg_pool's async pool, whose maintenance workers honour a cancellation.

    psycopg_pool's workers catch ``CancelledError`` around each job, so a worker cancelled
    while it reconnects (``asyncio.run`` ending with the pool open after a restart or killed
    backends) goes back to waiting on its queue, and the loop waits for it forever. Once its
    task is being cancelled (Python 3.11+), the worker's next wait raises instead.
    """
    from psycopg_pool import AsyncConnectionPool

    if not isinstance(AsyncConnectionPool.__dict__.get("worker"), classmethod):
        raise internal_changed("psycopg_pool.AsyncConnectionPool.worker (a classmethod)")

    class CancellableAsyncConnectionPool(AsyncConnectionPool[Any]):
        @classmethod
        async def worker(cls, q: Any) -> None:
            await super().worker(cast(Any, _StopOnCancel(q)))

    return CancellableAsyncConnectionPool

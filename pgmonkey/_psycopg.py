"""Every psycopg / psycopg_pool internal pgmonkey leans on, in one room.

The fast paths and the exit-hang fix use a few things psycopg does not document as public:

- ``Connection.wait`` / ``AsyncConnection.wait``: run a libpq generator on the connection's
  socket (the read path receives many COPY rows per wait instead of one).
- ``psycopg.waiting.Wait``: what such a generator yields to wait for the socket.
- ``psycopg.errors.error_from_result``: the exception psycopg itself raises for a result.
- pq-level COPY: ``PGconn.get_copy_data``, ``consume_input``, ``is_busy``, ``get_result`` on a
  connection inside ``cursor.copy()``.
- ``PGconn.pgconn_ptr`` and the libpq psycopg is loaded with (psycopg-binary's bundled copy,
  or the ctypes implementation's ``pq``): the compiled receive loop (``_copyrows.c``) calls
  that libpq's ``PQgetCopyData`` on psycopg's own PGconn.
- ``Connection.lock``, held while the describe of a read runs in libpq's pipeline mode
  (Parse and Describe, not a query: psycopg has no call for it).
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
import os
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import psycopg
from psycopg.errors import error_from_result
from psycopg.pq import ExecStatus, PipelineStatus, TransactionStatus
from psycopg.pq.abc import PGconn, PGresult
from psycopg.waiting import Ready, Wait

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
    "copy_into",
    "describe",
    "error_from_result",
    "idle_pool_connections",
    "internal_changed",
    "lock",
    "rows_reader",
    "run_and_describe",
    "run_and_describe_async",
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
    end = yield from copy_into(pgconn, block, size, encoding, least)
    return bytes(block), end is not None


def copy_into(
    pgconn: PGconn, block: bytearray, size: int, encoding: str, least: int = 1
) -> PQGen[PGresult | None]:
    """Append COPY rows to ``block`` until it holds ``size`` bytes, or ``least`` bytes and
    nothing more has arrived; at the end of the data, the COPY's final result.

    The rows are taken by the compiled loop (:func:`rows_reader`) when it is there, else one
    ``get_copy_data`` call per row; either way the socket is waited for only when libpq's
    buffer holds no whole row.
    """
    read = rows_reader()
    if read is None:
        return (yield from _copy_into_by_row(pgconn, block, size, encoding, least))
    while True:
        address = cast("Any", pgconn).pgconn_ptr  # not in psycopg's PGconn protocol
        if address is None:
            raise psycopg.OperationalError("the connection is closed")
        state = read(address, block, size)
        if state == _FULL:
            return None
        if state == _EMPTY:
            if len(block) >= least:
                return None
            while not (yield Wait.R):
                continue
            pgconn.consume_input()
        elif state == _END:
            return (yield from _copy_final_result(pgconn, encoding))
        else:
            raise psycopg.OperationalError(f"failed to read copy data: {_error(pgconn)}")


def _copy_into_by_row(
    pgconn: PGconn, block: bytearray, size: int, encoding: str, least: int
) -> PQGen[PGresult | None]:
    """:func:`copy_into` without the compiled loop: a ``get_copy_data`` call per row."""
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
            return (yield from _copy_final_result(pgconn, encoding))
    return None


def _copy_final_result(pgconn: PGconn, encoding: str) -> PQGen[PGresult]:
    result = yield from _copy_result(pgconn)
    if result.status != ExecStatus.COMMAND_OK:
        raise error_from_result(result, encoding=encoding)
    return result


def _error(pgconn: PGconn) -> str:
    return pgconn.error_message.decode("utf-8", "replace").strip() or "no message from libpq"


# What the compiled loop's read_rows() returns (pgmonkey/_copyrows.c); -2 is an error.
_FULL, _EMPTY, _END = 1, 0, -1

ReadRows = Callable[[int, bytearray, int], int]


@functools.cache
def rows_reader() -> ReadRows | None:
    """The compiled COPY receive loop, bound to the libpq psycopg runs on; None without it.

    None when the extension was not built (a machine without a C compiler), when
    ``PGMONKEY_IMPL=python`` asks for the pure-Python loop, or when psycopg's libpq cannot be
    found for certain: only the library that made a PGconn may touch it, so the binding is
    made only to psycopg's own copy (psycopg-binary's bundled libpq, or the one psycopg's
    ctypes implementation loaded), never to another libpq on the machine.
    """
    if os.environ.get("PGMONKEY_IMPL", "").lower() == "python":
        return None
    try:
        from pgmonkey import _copyrows
    except ImportError:
        return None
    lib = _psycopg_libpq()
    if lib is None:
        return None
    try:
        functions = [lib[name] for name in ("PQgetCopyData", "PQfreemem")]
    except AttributeError:  # pragma: no cover - every libpq since 7.4 has them
        return None
    import ctypes

    _copyrows.bind(*(cast("int", ctypes.cast(f, ctypes.c_void_p).value) for f in functions))
    return _copyrows.read_rows


def _psycopg_libpq() -> Any:
    """The ``ctypes.CDLL`` of the libpq psycopg itself is loaded with, or None."""
    import ctypes

    implementation = psycopg.pq.__impl__
    if implementation == "python":
        from psycopg.pq import _pq_ctypes

        return getattr(_pq_ctypes, "pq", None)
    if implementation != "binary" or not hasattr(os, "RTLD_NOLOAD"):
        return None  # psycopg-c links the system's libpq: which one is not known for certain
    import glob
    import importlib.util

    spec = importlib.util.find_spec("psycopg_binary")
    if spec is None or spec.origin is None:  # pragma: no cover - it is what runs
        return None
    package = os.path.dirname(spec.origin)
    # Where the wheel repair tools put the bundled library: auditwheel (Linux), delocate (macOS).
    found = glob.glob(os.path.join(package + ".libs", "libpq*")) + glob.glob(
        os.path.join(package, ".dylibs", "libpq*")
    )
    if len(found) != 1:
        return None
    try:  # RTLD_NOLOAD: only the library already in the process, never a second copy
        return ctypes.CDLL(found[0], mode=os.RTLD_NOLOAD | os.RTLD_NOW)
    except OSError:
        return None


def _copy_result(pgconn: PGconn) -> PQGen[PGresult]:
    first: PGresult | None = None
    while True:
        yield from _result_ready(pgconn)
        result = pgconn.get_result()
        if result is None:
            break
        first = first or result
    if first is None:  # pragma: no cover - libpq always sends the COPY's result
        raise psycopg.InterfaceError("no result at the end of COPY")
    return first


def run_and_describe(
    conn: psycopg.Connection[Any],
    statement: bytes,
    around: Callable[[], tuple[list[bytes], list[bytes]] | None],
) -> list[PGresult] | None:
    """:func:`describe` on ``conn``, holding its lock as ``cursor.execute`` does, with the
    commands ``around()`` gives (called under the lock: no other command of the connection
    runs while it reads its state); None, describing nothing, where it gives None. Cut
    short (an interrupt), the describe is ended under the lock too (:func:`_end_describe`):
    only a describe of this call can be in pipeline mode there."""
    with lock(conn):
        commands = around()
        if commands is None:
            return None
        try:
            return wait(conn, describe(conn.pgconn, statement, *commands))
        except BaseException:
            _end_describe(conn)
            raise


async def run_and_describe_async(
    conn: psycopg.AsyncConnection[Any],
    statement: bytes,
    around: Callable[[], tuple[list[bytes], list[bytes]] | None],
) -> list[PGresult] | None:
    """The async twin of :func:`run_and_describe`."""
    async with lock(conn):
        commands = around()
        if commands is None:
            return None
        try:
            return await wait_async(conn, describe(conn.pgconn, statement, *commands))
        except BaseException:
            await _end_describe_async(conn)
            raise


def lock(conn: Any) -> Any:
    """The lock psycopg holds while a command of the connection runs (``Connection.lock``):
    a ``threading.Lock``, an ``asyncio.Lock`` for an async connection."""
    try:
        return conn.lock
    except AttributeError:  # pragma: no cover - caught by the canary first
        raise internal_changed("psycopg.Connection.lock") from None


def describe(
    pgconn: PGconn, statement: bytes, before: Sequence[bytes], after: Sequence[bytes]
) -> PQGen[list[PGresult]]:
    """Describe ``statement`` between the commands ``before`` and ``after``, in one round
    trip: libpq's pipeline mode.

    ``statement`` is parsed and described as the unnamed prepared statement: the server
    analyses it (its tables locked, its result types known), neither plans nor runs it, and
    never runs more than one statement. The results, in order: each of ``before``, the
    Parse's, the Describe's, each of ``after``; after an error, the commands still to come
    are ``PIPELINE_ABORTED``. The connection leaves pipeline mode once all of them are
    read; cut short (an interrupt), :func:`run_and_describe` reads the rest.
    """
    pgconn.enter_pipeline_mode()
    for command in before:
        pgconn.send_query_params(command, None)
    pgconn.send_prepare(b"", statement)
    pgconn.send_describe_prepared(b"")
    for command in after:
        pgconn.send_query_params(command, None)
    yield from _send_sync(pgconn)
    results: list[PGresult] = []
    while (result := (yield from _pipeline_result(pgconn))).status != ExecStatus.PIPELINE_SYNC:
        results.append(result)
    pgconn.exit_pipeline_mode()
    return results


def _pipeline_result(pgconn: PGconn) -> PQGen[PGresult]:
    """The next result of a pipeline, past the end of a command's results (one None). Two
    Nones in a row: no command is left to answer, an error rather than a spin."""
    ended = False
    while True:
        yield from _result_ready(pgconn)
        result = pgconn.get_result()
        if result is not None:
            return result
        if ended:
            raise psycopg.InterfaceError("the pipeline has no result left to read")
        ended = True


def _result_ready(pgconn: PGconn) -> PQGen[None]:
    """Receive until libpq holds the next result whole (``get_result`` would not block)."""
    while pgconn.is_busy():
        while not (yield Wait.R):
            continue
        pgconn.consume_input()


def _end_describe(conn: psycopg.Connection[Any]) -> None:
    """End a describe cut short, wherever it was cut: a Sync of its own sent (the server
    answers each, so the end is known even if the describe's own was never sent), then the
    server asked to cancel what still runs (a Parse waiting for a lock), then everything read
    to that Sync and pipeline mode left. A connection that fails at it is closed."""
    if conn.closed or conn.pgconn.pipeline_status == PipelineStatus.OFF:
        return
    try:
        wait(conn, _send_sync(conn.pgconn))
        conn.cancel_safe()
        wait(conn, _read_to_the_end(conn.pgconn))
    except (psycopg.Error, OSError):
        # Unusable: closed, so the owner replaces it at its next use. libpq's own close:
        # the connection's lock is held here, and close() may hand a pooled connection
        # back to its pool, which resets it under that lock.
        conn.pgconn.finish()


async def _end_describe_async(conn: psycopg.AsyncConnection[Any]) -> None:
    """The async twin of :func:`_end_describe`."""
    if conn.closed or conn.pgconn.pipeline_status == PipelineStatus.OFF:
        return
    try:
        await wait_async(conn, _send_sync(conn.pgconn))
        await conn.cancel_safe()
        await wait_async(conn, _read_to_the_end(conn.pgconn))
    except (psycopg.Error, OSError):
        conn.pgconn.finish()


def _send_sync(pgconn: PGconn) -> PQGen[None]:
    pgconn.pipeline_sync()
    while pgconn.flush():
        while not (ready := (yield Wait.RW)):
            continue
        if ready & Ready.R:
            pgconn.consume_input()


def _read_to_the_end(pgconn: PGconn) -> PQGen[None]:
    """Results up to the Sync after which nothing is left (the describe's own Sync, when
    it was sent, comes first), then out of pipeline mode."""
    while True:
        if (yield from _pipeline_result(pgconn)).status == ExecStatus.PIPELINE_SYNC:
            try:
                pgconn.exit_pipeline_mode()
                return
            except psycopg.OperationalError:  # results still to come
                continue


def _drain(pgconn: PGconn) -> PQGen[None]:
    """Consume what the server still sends for the query in progress (COPY data included)."""
    while True:
        yield from _result_ready(pgconn)
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
    """A query of ours in progress. Never one in pipeline mode: that is another read's
    describe (which ends its own, under the lock) or the caller's pipeline, whose results
    are not ours to read."""
    if conn.closed:
        return False
    pgconn = conn.pgconn
    return (
        pgconn.transaction_status == TransactionStatus.ACTIVE
        and pgconn.pipeline_status == PipelineStatus.OFF
    )


def cancel_and_drain(conn: psycopg.Connection[Any]) -> None:
    """After an interrupt mid-query: cancel it on the server and read what is left.

    Without this a Ctrl-C (or any error) between sending a query and reading its last row
    leaves libpq in the middle of that query, and every later command on the connection
    fails with "another command is already in progress".

    Under the connection's lock: a command another thread runs on the connection holds it
    while it runs, and is not ours to cancel (we wait for it; what it leaves is idle).
    """
    with lock(conn):
        if _busy(conn):
            try:
                conn.cancel_safe()
                wait(conn, _drain(conn.pgconn))
            except (psycopg.Error, OSError):
                conn.close()  # unusable: closed, so the owner replaces it at its next use


async def cancel_and_drain_async(conn: psycopg.AsyncConnection[Any]) -> None:
    """The async twin of :func:`cancel_and_drain`."""
    async with lock(conn):
        if _busy(conn):
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

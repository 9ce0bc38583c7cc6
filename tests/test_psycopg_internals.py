"""Canaries: one test per psycopg / psycopg_pool internal that pgmonkey/_psycopg.py leans on.

Each exercises the internal the way pgmonkey does, against the real sandbox server, and fails
with a message naming the internal and the installed versions. When one fails after an
upgrade, fix ``pgmonkey/_psycopg.py`` (the only module that reaches for these), then raise the
upper bounds in pyproject.toml.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from pgmonkey import _psycopg


def _canary(what: str) -> str:
    return f"{what} changed in {_psycopg.versions()}: pgmonkey/_psycopg.py needs it"


@pytest.fixture
def conn(superuser_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(superuser_dsn, autocommit=True) as c:
        yield c


def test_connection_wait_runs_a_generator_to_its_value(conn: psycopg.Connection[Any]) -> None:
    def gen() -> _psycopg.PQGen[int]:
        conn.pgconn.send_query(b"SELECT 1")
        while conn.pgconn.is_busy():
            yield _psycopg.Wait.R
            conn.pgconn.consume_input()
        while conn.pgconn.get_result() is not None:
            pass
        return 42

    assert _psycopg.wait(conn, gen()) == 42, _canary("psycopg.Connection.wait")


async def test_async_connection_wait_runs_a_generator(superuser_dsn: str) -> None:
    def gen() -> _psycopg.PQGen[str]:
        yield _psycopg.Wait.W  # the socket is writable at once
        return "done"

    async with await psycopg.AsyncConnection.connect(superuser_dsn) as aconn:
        value = await _psycopg.wait_async(aconn, gen())
    assert value == "done", _canary("psycopg.AsyncConnection.wait")


def test_wait_enum_has_the_members_the_generators_yield() -> None:
    members = {m.name for m in _psycopg.Wait}
    assert {"R", "W", "RW"} <= members, _canary("psycopg.waiting.Wait")


def test_error_from_result_makes_psycopgs_own_exception(conn: psycopg.Connection[Any]) -> None:
    conn.pgconn.send_query(b"SELECT 1/0")
    result = conn.pgconn.get_result()
    assert result is not None
    while conn.pgconn.get_result() is not None:
        pass
    error = _psycopg.error_from_result(result, encoding=conn.info.encoding)
    assert isinstance(error, psycopg.errors.DivisionByZero), _canary("error_from_result")
    assert "division by zero" in str(error)


def test_ready_enum_has_the_members_the_generators_test() -> None:
    assert {"R", "W"} <= {m.name for m in _psycopg.Ready}, _canary("psycopg.waiting.Ready")


def test_describe_runs_and_describes_in_pipeline_mode(conn: psycopg.Connection[Any]) -> None:
    results = _psycopg.run_and_describe(
        conn, b"SELECT 2 AS two, 'x' AS x", lambda: ([b"SELECT 'one'"], [b"SELECT 'three'"])
    )
    assert results is not None
    ok = psycopg.pq.ExecStatus
    statuses = [ok.TUPLES_OK, ok.COMMAND_OK, ok.COMMAND_OK, ok.TUPLES_OK]
    assert [r.status for r in results] == statuses, _canary("libpq pipeline mode")
    assert results[0].get_value(0, 0) == b"one" and results[3].get_value(0, 0) == b"three"
    described = results[2]
    assert [described.fname(i) for i in range(described.nfields)] == [b"two", b"x"]
    assert [described.ftype(i) for i in range(described.nfields)] == [23, 25]
    # An error: the commands after it are aborted, and the connection leaves the mode.
    results = _psycopg.run_and_describe(
        conn, b"SELECT * FROM no_such_table", lambda: ([b"SELECT 1"], [])
    )
    assert results is not None
    assert [r.status for r in results] == [ok.TUPLES_OK, ok.FATAL_ERROR, ok.PIPELINE_ABORTED]
    assert conn.pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF
    assert conn.execute("SELECT 3").fetchone() == (3,)


def test_connection_lock_is_held_while_a_command_runs(
    conn: psycopg.Connection[Any], superuser_dsn: str
) -> None:
    # The lock run_and_describe takes (and _psycopg.lock gives) is the one cursor.execute
    # holds: seen held while an execute waits for a table another session has locked.
    conn.execute("DROP TABLE IF EXISTS pgm_lock_canary")
    conn.execute("CREATE TABLE pgm_lock_canary (a int)")
    with psycopg.connect(superuser_dsn, autocommit=True) as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE pgm_lock_canary IN ACCESS EXCLUSIVE MODE")
        waiter = threading.Thread(target=conn.execute, args=("SELECT * FROM pgm_lock_canary",))
        waiter.start()
        waiting: Any = (False,)
        with psycopg.connect(superuser_dsn, autocommit=True) as admin:
            while not waiting[0]:
                waiting = admin.execute(
                    "SELECT count(*) > 0 FROM pg_locks"
                    " WHERE NOT granted AND relation = 'pgm_lock_canary'::regclass"
                ).fetchone()
                time.sleep(0.01)
        held = _psycopg.lock(conn).locked()
        holder.execute("COMMIT")
        waiter.join()
    conn.execute("DROP TABLE pgm_lock_canary")
    assert held, _canary("psycopg.Connection.lock")


def test_pq_level_copy_reads_blocks_and_the_row_count(conn: psycopg.Connection[Any]) -> None:
    query = "COPY (SELECT g, 'x' || g FROM generate_series(1, 1000) g) TO STDOUT"
    with conn.cursor() as cur, cur.copy(query):
        blocks, end = [], False
        while not end:
            block, end = _psycopg.wait(
                conn, _psycopg.copy_block(conn.pgconn, 4096, conn.info.encoding)
            )
            blocks.append(block)
    data = b"".join(blocks).decode()
    expected = "".join(f"{g}\tx{g}\n" for g in range(1, 1001))
    assert data == expected, _canary("pq-level COPY (get_copy_data/consume_input/get_result)")
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_pq_level_copy_final_result_counts_rows(conn: psycopg.Connection[Any]) -> None:
    block = bytearray()
    with conn.cursor() as cur, cur.copy("COPY (SELECT generate_series(1, 7)) TO STDOUT"):
        result = _psycopg.wait(
            conn, _psycopg.copy_into(conn.pgconn, block, 1 << 20, conn.info.encoding)
        )
    assert result is not None and block == b"1\n2\n3\n4\n5\n6\n7\n"
    assert result.command_tuples == 7, _canary("PGresult.command_tuples after COPY TO STDOUT")


def test_pgconn_pointer_is_psycopgs_own(conn: psycopg.Connection[Any]) -> None:
    address = cast("Any", conn.pgconn).pgconn_ptr
    assert isinstance(address, int) and address, _canary("PGconn.pgconn_ptr")


def test_sync_pool_keeps_idle_connections_in_pool_attribute(superuser_dsn: str) -> None:
    with ConnectionPool(superuser_dsn, min_size=2, max_size=2, open=True) as pool:
        pool.wait(timeout=30)
        idle = _psycopg.idle_pool_connections(pool)
        assert len(idle) == 2, _canary("psycopg_pool ConnectionPool._pool")
        assert all(isinstance(c, psycopg.Connection) for c in idle)


async def test_async_pool_worker_override_stops_on_cancel(superuser_dsn: str) -> None:
    cls = _psycopg.cancellable_async_pool_class()
    assert isinstance(AsyncConnectionPool.__dict__.get("worker"), classmethod), _canary(
        "psycopg_pool.AsyncConnectionPool.worker"
    )
    pool: AsyncConnectionPool[Any] = cls(superuser_dsn, min_size=1, max_size=1, open=False)
    await pool.open(wait=True, timeout=30)
    try:
        idle = _psycopg.idle_pool_connections(pool)
        assert len(idle) == 1, _canary("psycopg_pool AsyncConnectionPool._pool")
        async with pool.connection() as aconn:
            cur = await aconn.execute("SELECT 1")
            assert await cur.fetchone() == (1,)
    finally:
        # Closing cancels the workers: with the override they stop instead of waiting on.
        await asyncio.wait_for(pool.close(), timeout=30)

"""The COPY receive loop, compiled (pgmonkey/_copyrows.c) and pure Python, against psycopg.

Both loops must give exactly the bytes psycopg's own ``Copy`` iteration gives, in blocks of
the asked size, and the errors psycopg raises; the compiled one must be bound to the libpq
psycopg runs on (a PGconn handled by another copy of libpq would corrupt memory).
"""

from __future__ import annotations

import ctypes
import shutil
import sysconfig
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pandas as pd
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

import pgmonkey
from pgmonkey import _psycopg

LOOPS = ["compiled", "python"]


def _use(loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if loop == "python":
        monkeypatch.setenv("PGMONKEY_IMPL", "python")
    else:
        monkeypatch.delenv("PGMONKEY_IMPL", raising=False)
    _psycopg.rows_reader.cache_clear()
    assert (_psycopg.rows_reader() is None) == (loop == "python")


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "compiled" and _psycopg.rows_reader() is None:
        pytest.skip("the compiled loop is not built here (see test_the_compiled_loop_is_bound)")
    _use(request.param, monkeypatch)
    yield request.param
    monkeypatch.undo()
    _psycopg.rows_reader.cache_clear()


@pytest.fixture(scope="module")
def conn(superuser_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(superuser_dsn, autocommit=True) as c:
        yield c


def _blocks(
    conn: psycopg.Connection[Any], query: sql.SQL | sql.Composed, size: int, least: int = 1
) -> tuple[list[bytes], int]:
    """The blocks of ``query``'s COPY as pgmonkey reads them, and the final row count."""
    blocks: list[bytes] = []
    with conn.cursor() as cur, cur.copy(query):
        while True:
            block = bytearray()
            result = _psycopg.wait(
                conn, _psycopg.copy_into(conn.pgconn, block, size, conn.info.encoding, least)
            )
            blocks.append(bytes(block))
            if result is not None:
                return blocks, int(result.command_tuples or 0)


def _psycopg_bytes(conn: psycopg.Connection[Any], query: sql.SQL | sql.Composed) -> bytes:
    with conn.cursor() as cur, cur.copy(query) as copy:
        return b"".join(bytes(data) for data in copy)


def _copy_of(values: Sequence[str | None]) -> sql.Composed:
    return sql.SQL("COPY (SELECT * FROM unnest({}::text[]) WITH ORDINALITY) TO STDOUT").format(
        sql.Literal(values)
    )


def _can_build() -> bool:
    """A C compiler and Python's headers: what pip needs to build the extensions."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return shutil.which(cc) is not None and headers.is_file()


def test_the_compiled_loop_is_bound(conn: psycopg.Connection[Any]) -> None:
    """Built wherever it can be, and bound to psycopg's own libpq."""
    if psycopg.pq.__impl__ not in ("binary", "python"):
        pytest.skip(f"psycopg's {psycopg.pq.__impl__} implementation: the Python loop is used")
    if not _can_build():
        pytest.skip("no C compiler or Python headers: the extension is optional, not built")
    _psycopg.rows_reader.cache_clear()
    assert _psycopg.rows_reader() is not None, "pgmonkey._copyrows is not built or not bound"
    lib = _psycopg._psycopg_libpq()
    backend_pid = lib.PQbackendPID
    backend_pid.argtypes, backend_pid.restype = [ctypes.c_void_p], ctypes.c_int
    # The same library answers about psycopg's own PGconn.
    assert backend_pid(cast("Any", conn.pgconn).pgconn_ptr) == conn.info.backend_pid


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(
        st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=300) | st.none(),
        max_size=60,
    ),
    size=st.integers(1, 4000),
    least=st.integers(1, 4000),
)
def test_blocks_hold_exactly_psycopgs_bytes(
    conn: psycopg.Connection[Any], loop: str, values: list[str | None], size: int, least: int
) -> None:
    query = _copy_of(values)
    blocks, rows = _blocks(conn, query, size, least)
    assert b"".join(blocks) == _psycopg_bytes(conn, query)
    assert rows == len(values)
    # A block stops at the first whole row that reaches ``size``: never a row more.
    line = max((len(b) for b in b"".join(blocks).splitlines(keepends=True)), default=0)
    assert all(len(block) < size + line for block in blocks)
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_rows_larger_than_a_block_and_than_libpqs_buffer(
    conn: psycopg.Connection[Any], loop: str
) -> None:
    values = ["x" * 3_000_000, *(f"row {i}" for i in range(20_000)), "é" * 1_000_000]
    query = _copy_of(values)
    blocks, rows = _blocks(conn, query, 1 << 16, 1 << 16)
    assert b"".join(blocks) == _psycopg_bytes(conn, query)
    assert rows == len(values)
    assert max(len(b) for b in blocks) > 3_000_000  # the big row whole, in one block


async def test_the_async_connection_reads_the_same_blocks(
    superuser_dsn: str, conn: psycopg.Connection[Any], loop: str
) -> None:
    query = _copy_of([f"value {i}\t\\ \n" for i in range(5000)])
    blocks = []
    async with await psycopg.AsyncConnection.connect(superuser_dsn) as aconn:
        async with aconn.cursor() as cur, cur.copy(query):
            while True:
                block = bytearray()
                end = await _psycopg.wait_async(
                    aconn, _psycopg.copy_into(aconn.pgconn, block, 1000, "utf-8")
                )
                blocks.append(bytes(block))
                if end is not None:
                    break
    assert b"".join(blocks) == _psycopg_bytes(conn, query)


def test_an_error_in_the_middle_raises_psycopgs_and_the_connection_stays_usable(
    conn: psycopg.Connection[Any], loop: str
) -> None:
    # Rows go out before the division by zero: the error comes as the COPY's final result.
    query = sql.SQL("COPY (SELECT g, 1 / (g - 40000) FROM generate_series(1, 50000) g) TO STDOUT")
    with pytest.raises(psycopg.errors.DivisionByZero):
        _blocks(conn, query, 1 << 12)
    assert conn.execute("SELECT 7").fetchone() == (7,)


def test_a_backend_killed_in_the_middle_raises_operational_error(
    superuser_dsn: str, loop: str
) -> None:
    query = sql.SQL(
        "COPY (SELECT g, repeat('x', 100) FROM generate_series(1, 10000000) g) TO STDOUT"
    )
    with psycopg.connect(superuser_dsn, autocommit=True) as victim:
        pid = victim.info.backend_pid
        with pytest.raises(psycopg.OperationalError):
            with victim.cursor() as cur, cur.copy(query):
                first = bytearray()
                _psycopg.wait(victim, _psycopg.copy_into(victim.pgconn, first, 1 << 16, "utf-8"))
                assert first
                with psycopg.connect(superuser_dsn, autocommit=True) as killer:
                    killer.execute("SELECT pg_terminate_backend(%s)", [pid])
                while True:
                    block = bytearray()
                    end = _psycopg.wait(
                        victim, _psycopg.copy_into(victim.pgconn, block, 1 << 16, "utf-8")
                    )
                    if end is not None:
                        break
        assert victim.closed or victim.broken


def test_a_closed_connection_raises_operational_error(superuser_dsn: str, loop: str) -> None:
    closed = psycopg.connect(superuser_dsn)
    closed.close()
    with pytest.raises(psycopg.OperationalError):
        next(_psycopg.copy_into(closed.pgconn, bytearray(), 100, "utf-8"))


def test_read_sql_gives_the_same_frame_through_either_loop(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    query = """SELECT g AS id, g * 0.5 AS f, 'v' || g AS s, g % 3 = 0 AS b,
                      timestamptz '2024-01-01' + g * interval '1 minute' AS ts,
                      CASE WHEN g % 7 = 0 THEN NULL ELSE (g / 3.0)::numeric(12, 2) END AS n
               FROM generate_series(1, 200000) g"""
    if _psycopg.rows_reader() is None:
        pytest.skip("the compiled loop is not built here (see test_the_compiled_loop_is_bound)")
    frames = []
    for name in LOOPS:
        _use(name, monkeypatch)
        frames.append(pgmonkey.read_sql(query, conn))
    monkeypatch.undo()
    _psycopg.rows_reader.cache_clear()
    pd.testing.assert_frame_equal(frames[0], frames[1])
    assert len(frames[0]) == 200000

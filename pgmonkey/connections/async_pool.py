"""``async_pool``: a psycopg_pool ``AsyncConnectionPool``; each ``async with`` borrows."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from pgmonkey import _psycopg
from pgmonkey._connect import apply_settings_async, sanitized_connect_async
from pgmonkey.config import ConnectParams
from pgmonkey.connections import _lifecycle
from pgmonkey.connections._base import BaseConnection, BorrowStack, check_loop_ownership
from pgmonkey.connections.async_ import hard_close

__all__ = ["PGAsyncPoolConnection"]


def hard_close_pool(pool: AsyncConnectionPool[Any] | None) -> None:
    """Close the idle connections of a pool whose event loop is gone, without that loop.

    Its worker tasks died with the loop; awaiting ``pool.close()`` from another loop would
    wait for them forever (the 4.0 exit hang).
    """
    if pool is None:
        return
    for conn in _psycopg.idle_pool_connections(pool):
        try:
            hard_close(conn)
        except Exception:
            pass


class PGAsyncPoolConnection(BaseConnection):
    """An async pool. ``async with pool as conn`` borrows a real ``psycopg.AsyncConnection``.

    Commit on success, rollback on an exception, then the connection goes back to the pool.
    Nested blocks in one task each borrow their own connection. The pool belongs to the
    event loop that opened it; once that loop has closed, the next use opens a new pool.
    """

    connection_type = "async_pool"
    _settings_label = "async_settings"
    _resource = "pool"

    def __init__(
        self,
        config: Mapping[str, Any] | ConnectParams | str,
        async_pool_settings: Mapping[str, Any] | None = None,
        async_settings: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(config, async_settings)
        self.async_pool_settings: dict[str, Any] = dict(async_pool_settings or {})
        self.pool: AsyncConnectionPool[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._borrowed: BorrowStack[psycopg.AsyncConnection[Any]] = BorrowStack(
            f"pgmonkey-async-pool-{id(self):x}"
        )

    @property
    def async_settings(self) -> dict[str, str]:
        return dict(self._settings)

    def _is_open(self) -> bool:
        return self.pool is not None and not self.pool.closed

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await apply_settings_async(conn, self._settings, self._settings_label)

    async def _check(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """``check_on_checkout``: psycopg_pool's own check, then a sweep on failure.

        One dead connection usually means a server restart or a mass kill: checking the
        others now spares the borrower psycopg_pool's backoff (1 s, 2 s, ...) per dead one.
        """
        try:
            await AsyncConnectionPool.check_connection(conn)
        except Exception:
            pool = self.pool
            if pool is not None and not pool.closed:
                await pool.check()
            raise

    async def connect(self) -> None:
        """Create and open the pool on the running loop (idempotent).

        One direct connection is made first, so a wrong password, an unreachable host or a
        rejected setting fails here, within ``connect_timeout``, with the server's message.
        """
        self._check_process()
        loop = asyncio.get_running_loop()
        if self.pool is not None:
            if self.usable_in(loop):
                return
            check_loop_ownership(self._loop, loop, type(self).__name__)
            hard_close_pool(self.pool)
            self.pool = None
        args, check, kwargs, probe_kwargs = self._pool_plan(self.async_pool_settings)
        probe = await sanitized_connect_async(
            psycopg.AsyncConnection.connect, conninfo=self._conninfo, **probe_kwargs
        )
        async with probe:
            await self._configure(probe)
        pool: AsyncConnectionPool[Any] = _psycopg.cancellable_async_pool_class()(
            self._conninfo,
            kwargs=kwargs,
            open=False,
            configure=self._configure if self._settings else None,
            check=self._check if check else None,
            **args,
        )
        await pool.open(wait=True, timeout=float(args.get("timeout", 30.0)))
        self.pool = pool
        self._loop = loop
        _lifecycle.register(self)

    def _require(self, what: str) -> AsyncConnectionPool[Any]:
        pool = self.pool
        if pool is None or pool.closed:
            raise self._not_open(what)
        return pool

    async def _ensure_open(self) -> AsyncConnectionPool[Any]:
        if not self.usable_in(asyncio.get_running_loop()):
            await self.connect()
        return self._require("borrowing")

    @asynccontextmanager
    async def connection(
        self, timeout: float | None = None
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """Borrow a connection (psycopg_pool style): commit/rollback, then give it back."""
        self._check_process()
        pool = await self._ensure_open()
        async with pool.connection(timeout=timeout) as conn:
            self._borrowed.push(conn)
            try:
                yield conn
            finally:
                self._borrowed.pop()

    async def __aenter__(self) -> psycopg.AsyncConnection[Any]:
        self._check_process()
        pool = await self._ensure_open()
        conn: psycopg.AsyncConnection[Any] = await pool.getconn()
        self._borrowed.push(conn)
        return conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        conn = self._borrowed.pop()
        if self.inherited:
            return  # a forked child leaving a block the parent opened: the parent ends it
        try:
            await conn.__aexit__(exc_type, exc_val, exc_tb)  # pooled: commit/rollback only
        finally:
            pool = self.pool
            if pool is not None:
                await pool.putconn(conn)
            else:
                await conn.close()

    @asynccontextmanager
    async def cursor(self, *args: Any, **kwargs: Any) -> AsyncIterator[psycopg.AsyncCursor[Any]]:
        """``async with pool.cursor() as cur``: on the borrowed connection, else on one
        borrowed for the cursor's block (as in 4.0)."""
        self._check_process()
        conn = self._borrowed.top()
        if conn is not None:
            async with conn.cursor(*args, **kwargs) as cur:
                yield cur
            return
        self._require("cursor()")
        async with self.connection() as borrowed, borrowed.cursor(*args, **kwargs) as cur:
            yield cur

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A transaction on the borrowed connection, or on one borrowed for the block."""
        conn = self._borrowed.top()
        if conn is not None:
            async with conn.transaction():
                yield conn
            return
        async with self.connection() as borrowed, borrowed.transaction():
            yield borrowed

    async def commit(self) -> None:
        conn = self._borrowed.top()
        if conn is not None:
            await conn.commit()

    async def rollback(self) -> None:
        conn = self._borrowed.top()
        if conn is not None:
            await conn.rollback()

    async def disconnect(self) -> None:
        """Close the pool (idempotent); a manager that cached this object forgets it."""
        if self._let_go_if_inherited():
            return
        pool, self.pool = self.pool, None
        try:
            if pool is not None:
                if self._loop is asyncio.get_running_loop():
                    await pool.close()
                else:
                    self._close_foreign(pool, _lifecycle.PER_OBJECT_TIMEOUT, wait=True)
        finally:
            self._forget()

    def _close_foreign(self, pool: AsyncConnectionPool[Any], timeout: float, *, wait: bool) -> None:
        _lifecycle.close_async_from_sync(
            self._loop,
            pool.close,
            lambda: hard_close_pool(pool),
            timeout=timeout,
            wait=wait,
        )

    def close_now(self, timeout: float) -> None:
        if self._let_go_if_inherited():
            return
        pool, self.pool = self.pool, None
        if pool is not None:
            self._close_foreign(pool, timeout, wait=True)
        _lifecycle.unregister(self)

    def __del__(self) -> None:
        if getattr(self, "_pid", None) != os.getpid():
            return  # never close a socket a forked child inherited
        pool = getattr(self, "pool", None)
        if pool is not None and not pool.closed:
            try:
                self._close_foreign(pool, 0.0, wait=False)
            except Exception:
                pass

"""``async``: one psycopg ``AsyncConnection``, kept open and reused across ``async with`` blocks."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import psycopg

from pgmonkey._connect import apply_settings_async, sanitized_connect_async
from pgmonkey.config import ConnectParams
from pgmonkey.connections import _lifecycle
from pgmonkey.connections._base import (
    OUTER_BLOCK,
    BaseConnection,
    BorrowStack,
    check_loop_ownership,
    idle_connection_is_dead,
    savepoint_needed,
)

__all__ = ["PGAsyncConnection", "apply_settings_async"]


def hard_close(conn: psycopg.AsyncConnection[Any] | None) -> None:
    """Close the socket without an event loop (the loop that owned it is gone)."""
    if conn is not None and not conn.closed:
        conn.pgconn.finish()


class PGAsyncConnection(BaseConnection):
    """One async connection, opened on first use and kept for the next ``async with`` block.

    ``async with obj as conn`` yields the real :class:`psycopg.AsyncConnection`: commit on
    success, rollback on an exception, and the connection stays open. A dropped connection,
    or one left behind by an event loop that has closed, is replaced at the next block. A
    block nested in another on the same object (in the same task) is a savepoint of the
    outer transaction, as psycopg's ``transaction()`` nests: it never commits the outer work.
    """

    connection_type = "async"
    _settings_label = "async_settings"
    _resource = "connection"

    def __init__(
        self,
        config: Mapping[str, Any] | ConnectParams | str,
        async_settings: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(config, async_settings)
        self.connection: psycopg.AsyncConnection[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._blocks: BorrowStack[Any] = BorrowStack("pgmonkey-async-blocks")

    @property
    def async_settings(self) -> dict[str, str]:
        return dict(self._settings)

    def _is_open(self) -> bool:
        return self.connection is not None and not self.connection.closed

    async def connect(self) -> None:
        """Open the connection (and apply ``async_settings``) unless open, alive, on this loop."""
        self._check_process()
        loop = asyncio.get_running_loop()
        conn = self.connection
        if conn is not None:
            if self._loop is loop and not idle_connection_is_dead(conn):
                return
            check_loop_ownership(self._loop, loop, type(self).__name__)
            hard_close(conn)
            self.connection = None
        new = await sanitized_connect_async(
            psycopg.AsyncConnection.connect, **self.connect_kwargs()
        )
        try:
            await apply_settings_async(new, self._settings, self._settings_label)
        except BaseException:
            await new.close()
            raise
        self.connection = new
        self._loop = loop
        _lifecycle.register(self)

    def _require(self, what: str) -> psycopg.AsyncConnection[Any]:
        conn = self.connection
        if conn is None or conn.closed:
            raise self._not_open(what)
        return conn

    def cursor(self, *args: Any, **kwargs: Any) -> psycopg.AsyncCursor[Any]:
        """A cursor of the open connection: use it as ``async with obj.cursor() as cur``."""
        self._check_process()
        cur: psycopg.AsyncCursor[Any] = self._require("cursor()").cursor(*args, **kwargs)
        return cur

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A transaction block on the connection (opened if needed); yields the connection."""
        await self.connect()
        conn = self._require("transaction()")
        async with conn.transaction():
            yield conn

    async def commit(self) -> None:
        if self.connection is not None and not self.connection.closed:
            await self.connection.commit()

    async def rollback(self) -> None:
        if self.connection is not None and not self.connection.closed:
            await self.connection.rollback()

    async def disconnect(self) -> None:
        """Close the connection (idempotent); a manager that cached this object forgets it."""
        if self._let_go_if_inherited():
            return
        conn, self.connection = self.connection, None
        try:
            if conn is not None:
                if self._loop is asyncio.get_running_loop():
                    await conn.close()
                else:
                    hard_close(conn)
        finally:
            self._forget()

    def close_now(self, timeout: float) -> None:
        if self._let_go_if_inherited():
            return
        conn, self.connection = self.connection, None
        # Closing an idle libpq connection needs no loop: finish() sends Terminate and closes.
        hard_close(conn)
        _lifecycle.unregister(self)

    async def __aenter__(self) -> psycopg.AsyncConnection[Any]:
        self._check_process()
        if self._blocks.top() is None:
            await self.connect()
            conn = self._require("an async with block")
            self._blocks.push(OUTER_BLOCK)
            return conn
        conn = self._require("an async with block")
        savepoint = None
        if savepoint_needed(conn):
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                # The outer block has not started its transaction yet: start it, so the
                # savepoint below belongs to it (psycopg would otherwise BEGIN and COMMIT).
                await conn.execute("SELECT 1")
            savepoint = conn.transaction()
            await savepoint.__aenter__()
        self._blocks.push(savepoint)
        return conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        block = self._blocks.pop()
        if self.inherited:
            return  # a forked child leaving a block the parent opened: the parent ends it
        if block is not OUTER_BLOCK:
            if block is not None:  # release the savepoint, or roll back to it
                await block.__aexit__(exc_type, exc_val, exc_tb)
            return
        conn = self.connection
        if conn is None or conn.closed:
            return
        if exc_type is None:
            await conn.commit()
        else:
            try:
                await conn.rollback()
            except psycopg.Error:
                pass  # the connection broke: keep the user's exception; replaced next block

    def __del__(self) -> None:
        if getattr(self, "_pid", None) != os.getpid():
            return  # never close a socket a forked child inherited
        try:
            hard_close(getattr(self, "connection", None))
        except Exception:
            pass

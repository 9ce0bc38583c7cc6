"""``pool``: a psycopg_pool ``ConnectionPool``; each ``with`` block borrows a connection."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from pgmonkey._connect import apply_settings, sanitized_connect
from pgmonkey.config import ConnectParams
from pgmonkey.connections import _lifecycle
from pgmonkey.connections._base import BaseConnection, BorrowStack

__all__ = ["PGPoolConnection"]


class PGPoolConnection(BaseConnection):
    """A connection pool. ``with pool as conn`` borrows a real :class:`psycopg.Connection`.

    The borrowed connection is committed on success, rolled back on an exception, then
    returned. Nested blocks in one thread each borrow their own connection.
    """

    connection_type = "pool"
    _settings_label = "sync_settings"
    _resource = "pool"

    def __init__(
        self,
        config: Mapping[str, Any] | ConnectParams | str,
        pool_settings: Mapping[str, Any] | None = None,
        sync_settings: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(config, sync_settings)
        self.pool_settings: dict[str, Any] = dict(pool_settings or {})
        self.pool: ConnectionPool[Any] | None = None
        self._borrowed: BorrowStack[psycopg.Connection[Any]] = BorrowStack(
            f"pgmonkey-pool-{id(self):x}"
        )

    @property
    def sync_settings(self) -> dict[str, str]:
        return dict(self._settings)

    def _is_open(self) -> bool:
        return self.pool is not None and not self.pool.closed

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        apply_settings(conn, self._settings, self._settings_label)

    def _check(self, conn: psycopg.Connection[Any]) -> None:
        """``check_on_checkout``: psycopg_pool's own check, then a sweep on failure.

        One dead connection usually means a server restart or a mass kill: checking the
        others now spares the borrower psycopg_pool's backoff (1 s, 2 s, ...) per dead one.
        """
        try:
            ConnectionPool.check_connection(conn)
        except Exception:
            pool = self.pool
            if pool is not None and not pool.closed:
                pool.check()
            raise

    def connect(self) -> None:
        """Create and open the pool (idempotent).

        One direct connection is made first, so a wrong password, an unreachable host or a
        rejected setting fails here, within ``connect_timeout``, with the server's message
        (a pool would only log it and retry until its ``timeout``).
        """
        self._check_process()
        if self.pool is not None and not self.pool.closed:
            return
        args, check, kwargs, probe_kwargs = self._pool_plan(self.pool_settings)
        with sanitized_connect(psycopg.connect, conninfo=self._conninfo, **probe_kwargs) as probe:
            self._configure(probe)
        pool: ConnectionPool[Any] = ConnectionPool(
            self._conninfo,
            kwargs=kwargs,
            open=False,
            configure=self._configure if self._settings else None,
            check=self._check if check else None,
            **args,
        )
        pool.open(wait=True, timeout=float(args.get("timeout", 30.0)))
        self.pool = pool
        _lifecycle.register(self)

    def _require(self, what: str) -> ConnectionPool[Any]:
        pool = self.pool
        if pool is None or pool.closed:
            raise self._not_open(what)
        return pool

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        """Borrow a connection (psycopg_pool style): commit/rollback, then give it back."""
        self._check_process()
        if self.pool is None or self.pool.closed:
            self.connect()
        with self._require("connection()").connection(timeout=timeout) as conn:
            self._borrowed.push(conn)
            try:
                yield conn
            finally:
                self._borrowed.pop()

    def __enter__(self) -> psycopg.Connection[Any]:
        self._check_process()
        if self.pool is None or self.pool.closed:
            self.connect()
        pool = self._require("a with block")
        conn: psycopg.Connection[Any] = pool.getconn()
        self._borrowed.push(conn)
        return conn

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        conn = self._borrowed.pop()
        if self.inherited:
            return  # a forked child leaving a block the parent opened: the parent ends it
        try:
            conn.__exit__(exc_type, exc_val, exc_tb)  # pooled: commit/rollback, stays open
        finally:
            pool = self.pool
            if pool is not None:
                pool.putconn(conn)
            else:
                conn.close()

    def cursor(self, *args: Any, **kwargs: Any) -> psycopg.Cursor[Any]:
        """A cursor of the connection this thread borrowed in the current ``with`` block."""
        self._check_process()
        self._require("cursor()")
        conn = self._borrowed.top()
        if conn is None:
            raise self._not_open("cursor() outside a with block")
        cur: psycopg.Cursor[Any] = conn.cursor(*args, **kwargs)
        return cur

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A transaction on the borrowed connection, or on one borrowed for the block."""
        conn = self._borrowed.top()
        if conn is not None:
            with conn.transaction():
                yield conn
            return
        with self.connection() as conn, conn.transaction():
            yield conn

    def commit(self) -> None:
        conn = self._borrowed.top()
        if conn is not None:
            conn.commit()

    def rollback(self) -> None:
        conn = self._borrowed.top()
        if conn is not None:
            conn.rollback()

    def disconnect(self) -> None:
        """Close the pool (idempotent); a manager that cached this object forgets it."""
        if self._let_go_if_inherited():
            return
        pool, self.pool = self.pool, None
        try:
            if pool is not None:
                pool.close()
        finally:
            self._forget()

    def close_now(self, timeout: float) -> None:
        if self._let_go_if_inherited():
            return
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.close(timeout=max(timeout, 0.05))
        _lifecycle.unregister(self)

    def __del__(self) -> None:
        if getattr(self, "_pid", None) != os.getpid():
            return  # never close a socket a forked child inherited
        pool = getattr(self, "pool", None)
        if pool is not None and not pool.closed:
            try:
                pool.close(timeout=1.0)
            except Exception:
                pass

"""``pool``: a psycopg_pool ``ConnectionPool``; each ``with`` block borrows a connection."""

from __future__ import annotations

import os
import threading
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


def _borrow(pool: ConnectionPool[Any], timeout: float | None, checked: bool) -> Any:
    """``pool.getconn(timeout)``, with no connection lost to a Ctrl-C.

    psycopg_pool's sync waiting client catches ``Exception`` only: a KeyboardInterrupt while
    it waits for a free connection leaves it queued, and the next connection given back to
    the pool is handed to it and never returned. Python delivers Ctrl-C to the main thread
    only, so there a borrow that may wait (none free, or a check on checkout) runs in a
    helper thread: the interrupt stops the wait here, and the connection the helper still
    gets is given back. Elsewhere, or with a connection free, it is a plain ``getconn``.
    """
    if threading.current_thread() is not threading.main_thread() or (
        not checked and pool.get_stats().get("pool_available", 0) > 0
    ):
        return pool.getconn(timeout)
    lock = threading.Lock()
    done = threading.Event()
    got: list[Any] = []  # the connection, or the exception, the helper ended with
    given_up = False

    def borrow() -> None:
        try:
            conn = pool.getconn(timeout)
        except BaseException as exc:  # handed to the borrower, raised there
            got.append(exc)
        else:
            with lock:
                if not given_up:
                    got.append(conn)
                    conn = None
            if conn is not None:
                pool.putconn(conn)
        finally:
            done.set()

    helper = threading.Thread(target=borrow, name="pgmonkey-pool-borrow", daemon=True)
    try:
        helper.start()  # itself a wait: the helper may be queued before it returns
        done.wait()
    except BaseException:
        with lock:
            given_up = True
            left = [c for c in got if not isinstance(c, BaseException)]
        for conn in left:
            pool.putconn(conn)
        raise
    if isinstance(got[0], BaseException):
        raise got[0]
    return got[0]


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
        self._checked = False  # check_on_checkout
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
        self._checked = check
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
        pool = self._require("connection()")
        conn: psycopg.Connection[Any] = _borrow(pool, timeout, self._checked)
        self._borrowed.push(conn)
        try:
            with conn:  # pooled: commit/rollback, stays open
                yield conn
        finally:
            self._borrowed.pop()
            pool.putconn(conn)

    def __enter__(self) -> psycopg.Connection[Any]:
        self._check_process()
        if self.pool is None or self.pool.closed:
            self.connect()
        pool = self._require("a with block")
        conn: psycopg.Connection[Any] = _borrow(pool, None, self._checked)
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

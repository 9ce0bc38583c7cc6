"""``normal``: one psycopg connection, kept open and reused across ``with`` blocks."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import psycopg

from pgmonkey._connect import apply_settings, sanitized_connect
from pgmonkey.config import ConnectParams
from pgmonkey.connections import _lifecycle
from pgmonkey.connections._base import (
    OUTER_BLOCK,
    BaseConnection,
    BorrowStack,
    idle_connection_is_dead,
    savepoint_needed,
)

__all__ = ["PGNormalConnection", "apply_settings"]


class PGNormalConnection(BaseConnection):
    """One connection, opened on first use and kept for the next ``with`` block.

    ``with obj as conn`` yields the real :class:`psycopg.Connection`: commit on success,
    rollback on an exception, and the connection stays open. A connection the server dropped
    (restart, killed backend) is replaced at the start of the next block. A block nested in
    another on the same object (in the same thread or task) is a savepoint of the outer
    transaction, as psycopg's ``transaction()`` nests: it never commits the outer work.
    """

    connection_type = "normal"
    _settings_label = "sync_settings"
    _resource = "connection"

    def __init__(
        self,
        config: Mapping[str, Any] | ConnectParams | str,
        sync_settings: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(config, sync_settings)
        self.connection: psycopg.Connection[Any] | None = None
        self._blocks: BorrowStack[Any] = BorrowStack("pgmonkey-normal-blocks")

    @property
    def sync_settings(self) -> dict[str, str]:
        return dict(self._settings)

    def _is_open(self) -> bool:
        return self.connection is not None and not self.connection.closed

    def connect(self) -> None:
        """Open the connection (and apply ``sync_settings``) unless it is open and alive."""
        self._check_process()
        conn = self.connection
        if conn is not None and not idle_connection_is_dead(conn):
            return
        if conn is not None:
            conn.close()  # closes the socket of a broken connection; no round trip
        new = sanitized_connect(psycopg.connect, **self.connect_kwargs())
        try:
            apply_settings(new, self._settings, self._settings_label)
        except BaseException:
            new.close()
            raise
        self.connection = new
        _lifecycle.register(self)

    def _require(self, what: str) -> psycopg.Connection[Any]:
        conn = self.connection
        if conn is None or conn.closed:
            raise self._not_open(what)
        return conn

    def cursor(self, *args: Any, **kwargs: Any) -> psycopg.Cursor[Any]:
        """A cursor of the open connection (psycopg's ``Connection.cursor``)."""
        self._check_process()
        cur: psycopg.Cursor[Any] = self._require("cursor()").cursor(*args, **kwargs)
        return cur

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A transaction block on the connection (opened if needed); yields the connection."""
        self.connect()
        conn = self._require("transaction()")
        with conn.transaction():
            yield conn

    def commit(self) -> None:
        if self.connection is not None and not self.connection.closed:
            self.connection.commit()

    def rollback(self) -> None:
        if self.connection is not None and not self.connection.closed:
            self.connection.rollback()

    def disconnect(self) -> None:
        """Close the connection (idempotent); a manager that cached this object forgets it."""
        if self._let_go_if_inherited():
            return
        conn, self.connection = self.connection, None
        try:
            if conn is not None:
                conn.close()
        finally:
            self._forget()

    def close_now(self, timeout: float) -> None:
        if self._let_go_if_inherited():
            return
        conn, self.connection = self.connection, None
        if conn is not None:
            conn.close()
        _lifecycle.unregister(self)

    def __enter__(self) -> psycopg.Connection[Any]:
        self._check_process()
        if self._blocks.top() is None:
            self.connect()
            conn = self._require("a with block")
            self._blocks.push(OUTER_BLOCK)
            return conn
        conn = self._require("a with block")
        savepoint = None
        if savepoint_needed(conn):
            if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                # The outer block has not started its transaction yet: start it, so the
                # savepoint below belongs to it (psycopg would otherwise BEGIN and COMMIT).
                conn.execute("SELECT 1")
            savepoint = conn.transaction()
            savepoint.__enter__()
        self._blocks.push(savepoint)
        return conn

    def __exit__(
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
                block.__exit__(exc_type, exc_val, exc_tb)
            return
        conn = self.connection
        if conn is None or conn.closed:
            return
        if exc_type is None:
            conn.commit()
        else:
            try:
                conn.rollback()
            except psycopg.Error:
                pass  # the connection broke: keep the user's exception; replaced next block

    def __del__(self) -> None:
        if getattr(self, "_pid", None) != os.getpid():
            return  # never close a socket a forked child inherited
        conn = getattr(self, "connection", None)
        if conn is not None and not conn.closed:
            try:
                conn.close()
            except Exception:
                pass

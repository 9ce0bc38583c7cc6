"""From what the caller passes as ``con`` to a sync psycopg connection."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg

from pgmonkey.errors import TransferError


@contextmanager
def sync_connection(con: Any, *, resolve_env: bool = False) -> Iterator[psycopg.Connection[Any]]:
    """Yield a psycopg connection from ``con``.

    ``con`` is a ``psycopg.Connection`` (used as is, left open), a pgmonkey connection
    object (``with con as conn``: committed or rolled back, returned to its pool), a config
    path or a config dict (a connection opened for this call and closed after it;
    ``resolve_env`` interpolates its environment and secret references).
    """
    if isinstance(con, psycopg.Connection):
        yield con
        return
    if isinstance(con, psycopg.AsyncConnection):
        raise TransferError("csv import/export needs a sync connection, got an async one")
    if isinstance(con, (str, os.PathLike, Mapping)):
        from pgmonkey.config import connect_params, load_config, resolve_config

        if isinstance(con, Mapping):
            cfg = resolve_config(con, resolve_env=resolve_env)
        else:
            cfg = load_config(con, resolve_env=resolve_env)
        with psycopg.connect(**connect_params(cfg).connect_kwargs()) as conn:
            yield conn
        return
    if hasattr(con, "__enter__") and hasattr(con, "__exit__"):
        with con as conn:
            if not isinstance(conn, psycopg.Connection):
                raise TransferError(
                    f"csv import/export needs a sync connection, {type(con).__name__} "
                    f"gave {type(conn).__name__}"
                )
            yield conn
        return
    raise TransferError(
        "con must be a psycopg connection, a pgmonkey connection or a config path, "
        f"got {type(con).__name__}"
    )

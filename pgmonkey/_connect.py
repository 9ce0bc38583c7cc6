"""The one road from whatever a caller passes to a configured psycopg connection.

Every feature that needs a connection comes through here: the four connection classes (and
so the manager), ``read_sql``/``to_sql``, CSV import and export (Python, CLI, magics), the
server audit and ``pgconfig test``. What a connection gets is decided once, here:

- a config (a path or a dict) is loaded and validated by :mod:`pgmonkey.config`, with
  ``${VAR}``/``from_env``/``from_file`` resolved only when ``resolve_env`` is asked for;
- the conninfo and psycopg options come from :func:`pgmonkey.config.connect_params`;
- the session settings of the config (``sync_settings`` for sync connections,
  ``async_settings`` for async ones) are applied with ``SET`` and committed, so a connection
  never starts inside a transaction; a setting the server refuses is a ``ConfigError``
  naming it.

What callers may pass as ``con`` (:data:`ConnectionLike`): a psycopg connection (used as is,
left open), a psycopg_pool pool (a connection is borrowed), a pgmonkey connection object
(``with con as conn``: committed or rolled back, a pool's connection given back), or a
config path or dict (a connection opened for the call and closed after it).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeAlias

import psycopg

from pgmonkey.connections._base import SET_CONFIG_SQL, is_setting_rejection, setting_error

__all__ = [
    "ConnectionLike",
    "apply_settings",
    "apply_settings_async",
    "async_connection",
    "config_of",
    "connection",
    "open_config",
    "open_config_async",
]

# What the sync and async entry points accept as ``con``; see the module docstring.
ConnectionLike: TypeAlias = Any

_KINDS = "a psycopg connection or pool, a pgmonkey connection, or a config path or dict"


def apply_settings(conn: psycopg.Connection[Any], settings: Mapping[str, str], label: str) -> None:
    """SET each session setting on *conn* and commit: the connection ends idle, never aborted."""
    for name, value in settings.items():
        try:
            conn.execute(SET_CONFIG_SQL, (name, value))
        except psycopg.Error as exc:
            if not conn.closed:
                conn.rollback()
            if is_setting_rejection(exc):
                raise setting_error(label, name, value, exc) from exc
            raise
    if not conn.autocommit:
        conn.commit()


async def apply_settings_async(
    conn: psycopg.AsyncConnection[Any], settings: Mapping[str, str], label: str
) -> None:
    """The async twin of :func:`apply_settings`."""
    for name, value in settings.items():
        try:
            await conn.execute(SET_CONFIG_SQL, (name, value))
        except psycopg.Error as exc:
            if not conn.closed:
                await conn.rollback()
            if is_setting_rejection(exc):
                raise setting_error(label, name, value, exc) from exc
            raise
    if not conn.autocommit:
        await conn.commit()


def config_of(
    source: str | os.PathLike[str] | Mapping[str, Any], *, resolve_env: bool = False
) -> dict[str, Any]:
    """A validated config from a path or a dict (references resolved with *resolve_env*)."""
    from pgmonkey.config import load_config, resolve_config

    if isinstance(source, Mapping):
        return resolve_config(source, resolve_env=resolve_env)
    return load_config(source, resolve_env=resolve_env)


def _connect_kwargs(config: Mapping[str, Any], autocommit: bool | None) -> dict[str, Any]:
    from pgmonkey.config import connect_params

    kwargs = connect_params(config).connect_kwargs()
    if autocommit is not None:
        kwargs["autocommit"] = autocommit
    return kwargs


def open_config(
    config: Mapping[str, Any], *, autocommit: bool | None = None
) -> psycopg.Connection[Any]:
    """A new connection for a validated config, its ``sync_settings`` applied."""
    from pgmonkey.config import session_settings

    conn = psycopg.connect(**_connect_kwargs(config, autocommit))
    try:
        apply_settings(conn, session_settings(config, "normal"), "sync_settings")
    except BaseException:
        conn.close()
        raise
    return conn


async def open_config_async(
    config: Mapping[str, Any], *, autocommit: bool | None = None
) -> psycopg.AsyncConnection[Any]:
    """A new async connection for a validated config, its ``async_settings`` applied."""
    from pgmonkey.config import session_settings

    conn = await psycopg.AsyncConnection.connect(**_connect_kwargs(config, autocommit))
    try:
        await apply_settings_async(conn, session_settings(config, "async"), "async_settings")
    except BaseException:
        await conn.close()
        raise
    return conn


def _is_config(con: Any) -> bool:
    return isinstance(con, (str, os.PathLike, Mapping))


def _pool_module() -> Any:
    # A psycopg_pool pool is recognised only once psycopg_pool is imported (it must be, for
    # the caller to hold a pool): nothing here imports it for everyone else.
    return sys.modules.get("psycopg_pool")


@contextmanager
def connection(
    con: ConnectionLike, *, resolve_env: bool = False
) -> Iterator[psycopg.Connection[Any]]:
    """A configured sync psycopg connection from *con* (see the module docstring)."""
    if isinstance(con, psycopg.Connection):
        yield con
        return
    if _is_config(con):
        conn = open_config(config_of(con, resolve_env=resolve_env))
        with conn:
            yield conn
        return
    pools = _pool_module()
    if pools is not None and isinstance(con, pools.ConnectionPool):
        with con.connection() as conn:
            yield conn
        return
    if isinstance(con, psycopg.AsyncConnection) or (
        hasattr(con, "__aenter__") and not hasattr(con, "__enter__")
    ):
        raise TypeError(f"{type(con).__name__} is asynchronous: use the *_async function")
    if hasattr(con, "__enter__"):
        with con as conn:
            if not isinstance(conn, psycopg.Connection):
                raise TypeError(f"{type(con).__name__} did not give a psycopg connection")
            yield conn
        return
    raise TypeError(f"con must be {_KINDS}, not {type(con).__name__}")


@asynccontextmanager
async def async_connection(
    con: ConnectionLike, *, resolve_env: bool = False
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A configured async psycopg connection from *con* (see the module docstring)."""
    if isinstance(con, psycopg.AsyncConnection):
        yield con
        return
    if _is_config(con):
        conn = await open_config_async(config_of(con, resolve_env=resolve_env))
        async with conn:
            yield conn
        return
    pools = _pool_module()
    if pools is not None and isinstance(con, pools.AsyncConnectionPool):
        async with con.connection() as conn:
            yield conn
        return
    if isinstance(con, psycopg.Connection):
        raise TypeError(f"{type(con).__name__} is synchronous: use the sync function")
    if hasattr(con, "__aenter__"):
        async with con as conn:
            if not isinstance(conn, psycopg.AsyncConnection):
                raise TypeError(f"{type(con).__name__} did not give a psycopg async connection")
            yield conn
        return
    raise TypeError(f"con must be {_KINDS} (async), not {type(con).__name__}")

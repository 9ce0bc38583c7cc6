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
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgmonkey.connections._base import SET_CONFIG_SQL, is_setting_rejection, setting_error
from pgmonkey.errors import ConfigError, ConnectError

T = TypeVar("T")

__all__ = [
    "ConnectionLike",
    "Lender",
    "apply_settings",
    "apply_settings_async",
    "async_connection",
    "config_of",
    "connect_error",
    "connection",
    "lender",
    "open_config",
    "open_config_async",
    "sanitized_connect",
    "sanitized_connect_async",
    "server_of",
]

# Only secrets this long are searched for in a message (a 2-character "password" would
# blank out unrelated letters); libpq itself never quotes a password.
_MIN_SECRET: int = 4


def connect_error(exc: BaseException, *, conninfo: str | None = None) -> ConnectError:
    """A sanitised :class:`ConnectError` to raise in place of psycopg's connect error *exc*.

    The message is libpq's, on one line, with any credential redacted: a URL's password, a
    ``password=...``, and every sensitive value of *conninfo* (the conninfo used to connect).
    Nothing else of *exc* is kept. Raise it *outside* the ``except`` block, so that Python
    does not chain *exc* to it as ``__context__``::

        try:
            conn = psycopg.connect(**kwargs)
        except psycopg.OperationalError as exc:
            error = connect_error(exc, conninfo=kwargs["conninfo"])
        else:
            return conn
        raise error from None

    or use :func:`sanitized_connect` / :func:`sanitized_connect_async`, which do exactly that.
    """
    from pgmonkey.config._redact import REDACTED, is_sensitive_key, redact_text

    text = " ".join(str(exc).split()) or type(exc).__name__
    secrets: list[str] = []
    if conninfo:
        try:
            params = psycopg.conninfo.conninfo_to_dict(conninfo)
        except psycopg.Error:
            params = {}
        secrets = [
            str(value)
            for key, value in params.items()
            if is_sensitive_key(key) and value is not None and len(str(value)) >= _MIN_SECRET
        ]
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return ConnectError(redact_text(text))


def sanitized_connect(
    connect: Callable[..., T], /, *args: Any, conninfo: str | None = None, **kwargs: Any
) -> T:
    """``connect(*args, conninfo=conninfo, **kwargs)``; a failure raises a :class:`ConnectError`.

    Nothing is chained to the error (no ``__cause__``, no ``__context__``).
    """
    if conninfo is not None:
        kwargs["conninfo"] = conninfo
    try:
        return connect(*args, **kwargs)
    except psycopg.Error as exc:
        error = connect_error(exc, conninfo=conninfo)
    raise error from None


async def sanitized_connect_async(
    connect: Callable[..., Coroutine[Any, Any, T]],
    /,
    *args: Any,
    conninfo: str | None = None,
    **kwargs: Any,
) -> T:
    """The async :func:`sanitized_connect` (``psycopg.AsyncConnection.connect``)."""
    if conninfo is not None:
        kwargs["conninfo"] = conninfo
    try:
        return await connect(*args, **kwargs)
    except psycopg.Error as exc:
        error = connect_error(exc, conninfo=conninfo)
    raise error from None


# What the sync and async entry points accept as ``con``; see the module docstring.
ConnectionLike: TypeAlias = Any

_KINDS = "a psycopg connection or pool, a pgmonkey connection, or a config path or dict"


def apply_settings(conn: psycopg.Connection[Any], settings: Mapping[str, str], label: str) -> None:
    """SET each session setting on *conn* and commit: the connection ends idle, never aborted."""
    for name, value in settings.items():
        refused: ConfigError | None = None
        try:
            conn.execute(SET_CONFIG_SQL, (name, value))
        except psycopg.Error as exc:
            if not conn.closed:
                conn.rollback()
            if not is_setting_rejection(exc):
                raise
            refused = setting_error(label, name, value, exc)
        if refused is not None:
            raise refused
    if not conn.autocommit:
        conn.commit()


async def apply_settings_async(
    conn: psycopg.AsyncConnection[Any], settings: Mapping[str, str], label: str
) -> None:
    """The async twin of :func:`apply_settings`."""
    for name, value in settings.items():
        refused: ConfigError | None = None
        try:
            await conn.execute(SET_CONFIG_SQL, (name, value))
        except psycopg.Error as exc:
            if not conn.closed:
                await conn.rollback()
            if not is_setting_rejection(exc):
                raise
            refused = setting_error(label, name, value, exc)
        if refused is not None:
            raise refused
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
    config: Mapping[str, Any],
    *,
    autocommit: bool | None = None,
    pin: tuple[str, str, str] | None = None,
) -> psycopg.Connection[Any]:
    """A new connection for a validated config, its ``sync_settings`` applied.

    ``pin`` (from :func:`server_of`) holds it to the server another connection reached.
    """
    from pgmonkey.config import session_settings

    kwargs = _connect_kwargs(config, autocommit)
    return _open(_pinned(kwargs, pin), session_settings(config, "normal"), "sync_settings")


def _open(
    kwargs: Mapping[str, Any], settings: Mapping[str, str], label: str
) -> psycopg.Connection[Any]:
    conn = sanitized_connect(psycopg.connect, **kwargs)
    try:
        apply_settings(conn, settings, label)
    except BaseException:
        conn.close()
        raise
    return conn


def server_of(conn: psycopg.Connection[Any]) -> tuple[str, str, str]:
    """``(host, port, hostaddr)`` of the server *conn* reached, for ``pin``."""
    info = conn.info
    return info.host, str(info.port), info.hostaddr


def _pinned(kwargs: Mapping[str, Any], pin: tuple[str, str, str] | None) -> dict[str, Any]:
    """Connect kwargs held to one server: a multi-host conninfo could reach another.

    What belongs to one session on one server (an exported snapshot, say) is only found
    there; libpq picks among several hosts by ``load_balance_hosts`` and
    ``target_session_attrs``, so those go too.
    """
    if pin is None:
        return dict(kwargs)
    params = conninfo_to_dict(kwargs["conninfo"])
    params["host"], params["port"], hostaddr = pin
    if "hostaddr" in params:
        params["hostaddr"] = hostaddr
    params.pop("load_balance_hosts", None)
    params.pop("target_session_attrs", None)
    return {**kwargs, "conninfo": make_conninfo("", **params)}


async def open_config_async(
    config: Mapping[str, Any],
    *,
    autocommit: bool | None = None,
    pin: tuple[str, str, str] | None = None,
) -> psycopg.AsyncConnection[Any]:
    """A new async connection for a validated config, its ``async_settings`` applied."""
    from pgmonkey.config import session_settings

    kwargs = _connect_kwargs(config, autocommit)
    return await _open_async(
        _pinned(kwargs, pin), session_settings(config, "async"), "async_settings"
    )


async def _open_async(
    kwargs: Mapping[str, Any], settings: Mapping[str, str], label: str
) -> psycopg.AsyncConnection[Any]:
    conn = await sanitized_connect_async(psycopg.AsyncConnection.connect, **kwargs)
    try:
        await apply_settings_async(conn, settings, label)
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


@dataclass(frozen=True)
class Lender:
    """More connections like the one a ``con`` lent, for work on several at once.

    ``open()`` gives a context manager of another connection (given back or closed at its
    end); ``spare()`` says how many can be had now without waiting for someone else's.
    """

    open: Callable[[], AbstractContextManager[psycopg.Connection[Any]]]
    spare: Callable[[], int]


def lender(
    con: ConnectionLike, conn: psycopg.Connection[Any], *, resolve_env: bool = False
) -> Lender | None:
    """Where connections like *conn* (lent by :func:`connection` for *con*) come from.

    A config (path or dict) or a pgmonkey ``normal`` object opens new ones by this road
    (session settings applied), held to the server *conn* reached; a pool (pgmonkey's or
    psycopg_pool's) lends its idle connections and those it may still open, never more
    than its ``max_size``. None for a psycopg connection: it carries no password to open
    another with.
    """
    if isinstance(con, psycopg.Connection):
        return None
    pin = server_of(conn)
    if _is_config(con):
        config = config_of(con, resolve_env=resolve_env)
        return Lender(lambda: open_config(config, pin=pin), _unlimited)
    pools = _pool_module()
    if pools is not None and isinstance(con, pools.ConnectionPool):
        raw = con
        return Lender(lambda: raw.connection(), lambda: _spare(raw))
    kind = getattr(con, "connection_type", None)
    if kind == "pool" and getattr(con, "pool", None) is not None:
        obj = con
        return Lender(lambda: obj.connection(), lambda: _spare(obj.pool))
    if kind == "normal":
        kwargs = _pinned(con.connect_kwargs(), pin)
        settings = dict(con.sync_settings)
        return Lender(lambda: _open(kwargs, settings, "sync_settings"), _unlimited)
    return None


def _unlimited() -> int:
    return sys.maxsize


def _spare(pool: Any) -> int:
    """Connections a psycopg_pool pool can lend now: idle ones, and room to open more."""
    stats = pool.get_stats()
    room = int(pool.max_size) - int(stats.get("pool_size", 0))
    waiting = stats.get("requests_waiting", 0)
    return max(0, int(stats.get("pool_available", 0)) + room - int(waiting))

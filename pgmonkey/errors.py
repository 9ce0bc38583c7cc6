"""Exceptions raised by pgmonkey.

One base class, so one ``except`` catches everything pgmonkey raises on purpose::

    PgMonkeyError
     ├── ConfigError (also a ValueError)
     │    └── EnvInterpolationError
     ├── ConnectError (also a psycopg.OperationalError)
     ├── SandboxError
     ├── TransferError (also a ValueError)
     └── MagicError

Database errors from the server are psycopg's own (``psycopg.Error`` and subclasses)
and are never wrapped, so code written for psycopg keeps catching them. The one exception is
a failed connect: psycopg's error carries the connection attempt (``exc.pgconn``), whose repr
and ``.info`` show the password in clear, so pgmonkey raises a :class:`ConnectError` in its
place (see :func:`connect_error`), still a ``psycopg.OperationalError``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import psycopg

T = TypeVar("T")


class PgMonkeyError(Exception):
    """Base class of every error pgmonkey raises on purpose."""


class ConfigError(PgMonkeyError, ValueError):
    """A configuration file or dict is malformed or holds a bad value."""


class EnvInterpolationError(ConfigError):
    """An environment or secret reference in a config cannot be resolved."""


class SandboxError(PgMonkeyError):
    """The throwaway PostgreSQL cluster cannot be started, found or stopped."""


class TransferError(PgMonkeyError, ValueError):
    """A CSV import or export failed; the message names the file, line and column."""


class MagicError(PgMonkeyError):
    """A ``%pgmonkey`` magic was called with bad arguments."""


class ConnectError(PgMonkeyError, psycopg.OperationalError):
    """A connection could not be opened: libpq's message, and nothing of the attempt.

    A ``psycopg.OperationalError`` too, so ``except psycopg.OperationalError`` keeps working.
    ``pgconn`` is None: psycopg's own error keeps the failed connection, password included.
    """


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

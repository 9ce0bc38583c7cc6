"""Exceptions raised by pgmonkey.

One base class, so one ``except`` catches everything pgmonkey raises on purpose::

    PgMonkeyError
     ├── ConfigError (also a ValueError)
     │    └── EnvInterpolationError
     ├── ConnectError (also a psycopg.OperationalError)
     ├── ConnectionStateError
     ├── SandboxError
     ├── TransferError (also a ValueError)
     └── MagicError
          └── MagicCellError

Database errors from the server are psycopg's own (``psycopg.Error`` and subclasses)
and are never wrapped, so code written for psycopg keeps catching them. The one exception is
a failed connect: psycopg's error carries the connection attempt (``exc.pgconn``), whose repr
and ``.info`` show the password in clear, so pgmonkey raises a :class:`ConnectError` in its
place (made by ``pgmonkey._connect.connect_error``), still a ``psycopg.OperationalError``.
"""

from __future__ import annotations

import psycopg


class PgMonkeyError(Exception):
    """Base class of every error pgmonkey raises on purpose."""


class ConfigError(PgMonkeyError, ValueError):
    """A configuration file or dict is malformed or holds a bad value."""


class EnvInterpolationError(ConfigError):
    """An environment or secret reference in a config cannot be resolved."""


class ConnectError(PgMonkeyError, psycopg.OperationalError):
    """A connection could not be opened: libpq's message, and nothing of the attempt.

    A ``psycopg.OperationalError`` too, so ``except psycopg.OperationalError`` keeps working.
    ``pgconn`` is None: psycopg's own error keeps the failed connection, password included.
    """


class ConnectionStateError(PgMonkeyError):
    """A connection object was used in a state that does not allow it.

    Not connected yet, opened on another running event loop, or no connection borrowed.
    """


class SandboxError(PgMonkeyError):
    """The throwaway PostgreSQL cluster cannot be started, found or stopped."""


class TransferError(PgMonkeyError, ValueError):
    """A CSV import or export failed; the message names the file, line and column."""


class MagicError(PgMonkeyError):
    """A ``%pgmonkey`` magic was called with bad arguments."""


class MagicCellError(MagicError):
    """A ``%pgmonkey`` magic failed; IPython shows its message only, no traceback."""

    def _render_traceback_(self) -> list[str]:
        # IPython (and ipykernel) use this instead of a formatted traceback.
        return str(self).splitlines()

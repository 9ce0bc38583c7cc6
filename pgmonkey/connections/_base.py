"""Logic shared by the four connection objects; only the I/O differs between them.

Written once here: turning the constructor's ``config`` into a conninfo and psycopg options,
the repr (never the password), the SQL that applies session settings and its error, the
psycopg_pool keyword arguments, the per-thread / per-task stack of borrowed connections and
the cheap "did the server hang up on this idle connection?" check.
"""

from __future__ import annotations

import asyncio
import os
import re
import select
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any, ClassVar, Final, Generic, TypeVar

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgmonkey.config import ConnectParams
from pgmonkey.config._params import as_bool
from pgmonkey.config._redact import REDACTED, holds_secret, redact_text, text_has_secret
from pgmonkey.connections import _lifecycle
from pgmonkey.errors import ConfigError, ConnectionStateError

T = TypeVar("T")

# psycopg connect() options, not libpq parameters.
_PSYCOPG_OPTIONS: Final = frozenset({"autocommit", "prepare_threshold"})

# pool section key -> psycopg_pool constructor argument (check_on_checkout is handled apart).
_POOL_ARGS: Final = frozenset(
    {
        "min_size",
        "max_size",
        "timeout",
        "max_waiting",
        "max_lifetime",
        "max_idle",
        "reconnect_timeout",
        "num_workers",
        "name",
    }
)

# The statement that applies one session setting: the name and value are bound parameters,
# so no quoting is ever assembled by hand (and a list value such as a search_path works).
SET_CONFIG_SQL: Final = "SELECT pg_catalog.set_config(%s, %s, false)"


def split_config(
    config: Mapping[str, Any] | ConnectParams | str,
) -> tuple[str, dict[str, Any]]:
    """``(conninfo, psycopg options)`` from a 4.0-style kwargs dict, a ConnectParams or a dsn.

    In a dict, empty strings and None mean "not set" (as in 4.0) and ``conninfo`` / ``dsn``
    may hold a base conninfo the other keys add to.
    """
    if isinstance(config, ConnectParams):
        return config.conninfo, dict(config.options)
    if isinstance(config, str):
        return make_conninfo(config), {}
    if not isinstance(config, Mapping):
        raise TypeError(
            f"config must be a mapping of connection parameters or a ConnectParams, "
            f"got {type(config).__name__}"
        )
    base = ""
    libpq: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, value in config.items():
        if key in ("conninfo", "dsn"):
            base = str(value or "")
        elif key in _PSYCOPG_OPTIONS:
            options[key] = value
        elif value is not None and value != "":
            libpq[key] = value
    return make_conninfo(base, **libpq), options


def describe_conninfo(conninfo: str) -> dict[str, str]:
    """host, port, dbname and user of a conninfo (never the password), for reprs."""
    params = conninfo_to_dict(conninfo)
    return {k: str(params[k]) for k in ("host", "port", "dbname", "user") if params.get(k)}


def connect_timeout_of(conninfo: str) -> float | None:
    """The conninfo's ``connect_timeout`` in seconds, or None when it has none."""
    value = conninfo_to_dict(conninfo).get("connect_timeout")
    try:
        seconds = float(value) if value not in (None, "") else 0.0
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None


def setting_error(label: str, name: str, value: str, exc: psycopg.Error) -> ConfigError:
    """The error for a session setting the server refused, naming the setting.

    The server's message quotes the value: a secret one (by the setting's name, or a
    credential in the text) is redacted there too, and the server's error is not chained.
    Raise it outside the ``except`` block, so that it carries no ``__context__`` either.
    """
    detail = exc.diag.message_primary or str(exc).strip().splitlines()[0]
    secret = holds_secret(name) or text_has_secret(value)
    if secret and value:
        detail = _scrubbed(detail, name, value)
    shown = REDACTED if secret else repr(value)
    error = ConfigError(f"{label}: setting {name!r} = {shown} rejected by the server: {detail}")
    if not secret:
        error.__cause__ = exc
    return error


def _scrubbed(detail: str, name: str, value: str) -> str:
    """The server's message without any form of a secret ``value``.

    The server need not quote the value as given: it quotes a list's items one at a time,
    folds unquoted names to lower case (``tablespace "password=hunter2" does not exist``),
    re-quotes them and cuts them to 63 bytes. So every quoted name but the setting's own
    goes, then the value and each of its parts, in any case, then any run of the message
    of six characters or more found in the value; what remains is the server's reason.
    """
    detail = _QUOTED.sub(lambda m: m[0] if m[1].lower() == name.lower() else REDACTED, detail)
    parts = {value, *(p.strip("'\" ") for p in _LIST_ITEM.split(value))}
    for part in sorted((p for p in parts if p), key=len, reverse=True):
        word = rf"(?<!\w){re.escape(part)}(?!\w)"
        detail = re.sub(word, REDACTED, detail, flags=re.IGNORECASE)
    return redact_text(_without_runs_of(detail, value.lower()))


def _without_runs_of(text: str, source: str, least: int = 6) -> str:
    """``text`` with each longest run of ``least`` characters or more that ``source`` (lower
    case) holds, in any case, redacted."""
    out: list[str] = []
    low = text.lower()
    i = 0
    while i < len(text):
        end = i
        while end < len(text) and low[i : end + 1] in source:
            end += 1
        if end - i >= least:
            if not out or out[-1] != REDACTED:  # runs that meet are one
                out.append(REDACTED)
            i = end
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


# A double-quoted name in a server message (a quote inside is doubled); a list item's edge.
_QUOTED: Final = re.compile(r'"((?:[^"]|"")*)"')
_LIST_ITEM: Final = re.compile(r"[,\s]+")


def is_setting_rejection(exc: psycopg.Error) -> bool:
    """A server-side refusal of the value (not a lost connection, which stays psycopg's)."""
    return isinstance(exc, psycopg.DatabaseError) and not isinstance(exc, psycopg.OperationalError)


def pool_arguments(settings: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """psycopg_pool constructor arguments from a pool section, and its ``check_on_checkout``."""
    args = {k: v for k, v in settings.items() if k in _POOL_ARGS and v is not None}
    return args, as_bool(settings.get("check_on_checkout", False))


def idle_connection_is_dead(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """True if the server dropped this idle connection (killed backend, restart).

    Costs one non-blocking ``select()``. A connection inside a transaction or a query is left
    alone: it is in use, and an error there is the user's to see.
    """
    if conn.closed:
        return True
    pgconn = conn.pgconn
    if pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return False
    try:
        readable, _w, _x = select.select([pgconn.socket], [], [], 0)
    except (psycopg.OperationalError, OSError, ValueError):
        return True
    # Readable while idle: the server's goodbye (whose EOF may not have arrived yet), or
    # rarely a notification; replacing the connection is right for the one, harmless for
    # the other.
    return bool(readable)


def check_loop_ownership(
    owner: asyncio.AbstractEventLoop | None, loop: asyncio.AbstractEventLoop, name: str
) -> bool:
    """Whether an async object owned by *owner* must be reopened on *loop*.

    False when it already belongs to *loop*; True when its loop is gone (closed) or idle;
    an error when another loop is running it (one object per event loop).
    """
    if owner is None or owner is loop:
        return owner is None
    if not owner.is_closed() and owner.is_running():
        raise ConnectionStateError(
            f"{name} is in use by another running event loop: create one object per event loop"
        )
    return True


# What the outermost ``with`` block of a normal/async object pushes on its block stack; a
# nested block pushes its savepoint (a psycopg Transaction), or None in autocommit mode.
OUTER_BLOCK: Final = object()


def savepoint_needed(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether a nested block on *conn* must be a savepoint (not in autocommit mode)."""
    return not conn.autocommit


class BorrowStack(Generic[T]):
    """Connections borrowed by the current thread or task, innermost last.

    A ContextVar (not a thread-local) so that asyncio tasks, threads and nested ``with`` blocks
    each see their own borrowings: nested blocks each borrow their own connection.
    """

    __slots__ = ("_var",)

    def __init__(self, name: str) -> None:
        self._var: ContextVar[tuple[T, ...]] = ContextVar(name, default=())

    def push(self, item: T) -> None:
        self._var.set((*self._var.get(), item))

    def pop(self) -> T:
        items = self._var.get()
        if not items:
            raise ConnectionStateError("no connection borrowed in this thread or task")
        self._var.set(items[:-1])
        return items[-1]

    def top(self) -> T | None:
        items = self._var.get()
        return items[-1] if items else None


class BaseConnection:
    """What the four connection objects share: parameters, settings, repr, cache hooks."""

    connection_type: ClassVar[str]
    # The config section the session settings come from (for messages).
    _settings_label: ClassVar[str]
    # The attribute holding the open psycopg resource ("connection" or "pool").
    _resource: ClassVar[str]

    def __init__(
        self,
        config: Mapping[str, Any] | ConnectParams | str,
        settings: Mapping[str, Any] | None,
    ) -> None:
        self._conninfo, options = split_config(config)
        autocommit = options.pop("autocommit", None)
        # 4.0 exposed (and its factory set) a plain ``autocommit`` attribute: keep it.
        self.autocommit: bool | None = None if autocommit is None else as_bool(autocommit)
        self._options: dict[str, Any] = options
        self._settings: dict[str, str] = {str(k): str(v) for k, v in (settings or {}).items()}
        self._shown = describe_conninfo(self._conninfo)
        # The process that opens the sockets: after os.fork() the child must never close
        # them (that would end the parent's sessions) nor use them (they are shared).
        self._pid = os.getpid()
        # Set by the manager that caches this object: called once when it is disconnected.
        self.on_disconnect: Callable[[BaseConnection], None] | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The connection parameters as a dict (4.0 attribute); holds the password if any."""
        return {**conninfo_to_dict(self._conninfo), **self.connect_kwargs(with_conninfo=False)}

    def connect_kwargs(self, *, with_conninfo: bool = True) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect`` (conninfo + psycopg options)."""
        kwargs: dict[str, Any] = dict(self._options)
        kwargs["autocommit"] = bool(self.autocommit)
        if with_conninfo:
            kwargs["conninfo"] = self._conninfo
        return kwargs

    def _pool_plan(
        self, settings: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool, dict[str, Any], dict[str, Any]]:
        """``(pool args, check_on_checkout, connect kwargs, probe connect kwargs)``.

        The probe (one direct connection before the pool opens) gets a ``connect_timeout``
        even when the config has none, so a pool fails at creation instead of hanging.
        """
        args, check = pool_arguments(settings)
        kwargs = self.connect_kwargs(with_conninfo=False)
        probe = dict(kwargs)
        if connect_timeout_of(self._conninfo) is None:
            probe["connect_timeout"] = max(1, round(float(args.get("timeout", 10.0))))
        return args, check, kwargs, probe

    @property
    def inherited(self) -> bool:
        """True in a child process after ``os.fork()``: the connections are the parent's."""
        return self._pid != os.getpid()

    def _check_process(self) -> None:
        if self.inherited:
            raise ConnectionStateError(
                f"{type(self).__name__} was created in process {self._pid}, and this is "
                f"process {os.getpid()} (after os.fork()): its connections belong to the "
                "parent. Open new ones in this process: PGConnectionManager does so for the "
                "objects it hands out here"
            )

    def _let_go_if_inherited(self) -> bool:
        """In a forked child: drop the parent's resource without closing it; True if so.

        Closing would send the server a goodbye on the parent's socket and end the parent's
        session (its open transaction, its pool's idle connections). psycopg does the same:
        a libpq connection is only ever finished by the process that opened it.
        """
        if not self.inherited:
            return False
        setattr(self, self._resource, None)
        _lifecycle.unregister(self)
        self.on_disconnect = None
        return True

    def _forget(self) -> None:
        """After closing: no longer closed at exit, and evicted from the manager's cache."""
        _lifecycle.unregister(self)
        self._evicted()

    def _evicted(self) -> None:
        callback, self.on_disconnect = self.on_disconnect, None
        if callback is not None:
            callback(self)

    def _not_open(self, what: str) -> ConnectionStateError:
        return ConnectionStateError(
            f"{type(self).__name__} is not connected: call connect() or use it in "
            f"{'an async with' if 'async' in self.connection_type else 'a with'} block "
            f"before {what}"
        )

    def __repr__(self) -> str:
        shown = " ".join(f"{k}={v}" for k, v in self._shown.items())
        state = "open" if self._is_open() else "closed"
        return f"<{type(self).__name__} {self.connection_type} {shown} ({state})>"

    def _is_open(self) -> bool:
        raise NotImplementedError

    # -- the manager's interface -----------------------------------------------------------
    # PGConnectionManager caches these objects through four names and nothing else:
    # ``on_disconnect`` (set by the manager, called once when the object is disconnected),
    # ``close_now`` (close from any thread, bounded in time), ``event_loop`` (the loop an
    # async object belongs to) and ``usable_in`` (may this loop use the cached object?).

    _loop: asyncio.AbstractEventLoop | None = None

    @property
    def event_loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop an async object was opened on; None for sync objects and before."""
        return self._loop

    def usable_in(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether a cached object may be handed out on *loop* (open, and opened there)."""
        return self._loop is loop and self._is_open()

    def close_now(self, timeout: float) -> None:
        """Close synchronously within *timeout* seconds, from any thread (exit, clean-up)."""
        raise NotImplementedError

"""PGConnectionManager: a config path or dict -> a cached, connected connection object.

Each manager keeps its own cache (a fresh manager starts empty; use one per application, at
module level). Keys are the resolved config's content and the connection type, and for the
async types the event loop too: an async object never outlives the loop it runs on.

After ``os.fork()`` (multiprocessing, gunicorn ``--preload``, Celery) a child never closes or
uses the parent's connections: its manager forgets them and opens its own on the next call,
and an inherited object used directly raises :class:`~pgmonkey.errors.ConnectionStateError`.

The cached call is cheap: a path's parsed config is remembered against the file's
``stat()`` (mtime, size, inode), so an unchanged file is neither read nor parsed again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias, overload

from pgmonkey.config import (
    ASYNC_CONNECTION_TYPES,
    CONNECTION_TYPES,
    connect_params,
    load_config_cached,
    pool_settings,
    resolve_config,
    resolved_connection_type,
    session_settings,
)
from pgmonkey.connections import _lifecycle
from pgmonkey.connections._base import BaseConnection
from pgmonkey.connections.async_ import PGAsyncConnection
from pgmonkey.connections.async_pool import PGAsyncPoolConnection
from pgmonkey.connections.normal import PGNormalConnection
from pgmonkey.connections.pool import PGPoolConnection

__all__ = ["PGConnectionManager"]

SyncConnection: TypeAlias = PGNormalConnection | PGPoolConnection
AsyncConnection: TypeAlias = PGAsyncConnection | PGAsyncPoolConnection
AnyConnection: TypeAlias = SyncConnection | AsyncConnection


# Cache keys are keyed hashes: a key shown by cache_info reveals nothing about the config.
_KEY_SECRET: Final = secrets.token_bytes(16)

# (digest, connection type) or (digest, connection type, id of the event loop)
CacheKey: TypeAlias = tuple[Any, ...]


def config_digest(config: Mapping[str, Any]) -> str:
    """A stable, keyed digest of a resolved config's content."""
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), key=_KEY_SECRET, digest_size=16).hexdigest()


@dataclass(frozen=True)
class _Resolved:
    """A validated config with what the hot path needs precomputed."""

    config: dict[str, Any]
    digest: str
    default_type: str


def _resolved(config: dict[str, Any]) -> _Resolved:
    return _Resolved(config, config_digest(config), resolved_connection_type(config))


def build_connection(config: Mapping[str, Any], connection_type: str) -> AnyConnection:
    """A (not yet connected) connection object of *connection_type* for a resolved config."""
    params = connect_params(config)
    settings = session_settings(config, connection_type)
    if connection_type == "normal":
        return PGNormalConnection(params, settings)
    if connection_type == "pool":
        return PGPoolConnection(params, pool_settings(config, connection_type), settings)
    if connection_type == "async":
        return PGAsyncConnection(params, settings)
    return PGAsyncPoolConnection(params, pool_settings(config, connection_type), settings)


class PGConnectionManager:
    """Connections from a YAML config (or a dict), cached per manager.

    ``get_database_connection`` returns the connection object for ``normal`` / ``pool`` and
    an awaitable of it for ``async`` / ``async_pool``. Concurrent first calls create one
    object (one lock per key; no thread lock is ever held across an ``await``).
    """

    def __init__(self) -> None:
        self._cache: dict[CacheKey, AnyConnection] = {}
        self._lock = threading.Lock()  # guards the dicts below; held only briefly
        self._creating: dict[CacheKey, threading.Lock] = {}
        self._acreating: dict[CacheKey, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}
        self._paths: dict[tuple[str, bool, bool], _Resolved] = {}
        self._pid = os.getpid()

    def _check_fork(self) -> None:
        """In a child after ``os.fork()``: start afresh, never touching the parent's objects.

        The cached objects hold the parent's sockets (closing them would end the parent's
        sessions) and a lock may have been held by a thread that does not exist here. The
        child forgets both, and its first call opens connections of its own.
        """
        if self._pid == os.getpid():
            return
        self._lock = threading.Lock()
        self._cache = {}
        self._creating = {}
        self._acreating = {}
        self._pid = os.getpid()

    # -- public API ---------------------------------------------------------------------------

    @overload
    def get_database_connection(
        self,
        config_file_path: str | os.PathLike[str],
        connection_type: Literal["normal"],
        *,
        resolve_env: bool = ...,
        allow_sensitive_defaults: bool = ...,
        force_reload: bool = ...,
    ) -> PGNormalConnection: ...

    @overload
    def get_database_connection(
        self,
        config_file_path: str | os.PathLike[str],
        connection_type: Literal["pool"],
        *,
        resolve_env: bool = ...,
        allow_sensitive_defaults: bool = ...,
        force_reload: bool = ...,
    ) -> PGPoolConnection: ...

    @overload
    def get_database_connection(
        self,
        config_file_path: str | os.PathLike[str],
        connection_type: Literal["async"],
        *,
        resolve_env: bool = ...,
        allow_sensitive_defaults: bool = ...,
        force_reload: bool = ...,
    ) -> Awaitable[PGAsyncConnection]: ...

    @overload
    def get_database_connection(
        self,
        config_file_path: str | os.PathLike[str],
        connection_type: Literal["async_pool"],
        *,
        resolve_env: bool = ...,
        allow_sensitive_defaults: bool = ...,
        force_reload: bool = ...,
    ) -> Awaitable[PGAsyncPoolConnection]: ...

    @overload
    def get_database_connection(
        self,
        config_file_path: str | os.PathLike[str],
        connection_type: str | None = ...,
        *,
        resolve_env: bool = ...,
        allow_sensitive_defaults: bool = ...,
        force_reload: bool = ...,
    ) -> Any: ...

    def get_database_connection(
        self,
        config_file_path: str | os.PathLike[str],
        connection_type: str | None = None,
        *,
        resolve_env: bool = False,
        allow_sensitive_defaults: bool = False,
        force_reload: bool = False,
    ) -> Any:
        """The cached connection object for a config file (an awaitable for async types).

        The type comes from *connection_type*, else the file's ``connection_type``, else
        ``normal``. With the type given as a literal, type checkers know the precise class
        (``get_database_connection(path, "pool")`` is a :class:`PGPoolConnection`).
        ``force_reload=True`` closes the cached object and creates a new one.
        """
        resolved = self._load_path(config_file_path, resolve_env, allow_sensitive_defaults)
        return self._get(resolved, connection_type, force_reload)

    @overload
    def get_database_connection_from_dict(
        self,
        config_data_dictionary: Mapping[str, Any],
        connection_type: Literal["normal"],
        *,
        resolve_env: bool = ...,
        allow_sensitive_defaults: bool = ...,
        force_reload: bool = ...,
    ) -> PGNormalConnection: ...

    @overload
    def get_database_connection_from_dict(
        self,
        config_data_dictionary: Mapping[str, Any],
        connection_type: Literal["pool"],
        *,
        resolve_env: bool = ...,
        allow_sensitive_defaults: bool = ...,
        force_reload: bool = ...,
    ) -> PGPoolConnection: ...

    @overload
    def get_database_connection_from_dict(
        self,
        config_data_dictionary: Mapping[str, Any],
        connection_type: Literal["async"],
        *,
        resolve_env: bool = ...,
        allow_sensitive_defaults: bool = ...,
        force_reload: bool = ...,
    ) -> Awaitable[PGAsyncConnection]: ...

    @overload
    def get_database_connection_from_dict(
        self,
        config_data_dictionary: Mapping[str, Any],
        connection_type: Literal["async_pool"],
        *,
        resolve_env: bool = ...,
        allow_sensitive_defaults: bool = ...,
        force_reload: bool = ...,
    ) -> Awaitable[PGAsyncPoolConnection]: ...

    @overload
    def get_database_connection_from_dict(
        self,
        config_data_dictionary: Mapping[str, Any],
        connection_type: str | None = ...,
        *,
        resolve_env: bool = ...,
        allow_sensitive_defaults: bool = ...,
        force_reload: bool = ...,
    ) -> Any: ...

    def get_database_connection_from_dict(
        self,
        config_data_dictionary: Mapping[str, Any],
        connection_type: str | None = None,
        *,
        resolve_env: bool = False,
        allow_sensitive_defaults: bool = False,
        force_reload: bool = False,
    ) -> Any:
        """Like :meth:`get_database_connection`, from an in-memory config dict."""
        config = resolve_config(
            config_data_dictionary,
            resolve_env=resolve_env,
            allow_sensitive_defaults=allow_sensitive_defaults,
        )
        return self._get(_resolved(config), connection_type, force_reload)

    @property
    def cache_info(self) -> dict[str, Any]:
        """``{'size': n, 'connection_types': {short key: type}}`` of the cached objects."""
        self._check_fork()
        self._sweep_dead_loops()
        with self._lock:
            return {
                "size": len(self._cache),
                "connection_types": {_label(k): k[1] for k in self._cache},
            }

    def clear_cache(self) -> None:
        """Close every cached object and empty the cache (usable from sync code).

        Async objects are closed on their own loop when that is possible without blocking
        it, else their sockets are closed directly; nothing waits without a bound.
        """
        for obj in self._take_all():
            if isinstance(obj, (PGAsyncConnection, PGAsyncPoolConnection)):
                obj.close_now(_lifecycle.PER_OBJECT_TIMEOUT)
            else:
                obj.disconnect()

    async def clear_cache_async(self) -> None:
        """Close every cached object and empty the cache, from a coroutine.

        Objects of the running loop are closed on it; sync pools are closed in a thread so
        the loop is never blocked, and no lock is held while awaiting.
        """
        loop = asyncio.get_running_loop()
        for obj in self._take_all():
            if isinstance(obj, (PGAsyncConnection, PGAsyncPoolConnection)):
                if obj.event_loop is loop:
                    await obj.disconnect()
                else:
                    await asyncio.to_thread(obj.close_now, _lifecycle.PER_OBJECT_TIMEOUT)
            else:
                await asyncio.to_thread(obj.disconnect)

    def __repr__(self) -> str:
        return f"<PGConnectionManager cached={len(self._cache)}>"

    # -- config loading -----------------------------------------------------------------------

    def _load_path(
        self, path: str | os.PathLike[str], resolve_env: bool, allow_sensitive_defaults: bool
    ) -> _Resolved:
        # The config layer's cache re-reads only when the file (or, with resolve_env, a
        # variable or secret file it read) has changed, and returns the very same dict
        # otherwise: the digest is computed once per new dict, not once per call.
        config = load_config_cached(
            path, resolve_env=resolve_env, allow_sensitive_defaults=allow_sensitive_defaults
        )
        key = (os.path.abspath(path), resolve_env, allow_sensitive_defaults)
        entry = self._paths.get(key)
        if entry is not None and entry.config is config:
            return entry
        resolved = _resolved(config)
        self._paths[key] = resolved
        return resolved

    # -- the cache ----------------------------------------------------------------------------

    def _get(self, resolved: _Resolved, connection_type: str | None, force_reload: bool) -> Any:
        self._check_fork()
        ctype = connection_type or resolved.default_type
        if ctype not in CONNECTION_TYPES:
            ctype = resolved_connection_type(resolved.config, ctype)  # raises ConfigError
        if ctype in ASYNC_CONNECTION_TYPES:
            return self._get_async(resolved, ctype, force_reload)
        key: CacheKey = (resolved.digest, ctype)
        if not force_reload:
            obj = self._cache.get(key)
            if obj is not None:
                return obj
        with self._lock:
            lock = self._creating.setdefault(key, threading.Lock())
        with lock:
            old = self._cache.get(key)
            if old is not None and not force_reload:
                return old  # another thread created it while we waited
            if old is not None:
                self._evict(key, old)
                old.disconnect()
            obj = build_connection(resolved.config, ctype)
            assert isinstance(obj, (PGNormalConnection, PGPoolConnection))
            obj.connect()
            self._store(key, obj)
            return obj

    def _get_async(self, resolved: _Resolved, ctype: str, force_reload: bool) -> Awaitable[Any]:
        async def get() -> AsyncConnection:
            loop = asyncio.get_running_loop()
            key: CacheKey = (resolved.digest, ctype, id(loop))
            if not force_reload:
                obj = self._cache.get(key)
                if isinstance(obj, (PGAsyncConnection, PGAsyncPoolConnection)) and obj.usable_in(
                    loop
                ):
                    return obj
            self._sweep_dead_loops()
            with self._lock:
                held = self._acreating.get(key)
                if held is None or held[0] is not loop:
                    held = (loop, asyncio.Lock())
                    self._acreating[key] = held
            async with held[1]:
                old = self._cache.get(key)
                if isinstance(old, (PGAsyncConnection, PGAsyncPoolConnection)):
                    if not force_reload and old.usable_in(loop):
                        return old
                    self._evict(key, old)
                    await old.disconnect()
                new = build_connection(resolved.config, ctype)
                assert isinstance(new, (PGAsyncConnection, PGAsyncPoolConnection))
                await new.connect()
                self._store(key, new)
                return new

        return get()

    def _store(self, key: CacheKey, obj: AnyConnection) -> None:
        with self._lock:
            self._cache[key] = obj
        obj.on_disconnect = _Evictor(self, key)

    def _evict(self, key: CacheKey, obj: BaseConnection) -> None:
        with self._lock:
            if self._cache.get(key) is obj:
                del self._cache[key]
        obj.on_disconnect = None

    def _take_all(self) -> list[AnyConnection]:
        self._check_fork()
        with self._lock:
            objs = list(self._cache.values())
            self._cache.clear()
            self._acreating.clear()
        for obj in objs:
            obj.on_disconnect = None
        return objs

    def _sweep_dead_loops(self) -> None:
        """Drop (and close the sockets of) async objects whose event loop has closed."""
        with self._lock:
            dead = [
                (k, o)
                for k, o in self._cache.items()
                if isinstance(o, (PGAsyncConnection, PGAsyncPoolConnection))
                and not _lifecycle.loop_alive(o.event_loop)
            ]
            for k, _o in dead:
                del self._cache[k]
            for k in [k for k, (lp, _l) in self._acreating.items() if lp.is_closed()]:
                del self._acreating[k]
        for _k, obj in dead:
            obj.on_disconnect = None
            obj.close_now(0.0)


class _Evictor:
    """Called by a cached object's ``disconnect()``: forget it (weakly bound to the manager)."""

    __slots__ = ("_key", "_manager")

    def __init__(self, manager: PGConnectionManager, key: CacheKey) -> None:
        import weakref

        self._manager = weakref.ref(manager)
        self._key = key

    def __call__(self, obj: BaseConnection) -> None:
        manager = self._manager()
        if manager is not None:
            manager._evict(self._key, obj)


def _label(key: CacheKey) -> str:
    label = f"{key[0][:12]}:{key[1]}"
    return label if len(key) == 2 else f"{label}@loop-{key[2]:x}"

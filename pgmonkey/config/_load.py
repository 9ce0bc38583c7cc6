"""Reading a config file or dict: YAML parsing, optional interpolation, validation, caching."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pgmonkey.errors import ConfigError

from ._common import render_path
from ._files import (
    MAX_CONFIG_BYTES,
    FileProblem,
    YAMLProblem,
    decode_utf8,
    parse_yaml,
    read_limited,
)
from ._interpolate import Dependencies, interpolate
from ._redact import holds_secret, text_has_secret
from ._validate import text_parameters, validate

logger = logging.getLogger("pgmonkey.config")

_EXPECTED_DOC: Final = "a mapping (connection_type, connection_settings, ...)"


def load_config(
    path: str | os.PathLike[str],
    resolve_env: bool = False,
    strict: bool = True,
    allow_sensitive_defaults: bool = False,
) -> dict[str, Any]:
    """Load, validate and (with ``resolve_env=True``) interpolate a pgmonkey YAML config.

    Without ``resolve_env`` every value is literal, as in 4.0. Raises :class:`ConfigError`
    (or its subclass :class:`EnvInterpolationError`) naming the file, the key path, the bad
    value (redacted when sensitive) and what was expected.
    """
    cfg, _ = _load(
        os.fspath(path),
        resolve_env=resolve_env,
        strict=strict,
        allow_sensitive_defaults=allow_sensitive_defaults,
    )
    return cfg


def resolve_config(
    config: Mapping[str, Any],
    *,
    resolve_env: bool = False,
    strict: bool = True,
    allow_sensitive_defaults: bool = False,
    source: str | None = None,
) -> dict[str, Any]:
    """Validate (and optionally interpolate) an in-memory config; return a new plain dict.

    *source* names the config in error messages (a file name, ``'<dict>'``...). Each warning
    is given once (the same dict is often resolved again and again).
    """
    cfg, _ = _resolve(
        _unwrap(config, source, stacklevel=3),
        resolve_env=resolve_env,
        strict=strict,
        allow_sensitive_defaults=allow_sensitive_defaults,
        source=source,
        warn=_warn_once(source or "<dict>", ""),
    )
    return cfg


# -- implementation -------------------------------------------------------------------------


def _resolve(
    data: Mapping[Any, Any],
    *,
    resolve_env: bool,
    strict: bool,
    allow_sensitive_defaults: bool,
    source: str | None,
    warn: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], Dependencies]:
    deps = Dependencies()
    if resolve_env:
        data, deps = interpolate(
            data,
            strict=strict,
            allow_sensitive_defaults=allow_sensitive_defaults,
            source=source,
            warn=warn,
        )
    # After a strict resolution nothing may stay unresolved: check every value's type.
    cfg = validate(
        data,
        source=source,
        deferred_ok=not (resolve_env and strict),
        strict=strict,
        resolve_env=resolve_env,
        resolved=deps.resolved,
        warn=warn,
    )
    return cfg, deps


def _unwrap(data: object, source: str | None, *, stacklevel: int = 4) -> Mapping[Any, Any]:
    """Check the document is a mapping; unwrap the pre-3.0 ``postgresql:`` level (deprecated)."""
    where = f"{source}: " if source else ""
    if data is None:
        raise ConfigError(f"{where}the config is empty: expected {_EXPECTED_DOC}")
    if not isinstance(data, Mapping):
        # Only the type: a stray scalar or list may well be a secret.
        raise ConfigError(
            f"{where}<top level> is a {type(data).__name__}: expected {_EXPECTED_DOC}"
        )
    if "postgresql" in data:
        warnings.warn(
            "the top-level 'postgresql:' key is deprecated since pgmonkey 3.0: remove it and "
            "dedent its settings one level",
            DeprecationWarning,
            stacklevel=stacklevel,  # the caller of load_config / resolve_config
        )
        inner = data["postgresql"]
        if not isinstance(inner, Mapping):
            kind = "empty" if inner is None else f"a {type(inner).__name__}"
            raise ConfigError(f"{where}postgresql is {kind}: expected {_EXPECTED_DOC}")
        return inner
    return data


def _read_text(source: str) -> str:
    """The config file's text: a regular file of at most MAX_CONFIG_BYTES, UTF-8."""
    problem: str | None = None
    try:
        return decode_utf8(read_limited(source, MAX_CONFIG_BYTES))
    except FileNotFoundError:
        problem = "not found"
    except FileProblem as exc:
        problem = str(exc)
    # Raised here, outside the handler: no chained exception keeps the file's bytes.
    if problem == "not found":
        raise ConfigError(f"config file not found: {source!r}")
    raise ConfigError(f"cannot read config file {source!r}: {problem}")


def _parse(source: str, text: str) -> object:
    problem: str | None = None
    try:
        return parse_yaml(text, text_parameters())  # a safe loader (libyaml's or Python's)
    except YAMLProblem as exc:
        problem = str(exc)
    raise ConfigError(f"{source}: {problem}")


def _literal_secrets(value: object, path: tuple[object, ...] = ()) -> list[str]:
    """Key paths of secrets written in clear: a password-like key, a URL with a password."""
    found: list[str] = []
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if holds_secret(key) and _is_literal(inner):
                found.append(render_path((*path, key)))
            else:
                found += _literal_secrets(inner, (*path, key))
    elif isinstance(value, list):
        for inner in value:
            found += _literal_secrets(inner, path)
    elif isinstance(value, str) and "${" not in value and text_has_secret(value):
        found.append(render_path(path))
    return found


def _is_literal(value: object) -> bool:
    if isinstance(value, bool) or value is None or value == "":
        return False
    if isinstance(value, int | float):
        return True
    return isinstance(value, str) and "${" not in value


def _check_permissions(source: str, data: Mapping[Any, Any], warn: Callable[[str], None]) -> None:
    """libpq's ``.pgpass`` rule: a file holding a secret must not be group/other readable."""
    if os.name != "posix":
        return
    try:
        mode = os.stat(source).st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) and mode & 0o077):
        return
    secrets = _literal_secrets(data)
    if secrets:
        where = ", ".join(secrets[:3]) + (", ..." if len(secrets) > 3 else "")
        warn(
            f"{source} holds a literal password or other secret ({where}) and is readable by "
            f"group or others (mode {oct(stat.S_IMODE(mode))}): restrict it with 'chmod 600', "
            "or use from_env / from_file"
        )


# Warnings already given for a file's content: the CLI and the connection manager may both
# load one file, and a notebook may load it in many cells; each warning shows once.
_warned: set[tuple[str, str, str]] = set()
_warned_lock = threading.Lock()
_MAX_WARNED: Final = 4096


def _warn_once(source: str, digest: str) -> Callable[[str], None]:
    def warn(message: str) -> None:
        key = (source, digest, message)
        with _warned_lock:
            if key in _warned:
                return
            if len(_warned) >= _MAX_WARNED:
                _warned.clear()
            _warned.add(key)
        logger.warning("%s", message)

    return warn


def _load(
    source: str, *, resolve_env: bool, strict: bool, allow_sensitive_defaults: bool
) -> tuple[dict[str, Any], Dependencies]:
    text = _read_text(source)
    warn = _warn_once(source, hashlib.blake2b(text.encode("utf-8", "surrogatepass")).hexdigest())
    data = _unwrap(_parse(source, text), source)
    _check_permissions(source, data, warn)
    return _resolve(
        data,
        resolve_env=resolve_env,
        strict=strict,
        allow_sensitive_defaults=allow_sensitive_defaults,
        source=source,
        warn=warn,
    )


# -- caching --------------------------------------------------------------------------------

_CACHE_SIZE: Final = 128


@dataclass(frozen=True)
class _Entry:
    signature: tuple[int, ...]
    config: dict[str, Any]
    env_names: tuple[str, ...]
    env_values: tuple[str | None, ...]
    files: tuple[tuple[str, tuple[int, ...] | None], ...]


_cache: dict[tuple[str, bool, bool, bool], _Entry] = {}
_cache_lock = threading.Lock()


def _signature(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


def _file_signature(path: str) -> tuple[int, ...] | None:
    try:
        return _signature(os.stat(path))
    except OSError:
        return None


def load_config_cached(
    path: str | os.PathLike[str],
    *,
    resolve_env: bool = False,
    strict: bool = True,
    allow_sensitive_defaults: bool = False,
) -> dict[str, Any]:
    """:func:`load_config`, without re-reading a file that has not changed.

    The entry for (path, flags) is reused while the file's device, inode, mtime, ctime and
    size are the same, and, with ``resolve_env=True``, while every environment variable the
    config referenced has the same value and every ``from_file`` secret the same signature
    (anything else re-reads the file, so a changed secret is picked up). A hit costs a few
    ``stat`` calls and dict lookups.

    The dict returned is shared between callers: treat it as read-only.
    """
    source = os.fspath(path)
    key = (source, resolve_env, strict, allow_sensitive_defaults)
    try:
        signature = _signature(os.stat(source))
    except OSError:
        signature = None
    entry = _cache.get(key)
    if (
        entry is not None
        and entry.signature == signature
        and (not entry.env_names or entry.env_values == tuple(map(os.getenv, entry.env_names)))
        and all(_file_signature(name) == sig for name, sig in entry.files)
    ):
        return entry.config

    # Signature before reading: a write racing the read makes the next call re-read.
    cfg, deps = _load(
        source,
        resolve_env=resolve_env,
        strict=strict,
        allow_sensitive_defaults=allow_sensitive_defaults,
    )
    if signature is not None:
        names = tuple(sorted(deps.env))
        entry = _Entry(
            signature=signature,
            config=cfg,
            env_names=names,
            env_values=tuple(deps.env[name] for name in names),
            files=tuple((name, _file_signature(name)) for name in sorted(deps.files)),
        )
        with _cache_lock:  # hits never lock; misses may race here
            _cache.pop(key, None)
            if len(_cache) >= _CACHE_SIZE:
                _cache.pop(next(iter(_cache)), None)
            _cache[key] = entry
    return cfg


def clear_config_cache() -> None:
    """Forget every cached config (the next :func:`load_config_cached` re-reads)."""
    with _cache_lock:
        _cache.clear()
    with _warned_lock:
        _warned.clear()

"""Reading a config file or dict: YAML parsing, optional interpolation, validation, caching."""

from __future__ import annotations

import logging
import os
import stat
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import yaml

from pgmonkey.errors import ConfigError

from ._interpolate import Dependencies, interpolate
from ._validate import validate

logger = logging.getLogger("pgmonkey.config")

# libyaml's safe loader when PyYAML was built with it (about 10x faster), else the Python one.
_Loader: Final[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
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

    *source* names the config in error messages (a file name, ``'<dict>'``...).
    """
    cfg, _ = _resolve(
        _unwrap(config, source, stacklevel=3),
        resolve_env=resolve_env,
        strict=strict,
        allow_sensitive_defaults=allow_sensitive_defaults,
        source=source,
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
) -> tuple[dict[str, Any], Dependencies]:
    deps = Dependencies()
    if resolve_env:
        data, deps = interpolate(
            data, strict=strict, allow_sensitive_defaults=allow_sensitive_defaults, source=source
        )
    # After a strict resolution nothing may stay unresolved: check every value's type.
    cfg = validate(data, source=source, deferred_ok=not (resolve_env and strict))
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


def _read_yaml(source: str) -> object:
    try:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {source!r}") from None
    except IsADirectoryError:
        raise ConfigError(f"cannot read config file {source!r}: it is a directory") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"cannot read config file {source!r}: not UTF-8 text (byte {exc.start})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {source!r}: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # a safe loader (C or Python)
    except yaml.MarkedYAMLError as exc:
        # Never str(exc): it quotes the offending line, which may hold a password.
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "syntax error"
        raise ConfigError(f"{source}: invalid YAML{at}: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML ({type(exc).__name__})") from None


def _has_literal_password(data: Mapping[Any, Any]) -> bool:
    settings = data.get("connection_settings")
    if not isinstance(settings, Mapping):
        return False
    password = settings.get("password")
    return isinstance(password, str | int) and password != "" and "${" not in str(password)


def _check_permissions(source: str, data: Mapping[Any, Any]) -> None:
    """libpq's ``.pgpass`` rule: a file holding a password must not be group/other readable."""
    if os.name != "posix" or not _has_literal_password(data):
        return
    try:
        mode = os.stat(source).st_mode
    except OSError:
        return
    if stat.S_ISREG(mode) and mode & 0o077:
        logger.warning(
            "%s holds a literal password and is readable by group or others (mode %s): "
            "restrict it with 'chmod 600', or use from_env / from_file",
            source,
            oct(stat.S_IMODE(mode)),
        )


def _load(
    source: str, *, resolve_env: bool, strict: bool, allow_sensitive_defaults: bool
) -> tuple[dict[str, Any], Dependencies]:
    data = _unwrap(_read_yaml(source), source)
    _check_permissions(source, data)
    return _resolve(
        data,
        resolve_env=resolve_env,
        strict=strict,
        allow_sensitive_defaults=allow_sensitive_defaults,
        source=source,
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

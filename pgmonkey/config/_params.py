"""From a validated config dict to what psycopg and psycopg_pool take.

The config dict here has already passed validation (see ``_validate``): the functions
below only translate, they do not check again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from psycopg.conninfo import make_conninfo

from pgmonkey.errors import ConfigError

from ._common import describe, has_reference, is_sensitive_path, is_structured_ref, render_path

# Re-exported: they lived here first.
from ._validate import CONNECTION_TYPES as CONNECTION_TYPES
from ._validate import PSYCOPG_OPTIONS as PSYCOPG_OPTIONS
from ._validate import libpq_parameters

_POOL_SECTIONS: Final = {"pool": "pool_settings", "async_pool": "async_pool_settings"}
_SESSION_SECTIONS: Final = {
    "normal": "sync_settings",
    "pool": "sync_settings",
    "async": "async_settings",
    "async_pool": "async_settings",
}


@dataclass(frozen=True)
class ConnectParams:
    """What ``psycopg.connect()`` needs: a conninfo string and psycopg's own options."""

    conninfo: str = field(repr=False)  # holds the password: never shown
    options: Mapping[str, Any] = field(default_factory=dict)

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect`` / ``AsyncConnection.connect``."""
        return {"conninfo": self.conninfo, **self.options}

    def pool_kwargs(self) -> dict[str, Any]:
        """``conninfo`` and ``kwargs`` for a psycopg_pool pool constructor."""
        return {"conninfo": self.conninfo, "kwargs": dict(self.options)}

    def __repr__(self) -> str:
        from psycopg.conninfo import conninfo_to_dict

        from ._redact import redact_config

        shown = redact_config(conninfo_to_dict(self.conninfo))
        return f"ConnectParams({shown!r}, options={dict(self.options)!r})"


def resolved_connection_type(config: Mapping[str, Any], connection_type: str | None = None) -> str:
    """The argument wins, then the config's ``connection_type``, then ``'normal'``."""
    ctype = connection_type or config.get("connection_type") or "normal"
    if ctype not in CONNECTION_TYPES:
        raise ConfigError(
            f"unknown connection type {ctype!r}: expected one of {', '.join(CONNECTION_TYPES)}"
        )
    return str(ctype)


def connect_params(config: Mapping[str, Any]) -> ConnectParams:
    """Build the conninfo (with psycopg's quoting) and psycopg options from a config.

    Empty strings and None are left out, as in 4.0: an empty ``sslcert: ''`` means "not set".
    """
    settings: Mapping[str, Any] = config.get("connection_settings") or {}
    known = libpq_parameters()
    libpq: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, value in settings.items():
        _check_resolved(value, ("connection_settings", key), always=key in PSYCOPG_OPTIONS)
        if key in PSYCOPG_OPTIONS:
            if key == "autocommit":
                options["autocommit"] = as_bool(value)
            else:
                # prepare_threshold: None disables server-side prepared statements (PgBouncer).
                options[key] = None if value in (None, "", "null", "None") else int(value)
            continue
        if value is None or value == "" or key not in known:
            continue  # not set; or not a libpq parameter (validation warned about it)
        if isinstance(value, bool):
            value = "1" if value else "0"
        libpq[key] = value
    return ConnectParams(conninfo=make_conninfo(**libpq), options=options)


def pool_settings(config: Mapping[str, Any], connection_type: str) -> dict[str, Any]:
    """The pool section for ``pool`` / ``async_pool`` (empty dict for the other types)."""
    section = _POOL_SECTIONS.get(connection_type)
    if section is None:
        return {}
    settings = dict(config.get(section) or {})
    for key, value in settings.items():
        _check_resolved(value, (section, key), always=True)
    return settings


def session_settings(config: Mapping[str, Any], connection_type: str) -> dict[str, str]:
    """GUC settings applied with SET on every new connection of this type."""
    section = _SESSION_SECTIONS[connection_type]
    return {str(k): str(v) for k, v in (config.get(section) or {}).items()}


def as_bool(value: Any) -> bool:
    """A YAML/CLI truth value: bools as they are, and "1", "true", "yes", "on" in any case."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _check_resolved(value: Any, path: tuple[str, str], *, always: bool = False) -> None:
    """Refuse a reference that was never resolved where a real value is needed.

    Structured refs (``from_env``/``from_file``) always; ``${...}`` text only where it cannot
    be a literal (pool numbers, psycopg options): for libpq it is literal text, as in 4.0.
    """
    if has_reference(value) and (always or not isinstance(value, str)):
        # A from_env/from_file dict names a variable or a file, never the secret itself.
        shown = describe(value, sensitive=is_sensitive_path(path) and not is_structured_ref(value))
        raise ConfigError(
            f"{render_path(path)} = {shown} is an environment reference that was not resolved: "
            "expected a value; resolve it with --resolve-env on the command line, or "
            "resolve_env=True in Python"
        )

"""Configuration: load, validate, interpolate and redact pgmonkey YAML configs.

Data flows one way: path or dict -> :func:`load_config` / :func:`resolve_config`
(validated, optionally interpolated plain dict) -> :func:`connect_params`,
:func:`pool_settings`, :func:`session_settings` -> psycopg objects.
:func:`load_config_cached` is :func:`load_config` without re-reading an unchanged file.
"""

from __future__ import annotations

from ._load import clear_config_cache, load_config, load_config_cached, resolve_config
from ._params import (
    ConnectParams,
    connect_params,
    pool_settings,
    resolved_connection_type,
    session_settings,
)
from ._redact import REDACTED, is_sensitive_key, redact_config
from ._template import config_template
from ._validate import CONNECTION_TYPES, PSYCOPG_OPTIONS, libpq_parameters

__all__ = [
    "CONNECTION_TYPES",
    "PSYCOPG_OPTIONS",
    "REDACTED",
    "ConnectParams",
    "clear_config_cache",
    "config_template",
    "connect_params",
    "is_sensitive_key",
    "libpq_parameters",
    "load_config",
    "load_config_cached",
    "pool_settings",
    "redact_config",
    "resolve_config",
    "resolved_connection_type",
    "session_settings",
]

"""Configuration: load, validate, interpolate and redact pgmonkey YAML configs.

Data flows one way: path or dict -> :func:`load_config` / :func:`resolve_config`
(validated, optionally interpolated plain dict) -> :func:`connect_params`,
:func:`pool_settings`, :func:`session_settings` -> psycopg objects.
"""

from __future__ import annotations

from ._load import load_config, resolve_config
from ._params import (
    CONNECTION_TYPES,
    ConnectParams,
    connect_params,
    pool_settings,
    resolved_connection_type,
    session_settings,
)
from ._redact import REDACTED, is_sensitive_key, redact_config

__all__ = [
    "CONNECTION_TYPES",
    "REDACTED",
    "ConnectParams",
    "connect_params",
    "is_sensitive_key",
    "load_config",
    "pool_settings",
    "redact_config",
    "resolve_config",
    "resolved_connection_type",
    "session_settings",
]

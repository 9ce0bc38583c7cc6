"""Configuration: load, validate, interpolate and redact pgmonkey YAML configs.

Data flows one way: path or dict -> :func:`load_config` / :func:`resolve_config`
(validated, optionally interpolated plain dict) -> :func:`connect_params`,
:func:`pool_settings`, :func:`session_settings` -> psycopg objects.
:func:`load_config_cached` is :func:`load_config` without re-reading an unchanged file.

Decisions (where the 4.0 documentation leaves room):

- ``connection_settings`` takes every parameter the linked libpq knows (``PQconndefaults``)
  plus psycopg's ``autocommit`` and ``prepare_threshold``. Any other key is a ConfigError
  naming the closest valid key (a typo'd ``dbname`` would silently connect elsewhere); with
  ``strict=False`` it is logged as a warning (logger ``pgmonkey.config``) and dropped, as 4.0
  did. Unknown top-level keys are warned about and kept; unknown pool keys are errors.
- Values of text keys (password, user, dbname, host, ...) and session settings keep the text
  as written in the YAML: ``0123`` is not octal 83, ``12:30`` not 750, ``yes`` not True.
- Config files and ``from_file`` secrets are regular files with size limits; aliases are
  limited (see ``_files``). Each warning is given once per version of a file.
- Pool sizes are integers or digit strings (``'5'``, e.g. from ``${POOL_MAX:-5}``), normalised
  to ``int``; ``min_size`` may be 0 (psycopg_pool opens connections on demand), ``max_size``
  must be at least 1 and at least ``min_size``. Timeouts are positive numbers. Booleans are
  YAML booleans or the strings ``'true'``/``'false'``.
- Without ``resolve_env`` every value is literal: a ``${...}`` string reaches libpq as written
  and is not type-checked (a warning at load time says how to resolve it); a
  ``from_env``/``from_file`` dict is kept and refused (ConfigError) when it would have to
  become a connection or pool argument.
- A ``${VAR:-default}`` on a sensitive key is refused whether or not VAR is set: the config as
  written must not carry a fallback secret.
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
from ._validate import (
    ASYNC_CONNECTION_TYPES,
    CONNECTION_TYPES,
    PSYCOPG_OPTIONS,
    libpq_parameters,
)

__all__ = [
    "ASYNC_CONNECTION_TYPES",
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

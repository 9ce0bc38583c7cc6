"""Reading a config file or dict: YAML parsing, validation, optional interpolation.

NOTE(foundation): minimal first version; validation and interpolation are being completed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import yaml

from pgmonkey.errors import ConfigError


def load_config(
    path: str | os.PathLike[str],
    resolve_env: bool = False,
    strict: bool = True,
    allow_sensitive_defaults: bool = False,
) -> dict[str, Any]:
    """Load, validate and (with ``resolve_env=True``) interpolate a pgmonkey YAML config."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {os.fspath(path)!r}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{os.fspath(path)!r}: expected a mapping at the top level")
    return resolve_config(
        data,
        resolve_env=resolve_env,
        strict=strict,
        allow_sensitive_defaults=allow_sensitive_defaults,
        source=os.fspath(path),
    )


def resolve_config(
    config: Mapping[str, Any],
    *,
    resolve_env: bool = False,
    strict: bool = True,
    allow_sensitive_defaults: bool = False,
    source: str | None = None,
) -> dict[str, Any]:
    """Validate (and optionally interpolate) an in-memory config; return a new plain dict."""
    return dict(config)

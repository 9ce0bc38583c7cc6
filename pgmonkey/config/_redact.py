"""Redaction of sensitive config values, safe for logs and display."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REDACTED = "***REDACTED***"

# The 4.0 list, plus libpq's other secrets (its "*" / debug-only parameters).
_SENSITIVE_KEYS = frozenset(
    {
        "password",
        "sslkey",
        "sslcert",
        "sslrootcert",
        "sslpassword",
        "scram_client_key",
        "scram_server_key",
    }
)
_SENSITIVE_PARTS = ("token", "secret", "credential")


def is_sensitive_key(key: object) -> bool:
    """Return True for keys whose values must never be shown (the 4.0 rule)."""
    if not isinstance(key, str):
        return False
    k = key.lower()
    return k in _SENSITIVE_KEYS or any(part in k for part in _SENSITIVE_PARTS)


def redact_config(config: Any) -> Any:
    """Return a deep copy of *config* with sensitive values replaced by ``***REDACTED***``.

    Empty strings and None are left as they are: there is nothing to leak.
    """
    if isinstance(config, Mapping):
        out: dict[Any, Any] = {}
        for key, value in config.items():
            if is_sensitive_key(key) and value not in ("", None):
                out[key] = REDACTED
            else:
                out[key] = redact_config(value)
        return out
    if isinstance(config, list):
        return [redact_config(v) for v in config]
    return config

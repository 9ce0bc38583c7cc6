"""Redaction of sensitive config values, safe for logs and display.

A key is sensitive by what its name says, not by an exact list: ``password``,
``admin_password``, ``PGPASSWORD``, ``sslpassword``, ``api_key``, ``passphrase``,
``client_secret``, ``auth_token``... in any section. A value is also redacted in part when it
carries a credential itself, whatever its key: the password of a
``postgresql://user:pw@host/db`` URL, or the ``password=...`` of a ``key=value`` conninfo
(libpq takes both in ``dbname``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

REDACTED = "***REDACTED***"

# The 4.0 list (paths to client certificates and keys included) and libpq's SCRAM keys.
_SENSITIVE_KEYS: Final = frozenset(
    {"sslkey", "sslcert", "sslrootcert", "scram_client_key", "scram_server_key"}
)
# Anywhere in the name, case-insensitive: PGPASSWORD, admin_password, client_secret...
_SENSITIVE_PARTS: Final = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "apikey",
    "privatekey",
    "accesskey",
)
# As a whole word of the name (``api_key``, ``ssh-key``, ``db_pwd``), not inside a word
# (``pgmonkey``, ``passfile`` stay ordinary).
_SENSITIVE_WORDS: Final = frozenset({"key", "pwd", "pw", "pass", "passw"})
_WORD: Final = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z0-9]+(?![a-z])")

# Keys whose value is the path of a file, not the secret itself (still redacted, as in 4.0,
# but a literal value there is no literal secret in the config file).
PATH_KEYS: Final = frozenset({"sslkey", "sslcert", "sslrootcert"})

# user:password@ in a URL (postgresql://, postgres://, or any scheme).
_URL_PASSWORD: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@\s]*):([^/?#\s]*)@")
# password=... in a key=value conninfo or a URL query (quoted or not): a name that ends with
# the word (sslpassword, client_secret), not one that goes on (password_encryption).
_KV_SECRET: Final = re.compile(
    r"""(?ix)
    (\b[a-z_]*(?:password|passwd|passphrase|secret|token)\s*=\s*)
    ('(?:[^'\\]|\\.)*'?|[^\s&'][^\s&]*)
    """
)


def is_sensitive_key(key: object) -> bool:
    """True for keys whose values must never be shown.

    By name: ``password``-like, ``secret``, ``token``, ``credential``, ``passphrase``,
    ``*_key`` / ``apikey``, in any case (``PGPASSWORD``, ``apiKey``), plus the 4.0 list
    (``sslkey``, ``sslcert``, ``sslrootcert``).
    """
    if not isinstance(key, str):
        return False
    k = key.lower()
    if k in _SENSITIVE_KEYS:
        return True
    squashed = re.sub(r"[^a-z0-9]", "", k)
    if any(part in squashed for part in _SENSITIVE_PARTS):
        return True
    words = {w.lower() for w in _WORD.findall(key)}
    return not words.isdisjoint(_SENSITIVE_WORDS)


def holds_secret(key: object) -> bool:
    """A sensitive key whose value is the secret itself (not a file path, like ``sslkey``)."""
    return is_sensitive_key(key) and not (isinstance(key, str) and key.lower() in PATH_KEYS)


def redact_text(text: str) -> str:
    """*text* with the password of a URL and ``password=...`` conninfo values redacted."""
    if "@" in text:
        text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)
    if "=" in text:
        text = _KV_SECRET.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return text


def text_has_secret(text: str) -> bool:
    """True when *text* carries a credential itself (a URL password, ``password=...``)."""
    return redact_text(text) != text


def redact_config(config: Any) -> Any:
    """Return a deep copy of *config* with sensitive values replaced by ``***REDACTED***``.

    Values under a sensitive key (see :func:`is_sensitive_key`) are replaced whole; other
    strings keep their text except a credential inside them (a URL's password, a conninfo's
    ``password=...``). Empty strings and None are left as they are: nothing to leak.
    A structure that contains itself is redacted once (the repeat shows as ``...``).
    """
    return _redact(config, set())


def _redact(config: Any, active: set[int]) -> Any:
    if isinstance(config, Mapping | list):
        if id(config) in active:
            return "..."
        active.add(id(config))
        try:
            if isinstance(config, Mapping):
                out: dict[Any, Any] = {}
                for key, value in config.items():
                    if is_sensitive_key(key) and value not in ("", None):
                        out[key] = REDACTED
                    else:
                        out[key] = _redact(value, active)
                return out
            return [_redact(v, active) for v in config]
        finally:
            active.discard(id(config))
    if isinstance(config, str):
        return redact_text(config)
    return config

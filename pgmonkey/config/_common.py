"""Small helpers shared by validation and interpolation: key paths, safe value display."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ._redact import REDACTED, is_sensitive_key, redact_config

# A key path: ("pool_settings", "max_size"), list items as Index: ("hosts", Index(0)).
Path = tuple[object, ...]


class Index(int):
    """A list position in a key path (shown as ``[i]``; an int dict key is shown as is)."""


STRUCTURED_KEYS: Final = ("from_env", "from_file")
_MAX_SHOWN: Final = 80


def render_path(path: Path) -> str:
    """``('pool_settings', 'max_size')`` -> ``'pool_settings.max_size'``, list items as ``[i]``."""
    out = ""
    for part in path:
        if isinstance(part, Index):
            out += f"[{int(part)}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "<top level>"


def is_sensitive_path(path: Path) -> bool:
    """True when any key on the path is sensitive (``password``, ``password.from_env``...)."""
    return any(is_sensitive_key(part) for part in path)


def describe(value: object, *, sensitive: bool, opaque: bool = False) -> str:
    """A value for a message: ``!r``, shortened, and redacted when the key is sensitive.

    *opaque*: show only the shape of a list or mapping (in ``connection_settings`` an
    unkeyed list item may well be a password).
    """
    if sensitive and value not in ("", None):
        return repr(REDACTED)
    if opaque and isinstance(value, list):
        return f"a list of {len(value)} items"
    if opaque and isinstance(value, Mapping):
        return f"a mapping with keys {list(value)!r}"
    if isinstance(value, Mapping | list):
        value = redact_config(value)  # a nested password stays hidden
    shown = repr(value)
    if len(shown) > _MAX_SHOWN:
        shown = (
            shown[: _MAX_SHOWN - 4] + "...'" if shown[0] in "'\"" else shown[:_MAX_SHOWN] + "..."
        )
    return shown


def is_structured_ref(value: object) -> bool:
    """A dict with exactly one key, ``from_env`` or ``from_file``: a secret reference."""
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in STRUCTURED_KEYS


def has_reference(value: object) -> bool:
    """True for a value interpolation would change: a ``${`` string or a structured ref."""
    return (isinstance(value, str) and "${" in value) or is_structured_ref(value)

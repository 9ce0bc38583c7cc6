"""Small helpers shared by validation and interpolation: key paths, safe value display."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from ._redact import REDACTED, is_sensitive_key, redact_config, redact_text

# A key path: ("pool_settings", "max_size"), list items as Index: ("hosts", Index(0)).
Path = tuple[object, ...]


class Index(int):
    """A list position in a key path (shown as ``[i]``; an int dict key is shown as is)."""


STRUCTURED_KEYS: Final = ("from_env", "from_file")
# A value made only of ${NAME} references (no default, no other text): safe to show.
_ONLY_REFS: Final = re.compile(r"(?:\$\{[A-Za-z_][A-Za-z0-9_]*\})+")
_MAX_SHOWN: Final = 80
_MAX_KEY: Final = 60


def render_path(path: Path) -> str:
    """``('pool_settings', 'max_size')`` -> ``'pool_settings.max_size'``, list items as ``[i]``."""
    out = ""
    for part in path:
        if isinstance(part, Index):
            out += f"[{int(part)}]"
        else:
            text = str(part)
            if len(text) > _MAX_KEY or not text.isprintable():
                text = repr(text[:_MAX_KEY]) + ("..." if len(text) > _MAX_KEY else "")
            out += f".{text}" if out else text
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
    elif isinstance(value, str):
        value = redact_text(value)  # a URL's password, a conninfo's password=...
    shown = repr(value)
    if len(shown) > _MAX_SHOWN:
        shown = (
            shown[: _MAX_SHOWN - 4] + "...'" if shown[0] in "'\"" else shown[:_MAX_SHOWN] + "..."
        )
    return shown


def describe_reference(value: object, *, sensitive: bool) -> str:
    """A value as written before interpolation, for a message about what it resolved to.

    The resolved value is never shown (an environment variable or a secret file may hold
    anything); the reference is, unless the key is sensitive and it is more than a reference.
    """
    if is_structured_ref(value):
        assert isinstance(value, Mapping)
        ((kind, target),) = value.items()
        return f"{{{kind}: {target!r}}} (resolved value not shown)"
    if isinstance(value, str) and (not sensitive or _ONLY_REFS.fullmatch(value)):
        return f"{describe(value, sensitive=False)} (resolved value not shown)"
    return "a reference (resolved value not shown)"


def is_structured_ref(value: object) -> bool:
    """A dict with exactly one key, ``from_env`` or ``from_file``: a secret reference."""
    return isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in STRUCTURED_KEYS


def has_reference(value: object) -> bool:
    """True for a value interpolation would change: a ``${`` string or a structured ref."""
    return (isinstance(value, str) and "${" in value) or is_structured_ref(value)

"""Validation and normalisation of a parsed config, before any connection attempt.

Every error is a :class:`~pgmonkey.errors.ConfigError` naming the source (file), the key path,
the bad value (redacted when the key is sensitive) and what was expected.

Values still holding an environment reference (``${VAR}`` or ``from_env``/``from_file``) are
*deferred*: they are kept as written and their type is not checked, because they are literal
text (``resolve_env=False``) or a variable was missing under ``strict=False``. Translating such
a value into connection or pool arguments fails later with a ConfigError saying so.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, NoReturn

from pgmonkey.errors import ConfigError

from ._common import (
    Path,
    describe,
    describe_reference,
    has_reference,
    is_sensitive_path,
    is_structured_ref,
    render_path,
)
from ._redact import redact_text

logger = logging.getLogger("pgmonkey.config")
Warn = Callable[[str], None]

CONNECTION_TYPES: Final = ("normal", "pool", "async", "async_pool")
ASYNC_CONNECTION_TYPES: Final = frozenset({"async", "async_pool"})
# Keys of ``connection_settings`` that are psycopg connect() options, not libpq parameters.
PSYCOPG_OPTIONS: Final = frozenset({"autocommit", "prepare_threshold"})
POOL_SECTIONS: Final = ("pool_settings", "async_pool_settings")
SESSION_SECTIONS: Final = ("sync_settings", "async_settings")
TOP_LEVEL_KEYS: Final = frozenset(
    {"connection_type", "connection_settings", *POOL_SECTIONS, *SESSION_SECTIONS}
)

# libpq's documented value sets (checked early; libpq would refuse them at connect time).
_ENUMS: Final[dict[str, tuple[str, ...]]] = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "channel_binding": ("disable", "prefer", "require"),
    "gssencmode": ("disable", "prefer", "require"),
    "target_session_attrs": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
    "load_balance_hosts": ("disable", "random"),
    "sslnegotiation": ("postgres", "direct"),
    "sslcertmode": ("disable", "allow", "require"),
}
_INT_PARAMS: Final = frozenset(
    {
        "connect_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
    }
)
# libpq parameters whose values are numbers or 0/1 switches (the rest, enums aside, are text).
_NUMERIC_PARAMS: Final = frozenset(
    {"port", "sslcompression", "sslsni", "requiressl", "gssdelegation", "replication"}
)
# What other drivers and tools call libpq's parameters: the likely meaning of an unknown key.
_ALIASES: Final = {
    "database": "dbname",
    "db": "dbname",
    "db_name": "dbname",
    "databasename": "dbname",
    "username": "user",
    "user_name": "user",
    "login": "user",
    "pass": "password",
    "passwd": "password",
    "pwd": "password",
    "pw": "password",
    "hostname": "host",
    "server": "host",
    "address": "hostaddr",
    "ssl": "sslmode",
    "ssl_mode": "sslmode",
    "timeout": "connect_timeout",
    "connection_timeout": "connect_timeout",
    "app_name": "application_name",
    "appname": "application_name",
    "search_path": "options",
}
# ${NAME} or ${NAME:-default}: a reference as interpolation would read it.
_REFERENCE: Final = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}")
_INT_TEXT: Final = re.compile(r"\s*-?[0-9]+\s*\Z")
_DIGITS: Final = re.compile(r"\s*[0-9]+\s*\Z")
# A GUC name: ``statement_timeout``, ``myapp.tenant`` (custom options have a dot).
_GUC_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*\Z")
_BOOL_TEXT: Final = {"true": True, "false": False}

# Pool keys: pgmonkey's 4.0 keys plus the rest of psycopg_pool's tuning knobs.
_POOL_KEYS: Final = (
    "min_size",
    "max_size",
    "timeout",
    "max_idle",
    "max_lifetime",
    "check_on_checkout",
    "max_waiting",
    "reconnect_timeout",
    "num_workers",
)

Scalar = str | int | float | bool | None


@functools.cache
def libpq_parameters() -> frozenset[str]:
    """The connection parameters the linked libpq knows (``PQconndefaults``)."""
    from psycopg import pq

    return frozenset(opt.keyword.decode() for opt in pq.Conninfo.get_defaults())


@functools.cache
def text_parameters() -> frozenset[str]:
    """libpq parameters whose value is text: YAML must keep it as written (``0123``, ``12:30``)."""
    return libpq_parameters() - _NUMERIC_PARAMS - _INT_PARAMS - frozenset(_ENUMS)


def _closest(word: str, choices: Iterable[str], cutoff: float) -> str | None:
    """The choice closest to ``word``, if any is close enough."""
    import difflib  # only for a bad key: a valid config never pays for it

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=cutoff)
    return close[0] if close else None


def _suggestion(key: str) -> str:
    """Where an unknown ``connection_settings`` key probably belongs, or ''."""
    k = key.strip().lower()
    known = libpq_parameters() | PSYCOPG_OPTIONS
    if k in known:
        return f"did you mean {k}? (names are lower case)"
    if k in _POOL_KEYS:
        return f"{k} is a pool setting: put it under pool_settings / async_pool_settings"
    if k in _ALIASES:
        return f"did you mean {_ALIASES[k]}?"
    close = _closest(k, known, 0.6)
    if close:
        return f"did you mean {close}?"
    if _GUC_NAME.match(key) and ("timeout" in k or k in ("work_mem", "timezone", "datestyle")):
        return "a PostgreSQL setting goes under sync_settings / async_settings"
    return ""


class _Validator:
    def __init__(
        self,
        source: str | None,
        deferred_ok: bool,
        *,
        strict: bool = True,
        resolved: Mapping[Path, object] | None = None,
        warn: Warn | None = None,
    ):
        self.source = source
        self.deferred_ok = deferred_ok
        self.strict = strict
        self.resolved = resolved or {}
        self._warn = warn or logger.warning

    def show(self, path: Path, value: object, *, reference: bool = False) -> str:
        """*value* for a message; a value resolved from a reference shows the reference."""
        sensitive = is_sensitive_path(path)
        for i in range(len(path), 0, -1):
            if path[:i] in self.resolved:
                return describe_reference(self.resolved[path[:i]], sensitive=sensitive)
        if any(len(r) > len(path) and r[: len(path)] == path for r in self.resolved):
            # A list or mapping holding resolved values: its shape only.
            return describe(value, sensitive=sensitive, opaque=True)
        return describe(
            value,
            sensitive=not reference and sensitive,
            opaque=path[:1] == ("connection_settings",),
        )

    def fail(
        self,
        path: Path,
        value: object,
        expected: str,
        *,
        missing: bool = False,
        reference: bool = False,
    ) -> NoReturn:
        """*reference*: the value is a variable name or file path, never a secret."""
        where = f"{self.source}: " if self.source else ""
        if missing:
            raise ConfigError(f"{where}{render_path(path)} is missing: expected {expected}")
        shown = self.show(path, value, reference=reference)
        raise ConfigError(f"{where}{render_path(path)} = {shown}: expected {expected}")

    def warn(self, path: Path, message: str) -> None:
        where = f"{self.source}: " if self.source else ""
        self._warn(f"{where}{render_path(path)} {message}")

    def deferred(self, value: object, path: Path) -> bool:
        """A reference kept as written: accepted without a type check."""
        if not self.deferred_ok or not has_reference(value):
            return False
        if isinstance(value, str) and "\x00" in value:
            self.fail(path, value, "text without NUL characters")
        if is_structured_ref(value):
            assert isinstance(value, Mapping)
            ((kind, target),) = value.items()
            if not isinstance(target, str) or not target:
                what = "an environment variable name" if kind == "from_env" else "a file path"
                self.fail((*path, kind), target, what, reference=True)
        return True

    # -- scalars ----------------------------------------------------------------------------

    def scalar(self, value: object, path: Path, *, allow_none: bool = True) -> Scalar:
        if value is None and allow_none:
            return None
        if isinstance(value, str) and "\x00" in value:
            # libpq and the server take C strings: a NUL would silently cut the value.
            self.fail(path, value, "text without NUL characters")
        if isinstance(value, str | int | float | bool):
            return value
        if isinstance(value, Mapping | list):
            self.fail(path, value, "a single value (string or number), not a mapping or list")
        self.fail(path, value, "a string or a number")

    def integer(self, value: object, path: Path, *, minimum: int) -> int:
        what = "a positive integer" if minimum > 0 else "a non-negative integer"
        if isinstance(value, bool):
            self.fail(path, value, what)
        if isinstance(value, int):
            result = value
        elif isinstance(value, str) and _DIGITS.match(value):
            result = int(value)
        else:
            self.fail(path, value, what)
        if result < minimum:
            self.fail(path, value, what)
        return result

    def number(self, value: object, path: Path) -> int | float:
        what = "a positive number of seconds"
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(path, value, what)
        result: int | float | None = None
        if isinstance(value, str):
            try:
                result = int(value) if _DIGITS.match(value) else float(value)
            except ValueError:
                result = None  # refused below: ValueError's text quotes the value
            if result is None:
                self.fail(path, value, what)
        else:
            result = value
        if not math.isfinite(result) or result <= 0:
            self.fail(path, value, what)
        return result

    def boolean(self, value: object, path: Path) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOL_TEXT:
            return _BOOL_TEXT[value.strip().lower()]
        self.fail(path, value, "true or false")

    def mapping(self, value: object, path: Path, expected: str) -> Mapping[Any, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, value, expected)
        for key in value:
            if not isinstance(key, str):
                self.fail((*path, key), key, "a string key")
        return value

    # -- sections ---------------------------------------------------------------------------

    def config(self, config: Mapping[Any, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in config:
            if not isinstance(key, str):
                self.fail((key,), key, "a string key")
            if key not in TOP_LEVEL_KEYS:
                close = _closest(key, TOP_LEVEL_KEYS, 0.75)
                hint = f" (did you mean {close}?)" if close else ""
                self.warn((key,), f"is not a pgmonkey config key: ignored{hint}")
        if "connection_type" in config:
            out["connection_type"] = self.connection_type(config["connection_type"])
        if "connection_settings" not in config:
            self.fail(
                ("connection_settings",),
                None,
                "a mapping of libpq connection parameters (user, host, dbname, ...)",
                missing=True,
            )
        out["connection_settings"] = self.connection_settings(config["connection_settings"])
        for section in POOL_SECTIONS:
            if section in config:
                out[section] = self.pool(config[section], (section,))
        for section in SESSION_SECTIONS:
            if section in config:
                out[section] = self.session(config[section], (section,))
        for key, value in config.items():
            if key not in TOP_LEVEL_KEYS:
                out[key] = value
        return out

    def connection_type(self, value: object) -> object:
        path: Path = ("connection_type",)
        if value is None or self.deferred(value, path):
            return value
        if value not in CONNECTION_TYPES:
            self.fail(path, value, f"one of {', '.join(map(repr, CONNECTION_TYPES))}")
        return value

    def connection_settings(self, value: object) -> dict[str, Any]:
        section: Path = ("connection_settings",)
        if isinstance(value, str):
            # Likely a whole DSN or URI, password included: never shown.
            where = f"{self.source}: " if self.source else ""
            raise ConfigError(
                f"{where}connection_settings is a string (a connection URI or DSN?), not shown: "
                "expected a mapping of libpq connection parameters, one per line "
                "(host: ..., dbname: ..., user: ...)"
            )
        if value is None or not isinstance(value, Mapping):
            self.fail(
                section, value, "a mapping of libpq connection parameters (user, host, dbname, ...)"
            )
        settings = self.mapping(value, section, "a mapping")
        known = libpq_parameters()
        out: dict[str, Any] = {}
        for key, raw in settings.items():
            path = (*section, key)
            if key not in known and key not in PSYCOPG_OPTIONS:
                self.unknown_key(path, key)
                continue
            if self.deferred(raw, path):
                out[key] = raw
                continue
            val = self.scalar(raw, path)
            if key in PSYCOPG_OPTIONS:
                out[key] = self.psycopg_option(key, val, path)
                continue
            if key == "dbname" and isinstance(val, str) and _is_conninfo(val):
                self.embedded_conninfo(val, path)
            elif val is not None and val != "":
                self.libpq_value(key, val, path)  # before the 1/0 below: show what was written
            if isinstance(val, bool):  # libpq spells booleans 1 and 0
                val = "1" if val else "0"
            out[key] = val
        return out

    def unknown_key(self, path: Path, key: str) -> None:
        """A typo'd key must not pass silently: the connect would go elsewhere (strict: error)."""
        where = f"{self.source}: " if self.source else ""
        what = "is not a libpq connection parameter nor a psycopg option (autocommit, "
        what += "prepare_threshold)"
        hint = _suggestion(key)
        if self.strict:
            raise ConfigError(f"{where}{render_path(path)} {what}: {hint or 'remove it'}")
        self.warn(path, f"{what}: ignored" + (f" ({hint})" if hint else ""))

    def embedded_conninfo(self, value: str, path: Path) -> None:
        """libpq reads a ``dbname`` holding a URI or ``key=value`` pairs as a whole conninfo."""
        from psycopg import conninfo

        parsed: dict[str, Any] | None = None
        try:
            parsed = conninfo.conninfo_to_dict(value)
        except Exception:  # libpq's message quotes the text: keep only that it failed
            parsed = None
        if parsed is None:
            where = f"{self.source}: " if self.source else ""
            raise ConfigError(
                f"{where}{render_path(path)} holds a connection URI or key=value string that "
                "libpq cannot parse: expected a database name, or a valid "
                "'postgresql://user@host:port/dbname?param=value' URI"
            )
        for key, val in parsed.items():
            if val not in (None, "") and key in libpq_parameters():
                self.libpq_value(key, val, (*path, key))

    def unresolved(self, value: object, path: Path, found: list[tuple[Path, str]]) -> None:
        """Collect ${VAR} and from_env/from_file values left as written (no resolve_env)."""
        if is_structured_ref(value):
            assert isinstance(value, Mapping)
            ((kind, _target),) = value.items()
            found.append((path, f"is a {kind} reference, resolved only on request"))
        elif isinstance(value, Mapping):
            for key, inner in value.items():
                self.unresolved(inner, (*path, key), found)
        elif isinstance(value, str) and _REFERENCE.search(value):
            text = redact_text(value)
            shown = not is_sensitive_path(path) or _REFERENCE.fullmatch(value)
            shown_text = f" ({text})" if shown and len(text) <= 100 else ""
            found.append(
                (
                    path,
                    f"looks like an unresolved environment reference{shown_text} and is used "
                    "as written",
                )
            )

    def warn_unresolved(self, found: list[tuple[Path, str]]) -> None:
        """One warning for all of them: it must be seen before an authentication failure."""
        fix = "pass --resolve-env on the command line, or resolve_env=True in Python"
        if len(found) == 1:
            ((path, what),) = found
            self.warn(path, f"{what}: to resolve it, {fix}")
        elif found:
            names = ", ".join(render_path(path) for path, _ in found[:5])
            names += ", ..." if len(found) > 5 else ""
            where = f"{self.source}: " if self.source else ""
            self._warn(
                f"{where}{len(found)} values look like unresolved environment references "
                f"({names}) and are used as written: to resolve them, {fix}"
            )

    def psycopg_option(self, key: str, value: Scalar, path: Path) -> Any:
        if key == "autocommit":
            return False if value is None or value == "" else self.boolean(value, path)
        # prepare_threshold: null disables server-side prepared statements (PgBouncer).
        if value is None or value == "" or value in ("null", "None"):
            return None
        return self.integer(value, path, minimum=0)

    def libpq_value(self, key: str, value: str | int | float, path: Path) -> None:
        if key == "port":
            self.port(value, path)
        elif key in _ENUMS:
            if value not in _ENUMS[key]:
                self.fail(path, value, f"one of {', '.join(_ENUMS[key])}")
        elif key in _INT_PARAMS:
            if isinstance(value, float) or (isinstance(value, str) and not _INT_TEXT.match(value)):
                self.fail(path, value, "an integer")

    def port(self, value: str | int | float, path: Path) -> None:
        expected = "a port number (1-65535), or a comma-separated list for several hosts"
        if isinstance(value, bool | float):
            self.fail(path, value, expected)
        pieces = [value] if isinstance(value, int) else value.split(",")
        for piece in pieces:
            if isinstance(piece, str):
                piece = piece.strip()
                if piece == "" and len(pieces) > 1:  # libpq: empty means the default port
                    continue
                if not (piece.isascii() and piece.isdigit()):
                    self.fail(path, value, expected)
            if not 1 <= int(piece) <= 65535:
                self.fail(path, value, expected)

    def pool(self, value: object, section: Path) -> dict[str, Any]:
        settings = self.mapping(
            value, section, f"a mapping of pool settings ({', '.join(_POOL_KEYS)})"
        )
        out: dict[str, Any] = {}
        for key, raw in settings.items():
            path = (*section, key)
            if key not in _POOL_KEYS:
                close = _closest(str(key).lower(), _POOL_KEYS, 0.6)
                hint = f"; did you mean {close}?" if close else ""
                self.fail(path, raw, f"a known pool setting ({', '.join(_POOL_KEYS)}){hint}")
            if self.deferred(raw, path):
                out[key] = raw
                continue
            if raw is None:  # "not set": psycopg_pool's default
                continue
            if key in ("min_size", "max_waiting"):
                out[key] = self.integer(raw, path, minimum=0)
            elif key in ("max_size", "num_workers"):
                out[key] = self.integer(raw, path, minimum=1)
            elif key == "check_on_checkout":
                out[key] = self.boolean(raw, path)
            else:
                out[key] = self.number(raw, path)
        lo, hi = out.get("min_size"), out.get("max_size")
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            self.fail((*section, "min_size"), lo, f"at most max_size ({hi})")
        return out

    def session(self, value: object, section: Path) -> dict[str, Any]:
        settings = self.mapping(
            value, section, "a mapping of PostgreSQL settings (statement_timeout: '30000', ...)"
        )
        out: dict[str, Any] = {}
        for key, raw in settings.items():
            path = (*section, key)
            if not _GUC_NAME.match(key):
                self.fail(path, key, "a PostgreSQL setting name (letters, digits, '_', '.')")
            if self.deferred(raw, path):
                out[key] = raw
                continue
            out[key] = self.scalar(raw, path, allow_none=False)
        return out


def _is_conninfo(value: str) -> bool:
    return "=" in value or value.startswith(("postgresql://", "postgres://"))


def validate(
    config: Mapping[Any, Any],
    *,
    source: str | None = None,
    deferred_ok: bool = True,
    strict: bool = True,
    resolve_env: bool = True,
    resolved: Mapping[Path, object] | None = None,
    warn: Warn | None = None,
) -> dict[str, Any]:
    """Check *config* and return a normalised copy (pool numbers as int/float, booleans).

    *strict*: an unknown ``connection_settings`` key is an error (else a warning, dropped).
    *resolve_env* False: ``${VAR}`` text is warned about (it is sent as written).
    *resolved*: key path -> the reference a value was resolved from (shown in its place).
    *warn*: where warnings go (default: the ``pgmonkey.config`` logger).
    """
    validator = _Validator(source, deferred_ok, strict=strict, resolved=resolved, warn=warn)
    if not resolve_env:
        found: list[tuple[Path, str]] = []
        if isinstance(config.get("connection_type"), str):
            validator.unresolved(config["connection_type"], ("connection_type",), found)
        for section in ("connection_settings", *POOL_SECTIONS, *SESSION_SECTIONS):
            if isinstance(config.get(section), Mapping):
                validator.unresolved(config[section], (section,), found)
        validator.warn_unresolved(found)
    return validator.config(config)

"""Flags as typed: values fire must not parse, the checks on them, and how output is printed."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fire import decorators as fire_decorators

PROG = "pgmonkey"


EXIT_FAILURE = 1


EXIT_USAGE = 2


EXIT_ATTENTION = 3


_LIBRARIES = ("pgmonkey", "psycopg")


_TYPES = ("normal", "pool", "async", "async_pool")


class _UsageError(Exception):
    """The command line is wrong (exit 2); ``words``: the command whose help to point at."""

    def __init__(self, message: str, words: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.words = words


class _Failure(Exception):
    """An expected failure the CLI itself detects (exit 1)."""


class _Exit(Exception):
    """Leave with this code, the message (if any) being printed already."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


_F = TypeVar("_F", bound=Callable[..., Any])


class _Shown:
    """A type as fire's help shows it (it prints the repr of an annotation)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


_SHOWN = {
    "connconfig": "PATH",
    "filepath": "PATH",
    "import_file": "PATH",
    "export_file": "PATH",
    "dir": "PATH",
    "connection_type": "str",
    "library": "pgmonkey|psycopg",
    "type": "pg",
    "table": "SCHEMA.TABLE",
    "query": "SQL",
    "port": "int",
    "standbys": "int",
    "partitions": "int",
    "if_exists": "fail|append|replace",
}


# Flags whose value is text (or a count checked here): fire must not read it as Python.
_TEXT = frozenset(_SHOWN)


# Flags that take no value (`--audit`, `--noaudit`).
_SWITCHES = frozenset({"resolve_env", "audit", "strict", "pgbouncer"})


def _as_typed(value: str) -> str:
    """fire's parse function for text flags: the text as typed, never a Python literal."""
    return value


def _command(fn: _F) -> _F:
    """A CLI command: text flags reach ``fn`` as typed; fire's help shows readable types."""
    names = fn.__code__.co_varnames[: fn.__code__.co_argcount]
    fn.__annotations__ = {n: _Shown(_SHOWN[n]) for n in names if n in _SHOWN}
    texts = {n: _as_typed for n in names if n in _TEXT}
    return fire_decorators.SetParseFns(**texts)(fn)  # type: ignore[no-any-return]


def _config_path(connconfig: Any, filepath: Any) -> str:
    """``--connconfig`` and ``--filepath`` are one option under two names."""
    if connconfig is None and filepath is None:
        raise _UsageError("missing --connconfig (or --filepath): the config file to use")
    if connconfig is not None and filepath is not None and str(connconfig) != str(filepath):
        raise _UsageError("--connconfig and --filepath are the same option: give only one")
    value = connconfig if connconfig is not None else filepath
    if value is True or value == "":
        raise _UsageError("--connconfig (or --filepath) needs a file name")
    return str(value)


def _flag(name: str, value: Any) -> bool:
    # fire turns `--flag` into True and `--noflag` into False; `--flag yes` is a string.
    if isinstance(value, bool):
        return value
    raise _UsageError(f"--{name} takes no value (use --{name} or --no{name}), got {value!r}")


def _choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _UsageError(f"--{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _connection_type(value: Any) -> str | None:
    return None if value is None else _choice("connection-type", value, _TYPES)


def _count(name: str, value: Any) -> int | None:
    """A number typed in decimal digits (fire would also take 0x1f, 1e3, 5_432 or True)."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]+", value):
        return int(value)
    raise _UsageError(f"--{name} must be a number, got {value!r}")


def _out(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _info(text: str) -> None:
    sys.stderr.write(f"{PROG}: {text}\n")


def _load(path: str, resolve_env: bool) -> dict[str, Any]:
    from pgmonkey.config import load_config

    return load_config(path, resolve_env=resolve_env)

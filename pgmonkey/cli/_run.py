"""Running a command line: help, version, did-you-mean, dispatch to fire, exit codes."""

from __future__ import annotations

import inspect
import re
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from ._args import (
    _SWITCHES,
    _TEXT,
    EXIT_FAILURE,
    EXIT_USAGE,
    PROG,
    _Exit,
    _Failure,
    _out,
    _UsageError,
)
from ._commands import PgMonkey

_SECRET = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def _one_line(error: BaseException) -> str:
    """The error as one line, never a password (libpq messages span lines; a caret under
    the query's line points at nothing once they are joined)."""
    lines = [line for line in str(error).splitlines() if line.strip() != "^"]
    text = " ".join(" ".join(lines).split()) or type(error).__name__
    return _SECRET.sub(r"\1***", text)


def _is_expected(error: BaseException) -> bool:
    from pgmonkey.errors import PgMonkeyError

    if isinstance(error, (PgMonkeyError, _Failure)):
        return True
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(error, psycopg.Error):
        return True  # refused connection, wrong password, missing table, ...
    return isinstance(error, OSError)


# fire's own test for a flag (fire.core._IsFlag): `--name` or `-x`; `-1` is a value.
_FLAG = re.compile(r"^(--|-[A-Za-z])")


_HELP = frozenset({"-h", "--help"})


_VERSION = frozenset({"--version", "-V"})


# Flags the reference spells with a dash (the others, like --import_file, with an underscore).
_DASHED = frozenset({"connection_type", "resolve_env"})


# fire splits a command line at a lone "-" (its separator), so `--export_file -` would lose
# its value. A NUL can never be typed in an argument: fire's separator is set to it.
_NO_SEPARATOR = ("--separator", "\0")


def _spelled(name: str) -> str:
    return "--" + (name.replace("_", "-") if name in _DASHED else name)


def _commands(group: object) -> list[str]:
    """The command (or group) names that may follow ``group``."""
    return sorted(n for n in dir(group) if not n.startswith("_"))


def _did_you_mean(typed: str, choices: Sequence[str]) -> str:
    import difflib

    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(typed.lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean {lowered[close[0]]}?" if close else ""


def _resolve(component: object, args: Sequence[str]) -> tuple[list[str], Any, list[str]]:
    """Follow the command words of ``args``: (those words, the group or command, the rest)."""
    words: list[str] = []
    target: Any = component
    for i, word in enumerate(args):
        if inspect.ismethod(target) or _FLAG.match(word):
            return words, target, list(args[i:])
        choices = _commands(target)
        if word not in choices:
            hint = _did_you_mean(word, choices) or f"expected one of {', '.join(choices)}"
            raise _UsageError(f"unknown command {word!r}: {hint}", words)
        target = getattr(target, word)
        words.append(word)
    return words, target, []


def _check_flags(command: Any, rest: Sequence[str], words: Sequence[str]) -> None:
    """Refuse unknown flags, flags without their value and extra arguments *before* running.

    fire calls the command first and only then complains about what it could not use
    (``pgserverconfig --filepath c.yaml --adit`` would print the advice, then exit 2), and
    reads a text flag given no value (``--table --connconfig c.yaml``) as the text "True".
    """
    params = [
        p.name
        for p in inspect.signature(command).parameters.values()
        if p.kind == p.POSITIONAL_OR_KEYWORD
    ]
    given: set[str] = set()
    positional = 0
    j = 0
    while j < len(rest):
        token = rest[j]
        j += 1
        if not _FLAG.match(token):
            positional += 1
            continue
        typed, inline, _ = token.partition("=")
        key = typed.lstrip("-").replace("-", "_")
        if key not in params and len(key) == 1:  # fire's shortcut: -t for --table
            short = [n for n in params if n.startswith(key)]
            if len(short) > 1:
                spelled = ", ".join(_spelled(n) for n in short)
                raise _UsageError(f"{typed!r} is ambiguous: {spelled}", words)
            key = short[0] if short else key
        if not inline and key.startswith("no") and key[2:] in _SWITCHES and key[2:] in params:
            key = key[2:]  # --noaudit
        elif key not in params:
            flags = [_spelled(n) for n in params]
            hint = _did_you_mean(typed, flags) or f"expected {', '.join(flags)}"
            raise _UsageError(f"unknown option {typed!r}: {hint}", words)
        elif key in _TEXT and not inline:
            if j == len(rest) or _FLAG.match(rest[j]):
                message = f"{_spelled(key)} needs a value"
                if j < len(rest) and not _names_a_flag(rest[j], params):
                    meant = _flag_meant(rest[j], params)
                    if meant is not None:
                        message += f" ({rest[j]!r} looks like a mistyped {_spelled(meant)})"
                    else:
                        # fire reads any word starting "--" as a flag: "--query '-- note'"
                        message += f" (for one that starts with '-', write {_spelled(key)}=VALUE)"
                raise _UsageError(message, words)
            j += 1
        elif not inline and j < len(rest) and not _FLAG.match(rest[j]):
            j += 1  # fire takes it as the switch's value (refused by _flag)
        if key in given:
            raise _UsageError(f"{_spelled(key)} is given twice", words)
        given.add(key)
    if positional > len([n for n in params if n not in given]):
        raise _UsageError(f"too many arguments: {' '.join(rest)!r}", words)


def _names_a_flag(token: str, params: Sequence[str]) -> bool:
    """Whether ``token`` is one of the command's flags (``--table``, ``-t``, ``--noaudit``)."""
    key = token.partition("=")[0].lstrip("-").replace("-", "_")
    if key.startswith("no") and key[2:] in params:
        return True
    return key in params or (len(key) == 1 and any(n.startswith(key) for n in params))


def _flag_meant(token: str, params: Sequence[str]) -> str | None:
    """The command's flag that ``token`` (``--conconfig``) misspells, if it looks like one."""
    import difflib

    if not re.fullmatch(r"--[A-Za-z][\w-]*(=.*)?", token, re.DOTALL):
        return None
    key = token.partition("=")[0][2:].replace("-", "_")
    close = difflib.get_close_matches(key, list(params), n=1, cutoff=0.75)
    return close[0] if close else None


def _help(component: object, words: Sequence[str], target: Any) -> str:
    """fire's help text for ``target``, flags spelled as the reference spells them."""
    from fire import helptext, trace

    steps = trace.FireTrace(component, name=PROG)
    member = component
    for word in words:
        member = getattr(member, word)
        steps.AddAccessedProperty(member, word, [word], None, None)
    if inspect.ismethod(target):
        target = _without_metadata(target)
    text: str = helptext.HelpText(target, trace=steps, verbose=False)
    for name in _DASHED:
        text = text.replace("--" + name, _spelled(name))
    for name in _SWITCHES:  # fire shows `--audit=AUDIT`; a switch takes no value
        text = text.replace(f"{_spelled(name)}={name.upper()}", _spelled(name))
    return text


def _without_metadata(method: Any) -> Any:
    """The command as fire's help should see it: fire lists the FIRE_METADATA attribute
    that its own SetParseFns puts on a function as if it were a subcommand."""
    import types

    fn = method.__func__
    bare = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__)
    for attr in ("__doc__", "__annotations__", "__kwdefaults__", "__module__", "__qualname__"):
        setattr(bare, attr, getattr(fn, attr))
    return types.MethodType(bare, method.__self__)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version(PROG)
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        from pgmonkey import __version__

        return __version__


def _dispatch(args: list[str]) -> None:
    """Answer --help and --version, check the command line, then let fire run it."""
    import fire

    head, tail = args, []
    if "--" in args:  # what follows is fire's own (--trace, --verbose, ...)
        cut = args.index("--")
        head, tail = args[:cut], args[cut + 1 :]
    component = PgMonkey()
    if head and head[0] in _VERSION and len(head) == 1 and not tail:
        _out(f"{PROG} {_version()}")
        return
    words, target, rest = _resolve(component, head)
    if _HELP.intersection(rest) or _HELP.intersection(tail):
        _out(_help(component, words, target))
        return
    if not inspect.ismethod(target):
        if not rest:
            _out(_help(component, words, target))  # a group alone: its commands
            return
        typed = rest[0].partition("=")[0]
        known = ["--help", *(sorted(_VERSION) if not words else [])]
        hint = _did_you_mean(typed, known) or f"give a command: {', '.join(_commands(target))}"
        raise _UsageError(f"unknown option {typed!r}: {hint}", words)
    try:
        _check_flags(target, rest, words)
        fire.Fire(component, command=[*head, "--", *tail, *_NO_SEPARATOR], name=PROG)
    except _UsageError as e:
        e.words = words if e.words is None else e.words
        raise


class _Terminated(BaseException):
    """SIGTERM, raised where the command is, so that its cleanup runs (a half-written
    export's part file is removed, a transaction rolled back) before the exit."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command line (``argv`` without the program name); return the exit code."""
    import fire

    args = list(sys.argv[1:] if argv is None else argv)
    # fire's help asks IPython's inspector for docstrings when IPython is installed: 0.7 s
    # at every --help, against S8's promise. Its own fallback gives the same help text, and
    # no command needs IPython (tqdm then draws a terminal progress bar, as it should).
    hide_ipython = "IPython" not in sys.modules
    if hide_ipython:
        sys.modules["IPython"] = None  # type: ignore[assignment]  # import -> ImportError
    # Python's default for SIGTERM ends the process at once, finally blocks unrun. Only
    # where nobody set a handler of their own (signals reach the main thread only).
    on_term = None
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            on_term = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        _dispatch(args)
    except fire.core.FireExit as e:  # fire's own usage errors (2)
        return int(e.code or 0)
    except _Exit as e:
        return e.code
    except _UsageError as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        where = " ".join([PROG, *(e.words or [])])
        sys.stderr.write(f"{PROG}: see `{where} --help`\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except _Terminated:
        sys.stderr.write(f"{PROG}: terminated\n")
        return 128 + signal.SIGTERM
    except Exception as e:
        if not _is_expected(e):
            raise  # a bug: keep the traceback
        sys.stderr.write(f"{PROG}: error: {_one_line(e)}\n")
        return EXIT_FAILURE
    finally:
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)
        if hide_ipython and sys.modules.get("IPython", False) is None:
            del sys.modules["IPython"]
    return 0
